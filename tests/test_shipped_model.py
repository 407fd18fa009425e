"""What the shipped model does with situations an operator can judge at a glance.

These run the model in models/ (the newest one) through the engine's Forecaster on
windows built by hand, so each expectation is one a person can check against the
window: a server that has sat at a new level for hours is forecast to be there five
minutes from now.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.contract import METRICS
from engine.forecaster import Forecaster
from engine.store import WindowStore
from engine.tft_model import find_latest_model

ROOT = Path(__file__).resolve().parents[1]
STEPS = 288                     # 24 h at 5 minutes: the model's full encoder


@pytest.fixture(scope="module")
def forecaster():
    model_dir = find_latest_model(ROOT / "models")
    assert model_dir is not None, "no model shipped in models/"
    fc = Forecaster(model_dir, device="cpu")
    fc.load()
    assert fc.loaded, fc.model_reason
    return fc


def _forecast(forecaster, series: dict[str, tuple[str, np.ndarray]]):
    """series: name -> (profile, cpu values, oldest first); the other metrics sit flat."""
    t = pd.date_range("2026-01-06T00:00:00Z", periods=STEPS, freq="5min")
    frames = []
    for name, (profile, cpu) in series.items():
        frames.append(pd.DataFrame({"server_name": name, "timestamp": t, "cpu_percent": cpu,
                                    "memory_percent": 40.0, "disk_percent": 30.0, "load_average": 0.3,
                                    "profile": profile}))
    store = WindowStore(capacity=STEPS)
    assert store.extend_frame(pd.concat(frames, ignore_index=True)) == []
    windows = store.windows()
    out = forecaster.forecast(windows)
    assert set(out.source) == {"tft"}
    cpu = out.quantiles["cpu_percent"]
    current = windows.values[:, -1, METRICS.index("cpu_percent")]
    return {name: (float(current[i]), cpu[i]) for i, name in enumerate(windows.names)}


def test_a_server_at_a_new_level_is_forecast_to_stay_there_five_minutes_from_now(forecaster):
    """Twenty hours at 10 % CPU, then hours at a new level: five minutes ahead the server
    will almost surely still be near where it is, so the first step's p10-p90 band must
    hold the current value.  (tft_model_20261126T114627Z, centred on each window's mean,
    forecast a web server four hours at 80 % at 41 %, band 23-68 %.)"""
    rng = np.random.default_rng(0)
    series = {}
    for profile in ("web", "idle", "database"):
        for level in (20, 50, 80):
            for hours in (1, 4):
                cpu = 10 + rng.normal(0, 1.5, STEPS)
                cpu[-12 * hours:] = level + rng.normal(0, 1.5, 12 * hours)
                series[f"{profile}-{level}-{hours}h"] = (profile, cpu)
    misses = []
    for name, (current, q) in _forecast(forecaster, series).items():
        p10, p90 = q[0, 0], q[0, 2]
        if not p10 <= current <= p90:
            misses.append(f"{name}: now {current:.1f}, 5 min ahead p10-p90 {p10:.1f}-{p90:.1f}")
    assert not misses, "; ".join(misses)


def test_a_steady_server_is_forecast_near_its_level(forecaster):
    """The other side: a server that never moved is not forecast to jump."""
    rng = np.random.default_rng(1)
    out = _forecast(forecaster, {"web-flat": ("web", 30 + rng.normal(0, 1.0, STEPS))})
    current, q = out["web-flat"]
    assert abs(q[0, 1] - current) < 5 and q[:12, 2].max() < 50 and q[:12, 0].min() > 10
