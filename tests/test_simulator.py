"""Tests for engine.simulator (the synthetic fleet) and the committed demo_data/."""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.simulator import (
    INCIDENT_KINDS,
    INCIDENT_METRIC,
    LABEL_COLUMNS,
    METRIC_COLUMNS,
    METRICS,
    PROFILES,
    FleetSimulator,
)
from engine.thresholds import DEFAULT_THRESHOLDS

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_data"
FIVE_MIN = pd.Timedelta(minutes=5)
PERCENT = ["cpu_percent", "memory_percent", "disk_percent"]


# --------------------------------------------------------------------------- helpers


def critical(metric: str, cores: int) -> float:
    return DEFAULT_THRESHOLDS.critical(metric, int(cores))


def assert_labels_match_data(metrics: pd.DataFrame, labels: pd.DataFrame, cores: dict[str, int]) -> None:
    """Every label's crossing is a real first crossing; every critical sample is labelled."""
    start_ns = metrics["timestamp"].iloc[0].value
    step_ns = FIVE_MIN.value
    by_server = {name: g for name, g in metrics.groupby("server_name", sort=False)}
    for row in labels.itertuples(index=False):
        g = by_server[row.server_name]
        assert row.metric == INCIDENT_METRIC[row.kind]
        assert row.threshold == critical(row.metric, cores[row.server_name])
        assert row.start <= row.crossing <= row.end
        assert row.crossing - row.start >= pd.Timedelta(hours=1), "incidents ramp for >= 1 h"
        i = (row.crossing.value - start_ns) // step_ns
        values = g[row.metric].to_numpy()
        assert values[i] >= row.threshold
        assert values[i - 1] < row.threshold
        j0 = (row.start.value - start_ns) // step_ns
        assert (values[j0:i] < row.threshold).all(), "crossing must be the first one of the incident"
    for name, g in by_server.items():
        ts = g["timestamp"].array.asi8
        mine = labels[labels["server_name"] == name]
        for metric in METRICS:
            hit = g[metric].to_numpy() >= critical(metric, cores[name])
            if not hit.any():
                continue
            covered = np.zeros(len(g), dtype=bool)
            for row in mine[mine["metric"] == metric].itertuples(index=False):
                covered |= (ts >= row.start.value) & (ts <= row.end.value)
            stray = g["timestamp"][hit & ~covered]
            assert stray.empty, f"unlabelled critical samples on {name} {metric}: {list(stray[:3])}"


@pytest.fixture(scope="module")
def fleet():
    """A moderate fleet with plenty of incidents: 40 servers x 10 days."""
    sim = FleetSimulator(40, seed=11, incident_rate=0.3)
    metrics, labels = sim.generate(10)
    return sim, metrics, labels


@pytest.fixture(scope="module")
def cores_of(fleet):
    sim = fleet[0]
    return dict(zip(sim.servers()["server_name"], sim.servers()["cores"]))


# --------------------------------------------------------------------------- the simulator


def test_servers_frame():
    sim = FleetSimulator(30, seed=5)
    servers = sim.servers()
    assert list(servers.columns) == ["server_name", "profile", "cores"]
    assert len(servers) == 30 and servers["server_name"].is_unique
    assert servers["server_name"].is_monotonic_increasing
    assert set(servers["profile"]) <= set(PROFILES)
    assert set(servers["cores"]) <= {2, 4, 8, 16, 32}
    # the first seven servers cover every profile, named like web-01, db-02, ...
    small = FleetSimulator(7, seed=5).servers().set_index("server_name")["profile"].to_dict()
    assert small == {
        "web-01": "web", "db-02": "database", "batch-03": "batch", "cache-04": "cache",
        "storage-05": "storage", "ml-06": "ml", "idle-07": "idle",
    }


def test_deterministic_same_seed_and_different_seed():
    a_m, a_l = FleetSimulator(12, seed=3, incident_rate=0.5).generate(2)
    b_m, b_l = FleetSimulator(12, seed=3, incident_rate=0.5).generate(2)
    pd.testing.assert_frame_equal(a_m, b_m, check_exact=True)
    pd.testing.assert_frame_equal(a_l, b_l, check_exact=True)
    assert a_m.to_csv(index=False) == b_m.to_csv(index=False)  # byte-identical output
    c_m, _ = FleetSimulator(12, seed=4, incident_rate=0.5).generate(2)
    assert not np.array_equal(a_m[list(METRICS)].to_numpy(), c_m[list(METRICS)].to_numpy())


def test_a_server_does_not_depend_on_fleet_size():
    small, _ = FleetSimulator(8, seed=2, incident_rate=0.5).generate(2)
    large, _ = FleetSimulator(20, seed=2, incident_rate=0.5).generate(2)
    for name in ("web-01", "idle-07", "ml-06"):
        a = small[small.server_name == name].reset_index(drop=True)
        b = large[large.server_name == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_schema_and_value_ranges(fleet):
    _, metrics, labels = fleet
    assert list(metrics.columns) == METRIC_COLUMNS
    assert str(metrics["timestamp"].dtype) == "datetime64[ns, UTC]"
    for col in METRICS:
        assert metrics[col].dtype == np.float64
        assert metrics[col].notna().all()
    for col in PERCENT:
        assert metrics[col].between(0.0, 100.0).all(), col
        assert np.allclose(metrics[col], metrics[col].round(2), rtol=0, atol=1e-9)
    assert (metrics["load_average"] >= 0).all()
    assert np.allclose(metrics["load_average"], metrics["load_average"].round(3), rtol=0, atol=1e-9)
    assert set(metrics["profile"]) == set(PROFILES)
    assert list(labels.columns) == LABEL_COLUMNS
    for col in ("start", "crossing", "end"):
        assert str(labels[col].dtype) == "datetime64[ns, UTC]"
    assert labels["crossing"].notna().all()


def test_cadence_sorted_no_gaps(fleet):
    sim, metrics, _ = fleet
    assert metrics["server_name"].is_monotonic_increasing
    n = 10 * 288
    assert len(metrics) == 40 * n
    expected = pd.date_range(sim.start, periods=n, freq="5min")
    for _, g in metrics.groupby("server_name"):
        assert len(g) == n
        assert (g["timestamp"].to_numpy() == expected.to_numpy()).all()
    assert metrics["timestamp"].iloc[0] == pd.Timestamp("2026-01-05T00:00:00Z")


def test_partial_days_and_start():
    sim = FleetSimulator(3, seed=1, start="2026-03-02 12:03")
    metrics, _ = sim.generate(0.5)
    assert sim.start == pd.Timestamp("2026-03-02T12:00:00Z")
    assert len(metrics) == 3 * 144
    assert metrics["timestamp"].max() == sim.start + 143 * FIVE_MIN


def test_labelled_crossings_are_real_and_every_crossing_is_labelled(fleet, cores_of):
    _, metrics, labels = fleet
    assert len(labels) > 50
    assert_labels_match_data(metrics, labels, cores_of)


def test_all_incident_kinds_occur_and_never_overlap(fleet):
    _, _, labels = fleet
    assert set(labels["kind"]) == set(INCIDENT_KINDS)
    for _, g in labels.sort_values("start").groupby("server_name"):
        assert (g["start"].iloc[1:].to_numpy() >= g["end"].iloc[:-1].to_numpy()).all()


def test_incident_rate_is_about_one_per_ten_days():
    _, labels = FleetSimulator(60, seed=0).generate(10)  # default rate 0.1 / server / day
    assert 25 <= len(labels) <= 85  # ~55 expected, minus overlaps and ones cut at the end


def test_no_incidents_means_no_critical_values():
    sim = FleetSimulator(40, seed=8, incident_rate=0.0)
    metrics, labels = sim.generate(5)
    assert labels.empty
    cores = metrics["server_name"].map(dict(zip(sim.servers()["server_name"], sim.servers()["cores"])))
    for metric in PERCENT:
        assert (metrics[metric] < critical(metric, 4)).all()
    assert (metrics["load_average"] < 2.0 * cores).all()


def test_daily_and_weekly_seasonality(fleet):
    _, metrics, _ = fleet
    web = metrics[metrics["profile"] == "web"]
    hour = web["timestamp"].dt.hour
    assert web.loc[hour == 14, "cpu_percent"].mean() > 1.5 * web.loc[hour == 4, "cpu_percent"].mean()
    day = web["timestamp"].dt.dayofweek
    office = hour.between(10, 16)
    weekday = web.loc[office & (day < 5), "cpu_percent"].mean()
    weekend = web.loc[office & (day >= 5), "cpu_percent"].mean()
    assert weekday > 1.2 * weekend
    # batch boxes work at night
    batch = metrics[metrics["profile"] == "batch"]
    bh = batch["timestamp"].dt.hour
    assert batch.loc[bh.between(1, 3), "cpu_percent"].mean() > 2 * batch.loc[bh.between(13, 17), "cpu_percent"].mean()


def test_realistic_shapes(fleet, cores_of):
    _, metrics, labels = fleet
    idle = metrics[metrics["profile"] == "idle"]
    assert idle["cpu_percent"].median() < 4.0
    assert (idle["load_average"] == 0).mean() > 0.3  # mostly-zero series
    # flat-lined series exist (a whole series constant over a day)
    day1 = metrics[metrics["timestamp"] < metrics["timestamp"].iloc[0] + pd.Timedelta(days=1)]
    stds = day1.groupby("server_name")[["memory_percent", "disk_percent"]].std()
    assert (stds == 0).to_numpy().sum() >= 3
    # caches and databases keep memory high and steady
    assert metrics.loc[metrics["profile"].isin(["cache", "database"]), "memory_percent"].median() > 70
    # benign CPU bursts reach 60-92 % outside incidents
    in_incident = np.zeros(len(metrics), dtype=bool)
    names = metrics["server_name"].to_numpy()
    ts = metrics["timestamp"].array.asi8
    for row in labels.itertuples(index=False):
        in_incident |= (names == row.server_name) & (ts >= row.start.value) & (ts <= row.end.value)
    benign_cpu = metrics.loc[~in_incident, "cpu_percent"]
    assert ((benign_cpu >= 60) & (benign_cpu < 95)).sum() > 100
    assert benign_cpu.max() < 95


def test_stream_is_deterministic_and_continues_generate():
    sim = FleetSimulator(9, seed=21, incident_rate=0.5)
    metrics, _ = sim.generate(2)
    ticks = list(itertools.islice(sim.stream(), 288))
    again = list(itertools.islice(FleetSimulator(9, seed=21, incident_rate=0.5).stream(), 288))
    assert ticks == again
    keys = {"server_name", "timestamp", *METRICS, "profile"}
    for i, tick in enumerate(ticks[:5]):
        assert len(tick) == 9
        assert all(set(rec) == keys for rec in tick)
        assert {rec["timestamp"] for rec in tick} == {(sim.start + i * FIVE_MIN).strftime("%Y-%m-%dT%H:%M:%SZ")}
        assert all(isinstance(rec["cpu_percent"], float) for rec in tick)
    flat = pd.DataFrame([rec for tick in ticks for rec in tick])
    flat["timestamp"] = pd.to_datetime(flat["timestamp"], utc=True)
    flat = flat.sort_values(["server_name", "timestamp"]).reset_index(drop=True)
    first_day = metrics[metrics["timestamp"] < sim.start + pd.Timedelta(days=1)].reset_index(drop=True)
    assert np.array_equal(flat[list(METRICS)].to_numpy(), first_day[list(METRICS)].to_numpy())
    assert (flat["server_name"] == first_day["server_name"]).all()


def test_stream_fast_forwards_to_start_and_runs_past_a_day():
    sim = FleetSimulator(4, seed=2)
    metrics, _ = sim.generate(3)
    start = sim.start + pd.Timedelta(days=1, minutes=7)
    ticks = list(itertools.islice(sim.stream(start=start), 300))  # crosses a day boundary
    first = sim.start + pd.Timedelta(days=1, minutes=10)
    assert ticks[0][0]["timestamp"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    last = first + 299 * FIVE_MIN
    assert ticks[-1][0]["timestamp"] == last.strftime("%Y-%m-%dT%H:%M:%SZ")
    for tick in (ticks[0], ticks[-1]):
        ts = pd.Timestamp(tick[0]["timestamp"])
        rows = metrics[metrics["timestamp"] == ts].reset_index(drop=True)
        assert [r["server_name"] for r in tick] == rows["server_name"].tolist()
        assert [r["load_average"] for r in tick] == rows["load_average"].tolist()
    with pytest.raises(ValueError):
        next(sim.stream(start=sim.start - pd.Timedelta(hours=1)))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        FleetSimulator(0)
    with pytest.raises(ValueError):
        FleetSimulator(3, seed=-1)
    with pytest.raises(ValueError):
        FleetSimulator(3, incident_rate=-0.1)
    with pytest.raises(ValueError):
        FleetSimulator(3).generate(0)


def test_a_thousand_server_day_is_whole():
    # its speed is measured by benchmarks/bench_data.py, not asserted here
    metrics, _ = FleetSimulator(1000, seed=0).generate(1)
    assert len(metrics) == 1000 * 288
    assert metrics.groupby("server_name").size().eq(288).all()


# --------------------------------------------------------------------------- committed demo data


def _demo_script():
    spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "benchmarks" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo():
    fleet = pd.read_csv(DEMO / "fleet.csv.gz")
    fleet["timestamp"] = pd.to_datetime(fleet["timestamp"], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    incidents = pd.read_csv(DEMO / "incidents.csv")
    for col in ("start", "crossing", "end"):
        incidents[col] = pd.to_datetime(incidents[col], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    servers = pd.read_csv(DEMO / "servers.csv")
    return fleet, incidents, servers


def test_demo_data_shape_and_split(demo):
    fleet, incidents, servers = demo
    assert (DEMO / "fleet.csv.gz").stat().st_size < 10_000_000
    assert list(fleet.columns) == METRIC_COLUMNS
    assert len(fleet) == 48 * 14 * 288 == 193_536
    assert fleet["server_name"].nunique() == 48
    start = pd.Timestamp("2026-01-05T00:00:00Z")
    assert fleet["timestamp"].min() == start
    assert fleet["timestamp"].max() == start + pd.Timedelta(days=14) - FIVE_MIN
    assert (fleet.groupby("server_name").size() == 14 * 288).all()
    assert list(servers.columns) == ["server_name", "profile", "cores", "split"]
    assert set(servers["server_name"]) == set(fleet["server_name"])
    assert set(servers["split"]) == {"train", "heldout"}
    heldout = servers[servers["split"] == "heldout"]
    assert len(heldout) == 8 and heldout["profile"].nunique() >= 4
    assert list(incidents.columns) == LABEL_COLUMNS
    boundary = start + pd.Timedelta(days=11)
    assert "2026-01-16T00:00:00Z" in (DEMO / "README.md").read_text()
    late = incidents[incidents["crossing"] >= boundary]
    assert len(late) >= 20 and set(late["kind"]) == set(INCIDENT_KINDS)
    early = incidents[incidents["crossing"] < boundary]
    assert len(early) >= 40 and set(early["kind"]) == set(INCIDENT_KINDS)


def test_demo_incidents_match_fleet(demo):
    fleet, incidents, servers = demo
    cores = dict(zip(servers["server_name"], servers["cores"]))
    assert_labels_match_data(fleet, incidents, cores)


def test_demo_data_is_what_the_simulator_generates(demo):
    """Fails when the simulator changed without `python benchmarks/make_demo_data.py`."""
    fleet, incidents, servers = demo
    script = _demo_script()
    sim = FleetSimulator(script.N_SERVERS, seed=script.SEED, start=script.START, incident_rate=script.INCIDENT_RATE)
    metrics, labels = sim.generate(script.DAYS)
    pd.testing.assert_frame_equal(labels, incidents, check_exact=True)
    assert servers[["server_name", "profile", "cores"]].equals(sim.servers())
    diff = np.abs(metrics[list(METRICS)].to_numpy() - fleet[list(METRICS)].to_numpy()).max()
    assert diff <= 0.011
