"""The fallback forecaster on series whose right answer is known."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.heuristic import (REASON_NO_MODEL, SEASON, heuristic_forecast, heuristic_forecast_batch,
                              heuristic_reason)

ROOT = Path(__file__).resolve().parents[1]
H = 96


def _check_valid(fc: np.ndarray, horizon: int = H, lo: float = 0.0, hi: float = 100.0) -> None:
    assert fc.shape == (horizon, 3)
    assert np.isfinite(fc).all()
    assert (np.diff(fc, axis=1) >= 0).all(), "p10 <= p50 <= p90"
    assert (fc >= lo).all() and (fc <= hi).all()


@pytest.mark.parametrize("length", [1, 2, 5, 13, 40, 299, 300, 700, 2016])
@pytest.mark.parametrize("metric", ["cpu_percent", "disk_percent", "load_average"])
def test_shape_order_and_range_for_any_length(length, metric):
    rng = np.random.default_rng(length)
    scale = 100.0 if metric != "load_average" else 6.0
    history = rng.uniform(0, scale, length)
    fc = heuristic_forecast(history, H, metric=metric)
    _check_valid(fc, hi=100.0 if metric != "load_average" else np.inf)


def test_clipped_at_100_and_at_0():
    rising = np.linspace(60, 99.5, 200)
    fc = heuristic_forecast(rising, H, metric="memory_percent")
    _check_valid(fc)
    assert fc[-1, 1] == 100.0 and fc[:, 2].max() == 100.0
    falling = np.linspace(3.0, 0.05, 200)
    fc = heuristic_forecast(falling, H, metric="load_average")
    assert fc.min() == 0.0 and (np.diff(fc, axis=1) >= 0).all()


def test_constant_series_keeps_its_value_with_a_nonzero_band():
    fc = heuristic_forecast(np.full(1000, 42.0), H, metric="disk_percent")
    assert np.allclose(fc[:, 1], 42.0)
    assert (fc[:, 2] - fc[:, 1] > 0.1).all() and (fc[:, 1] - fc[:, 0] > 0.1).all()
    # the band widens with the horizon
    assert fc[-1, 2] - fc[-1, 0] > fc[0, 2] - fc[0, 0]
    load = heuristic_forecast(np.zeros(50), H, metric="load_average")
    assert (load[:, 2] > 0).all() and (load[:, 1] == 0).all()


def test_periodic_series_follows_yesterday():
    rng = np.random.default_rng(0)
    t = np.arange(3 * SEASON + 40)
    day = lambda k: 50 + 30 * np.sin(2 * np.pi * k / SEASON)  # noqa: E731
    history = day(t) + rng.normal(0, 0.5, len(t))
    fc = heuristic_forecast(history, H)
    yesterday = history[-SEASON:-SEASON + H]
    truth = day(np.arange(len(t), len(t) + H))
    assert np.abs(fc[:, 1] - yesterday).max() < 2.0
    assert np.abs(fc[:, 1] - truth).mean() < 1.0
    # far better than holding the last value, and the truth sits inside most of the band
    assert np.abs(fc[:, 1] - truth).mean() < 0.2 * np.abs(history[-1] - truth).mean()
    assert ((truth >= fc[:, 0]) & (truth <= fc[:, 2])).mean() > 0.8


def test_ramp_is_extrapolated_with_damping():
    history = 20 + 0.1 * np.arange(120)           # +0.1 per step, last value 31.9
    fc = heuristic_forecast(history, H, metric="disk_percent")
    assert fc[0, 1] == pytest.approx(32.0, abs=0.05)
    assert (np.diff(fc[:, 1]) > 0).all()
    undamped = 31.9 + 0.1 * H
    assert 32.0 + 0.1 * 30 < fc[-1, 1] < undamped


@pytest.mark.parametrize("hours_since_step", [1, 2, 2.5])
def test_a_step_to_a_new_level_is_a_plateau_not_a_ramp(hours_since_step):
    """20 h at 10 %, then a jump to 80 % that held: no climb from the plateau.  (Before, a
    line through the step 2 h ago forecast 91 % five minutes ahead and 100 % within half an
    hour, its band above the present.)"""
    rng = np.random.default_rng(4)
    history = 10 + rng.normal(0, 1.5, SEASON)
    held = int(12 * hours_since_step)
    history[-held:] = 80 + rng.normal(0, 1.5, held)
    fc = heuristic_forecast(history, H)
    assert fc[0, 0] <= history[-3:].mean() <= fc[0, 2]
    assert np.abs(fc[:12, 1] - 80).max() < 2.5
    assert fc[:, 1].max() < 85


def test_noise_falls_back_to_its_mean_not_to_the_last_values():
    rng = np.random.default_rng(3)
    history = rng.normal(50, 5, 200)
    history[-3:] = 65.0
    fc = heuristic_forecast(history, H)
    assert fc[0, 1] < 63.0
    assert abs(fc[11, 1] - 50.0) < 5.0
    assert abs(fc[-1, 1] - 50.0) < 5.0
    # a 10-90 band wider than the noise's own (2 x 1.28 x 5 = 12.8), never absurdly: its
    # width comes from h-step changes (sqrt(2) x the noise for a stationary series) and
    # BAND_SCALE's 1.3 for CPU, both chosen for servers that change regime (the demo fleet's
    # CPU was covered 74 % without them); here it covers ~98 % of the noise's future
    width = np.median(fc[:, 2] - fc[:, 0])
    assert 8.0 < width < 2.2 * 12.8
    future = rng.normal(50, 5, (2000, H))
    assert 0.8 <= ((future >= fc[:, 0]) & (future <= fc[:, 2])).mean() < 0.995


def test_length_one_history():
    fc = heuristic_forecast(np.array([37.5]), H)
    _check_valid(fc)
    assert np.allclose(fc[:, 1], 37.5)
    assert (fc[:, 2] > 37.5).all() and (fc[:, 0] < 37.5).all()


def test_batch_equals_single_with_nan_padding():
    rng = np.random.default_rng(7)
    lengths = np.array([1, 2, 5, 6, 12, 40, 290, 300, 301, 577, 700, 1000])
    width = 1000
    values = np.full((len(lengths), width), np.nan)
    histories = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        h = np.clip(40 + 20 * np.sin(2 * np.pi * t / SEASON) + 0.01 * t + rng.normal(0, 3, n), 0, 100)
        values[i, width - n:] = h
        histories.append(h)
    batch = heuristic_forecast_batch(values, lengths, H, metric="memory_percent")
    assert batch.shape == (len(lengths), H, 3)
    for i, h in enumerate(histories):
        np.testing.assert_allclose(batch[i], heuristic_forecast(h, H, metric="memory_percent"), atol=1e-9)


def test_other_horizons_and_quantiles():
    history = 50 + np.sin(np.arange(800) / 10)
    fc = heuristic_forecast(history, 300, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    assert fc.shape == (300, 5) and (np.diff(fc, axis=1) >= 0).all()
    with pytest.raises(ValueError):
        heuristic_forecast(history, 10, quantiles=(0.9, 0.5, 0.1))


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        heuristic_forecast(np.array([]), H)
    with pytest.raises(ValueError):
        heuristic_forecast_batch(np.ones((2, 5)), np.array([5, 0]), H)
    with pytest.raises(ValueError):
        heuristic_forecast(np.ones(5), H, metric="gpu_percent")


def test_reasons():
    assert heuristic_reason(24, 36) == "history 2.0 h < 3.0 h the model needs"
    assert REASON_NO_MODEL == "no model"


def test_does_not_import_torch():
    code = ("import sys, engine.heuristic, engine.risk, engine.alerts\n"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cpu_bands_cover_what_happens_on_the_demo_fleets_training_period(monkeypatch):
    """The band's cap was the in-sample spread of the blend's residuals, which misses the
    level's and the trend's own errors: CPU p10-p90 bands covered 60 % of the next 8 h on the
    demo fleet's training period.  With the spread of the series' own h-step changes as a
    lower bound on the cap they cover 76 %, and with BAND_SCALE's 1.3 for CPU (chosen on this
    period and Bitbrains') about 81 % (the target is 80 %)."""
    from pathlib import Path

    import pandas as pd

    import engine.heuristic as heuristic
    from engine.contract import load_path, to_grid
    from engine.datasplit import read_split

    demo = Path(__file__).resolve().parents[1] / "demo_data"
    grid = to_grid(load_path(demo).frame)
    spec = read_split(demo)
    hist, truth = [], []
    for name, g in grid[grid["timestamp"] < spec.heldout_from].groupby("server_name"):
        if spec.is_heldout_server(name) or name.startswith("idle"):
            continue
        y = g["cpu_percent"].to_numpy()
        for o in range(576, len(y) - 96, 144):
            hist.append(y[o - 576:o])
            truth.append(y[o:o + 96])
    hist, truth = np.stack(hist), np.stack(truth)

    def coverage():
        fc = heuristic.heuristic_forecast_batch(hist, np.full(len(hist), 576), 96, (0.1, 0.5, 0.9), "cpu_percent")
        return float(((truth >= fc[:, :, 0]) & (truth <= fc[:, :, 2])).mean())

    scaled = coverage()
    assert 0.78 <= scaled <= 0.86
    monkeypatch.setitem(heuristic.BAND_SCALE, "cpu_percent", 1.0)
    unscaled = coverage()
    assert 0.72 <= unscaled <= 0.8 and unscaled < scaled - 0.03
    monkeypatch.setattr(heuristic, "_hstep_spread", lambda y, valid, qs, steps: np.zeros((len(y), len(steps), len(qs) - 1)))
    assert coverage() < 0.65                      # the old cap alone


def test_a_server_with_little_history_gets_the_band_servers_in_general_have():
    # one sample gave an 8 h CPU band of +-2 points and a "<1 %" risk of reaching 95 from 70
    from engine.heuristic import MIN_CAP, YOUNG_PRIOR
    from engine.risk import build_metric_forecast

    one = np.full((1, 288), 70.0)
    q = heuristic_forecast_batch(one, np.array([1]), H, metric="cpu_percent")[0]
    half = (q[-1, 2] - q[-1, 0]) / 2
    assert half == pytest.approx(YOUNG_PRIOR["cpu_percent"][-1] * (1 - 1 / MIN_CAP), rel=1e-6)
    assert build_metric_forecast("cpu_percent", 70.0, q).prob_8h > 0.01
    # fading as its own history fills: none of it from 3 h on (a flat series keeps its floor)
    widths = [np.ptp(heuristic_forecast_batch(one, np.array([n]), H, metric="cpu_percent")[0, -1, [0, 2]])
              for n in (1, 12, 24, MIN_CAP, 288)]
    assert widths[0] > widths[1] > widths[2] > widths[3] == widths[4]
    # load: in proportion to its level
    load = heuristic_forecast_batch(np.full((1, 288), 8.0), np.array([1]), H, metric="load_average")[0]
    assert (load[-1, 2] - load[-1, 1]) == pytest.approx(8.0 * YOUNG_PRIOR["load_average"][-1] * (1 - 1 / MIN_CAP))
