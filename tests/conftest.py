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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny trained model directory shared by the tests that only need *a* model."""
    from fleet_fixtures import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))
