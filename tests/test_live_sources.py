"""Live sources: this host (psutil) and a real Prometheus server (engine.live).

The Prometheus tests start ``prometheus`` on a free loopback port over TSDB blocks made
with ``promtool`` from a slice of the demo fleet (tests/prometheus_fixture.py); they are
skipped only when the binaries are missing (.ci/run installs them).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.contract import load_path, validate_records
from engine.live import (
    CPU_RATE_NOISE,
    LocalSource,
    PrometheusSource,
    clip_noise,
    node_exporter_queries,
    parse_selector,
)
from engine.sources import read_cores
from prometheus_fixture import (
    BOOT_USED,
    INSTALL_HINT,
    NODE_EXPORTER,
    NODE_EXPORTER_HINT,
    PROMETHEUS,
    PROMTOOL,
    FakeClock,
    FlakyProxy,
    NodeExporter,
    PrometheusServer,
    fleet_slice,
    free_port,
    write_openmetrics,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_data"
FLEET = ["cache-04", "db-19", "web-01"]       # job="node"
DECOY = "idle-07"                            # job="other": the selector must keep it out
STEP = 300
DAY = 86400

requires_prometheus = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=INSTALL_HINT)


# --------------------------------------------------------------------------- this host


def test_local_sample_is_a_valid_record():
    source = LocalSource()
    host = socket.gethostname()
    assert source.cores == {host: os.cpu_count()}
    backfill = source.backfill()
    assert backfill.empty and list(backfill.columns) == [
        "server_name", "timestamp", "cpu_percent", "memory_percent", "disk_percent", "load_average", "profile"]

    record = source.sample()
    result = validate_records([record], source.name)
    assert result.problems == []
    tick = source.poll()
    assert tick.problems == [] and not tick.finished
    assert len(tick.frame) == 1
    row = tick.frame.iloc[0]
    assert row["server_name"] == host and row["profile"] == "local"
    assert abs(row["timestamp"].timestamp() - time.time()) < 60
    for metric in ("cpu_percent", "memory_percent", "disk_percent"):
        assert 0 <= row[metric] <= 100
    assert row["memory_percent"] > 0 and row["disk_percent"] > 0
    assert abs(row["load_average"] - os.getloadavg()[0]) < 5


def test_local_interval_is_respected_and_poll_does_not_block():
    clock = FakeClock(1_800_000_000 + 20)            # 20 s into a 5-minute step
    source = LocalSource(clock=clock)
    assert len(source.poll().frame) == 1             # the first poll samples at once
    t0 = time.perf_counter()
    for _ in range(5):
        tick = source.poll()
        assert tick.frame.empty and tick.problems == []
    assert time.perf_counter() - t0 < 0.5
    assert source.next_due == 1_800_000_000 + 300    # aligned to the 5-minute grid
    assert "next in 4 min 40 s" in source.status_line()
    clock.advance(279)
    assert source.poll().frame.empty
    clock.advance(1)
    assert len(source.poll().frame) == 1
    assert source.poll().frame.empty

    demo = LocalSource(interval_seconds=300, demo_interval=10, clock=FakeClock(1_800_000_000))
    assert len(demo.poll().frame) == 1
    assert demo.poll().frame.empty
    demo.clock.advance(10)
    assert len(demo.poll().frame) == 1


def test_local_source_drives_the_engine():
    from engine.runtime import Engine

    engine = Engine(LocalSource(), model_dir=None, device="cpu")
    engine.start()
    snap = engine.tick()
    assert [s.server_name for s in snap.servers] == [socket.gethostname()]
    assert snap.servers[0].source == "heuristic" and snap.servers[0].profile == "local"
    assert engine.store.windows().cores == [os.cpu_count()]
    assert engine.problems == []


def test_noise_is_clipped_and_real_errors_are_left_for_validation():
    assert clip_noise("cpu_percent", -1e-9) == 0.0
    assert clip_noise("memory_percent", 100 + 1e-9) == 100.0
    assert clip_noise("load_average", -1e-12) == 0.0
    assert clip_noise("load_average", 250.0) == 250.0         # load has no upper bound
    assert clip_noise("disk_percent", -0.01) == -0.01
    assert clip_noise("cpu_percent", -0.2, CPU_RATE_NOISE) == 0.0
    assert clip_noise("cpu_percent", -3.0, CPU_RATE_NOISE) == -3.0
    assert np.isnan(clip_noise("cpu_percent", float("nan")))


# --------------------------------------------------------------------------- PromQL


def test_selector_is_merged_into_every_metric():
    q = node_exporter_queries('{job="node", instance=~"web-.*"}')
    assert 'node_cpu_seconds_total{mode="idle",job="node", instance=~"web-.*"}[5m]' in q["cpu_percent"]
    assert 'node_filesystem_avail_bytes{mountpoint="/",job="node", instance=~"web-.*"}' in q["disk_percent"]
    assert 'node_memory_MemTotal_bytes{job="node", instance=~"web-.*"}' in q["memory_percent"]
    assert q["load_average"] == 'max by (instance) (node_load1{job="node", instance=~"web-.*"})'
    assert q["cores"] == 'count by (instance) (node_cpu_seconds_total{mode="idle",job="node", instance=~"web-.*"})'
    for empty in (None, "", "{}", " { } "):
        q = node_exporter_queries(empty)
        assert "node_load1{}" in q["load_average"] and 'total{mode="idle"}' in q["cpu_percent"]
    assert parse_selector('job="node",') == 'job="node"'
    assert parse_selector("{env!='prod',x=`a,b`}") == "env!='prod',x=`a,b`"
    for bad in ('up{job="node"}', '{job=node}', '{job="node"', 'job="a" or vector(1)', '{"job"="x"}'):
        with pytest.raises(ValueError, match="PromQL label matchers"):
            PrometheusSource("http://127.0.0.1:9", selector=bad)
    with pytest.raises(ValueError, match="http"):
        PrometheusSource("127.0.0.1:9090")


def test_bad_records_are_refused_and_named_by_instance_and_time():
    source = PrometheusSource("http://user:secret@127.0.0.1:9/prom/", selector="")
    assert source.url == "http://127.0.0.1:9/prom" and "secret" not in source.name
    t = 1_800_000_000
    ok = {"cpu_percent": "12.5", "memory_percent": "40", "disk_percent": "50", "load_average": "1.5"}
    columns = {m: {("good", t): v, ("neg", t): v, ("nodisk", t): v, ("nodisk", t + 300): v} for m, v in ok.items()}
    columns["cpu_percent"][("neg", t)] = "-7"
    columns["cpu_percent"][("good", t)] = "-0.01"              # counter-rate noise: clipped to 0
    del columns["disk_percent"][("nodisk", t)], columns["disk_percent"][("nodisk", t + 300)]
    tick = source._to_tick(columns)
    assert list(tick.frame["server_name"]) == ["good"]
    assert tick.frame["cpu_percent"].iloc[0] == 0.0
    assert tick.frame["profile"].iloc[0] == "unknown"
    assert len(tick.problems) == 2, tick.problems
    neg = next(p for p in tick.problems if "neg" in p)
    assert neg.startswith("prometheus http://127.0.0.1:9/prom: neg at ")
    assert "column cpu_percent: -7 is outside 0–100" in neg
    nodisk = next(p for p in tick.problems if "nodisk" in p)
    assert ('column disk_percent: no filesystem mounted at "/" (node_filesystem_*{mountpoint="/"}) for this '
            "instance: it is left out until it has one (and 1 more steps until") in nodisk


# --------------------------------------------------------------------------- a real Prometheus


class Fleet:
    def __init__(self, server: PrometheusServer, frame: pd.DataFrame, decoy: pd.DataFrame, cores: dict[str, int],
                 end: int):
        self.server, self.frame, self.decoy, self.cores, self.end = server, frame, decoy, cores, end
        self.url = server.url


@pytest.fixture(scope="session")
def prom(tmp_path_factory):
    """Prometheus on 127.0.0.1 holding 26 h of three demo servers (+ a decoy job), ending just after now."""
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip(INSTALL_HINT)
    work = tmp_path_factory.mktemp("prometheus")
    demo = load_path(DEMO / "fleet.csv.gz").frame
    cores = read_cores(DEMO)
    # The data runs 15 min past now, so that a backfill "up to now" finds complete data
    # even when a 5-minute boundary passes while the tests run.
    end = int(time.time()) // STEP * STEP + 900
    frame = fleet_slice(demo, FLEET, 26, end)
    decoy = fleet_slice(demo, [DECOY], 4, end)
    write_openmetrics(work / "fleet.om", [(frame, cores, "node"), (decoy, cores, "other")])
    server = PrometheusServer(work)
    server.load_openmetrics(work / "fleet.om")
    server.start()
    try:
        yield Fleet(server, frame, decoy, cores, end)
    finally:
        server.stop()


def _compare(got: pd.DataFrame, want: pd.DataFrame) -> pd.DataFrame:
    merged = got.merge(want, on=["server_name", "timestamp"], suffixes=("", "_want"), how="left")
    assert merged["cpu_percent_want"].notna().all(), "Prometheus returned steps the fleet does not have"
    return merged


def _assert_values_match(got: pd.DataFrame, want: pd.DataFrame) -> None:
    merged = _compare(got, want)
    for metric, tol in (("cpu_percent", 0.01), ("memory_percent", 0.01), ("disk_percent", 0.01),
                        ("load_average", 1e-3)):
        err = (merged[metric] - merged[f"{metric}_want"]).abs().max()
        assert err < tol, f"{metric}: max error {err}"


@requires_prometheus
def test_backfill_is_the_last_24h_of_the_fleet(prom):
    clock = FakeClock(prom.end - 3600 + 42)
    source = PrometheusSource(prom.url, clock=clock)
    assert source.cores == {s: prom.cores[s] for s in FLEET}         # per-CPU idle series, not "user"
    frame = source.backfill()
    assert source.poll().problems == []
    assert sorted(frame["server_name"].unique()) == FLEET
    last = prom.end - 3600
    for _, g in frame.groupby("server_name"):
        epochs = g["timestamp"].astype("int64").to_numpy() // 10**9
        assert epochs[0] == last - DAY + STEP and epochs[-1] == last
        assert (np.diff(epochs) == STEP).all() and len(epochs) == 288
    _assert_values_match(frame, prom.frame)
    # the ratio, not any filesystem: /boot is 90 % full everywhere and must not show
    assert (frame["disk_percent"] - BOOT_USED * 100).abs().min() > 1e-6
    assert set(frame["profile"]) == {"unknown"}
    assert source.status_line() == "prometheus ok · 3 instances"
    assert not source.stale and source.last_error is None


@requires_prometheus
def test_backfill_with_the_real_clock_ends_now(prom):
    source = PrometheusSource(prom.url)
    frame = source.backfill()
    now_step = int(time.time()) // STEP * STEP
    assert sorted(frame["server_name"].unique()) == FLEET
    assert frame["timestamp"].max().timestamp() in (now_step, now_step - STEP)
    assert frame["timestamp"].min().timestamp() <= now_step - DAY + STEP
    assert frame.groupby("server_name").size().min() == 288
    _assert_values_match(frame, prom.frame)
    assert source.poll().frame.empty or frame["timestamp"].max().timestamp() < now_step


@requires_prometheus
def test_the_selector_filters(prom):
    at = FakeClock(prom.end - 600)
    other = PrometheusSource(prom.url, selector='{job="other"}', clock=at)
    assert other.cores == {DECOY: prom.cores[DECOY]}
    frame = other.backfill()
    assert set(frame["server_name"]) == {DECOY}
    _assert_values_match(frame, prom.decoy)
    web = PrometheusSource(prom.url, selector='{job="node",instance=~"web-.*"}', clock=at)
    assert set(web.backfill()["server_name"]) == {"web-01"} and web.cores == {"web-01": prom.cores["web-01"]}
    everything = PrometheusSource(prom.url, selector="", clock=at)
    assert set(everything.backfill()["server_name"]) == {*FLEET, DECOY}
    nothing = PrometheusSource(prom.url, selector='{job="nope"}', clock=at)
    assert nothing.backfill().empty and nothing.cores == {}
    problems = nothing.poll().problems
    assert len(problems) == 1 and "no node_exporter series match" in problems[0]
    assert not nothing.stale and nothing.status_line() == "prometheus ok · 0 instances"


@requires_prometheus
def test_poll_returns_each_new_step_once(prom):
    clock = FakeClock(prom.end - 3 * 3600 + 5)
    source = PrometheusSource(prom.url, clock=clock)
    source.backfill()
    requests = source.requests
    assert source.poll().frame.empty and source.requests == requests   # no step due: no HTTP at all
    clock.advance(STEP)
    tick = source.poll()
    assert tick.problems == [] and len(tick.frame) == 3
    assert set(tick.frame["timestamp"]) == {pd.Timestamp(prom.end - 3 * 3600 + STEP, unit="s", tz="UTC")}
    _assert_values_match(tick.frame, prom.frame)
    assert source.poll().frame.empty
    clock.advance(3600)                                                  # a slow engine loop: 12 steps at once
    tick = source.poll()
    assert tick.frame.groupby("server_name").size().to_dict() == {s: 12 for s in FLEET}
    _assert_values_match(tick.frame, prom.frame)


@requires_prometheus
def test_down_prometheus_goes_stale_backs_off_and_recovers(prom):
    clock = FakeClock(prom.end - 2 * 3600 + 5)
    proxy = FlakyProxy(prom.url)                                         # not started: connection refused
    source = PrometheusSource(proxy.url, retry_base=20, retry_cap=60, clock=clock, timeout=2)
    try:
        assert source.cores == {}
        assert source.backfill().empty
        tick = source.poll()
        assert tick.frame.empty
        at = time.strftime("%H:%M:%S", time.gmtime(clock.now + 20))
        assert tick.problems == [f"prometheus {proxy.url}: connection refused; next try at {at} UTC (20 s later)"]
        assert source.stale and source.last_error == "connection refused"
        assert source.next_retry_at == clock.now + 20
        assert source.status_line() == "prometheus STALE: connection refused · retry in 20 s"
        requests = source.requests
        assert source.poll().problems == [] and source.requests == requests   # waits: no request
        delays = []
        for _ in range(3):
            clock.now = source.next_retry_at
            tick = source.poll()
            assert tick.frame.empty and "connection refused; next try at" in tick.problems[0]
            delays.append(source.next_retry_at - clock.now)
        assert delays == [40, 60, 60]                                     # doubling, capped

        proxy.start()
        clock.now = source.next_retry_at
        tick = source.poll()
        assert not source.stale and source.last_error is None and source.next_retry_at is None
        assert tick.problems == []
        assert tick.frame.groupby("server_name").size().to_dict() == {s: 288 for s in FLEET}  # the missed backfill
        assert source.cores == {s: prom.cores[s] for s in FLEET}
        assert source.status_line() == "prometheus ok · 3 instances"
        last = int(tick.frame["timestamp"].max().timestamp())

        proxy.stop()                                                      # down again for 20 minutes
        clock.advance(STEP)
        assert "connection refused" in source.poll().problems[0] and source.stale
        clock.advance(20 * 60)
        proxy.start()
        tick = source.poll()
        assert not source.stale
        steps = sorted({int(t.timestamp()) for t in tick.frame["timestamp"]})
        assert steps == list(range(last + STEP, int(clock.now) // STEP * STEP + 1, STEP))  # the gap, filled
        _assert_values_match(tick.frame, prom.frame)
    finally:
        proxy.stop()


@requires_prometheus
def test_a_prometheus_that_dies_between_steps_turns_stale_within_the_probe_time(prom):
    # (the header said "prometheus ok" for up to five minutes after it died)
    from engine.live import PROBE_EVERY_S

    clock = FakeClock(prom.end - 3600 + 5)          # 5 s into a step
    proxy = FlakyProxy(prom.url)
    proxy.start()
    source = PrometheusSource(proxy.url, clock=clock, timeout=2)
    try:
        assert not source.poll().frame.empty and source.status_line().startswith("prometheus ok")
        requests = source.requests
        clock.advance(PROBE_EVERY_S / 2)
        assert source.poll().problems == [] and source.requests == requests     # no query every poll
        clock.advance(PROBE_EVERY_S / 2)
        assert source.poll().problems == [] and source.requests == requests + 1  # alive: still ok
        proxy.stop()
        clock.advance(PROBE_EVERY_S)                 # still the same 5-minute step
        tick = source.poll()
        assert tick.frame.empty and "connection refused" in tick.problems[0]
        assert source.stale and source.status_line().startswith("prometheus STALE: connection refused")
    finally:
        proxy.stop()


@requires_prometheus
def test_slow_or_wrong_prometheus_is_a_problem_line_not_an_exception(prom):
    clock = FakeClock(prom.end - 3600)
    proxy = FlakyProxy(prom.url, delay=1.0)
    proxy.mode = "slow"
    proxy.start()
    try:
        source = PrometheusSource(proxy.url, timeout=0.3, retry_base=5, clock=clock)
        t0 = time.perf_counter()
        tick = source.poll()
        assert time.perf_counter() - t0 < 1.0                         # one timeout, not one per query
        at = time.strftime("%H:%M:%S", time.gmtime(clock.now + 5))
        assert tick.problems == [f"prometheus {proxy.url}: timed out after 0.3 s; next try at {at} UTC (5 s later)"]
        assert source.stale and source.status_line().startswith("prometheus STALE: timed out after 0.3 s")
        proxy.mode = "up"
        clock.advance(5)
        tick = source.poll()
        assert tick.problems == [] and not source.stale and len(tick.frame) == 3 * 288
    finally:
        proxy.stop()

    wrong = PrometheusSource(prom.url + "/no/such/prefix", clock=clock)
    tick = wrong.poll()
    assert tick.frame.empty and "HTTP 404" in tick.problems[0] and wrong.stale
    assert "give the server's base URL" in tick.problems[0]          # (a bare 404 was retried forever)
    closed = PrometheusSource(f"http://127.0.0.1:{free_port()}", clock=clock)
    assert closed.backfill().empty                                   # never raises
    assert "connection refused" in closed.poll().problems[0]


@requires_prometheus
def test_prometheus_source_drives_the_engine(prom):
    from engine.runtime import Engine

    clock = FakeClock(prom.end - 3600)
    engine = Engine(PrometheusSource(prom.url, clock=clock), model_dir=None, device="cpu")
    engine.start()
    snap = engine.tick()
    assert sorted(s.server_name for s in snap.servers) == FLEET
    windows = engine.store.windows()
    assert dict(zip(windows.names, windows.cores)) == {s: prom.cores[s] for s in FLEET}
    # without a model the engine asks for the two days the heuristic reads; the fixture holds
    # 25 h before this clock: all of it
    assert set(windows.lengths) == {300} and engine.problems == []
    clock.advance(STEP)
    engine.tick()
    assert (engine.store.windows().last_epoch == windows.last_epoch + STEP).all()


@requires_prometheus
def test_serve_watches_a_prometheus(prom):
    # `tft-top serve --prometheus URL`: one machine runs the model on the fleet's Prometheus
    # and operators connect; polled often, forecast only when a new 5-minute step has come
    import httpx

    from engine.daemon import RunningServer, build_daemon

    daemon = build_daemon(prometheus=prom.url, interval=0.2)
    srv = RunningServer(daemon, port=0).start()
    try:
        assert daemon.wait_ready(60), daemon.error
        calls = []
        inner = daemon.engine.forecaster.forecast
        daemon.engine.forecaster.forecast = lambda *a, **k: calls.append(1) or inner(*a, **k)
        assert daemon.wait_for_seq(daemon.latest.seq + 3, timeout=10)
        with httpx.Client(base_url=srv.url, trust_env=False, timeout=10) as c:
            snap = c.get("/predictions/current").json()
            status = c.get("/status").json()
        assert sorted(snap["predictions"]) == FLEET and snap["metadata"]["model_type"] == "heuristic"
        assert snap["metadata"]["source_status"] == "prometheus ok · 3 instances"
        assert status["source"] == f'prometheus {prom.url} {{job="node"}}' and status["error"] is None
        assert status["source_status"] == "prometheus ok · 3 instances"
        # (a 5-minute boundary may pass while this runs: at most one forecast more)
        assert len(calls) <= 1, calls
    finally:
        srv.stop()


@requires_prometheus
def test_a_real_node_exporter_scraped_live_matches_this_host(tmp_path):
    """The PromQL against what node_exporter really exports, scraped every second, in real time."""
    import psutil

    if NODE_EXPORTER is None:
        pytest.skip(NODE_EXPORTER_HINT)
    exporter = NodeExporter(tmp_path)
    exporter.start()
    server = PrometheusServer(tmp_path, port=free_port())
    try:
        server.start(scrape={"host": exporter.target})
        deadline = time.monotonic() + 20
        while not server.query('rate(node_cpu_seconds_total{job="host",mode="idle"}[5m])'):
            assert time.monotonic() < deadline, "node_exporter was not scraped twice in 20 s"
            time.sleep(0.25)
        time.sleep(2.0)
        # 1-second steps over the last 2 s: the steps where the scrapes already give a rate
        source = PrometheusSource(server.url, selector='{job="host"}', step=1, backfill_hours=2 / 3600)
        assert source.cores == {exporter.target: os.cpu_count()}
        frame = source.backfill()
        assert source.poll().problems == []
        assert set(frame["server_name"]) == {exporter.target} and len(frame) >= 1
        row = frame.iloc[-1]
        disk = psutil.disk_usage("/")
        # df's and psutil's Use% (reserved blocks are not "used"), as --local shows it
        assert abs(row["disk_percent"] - disk.percent) < 1.0
        assert abs(row["memory_percent"] - psutil.virtual_memory().percent) < 5.0
        assert abs(row["load_average"] - os.getloadavg()[0]) < 2.0
        assert 0 <= row["cpu_percent"] <= 100
        time.sleep(1.1)
        tick = source.poll()                                   # the real clock moved on: new steps
        assert tick.problems == [] and len(tick.frame) >= 1 and not source.stale
        assert tick.frame["timestamp"].min() > frame["timestamp"].max()
        assert source.status_line() == "prometheus ok · 1 instance"
    finally:
        server.stop()
        exporter.stop()


def test_two_series_for_one_instance_are_said_and_a_huge_answer_refused(monkeypatch):
    import engine.live as live

    source = PrometheusSource("http://127.0.0.1:9", selector="", clock=lambda: 1_800_000_000.0)
    t = 1_800_000_000 // 300 * 300

    def api(path, params, result_type):
        if result_type == "vector":
            return []
        two = [{"metric": {"instance": "a"}, "values": [[t, "50"]]}]
        if "cpu" in params["query"]:                # another job scraping the same instance
            two.append({"metric": {"instance": "a"}, "values": [[t, "99"]]})
        return two

    monkeypatch.setattr(source, "_api", api)
    tick = source._fetch_due()
    assert any("more than one series per step for a" in p for p in tick.problems), tick.problems

    class Big:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            return b" " * n

    monkeypatch.setattr(live, "MAX_ANSWER_BYTES", 1000)
    monkeypatch.setattr(source._opener, "open", lambda request, timeout: Big())
    with pytest.raises(live.PrometheusError, match="answer larger than"):
        PrometheusSource._api(source, "/api/v1/query", {"query": "up"}, "vector")


def test_series_scraped_only_since_the_last_step_are_not_called_missing(monkeypatch):
    import engine.live as live

    # a node_exporter scraped for the first time minutes ago has no sample on a 5-minute step
    # yet: the source said "no node_exporter series match the selector", a problem that stayed
    # in the header after the instance came (review 2026-11-29)
    now = [1_800_000_100.0]
    source = PrometheusSource("http://127.0.0.1:9", selector="", clock=lambda: now[0])
    t = 1_800_000_000 // 300 * 300
    scraped = {"on_step": False}

    def api(path, params, result_type):
        source.requests += 1                    # (what the real one counts: contact made)
        if result_type == "vector":             # the instant query (and the core counts)
            return [{"metric": {"instance": "a"}, "value": [now[0], "1"]}]
        if not scraped["on_step"]:
            return []
        return [{"metric": {"instance": "a"}, "values": [[t + 300, "50"]]}]

    monkeypatch.setattr(source, "_api", api)
    tick = source.poll()
    assert tick.problems == [] and tick.frame.empty
    assert source.status_line() == "prometheus ok · series found, the first 5-minute step at 08:05 UTC"
    now[0] += 300
    scraped["on_step"] = True
    tick = source.poll()
    assert len(tick.frame) == 1 and source.first_step_at is None
    assert source.status_line() == "prometheus ok · 1 instance"
    # no series at all: the problem, as before
    nothing = PrometheusSource("http://127.0.0.1:9", selector="", clock=lambda: 1_800_000_100.0)
    def none(path, params, result_type):
        nothing.requests += 1
        return []

    monkeypatch.setattr(nothing, "_api", none)
    problems = nothing.poll().problems
    assert len(problems) == 1 and "no node_exporter series match" in problems[0]
    assert nothing.status_line() == "prometheus ok · 0 instances"
    # the instant query failing: the problem as before, not silence (review of this change)
    failing = PrometheusSource("http://127.0.0.1:9", selector="", clock=lambda: 1_800_000_100.0)

    def range_only(path, params, result_type):
        failing.requests += 1
        if result_type == "vector" and "node_load1" in params["query"]:     # (not the core counts)
            raise live.PrometheusError("timed out")
        return []

    monkeypatch.setattr(failing, "_api", range_only)
    problems = failing.poll().problems
    assert len(problems) == 1 and "no node_exporter series match" in problems[0] and failing.first_step_at is None
    # series found, then gone before a step showed them: said, not left as "found"
    now[0] += 300
    scraped["on_step"] = False
    gone = {"now": False}

    def vanishing(path, params, result_type):
        source.requests += 1
        if result_type == "vector":
            return [] if gone["now"] else [{"metric": {"instance": "b"}, "value": [now[0], "1"]}]
        return []

    monkeypatch.setattr(source, "_api", vanishing)
    source.instances.clear()
    source.first_step_at = now[0]       # (found at the step before)
    gone["now"] = True
    problems = source.poll().problems
    assert any("no node_exporter series match" in p for p in problems) and source.first_step_at is None


def test_local_first_cpu_reading_is_not_tft_tops_own_start(monkeypatch):
    # built, then the model loads (the host busy with tft-top itself), then the first
    # sample: it read 100 % of a quiet host, critical until the next sample 5 min on
    from collections import namedtuple

    import psutil

    Times = namedtuple("Times", "user system idle")
    readings = iter([Times(100.0, 0.0, 0.0),       # (a reading at construction, if any)
                     Times(110.0, 0.0, 0.0),       # the model loading: 10 s busy
                     Times(110.05, 0.0, 0.45)])    # then the first sample's own half second: 10 % busy
    clock = FakeClock(1_800_000_000)
    monkeypatch.setattr(psutil, "cpu_times", lambda: next(readings))
    source = LocalSource(clock=clock)
    monkeypatch.setattr(LocalSource, "first_window", 0.01, raising=False)
    if source._cpu_last is None:          # noqa: SLF001 - nothing read at construction
        next(readings)
    cpu = float(source.poll().frame["cpu_percent"].iloc[0])
    assert abs(cpu - 10.0) < 0.01, cpu
