"""Baselines and scoring on series whose answers can be computed by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.baselines import linear_trend, seasonal_naive
from engine.calibration import apply_calibration, fit_calibration
from engine.evaluation import pinball, score

Q = (0.1, 0.5, 0.9)


def test_seasonal_naive_repeats_yesterday_exactly_on_a_periodic_series():
    day = np.arange(288)
    series = np.tile(50 + 10 * np.sin(2 * np.pi * day / 288), 3)  # three identical days
    fc = seasonal_naive(series, 96, Q)
    expected = series[-288:-288 + 96]
    assert np.allclose(fc[:, 1], expected)
    # day-over-day changes are all zero, so the band has zero width
    assert np.allclose(fc[:, 0], expected) and np.allclose(fc[:, 2], expected)


def test_linear_trend_extrapolates_a_line():
    series = 10 + 0.5 * np.arange(100)
    fc = linear_trend(series, 4, Q)
    assert np.allclose(fc[:, 1], [60.0, 60.5, 61.0, 61.5])
    assert np.allclose(fc[:, 0], fc[:, 1]) and np.allclose(fc[:, 2], fc[:, 1])


def test_seasonal_naive_band_uses_day_over_day_changes():
    rng = np.random.default_rng(1)
    base = np.tile(np.linspace(0, 10, 288), 2)
    noise = np.zeros(576)
    noise[288:] = rng.choice([-2.0, 2.0], 288)
    fc = seasonal_naive(base + noise, 10, Q)
    changes = (base + noise)[288:] - (base + noise)[:288]
    assert np.allclose(fc[:, 0] - fc[:, 1], np.quantile(changes, 0.1))
    assert np.allclose(fc[:, 2] - fc[:, 1], np.quantile(changes, 0.9))


def test_pinball_and_score_by_hand():
    y = np.array([[10.0, 10.0]])
    q = np.array([[[8.0, 10.0, 12.0], [11.0, 12.0, 13.0]]])
    s = score(q, y, Q)
    # step 1: q10=8 -> 0.1*2=0.2; step 2: q10=11 above y -> 0.9*1=0.9
    assert s.pinball[0.1] == pytest.approx((0.2 + 0.9) / 2)
    assert s.pinball[0.5] == pytest.approx((0.0 + 0.5 * 2) / 2)
    assert s.pinball[0.9] == pytest.approx((0.9 * 2 * 0 + 0.1 * 2 + 0.1 * 3) / 2)
    assert s.p50_mae == pytest.approx(1.0)
    assert s.coverage == pytest.approx(0.5)
    assert pinball(np.array([5.0]), np.array([7.0]), 0.9)[0] == pytest.approx(1.8)


def test_first_hour_loss_reads_only_the_first_twelve_steps():
    y = np.full((2, 24), 50.0)
    q = np.repeat(y[:, :, None], 3, axis=2).copy()
    q[:, 12:, :] = 60.0                  # exact for an hour, then 10 points high at every quantile
    s = score(q, y, Q)
    assert s.first_hour_pinball == 0.0
    # after the first hour: pinball 0.9 * 10, 0.5 * 10, 0.1 * 10 at q10, q50, q90; half the steps
    assert s.mean_pinball == pytest.approx((9.0 + 5.0 + 1.0) / 3 / 2)
    q[:, :12, 1] = 44.0                  # now the first hour's p50 is 6 points low
    assert score(q, y, Q).first_hour_pinball == pytest.approx(0.5 * 6 / 3)
    assert score(q, y, Q).to_json()["mean_pinball_first_hour"] == pytest.approx(1.0)


def test_calibration_widens_a_too_narrow_band_to_the_target_coverage():
    rng = np.random.default_rng(0)
    n, h = 2000, 24
    y = rng.normal(0, 1, (n, h))
    q = np.zeros((n, h, 3))
    q[:, :, 0], q[:, :, 2] = -0.3, 0.3  # far too narrow: covers ~24 %
    actual, scale = {"cpu_percent": y + 50}, {"cpu_percent": np.ones(n)}
    quant = {"cpu_percent": q + 50}
    cal = fit_calibration(quant, actual, scale, q_levels=Q)
    fresh = rng.normal(0, 1, (n, h)) + 50
    adjusted = apply_calibration(cal, "cpu_percent", q + 50, np.ones(n), Q)
    coverage = ((fresh >= adjusted[:, :, 0]) & (fresh <= adjusted[:, :, 2])).mean()
    assert 0.77 < coverage < 0.83
    assert np.allclose(adjusted[:, :, 1], 50)  # p50 untouched



def test_calibration_moves_the_band_smoothly_between_hours():
    # held constant over each hour, the band jumped at every hour of the horizon (a p90 of 14.8
    # at step 11, 26.6 at step 12): each hour's number applies at its middle step, linear between
    from engine.calibration import per_step

    cal = {"bucket_steps": 12, "lower": {"cpu_percent": [0.0, 12.0]}, "upper": {"cpu_percent": [0.0, 12.0]}}
    q = np.zeros((1, 24, 3)) + 50
    out = apply_calibration(cal, "cpu_percent", q, np.ones(1), Q)[0]
    widths = out[:, 2] - out[:, 0]
    assert widths[5] == pytest.approx(0.0) and widths[18] == pytest.approx(24.0)      # the middles, as fitted
    assert np.all(np.diff(widths) >= 0) and np.max(np.diff(widths)) <= 2 * 12 / 12 + 1e-9   # no step
    assert widths[:6].max() == pytest.approx(0.0) and widths[18:].min() == pytest.approx(24.0)   # flat at the ends
    assert per_step([1.0, 3.0], 12, 24)[11] == pytest.approx(1.0 + 2.0 * 5.5 / 12)


def test_calibration_fitted_on_a_wildly_wrong_band_is_clipped_to_what_the_loader_accepts():
    from engine.tft_model import MAX_CALIBRATION_STD

    n, h = 200, 24
    q = np.full((n, h, 3), 50.0)
    y = np.full((n, h), 50.0 + 1e4)        # truth 10,000 window stds above the band
    cal = fit_calibration({"cpu_percent": q}, {"cpu_percent": y}, {"cpu_percent": np.ones(n)}, q_levels=Q)
    assert max(cal["upper"]["cpu_percent"]) == MAX_CALIBRATION_STD
    assert max(cal["lower"]["cpu_percent"]) == -MAX_CALIBRATION_STD

def test_calibrated_forecast_stays_in_range_and_ordered():
    q = np.array([[[98.0, 99.0, 99.5]]])
    cal = {"bucket_steps": 12, "lower": {"cpu_percent": [-5.0]}, "upper": {"cpu_percent": [3.0]}}
    out = apply_calibration(cal, "cpu_percent", q, np.array([1.0]), Q)
    assert out[0, 0, 2] == 100.0          # clipped to the valid range
    assert out[0, 0, 0] == 99.0           # a negative adjustment never crosses p50


def test_calibration_per_profile_uses_each_groups_own_adjustment():
    rng = np.random.default_rng(3)
    n, h = 400, 12
    groups = np.array(["web"] * 200 + ["unknown"] * 200)
    noise = np.where(groups[:, None] == "web", 1.0, 4.0) * rng.normal(0, 1, (n, h))
    q = np.zeros((n, h, 3)) + 50
    q[:, :, 0] -= 1.0
    q[:, :, 2] += 1.0
    cal = fit_calibration({"cpu_percent": q}, {"cpu_percent": 50 + noise}, {"cpu_percent": np.ones(n)},
                          q_levels=Q, groups=groups)
    assert set(cal["groups"]) == {"web", "unknown"}
    fresh = 50 + np.where(groups[:, None] == "web", 1.0, 4.0) * rng.normal(0, 1, (n, h))
    adjusted = apply_calibration(cal, "cpu_percent", q, np.ones(n), Q, groups=groups)
    for g in ("web", "unknown"):
        sel = groups == g
        cover = ((fresh[sel] >= adjusted[sel, :, 0]) & (fresh[sel] <= adjusted[sel, :, 2])).mean()
        assert 0.74 < cover < 0.86, (g, cover)
    # a profile with no group of its own gets the pooled adjustment
    other = apply_calibration(cal, "cpu_percent", q[:1], np.ones(1), Q, groups=np.array(["gpu"]))
    pooled = apply_calibration(cal, "cpu_percent", q[:1], np.ones(1), Q)
    np.testing.assert_array_equal(other, pooled)


def _scores(mean_pinball: float, coverage: float) -> "Scores":
    from engine.evaluation import Scores

    return Scores({0.1: mean_pinball, 0.5: mean_pinball, 0.9: mean_pinball}, mean_pinball, 0.0, coverage, 10)


def test_target_cells_name_each_missed_target():
    import json

    from engine.evaluation import DatasetReport, format_targets, reports_json, target_cells

    rep = DatasetReport("fleet", {})
    # seen: 1.0 against a best baseline of 1.5 is 33 % lower, coverage 80 %: on target
    rep.results["seen"] = {"cpu_percent": {"tft": _scores(1.0, 0.80), "seasonal_naive": _scores(2.0, 0.7),
                                           "linear_trend": _scores(1.5, 0.3)}}
    # never seen: 1.2 is only 20 % below 1.5, covers 90 %, and is 20 % above the seen loss
    rep.results["heldout"] = {"cpu_percent": {"tft": _scores(1.2, 0.90), "seasonal_naive": _scores(1.5, 0.7),
                                              "linear_trend": _scores(3.0, 0.3)}}
    seen, heldout = target_cells([rep])
    assert seen["misses"] == [] and seen["loss_vs_best_baseline"] == pytest.approx(-1 / 3, abs=1e-4)
    assert seen["heldout_vs_seen_loss"] is None
    assert heldout["misses"] == ["loss", "coverage", "held-out gap"]
    assert heldout["heldout_vs_seen_loss"] == pytest.approx(0.2)
    text = format_targets([seen, heldout])
    # the better baseline: 1.5 on seen servers, 1.5 on never-seen ones -> a 0 % gap of its own
    assert heldout["baseline_heldout_vs_seen_loss"] == pytest.approx(0.0)
    assert seen["baseline_heldout_vs_seen_loss"] is None
    assert "-20.0% · 90.0% · +20% (b +0%) ✗LCG" in text and "1 of 2 cells miss a target" in text
    assert json.loads(reports_json([rep]))["targets"]["cells_missing"] == 1
    # on the 75 % edge of the band and exactly 25 % below: no miss
    rep.results["heldout"]["cpu_percent"]["tft"] = _scores(1.0, 0.75)
    rep.results["heldout"]["cpu_percent"]["seasonal_naive"] = _scores(4 / 3, 0.7)
    cells = target_cells([rep])
    assert cells[1]["misses"] == []
    # the better baseline: 4/3 on never-seen servers against 1.5 on seen ones
    assert cells[1]["baseline_heldout_vs_seen_loss"] == pytest.approx(-1 / 9, abs=1e-4)
    # never-seen servers twice as hard for the baselines: +100 %
    rep.results["heldout"]["cpu_percent"]["seasonal_naive"] = _scores(3.0, 0.7)
    assert target_cells([rep])[1]["baseline_heldout_vs_seen_loss"] == pytest.approx(1.0)



def test_a_perfect_baseline_does_not_drop_the_cell_or_its_misses():
    """A series that repeats exactly gives seasonal-naive a loss of 0: there is no ratio, but
    the cell must stay (an empty list of cells reads as 'every target met')."""
    import json

    from engine.evaluation import DatasetReport, format_reports, reports_json, target_cells

    rep = DatasetReport("periodic", {})
    rep.results["seen"] = {"cpu_percent": {"tft": _scores(3.79, 0.393), "seasonal_naive": _scores(0.0, 1.0),
                                           "linear_trend": _scores(5.0, 0.3)},
                           "memory_percent": {"tft": _scores(0.0, 0.80), "seasonal_naive": _scores(0.0, 1.0),
                                              "linear_trend": _scores(5.0, 0.3)}}
    cpu, mem = target_cells([rep])
    assert cpu["loss_vs_best_baseline"] is None and cpu["misses"] == ["loss", "coverage"]
    assert mem["misses"] == []                    # as good as a perfect baseline
    text = format_reports([rep])
    assert "tft loss vs the better baseline: n/a (baseline loss 0)" in text
    assert "1 of 2 cells miss a target" in text
    assert json.loads(reports_json([rep]))["targets"]["cells_missing"] == 1


def test_the_text_line_and_the_targets_table_print_the_same_figure():
    from engine.evaluation import DatasetReport, format_reports

    rep = DatasetReport("fleet", {})
    # 1 - 1.0 / 1.49985 = 0.33326...: rounded once it is -33.3 % in both places
    rep.results["seen"] = {"cpu_percent": {"tft": _scores(1.0, 0.80), "seasonal_naive": _scores(1.49985, 0.7),
                                           "linear_trend": _scores(2.0, 0.3)}}
    text = format_reports([rep])
    assert "tft loss vs the better baseline: -33.3%" in text and "-33.3% · 80.0%" in text

def test_a_gap_of_exactly_ten_percent_is_on_target_despite_float_rounding():
    from engine.evaluation import DatasetReport, target_cells

    rep = DatasetReport("fleet", {})
    rep.results["seen"] = {"cpu_percent": {"tft": _scores(0.6, 0.80), "seasonal_naive": _scores(2.0, 0.7),
                                           "linear_trend": _scores(2.0, 0.3)}}
    rep.results["heldout"] = {"cpu_percent": {"tft": _scores(0.66, 0.80), "seasonal_naive": _scores(2.0, 0.7),
                                              "linear_trend": _scores(2.0, 0.3)}}
    assert 0.66 / 0.6 - 1.0 > 0.1                      # 0.10000000000000009
    assert target_cells([rep])[1]["misses"] == []
    rep.results["heldout"]["cpu_percent"]["tft"] = _scores(0.6601, 0.80)
    assert target_cells([rep])[1]["misses"] == ["held-out gap"]


def test_every_scored_origin_has_two_days_of_history(tmp_path):
    from engine.datasplit import SplitSpec
    from engine.evaluation import HISTORY, evaluate_frame
    from fleet_fixtures import make_grid

    grid = make_grid(n_servers=1, days=3.0)
    start = grid["timestamp"].min() + pd.Timedelta(days=1)        # only one day before the held-out period
    rep = evaluate_frame(None, grid, SplitSpec(heldout_from=start), "x", set())
    windows = rep.results["heldout"]["cpu_percent"]["seasonal_naive"].windows
    # origins every 2 h from 2 days in, with 8 h of truth after them: 3 days - 2 days - 8 h = 16 h
    assert HISTORY == 576 and windows == 16 // 2 + 1


def test_no_origin_scores_a_forecast_whose_history_ends_in_rows_filled_from_its_own_truth():
    import pandas as pd

    from engine.contract import to_grid
    from engine.datasplit import origins_for
    from engine.tft_model import prepare_frame
    from fleet_fixtures import make_grid

    grid = make_grid(n_servers=1, days=3.0)
    gap = (grid["timestamp"] > "2026-01-07T11:30Z") & (grid["timestamp"] < "2026-01-07T12:05Z")   # 11:35..12:00
    prepared = prepare_frame(to_grid(grid[~gap].drop(columns=["filled", "segment"])))
    assert prepared["filled"].sum() == 6 and prepared["series"].nunique() == 1
    t = prepared["time_idx"].to_numpy()
    assert (np.diff(t) == 1).all()                                   # what origins_for relies on
    start = pd.Series({"srv-00": pd.Timestamp("2026-01-07T00:00Z")})
    got = set(origins_for(prepared, start, horizon=12, min_history=288, every=1)["origin_idx"])
    noon = int(pd.Timestamp("2026-01-07T12:00Z").timestamp()) // 300
    # origins 11:40 .. 12:05 read a filled 11:35 .. 12:00 as their last step; 11:35 and 12:10 do not
    assert not got & set(range(noon - 4, noon + 2)) and {noon - 5, noon + 2} <= got
