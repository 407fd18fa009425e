"""Probabilities, breach times, trends and the fleet environment from hand-built quantile forecasts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.contract import METRICS
from engine.risk import (CORRELATION_STEPS, HIGH_RISK, build_fleet, build_metric_forecast, build_server_forecast,
                         crossing_probability, crossing_probability_batch, environment, minutes_to_breach,
                         peak_probability_batch, server_from_metrics, step_probability, trend)
from engine.snapshot import SOURCE_TFT
from engine.thresholds import DEFAULT_THRESHOLDS, Thresholds

H = 96
Z90 = 1.2815515655446004


def band(p50, lower=5.0, upper=5.0) -> np.ndarray:
    """(H, 3) forecast around p50 (scalar or array) with fixed distances to p10 and p90."""
    p50 = np.broadcast_to(np.asarray(p50, dtype=float), (H,))
    return np.stack([p50 - lower, p50, p50 + upper], axis=1)


def cols(q):
    return q[:, 0], q[:, 1], q[:, 2]


# --------------------------------------------------------------------------- minutes to breach


def test_p50_crossing_at_step_10_is_55_minutes():
    p50 = np.full(H, 80.0)
    p50[10:] = 96.0
    q = band(p50)
    assert minutes_to_breach(q[:, 1], q[:, 2], 95.0, current=70.0) == (55.0, "p50")


def test_p90_only_crossing_has_basis_p90():
    p50 = np.full(H, 85.0)
    p90 = np.full(H, 90.0)
    p90[20:] = 95.0                                 # exactly at the threshold counts
    assert minutes_to_breach(p50, p90, 95.0, current=70.0) == (105.0, "p90")


def test_no_crossing_and_already_there():
    q = band(50.0)
    assert minutes_to_breach(q[:, 1], q[:, 2], 95.0, current=50.0) == (None, None)
    assert minutes_to_breach(q[:, 1], q[:, 2], 95.0, current=95.0) == (0.0, "now")


# --------------------------------------------------------------------------- probabilities


def test_threshold_exactly_at_p90_at_one_step_gives_ten_percent():
    p50 = np.full(H, 50.0)
    p50[40] = 85.0                                  # p90 at that step = 95 = threshold
    q = band(p50, 10.0, 10.0)
    assert crossing_probability(*cols(q), 95.0, H) == pytest.approx(0.10, abs=1e-6)
    assert crossing_probability(*cols(q), 95.0, 6) < 1e-4


def test_threshold_at_p50_gives_one_half():
    q = band(np.linspace(60, 95, H))                # p50 reaches 95 at the last step only
    assert crossing_probability(*cols(q), 95.0, H) == pytest.approx(0.5, abs=1e-9)


def test_current_at_or_above_threshold_is_certain():
    q = band(10.0)
    assert crossing_probability(*cols(q), 95.0, 6, current=97.0) == 1.0
    f = build_metric_forecast("cpu_percent", 97.0, q)
    assert (f.prob_30m, f.prob_8h, f.minutes_to_breach, f.breach_basis) == (1.0, 1.0, 0.0, "now")


def test_late_crossing_shows_in_8h_not_in_30m():
    p50 = np.full(H, 40.0)
    p50[60:] = 97.0
    f = build_metric_forecast("memory_percent", 40.0, band(p50))
    assert f.prob_30m < 1e-6
    assert f.prob_8h > 0.6
    assert (f.minutes_to_breach, f.breach_basis) == (305.0, "p50")


def test_skewed_band_uses_the_side_of_the_threshold():
    # p50 90, p90 only 1 above -> crossing 95 (5 upper sigmas away) is almost impossible;
    # a wide lower side must not inflate it.
    q = band(90.0, lower=40.0, upper=1.0)
    assert crossing_probability(*cols(q), 95.0, H) < 1e-6
    # threshold below p50 uses the lower sigma: 1 - Phi(-z), with z = 10 / (40 / 1.2816)
    p = crossing_probability(*cols(q), 80.0, 6)
    assert p == pytest.approx(0.5 * (1 + math.erf((10 / (40 / Z90)) / math.sqrt(2))), abs=1e-9)
    assert 0.6 < p < 0.7


def test_a_steady_chance_over_eight_hours_counts_as_independent_looks():
    # the same 10 % at every one of 96 steps: 96 / 36 independent looks, not one, not 96
    q = band(np.full(H, 50.0), 10.0, 10.0)
    q[:, 2] = 95.0                                  # p90 at the threshold at every step
    expected = 1 - 0.9 ** (H / CORRELATION_STEPS)
    assert crossing_probability(*cols(q), 95.0, H) == pytest.approx(expected, abs=1e-6)
    assert 0.24 < expected < 0.25
    # 30 minutes (6 steps, fewer than CORRELATION_STEPS): the largest step
    assert crossing_probability(*cols(q), 95.0, 6) == pytest.approx(0.10, abs=1e-6)


def test_window_probability_lies_between_the_max_and_the_independent_union():
    rng = np.random.default_rng(5)
    n = 200
    q = np.sort(rng.uniform(0, 100, (n, H, 3)), axis=2)
    thr = rng.uniform(60, 100, n)
    for i in range(n):
        step = [step_probability(*q[i, t], thr[i]) for t in range(H)]
        p = crossing_probability(*cols(q[i]), thr[i], H)
        assert max(step) - 1e-12 <= p <= 1 - np.prod(1 - np.array(step)) + 1e-12
        assert crossing_probability(*cols(q[i]), thr[i], 6) == pytest.approx(max(step[:6]), abs=1e-12)
    np.testing.assert_allclose(peak_probability_batch(q, thr, H),
                               [max(step_probability(*q[i, t], thr[i]) for t in range(H)) for i in range(n)],
                               atol=1e-6)


def test_a_few_spikes_of_the_band_count_as_the_largest_not_as_their_union():
    p50 = np.full(H, 50.0)
    p50[[10, 20, 30]] = 85.0                        # three separate steps at 10 % each
    q = band(p50, 10.0, 10.0)
    assert crossing_probability(*cols(q), 95.0, H) == pytest.approx(0.10, abs=1e-6)


def test_degenerate_band_is_a_step_function():
    q = np.full((H, 3), 50.0)
    # at the threshold: p10 there says P >= 0.9 (the upper side alone, collapsed, read 0.5: a
    # disk forecast full at 100 against a critical level of 100 was "risk 50 %")
    assert crossing_probability(*cols(q), 50.0, 6) == pytest.approx(0.9)
    assert crossing_probability(*cols(q), 50.1, H) == 0.0
    assert crossing_probability(*cols(q), 49.9, H) == 1.0
    # the same on the vectorised path, and with only the upper side collapsed (p50 = p90 = the
    # threshold, p10 below: 0.5 is what the quantiles say)
    upper = band(np.full(H, 100.0), 1.0, 0.0)
    thr = np.array([50.0, 50.1, 49.9, 100.0])
    got = crossing_probability_batch(np.stack([q, q, q, upper]), thr, 6)
    np.testing.assert_allclose(got, [0.9, 0.0, 1.0, 0.5], atol=1e-6)
    assert [step_probability(50, 50, 50, 50), step_probability(99, 100, 100, 100)] == pytest.approx([0.9, 0.5])


def test_batch_probability_equals_scalar_on_random_inputs():
    rng = np.random.default_rng(11)
    n = 300
    q = np.sort(rng.uniform(0, 100, (n, H, 3)), axis=2)
    thr = rng.uniform(20, 100, n)
    current = rng.uniform(0, 100, n)
    for steps in (1, 6, H, 500):
        batch = crossing_probability_batch(q, thr, steps, current)
        scalar = [crossing_probability(*cols(q[i]), thr[i], steps, current[i]) for i in range(n)]
        np.testing.assert_allclose(batch, scalar, atol=1e-6)
    assert (crossing_probability_batch(q, thr, 0) == 0).all()
    # a step with a NaN counts as no evidence on both paths (the scalar dropped the whole union)
    q[:, 5, :] = np.nan
    batch = crossing_probability_batch(q, thr, H)
    scalar = [crossing_probability(*cols(q[i]), thr[i], H) for i in range(n)]
    np.testing.assert_allclose(batch, scalar, atol=1e-6)
    assert not np.isnan(batch).any()


# --------------------------------------------------------------------------- trend


def test_trend():
    assert trend(50.0, band(np.linspace(50, 60, H))[:, 1]) == "rising"
    assert trend(50.0, band(np.linspace(50, 40, H))[:, 1]) == "falling"
    assert trend(50.0, band(np.linspace(50, 51.5, H))[:, 1]) == "steady"
    # load: 10 % of the current value
    assert trend(4.0, np.full(H, 4.3), "load_average") == "steady"
    assert trend(4.0, np.full(H, 4.5), "load_average") == "rising"
    assert trend(0.0, np.full(H, 0.03), "load_average") == "steady"


# --------------------------------------------------------------------------- thresholds


def test_load_thresholds_scale_with_cores():
    q = band(3.0, 1.0, 1.0)
    f8 = build_metric_forecast("load_average", 3.0, q, DEFAULT_THRESHOLDS, cores=8)
    assert (f8.warning, f8.critical) == (8.0, 16.0)
    f_unknown = build_metric_forecast("load_average", 3.0, q, DEFAULT_THRESHOLDS, cores=None)
    assert (f_unknown.warning, f_unknown.critical) == (4.0, 8.0)
    # the same forecast is far riskier against the absolute fallback than on 8 cores
    assert f_unknown.prob_8h > f8.prob_8h
    custom = Thresholds(load_per_core=(1.5, 3.0))
    assert build_metric_forecast("load_average", 3.0, q, custom, cores=2).critical == 6.0
    assert build_metric_forecast("cpu_percent", 3.0, q, custom).critical == 95.0


# --------------------------------------------------------------------------- server and fleet


def _server(name, risk8, current_cpu=50.0):
    """A server whose cpu forecast has 8 h risk ``risk8`` (threshold placed inside the band)."""
    from statistics import NormalDist
    z = NormalDist().inv_cdf(1 - risk8) if 0 < risk8 < 1 else 0.0
    p50 = 95.0 - z * 10 / Z90                       # sigma = 10 / 1.2816 on both sides
    p50_path = np.full(H, 50.0)
    p50_path[-1] = p50
    quiet = {"memory_percent": band(10.0), "disk_percent": band(10.0), "load_average": band(1.0, 0.5, 0.5)}
    forecasts = {"cpu_percent": band(p50_path, 10.0, 10.0), **quiet}
    current = {"cpu_percent": current_cpu, "memory_percent": 10.0, "disk_percent": 10.0, "load_average": 1.0}
    return build_server_forecast(name, current, forecasts)


def test_environment_arithmetic():
    a, b = _server("a", 0.5), _server("b", 0.2)
    assert a.risk_8h == pytest.approx(0.5, abs=1e-6) and b.risk_8h == pytest.approx(0.2, abs=1e-6)
    env = environment([a, b])
    assert env.incident_probability_8h == pytest.approx(1 - 0.5 * 0.8, abs=1e-6)
    assert env.incident_probability_30m < 1e-6
    assert env.high_risk_servers == 1 and env.total_servers == 2     # 0.5 >= HIGH_RISK counts
    assert env.fleet_health == pytest.approx(50.0)
    # already critical counts as high-risk whatever the forecast
    c = _server("c", 0.01, current_cpu=99.0)
    env = environment([a, b, c])
    assert env.high_risk_servers == 2 and env.fleet_health == pytest.approx(100 / 3)
    assert env.incident_probability_30m == 1.0


def test_empty_fleet():
    # no server: nothing known, not a healthy fleet (a feed that stopped read "health 100 %, 0 %")
    env = environment([])
    assert all(math.isnan(x) for x in (env.incident_probability_30m, env.incident_probability_8h, env.fleet_health))
    assert (env.high_risk_servers, env.total_servers) == (0, 0)
    assert env.to_json() == {"incident_probability_30m": None, "incident_probability_8h": None,
                             "high_risk_servers": 0, "total_servers": 0, "fleet_health": None}
    assert env.health_text(1) == "n/a"
    assert build_fleet([], np.zeros((0, 4)), np.zeros((0, 4, H, 3))) == ()
    assert build_fleet([], [], {}) == ()


def test_server_aggregates_max_risk_and_earliest_breach():
    cpu = np.full(H, 50.0)
    cpu[30:] = 96.0                                  # p50 breach at 155 min
    mem = np.full(H, 80.0)                           # p90 breach at step 5 -> 30 min
    mem_q = band(mem, 5.0, 5.0)
    mem_q[5:, 2] = 96.0
    s = build_server_forecast("web-1", {**{m: 10.0 for m in METRICS}, "load_average": 1.0},
                              {"cpu_percent": band(cpu), "memory_percent": mem_q,
                               "disk_percent": band(20.0), "load_average": band(1.0, 0.5, 0.5)},
                              cores=4, source=SOURCE_TFT, profile="web", history_len=2016)
    # memory's possible (p90-only) crossing at 30 min does not stand in front of cpu's expected
    # one at 155 min: the row's breach and its risk both come from cpu
    assert s.breach_metric == "cpu_percent" and s.minutes_to_breach == 155.0 and s.breach_basis == "p50"
    assert s.metrics["memory_percent"].breach_basis == "p90"
    assert s.metrics["memory_percent"].minutes_to_breach == 30.0
    assert s.risk_8h == max(f.prob_8h for f in s.metrics.values()) == s.metrics["cpu_percent"].prob_8h
    # with no expected crossing anywhere, the earliest possible one is the server's
    only_p90 = {"cpu_percent": band(50.0), "memory_percent": mem_q, "disk_percent": band(20.0),
                "load_average": band(1.0, 0.5, 0.5)}
    current = {**{m: 10.0 for m in METRICS}, "load_average": 1.0}
    t = build_server_forecast("web-2", current, only_p90, cores=4, source=SOURCE_TFT)
    assert (t.breach_metric, t.minutes_to_breach, t.breach_basis) == ("memory_percent", 30.0, "p90")
    for one in (s, t):      # the vectorised path agrees
        q = np.stack([{"web-1": {"cpu_percent": band(cpu), "memory_percent": mem_q, "disk_percent": band(20.0),
                                 "load_average": band(1.0, 0.5, 0.5)}, "web-2": only_p90}[one.server_name][m]
                      for m in METRICS])[None]
        (v,) = build_fleet([one.server_name], np.array([[current[m] for m in METRICS]]), q, cores=[4],
                           source=SOURCE_TFT)
        assert (v.breach_metric, v.minutes_to_breach) == (one.breach_metric, one.minutes_to_breach)
    assert s.metrics["load_average"].critical == 8.0
    with pytest.raises(ValueError):                 # forecast arrays are read-only
        s.metrics["cpu_percent"].p50[0] = 1.0
    assert server_from_metrics("x", {}).risk_8h == 0.0


def test_build_fleet_equals_the_scalar_path_on_random_inputs():
    rng = np.random.default_rng(5)
    n = 60
    level = rng.uniform(0, 100, (n, 4, 1))
    drift = rng.normal(0, 0.3, (n, 4, 1)) * np.arange(H)
    p50 = level + drift
    p50[:, 3] = np.abs(p50[:, 3]) / 10              # load-like values
    lo, hi = rng.uniform(0, 15, (2, n, 4, H))
    q = np.stack([p50 - lo, p50, p50 + hi], axis=3)
    current = np.concatenate([rng.uniform(0, 100, (n, 3)), rng.uniform(0, 20, (n, 1))], axis=1)
    current[0, :3] = 99.0                           # ties: three metrics at critical now
    current[1, 1:3] = 99.0
    cores = rng.choice([0, 2, 4, 8, 16], n).tolist()
    cores = [c or None for c in cores]
    names = [f"srv-{i}" for i in range(n)]
    servers = build_fleet(names=names, current=current, quantiles={m: q[:, j] for j, m in enumerate(METRICS)},
                          thresholds=DEFAULT_THRESHOLDS, cores=cores, source=SOURCE_TFT,
                          last_seen="2024-01-01T00:00:00Z", history_len=list(range(n)))
    assert build_fleet(names, current, q, cores=cores, source=SOURCE_TFT, last_seen="2024-01-01T00:00:00Z",
                       history_len=list(range(n)))[7].metrics["disk_percent"].prob_8h == \
        servers[7].metrics["disk_percent"].prob_8h
    env = environment(servers)
    expected = [build_server_forecast(names[i], dict(zip(METRICS, current[i], strict=True)),
                                      {m: q[i, j] for j, m in enumerate(METRICS)}, DEFAULT_THRESHOLDS,
                                      cores=cores[i], source=SOURCE_TFT, last_seen="2024-01-01T00:00:00Z",
                                      history_len=i)
                for i in range(n)]
    for got, want in zip(servers, expected, strict=True):
        assert (got.server_name, got.cores, got.source, got.history_len, got.breach_metric) == \
            (want.server_name, want.cores, want.source, want.history_len, want.breach_metric)
        assert got.risk_30m == pytest.approx(want.risk_30m, abs=1e-6)
        assert got.risk_8h == pytest.approx(want.risk_8h, abs=1e-6)
        assert got.minutes_to_breach == want.minutes_to_breach
        for m in METRICS:
            g, w = got.metrics[m], want.metrics[m]
            assert (g.trend, g.warning, g.critical, g.minutes_to_breach, g.breach_basis, g.current) == \
                (w.trend, w.warning, w.critical, w.minutes_to_breach, w.breach_basis, w.current)
            assert g.prob_30m == pytest.approx(w.prob_30m, abs=1e-6)
            assert g.prob_8h == pytest.approx(w.prob_8h, abs=1e-6)
            np.testing.assert_array_equal(g.p10, w.p10)
            np.testing.assert_array_equal(g.p90, w.p90)
            assert not g.p50.flags.writeable
    ref = environment(expected)
    assert env.high_risk_servers == ref.high_risk_servers
    assert env.incident_probability_8h == pytest.approx(ref.incident_probability_8h, abs=1e-6)
    assert env.fleet_health == pytest.approx(ref.fleet_health)
    assert 0 < env.high_risk_servers < n
    assert HIGH_RISK == 0.5


def test_a_change_of_exactly_the_tolerance_is_steady_on_both_paths():
    import numpy as np

    from engine.risk import risk_arrays, trend

    # load 1.0 -> 1.1: 10 % of the current value is the tolerance; float rounding made it 'rising'
    assert trend(1.0, [1.1], "load_average") == "steady"
    q = np.full((1, 4, 3, 3), 50.0)
    q[0, 3] = 1.1
    current = np.array([[50.0, 50.0, 50.0, 1.0]])
    assert risk_arrays(q, current, np.full((1, 4), 1e9))["trend"][0, 3] == 0


def test_thresholds_from_the_command_line_syntax():
    from engine.thresholds import DEFAULT_THRESHOLDS, describe_thresholds, parse_thresholds

    t = parse_thresholds("cpu=85:97, load_per_core=1.5:3,load=6:12")
    assert t.for_metric("cpu_percent") == (85.0, 97.0)
    assert t.for_metric("memory_percent") == DEFAULT_THRESHOLDS.for_metric("memory_percent")   # kept
    assert t.for_metric("load_average", 4) == (6.0, 12.0) and t.for_metric("load_average", None) == (6.0, 12.0)
    assert parse_thresholds(describe_thresholds(t)) == t                     # the metadata's line reads back
    assert parse_thresholds(None) is DEFAULT_THRESHOLDS
    assert parse_thresholds("cpu=85:97,") == parse_thresholds("cpu=85:97")   # a trailing comma: read "'': give NAME=…"
    for bad, why in (("cpu=97:85", "0 < warning < critical"), ("gpu=1:2", "NAME one of"),
                     ("cpu=80", "two numbers"), ("disk=50:101", "at most 100"),
                     ("cpu=1:2,cpu=3:4", "given twice"), ("load=nan:5", "0 < warning"),
                     ("cpu=1_0:20", "two numbers"), ("load=1e-300:2e-300", "below 0.01 is not a threshold"),
                     ("cpu=0.5:0.9", r"not fractions: cpu=50:90\?")):
        with pytest.raises(ValueError, match=why) as info:
            parse_thresholds(bad)
        assert "\n" not in str(info.value)
    # levels finer than a sample (float32) can tell apart, or beyond what it holds
    for bad, why in (("cpu=95:95.000001", "same level at the precision"), ("load=1:1e39", "beyond the largest"),
                     ("load_per_core=1:1.00000001", "same level"), ("load_per_core=1:1e38", "x the cores is beyond")):
        with pytest.raises(ValueError, match=why):
            parse_thresholds(bad)
    # the levels in use, exactly: rounded to six digits, 80.00001 read as the default 80
    t = parse_thresholds("cpu=80.00001:95,load=1234567:12345678,load_per_core=1.3:2.6")
    assert describe_thresholds(t) == "cpu=80.00001:95,memory=85:95,disk=85:95,load_per_core=1.3:2.6,load=1234567:12345678"
    assert parse_thresholds(describe_thresholds(t)) == t


def test_a_sample_typed_exactly_at_a_custom_critical_level_is_at_critical():
    # samples are kept as float32: 95.1 is 95.0999985 in the store, and read against a float64
    # 95.1 it was below critical (basis p90, risk 50 %, no alert) though the JSON said 95.1
    import pandas as pd

    from engine.alerts import AlertManager
    from engine.heuristic import heuristic_forecast_batch
    from engine.store import WindowStore
    from engine.thresholds import parse_thresholds

    t = parse_thresholds("cpu=85:95.1,load_per_core=1.3:2.7")
    st = WindowStore()
    for k in range(20):
        st.append("web-01", 1767225600 + 300 * k, [95.1, 40.0, 30.0, 12 * 2.7])
    st.set_cores("web-01", 12)
    w = st.windows()
    current = w.values[:, -1, :].astype(np.float64)            # as engine.runtime reads it
    q = np.stack([heuristic_forecast_batch(w.values[:, :, j], w.lengths, H, metric=m)
                  for j, m in enumerate(METRICS)], 1)
    am = AlertManager(t)
    for k in range(2):
        now = pd.Timestamp(1767225600 + 300 * (19 + k), unit="s", tz="UTC")
        s = build_fleet(w.names, current, q, thresholds=t, cores=w.cores, last_seen=[now.isoformat()],
                        history_len=[20])[0]
        alerts = am.update([s], now)
    cpu, load = s.metrics["cpu_percent"], s.metrics["load_average"]
    assert (cpu.breach_basis, cpu.prob_30m, cpu.to_json()["thresholds"]["critical"]) == ("now", 1.0, 95.1)
    assert (load.breach_basis, load.prob_30m) == ("now", 1.0)       # 12 cores x 2.7, as a sample holds it
    assert sorted((a.metric, a.severity) for a in alerts) == [("cpu_percent", "critical"), ("load_average", "critical")]


def test_summary_of_a_fleet_all_silent_claims_no_health():
    # every server silent (a feed that stopped): predict said "health 100 %, 0 high-risk; P(incident)
    # 30 min 0%" and "no server is heading for a critical threshold"
    from engine.snapshot import Snapshot
    from engine.summary import format_summary

    snap = Snapshot(data_time="2026-01-01T00:00:00Z", servers=(), alerts=(), environment=environment([]),
                    metadata={"model_type": "TFT", "stale_servers": 2, "stale_after_minutes": 35.0,
                              "stale_examples": [{"server": "web-1", "last_seen": "2025-12-31T23:00:00Z"}]})
    text = format_summary(snap)
    assert "no server reporting" in text and "2 servers" in text, text
    assert "health" not in text.replace("no health", "") and "heading for" not in text and "0%" not in text, text
