"""Shared fixtures."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from fleet_fixtures import make_grid

torch.set_num_threads(2)


@pytest.fixture
def grid() -> pd.DataFrame:
    return make_grid()
