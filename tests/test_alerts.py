"""Debounced alerts: tick by tick, on hand-built forecasts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.alerts import MIN_WARN_HISTORY, AlertManager
from engine.contract import METRICS
from engine.risk import build_server_forecast
from engine.thresholds import Thresholds

H = 96
T0 = pd.Timestamp("2024-03-01T12:00:00Z")
QUIET = {"cpu_percent": 30.0, "memory_percent": 40.0, "disk_percent": 50.0, "load_average": 1.0}


def tick(k: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=5 * k)


def server(name: str = "db-1", cores: int | None = 4, history_len: int = 288, **conditions: str):
    """A server whose metrics are quiet except those named, e.g. memory_percent="critical@10".

    "critical@k": p50 reaches 95 at step k; "now": current 97; "warning@k": from step k p50
    is 94.8 and p90 99.8 (a likely crossing: P ~ 0.48); "unlikely@k": only p90 touches 96 from
    step k, p50 at 70 (P ~ 0.11); "warnlevel": p50 sits at the warning threshold (85/80)
    without p90 reaching 95.
    """
    forecasts, current = {}, {}
    for m in METRICS:
        level = QUIET[m]
        p50 = np.full(H, level)
        p90 = p50 + 2.0
        cur = level
        spec = conditions.get(m)
        if spec == "now":
            cur = 97.0
            p50 = np.full(H, 97.0)
            p90 = p50 + 1.0
        elif spec and spec.startswith("critical@"):
            step = int(spec.split("@")[1])
            p50 = np.full(H, 70.0)
            p50[step:] = 96.0
            p90 = p50 + 2.0
        elif spec and spec.startswith("warning@"):
            step = int(spec.split("@")[1])
            p50 = np.full(H, 70.0)
            p50[step:] = 94.8
            p90 = p50 + 5.0
        elif spec and spec.startswith("unlikely@"):
            step = int(spec.split("@")[1])
            p50 = np.full(H, 70.0)
            p90 = p50 + 5.0
            p90[step:] = 96.0
        elif spec == "warnlevel":
            p50 = np.full(H, 86.0)
            p90 = np.full(H, 90.0)
        q = np.stack([p50 - 3.0, p50, p90], axis=1)
        forecasts[m] = q
        current[m] = cur
    return build_server_forecast(name, current, forecasts, cores=cores, history_len=history_len)


def test_one_tick_opens_nothing_two_ticks_open_one_alert():
    am = AlertManager()
    assert am.update([server(memory_percent="critical@10")], tick(0)) == ()
    alerts = am.update([server(memory_percent="critical@10")], tick(1))
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.severity, a.server_name, a.metric, a.state) == ("critical", "db-1", "memory_percent", "ongoing")
    assert a.opened_at == a.updated_at == "2024-03-01T12:05:00Z"
    assert a.lead_minutes == 55.0
    assert a.predicted_crossing == "2024-03-01T13:00:00Z"
    assert a.message == "memory_percent expected to reach 95 in 55 min (p50)"


def test_a_broken_pending_condition_starts_over():
    am = AlertManager()
    am.update([server(cpu_percent="critical@3")], tick(0))
    am.update([server()], tick(1))
    assert am.update([server(cpu_percent="critical@3")], tick(2)) == ()
    assert len(am.update([server(cpu_percent="critical@3")], tick(3))) == 1


def test_repeat_updates_the_same_alert_and_its_lead_time():
    am = AlertManager()
    am.update([server(memory_percent="critical@10")], tick(0))
    first = am.update([server(memory_percent="critical@10")], tick(1))[0]
    second = am.update([server(memory_percent="critical@5")], tick(2))
    assert len(second) == 1
    s = second[0]
    assert s.id == first.id and s.opened_at == first.opened_at
    assert s.updated_at == "2024-03-01T12:10:00Z"
    assert s.lead_minutes == 30.0 and s.predicted_crossing == "2024-03-01T12:40:00Z"
    assert first.duration_minutes == 0.0 and s.duration_minutes == 5.0   # ongoing alerts age
    # alerts are immutable: the earlier object still says what it said
    assert first.lead_minutes == 55.0 and first.updated_at == "2024-03-01T12:05:00Z"


def test_warning_escalates_to_critical_and_never_drops_while_open():
    am = AlertManager()
    am.update([server(memory_percent="warning@8")], tick(0))
    w = am.update([server(memory_percent="warning@8")], tick(1))[0]
    assert w.severity == "warning" and w.lead_minutes == 45.0
    assert w.message == "memory_percent may reach 95 in 45 min (p90)"
    c = am.update([server(memory_percent="now")], tick(2))[0]
    assert (c.id, c.severity, c.lead_minutes) == (w.id, "critical", 0.0)
    assert c.message.startswith("memory_percent at 97")
    back = am.update([server(memory_percent="warning@8")], tick(3))[0]
    assert (back.id, back.severity, back.state) == (w.id, "critical", "ongoing")
    # the message says what the forecast shows now, and why the alert still reads critical
    assert back.message == "critical until it resolves: memory_percent may reach 95 in 45 min (p90)"


def test_a_forecast_at_the_warning_level_alone_is_no_alert():
    am = AlertManager(open_after=1)
    assert am.update([server(memory_percent="warnlevel")], tick(0)) == ()
    # ...but the same server whose p90 reaches critical is
    a = am.update([server(memory_percent="warning@3")], tick(1))[0]
    assert a.severity == "warning" and a.lead_minutes == 20.0
    assert a.message == "memory_percent may reach 95 in 20 min (p90)"


def peak(f) -> float:
    """The largest per-step probability of a MetricForecast reaching its critical threshold."""
    from engine.risk import peak_probability_batch

    q = np.stack([f.p10, f.p50, f.p90], axis=1)[None]
    return float(peak_probability_batch(q, np.array([f.critical]), q.shape[1], np.array([f.current]))[0])


def test_a_p90_touch_warns_only_when_the_crossing_is_likely_enough():
    from engine.alerts import WARN_PROBABILITY

    assert AlertManager().warn_probability == WARN_PROBABILITY
    assert WARN_PROBABILITY == {"cpu_percent": 0.5, "memory_percent": 0.2, "disk_percent": 0.1, "load_average": 0.3}
    # p90 touching critical while p50 sits far below: each step's P ~ 0.11, below every bar but disk's
    # (risk 8h counts the steps together, 0.26: the bars were measured against the largest step) ...
    for metric in ("cpu_percent", "memory_percent"):
        quiet = server(**{metric: "unlikely@3"})
        f = quiet.metrics[metric]
        assert peak(f) < WARN_PROBABILITY[metric] and f.prob_8h > 0.25
        assert AlertManager(open_after=1).update([quiet], tick(0)) == ()
        # ... a warning when every p90 crossing counts
        a = AlertManager(open_after=1, warn_probability=0.0).update([quiet], tick(0))[0]
        assert (a.severity, a.lead_minutes) == ("warning", 20.0)
    # disk's bar (0.1) is met by any p90 crossing: P >= 0.1 whenever p90 reaches critical
    a = AlertManager(open_after=1).update([server(disk_percent="unlikely@3")], tick(0))[0]
    assert (a.metric, a.severity) == ("disk_percent", "warning")
    # CPU warns only once p50 crosses: a likely p90 crossing (P ~ 0.48) is no CPU alert, a memory one
    assert AlertManager(open_after=1).update([server(cpu_percent="warning@8")], tick(0)) == ()
    assert AlertManager(open_after=1).update([server(memory_percent="warning@8")], tick(0))[0].severity == "warning"
    # the bar is the largest per-step probability (the lower bound of the risk 8h shown): alert
    # exactly when it is met, for one bar for all metrics and for a bar per metric
    bars = {"cpu_percent": 0.45, "memory_percent": 0.3, "disk_percent": 0.2, "load_average": 0.3}
    for metric, bar in (("memory_percent", None), ("cpu_percent", 0.45), ("memory_percent", bars),
                        ("cpu_percent", bars)):
        for p50 in (80.0, 85.0, 88.0, 90.0, 92.0, 93.0, 93.5, 94.0, 94.5, 94.8):
            p = np.full(H, 70.0)
            p[10:] = p50
            q = np.stack([p - 3.0, p, p + 5.0], axis=1)
            s = build_server_forecast("db-1", {**QUIET, metric: 70.0},
                                      {m: (q if m == metric else np.stack([np.full(H, QUIET[m]) - 3, np.full(H, QUIET[m]),
                                                                           np.full(H, QUIET[m]) + 2], axis=1))
                                       for m in METRICS}, cores=4, history_len=288)
            alerts = AlertManager(open_after=1, warn_probability=bar).update([s], tick(0))
            wanted = WARN_PROBABILITY if bar is None else bar if isinstance(bar, dict) else dict.fromkeys(METRICS, bar)
            assert bool(alerts) == (peak(s.metrics[metric]) >= wanted[metric]), (metric, bar, p50)
            assert s.metrics[metric].prob_8h >= peak(s.metrics[metric])
    with pytest.raises(ValueError):
        AlertManager(warn_probability=1.5)
    with pytest.raises(ValueError, match="missing load_average"):
        AlertManager(warn_probability={"cpu_percent": 0.5, "memory_percent": 0.3, "disk_percent": 0.1})
    with pytest.raises(ValueError, match="unknown gpu"):
        AlertManager(warn_probability={**WARN_PROBABILITY, "gpu": 0.3})
    with pytest.raises(ValueError):
        AlertManager(warn_probability={**WARN_PROBABILITY, "disk_percent": -0.1})


def test_resolves_after_three_clear_ticks_with_its_duration():
    am = AlertManager(resolve_after=3)
    am.update([server(disk_percent="critical@2")], tick(0))
    opened = am.update([server(disk_percent="critical@2")], tick(1))[0]
    am.update([server(disk_percent="critical@2")], tick(2))
    assert am.update([server()], tick(3))[0].state == "ongoing"
    assert am.update([server()], tick(4))[0].state == "ongoing"
    done = am.update([server()], tick(5))
    assert len(done) == 1
    r = done[0]
    assert (r.id, r.state, r.resolved_at) == (opened.id, "resolved", "2024-03-01T12:25:00Z")
    assert r.duration_minutes == 20.0                   # 12:05 -> 12:25
    assert am.ongoing() == ()
    # a new condition later is a new alert, debounced again
    am.update([server(disk_percent="critical@2")], tick(6))
    again = am.update([server(disk_percent="critical@2")], tick(7))
    assert [a.id for a in again] == [opened.id + 1, opened.id]


def test_flapping_inside_the_resolve_window_keeps_the_alert_open():
    am = AlertManager(resolve_after=3)
    hot, calm = [server(cpu_percent="critical@4")], [server()]
    am.update(hot, tick(0))
    a = am.update(hot, tick(1))[0]
    for k, fleet in enumerate([calm, calm, hot, calm, calm, hot, calm], start=2):
        alerts = am.update(fleet, tick(k))
        assert len(alerts) == 1 and alerts[0].id == a.id and alerts[0].state == "ongoing"
    am.update(calm, tick(9))
    assert am.update(calm, tick(10))[0].state == "resolved"


def test_newest_first_and_one_open_alert_per_server_metric():
    am = AlertManager(open_after=1, resolve_after=3)
    am.update([server("a", cpu_percent="now", memory_percent="now")], tick(0))
    alerts = am.update([server("a", cpu_percent="now", memory_percent="now"),
                        server("b", disk_percent="critical@1")], tick(1))
    assert [(x.server_name, x.metric) for x in alerts] == \
        [("b", "disk_percent"), ("a", "memory_percent"), ("a", "cpu_percent")]
    assert [x.id for x in alerts] == [3, 2, 1]
    # "a" resolves; resolved alerts stay listed, still by id
    alerts = am.update([server("a"), server("b", disk_percent="critical@1")], tick(2))
    for k in (3, 4):
        alerts = am.update([server("a"), server("b", disk_percent="critical@1")], tick(k))
    assert [(x.id, x.state) for x in alerts] == [(3, "ongoing"), (2, "resolved"), (1, "resolved")]


def test_an_open_alert_ages_and_says_how_long_its_condition_has_been_absent():
    am = AlertManager(resolve_after=4)
    hot, calm = [server(cpu_percent="critical@4")], [server()]
    am.update(hot, tick(0))
    a = am.update(hot, tick(1))[0]                      # opened 12:05, crossing 12:25
    assert (a.duration_minutes, a.clear_minutes, a.lead_minutes) == (0.0, 0.0, 25.0)
    b = am.update(calm, tick(2))[0]
    c = am.update(calm, tick(3))[0]
    # still the same open alert, older; the last lead is kept but marked as stale
    assert (c.id, c.state, c.duration_minutes, c.clear_minutes) == (a.id, "ongoing", 10.0, 10.0)
    assert (b.duration_minutes, b.clear_minutes) == (5.0, 5.0)
    assert (c.updated_at, c.lead_minutes, c.message) == (a.updated_at, a.lead_minutes, a.message)
    assert c.to_json()["clear_minutes"] == 10.0
    d = am.update(hot, tick(4))[0]                       # the condition is back
    assert (d.id, d.duration_minutes, d.clear_minutes, d.updated_at) == (a.id, 15.0, 0.0, "2024-03-01T12:20:00Z")
    for k in range(5, 9):
        r = am.update(calm, tick(k))[0]
    assert (r.state, r.duration_minutes, r.clear_minutes) == ("resolved", 35.0, 20.0)  # 12:05 -> 12:40, clear from 12:20
    # the lead still refers to the last tick with the condition: predicted_crossing - updated_at
    assert (r.updated_at, r.resolved_at) == ("2024-03-01T12:20:00Z", "2024-03-01T12:40:00Z")
    assert r.lead_minutes == (pd.Timestamp(r.predicted_crossing) - pd.Timestamp(r.updated_at)).total_seconds() / 60


def test_predict_summary_says_when_an_ongoing_alerts_condition_cleared():
    from engine.snapshot import Alert, Environment, Snapshot
    from engine.summary import format_summary

    base = dict(severity="warning", server_name="db-1", metric="cpu_percent",
                message="cpu_percent may reach 95 in 5 min (p90)", opened_at="2024-03-01T12:00:00Z",
                updated_at="2024-03-01T12:10:00Z", predicted_crossing=None, lead_minutes=5.0, state="ongoing")
    snap = Snapshot(data_time="2024-03-01T12:40:00Z", servers=(),
                    alerts=(Alert(id=2, **base, clear_minutes=30.0), Alert(id=1, **base)),
                    environment=Environment(0.0, 0.0, 0, 0, 100.0), metadata={"model_type": "TFT"})
    lines = format_summary(snap).splitlines()
    assert lines[-2] == ("  [warning, clear for 30 min] db-1: cpu_percent may reach 95 in 5 min (p90) "
                         "(its last condition, 30 min ago; it resolves after an hour clear)")
    assert lines[-1].endswith("(p90)")
    # a critical alert held open by a p90-only condition, now clear: said once, not
    # "critical … critical until it resolves: … may reach … clear since"
    held = Alert(id=3, **{**base, "severity": "critical",
                          "message": "critical until it resolves: cpu_percent may reach 95 in 5 min (p90)"},
                 clear_minutes=20.0)
    snap = Snapshot(data_time="2024-03-01T12:40:00Z", servers=(), alerts=(held,),
                    environment=Environment(0.0, 0.0, 0, 0, 100.0), metadata={"model_type": "TFT"})
    lines = format_summary(snap).splitlines()
    assert lines[-2] == "1 ongoing alert:"
    assert lines[-1].startswith("  [critical, clear for 20 min] db-1: cpu_percent may reach 95 in 5 min (p90) (its")


def test_by_default_an_alert_resolves_after_an_hour_without_its_condition():
    am = AlertManager()
    assert (am.open_after, am.resolve_after) == (2, 12)          # 12 ticks of 5 minutes
    hot, calm = [server(cpu_percent="critical@4")], [server()]
    am.update(hot, tick(0))
    a = am.update(hot, tick(1))[0]
    for k in range(2, 13):                                         # 11 clear ticks: still the same alert
        assert [(x.id, x.state) for x in am.update(calm, tick(k))] == [(a.id, "ongoing")]
    am.update(hot, tick(13))                                        # it comes back: the count starts over
    for k in range(14, 25):
        assert am.update(calm, tick(k))[0].state == "ongoing"
    done = am.update(calm, tick(25))[0]
    assert (done.id, done.state, done.duration_minutes) == (a.id, "resolved", 120.0)   # 12:05 -> 14:05


def test_resolved_alerts_are_capped():
    am = AlertManager(open_after=1, resolve_after=1, max_resolved=2)
    for k in range(4):
        am.update([server(f"s{k}", cpu_percent="now")], tick(2 * k))
        am.update([], tick(2 * k + 1))
    alerts = am.alerts
    assert [(a.server_name, a.state) for a in alerts] == [("s3", "resolved"), ("s2", "resolved")]


def test_a_server_that_leaves_the_fleet_is_closed_as_silent_not_as_recovered():
    am = AlertManager()
    fleet = [server("web", load_average="now"), server("db")]
    am.update(fleet, tick(0))
    assert len(am.update(fleet, tick(1))) == 1
    r = am.update([server("db")], tick(2))[0]
    assert (r.server_name, r.state, r.duration_minutes, r.resolution) == ("web", "resolved", 5.0, "silent")
    assert r.to_json()["resolution"] == "silent"
    # no sample came without the condition: not "absent for 5 min" (clear_minutes is what its
    # last sample said, the condition still held)
    assert r.clear_minutes == 0.0


def test_a_server_that_sends_nothing_new_keeps_its_alert_as_it_was():
    """Between its last sample and being left out as silent (35 min), a quiet server's
    forecast is the same one: its alert must not count clear ticks, refresh its lead towards
    'now' or resolve as cleared."""
    from dataclasses import replace

    def at(k, **kw):
        return replace(server("web", **kw), last_seen=tick(k).strftime("%Y-%m-%dT%H:%M:%SZ"))

    am = AlertManager(resolve_after=3)
    am.update([at(0, memory_percent="critical@10")], tick(0))
    a = am.update([at(1, memory_percent="critical@10")], tick(1))[0]
    for k in range(2, 8):                                 # six ticks, no new sample from web
        b = am.update([at(1, memory_percent="critical@10")], tick(k))[0]
        # not refreshed, not counted clear; only its duration (open all the while) grows
        assert b == replace(a, duration_minutes=5.0 * (k - 1))          # opened at tick 1
    c = am.update([at(8)], tick(8))[0]                    # a new sample without the condition
    assert c.state == "ongoing" and c.clear_minutes == pytest.approx(35.0)
    for k in (9, 10):
        c = am.update([at(k)], tick(k))[0]
    assert (c.state, c.resolution) == ("resolved", "cleared")
    # a pending condition of a quiet server does not open: one fresh tick, then quiet ones
    am = AlertManager()
    am.update([at(0, cpu_percent="now")], tick(0))
    assert am.update([at(0, cpu_percent="now")], tick(1)) == ()


def test_a_server_behind_the_fleet_has_its_crossing_read_from_its_own_last_sample():
    """A forecast's minutes count from its server's last sample: a collector that posts after
    the others (a POST-fed daemon ticks on the first one) is one step or more behind the
    fleet's time.  Its crossing was read as the fleet's time + the minutes: 15 minutes late
    for a server 15 minutes behind, "in 5 min" for a crossing its forecast put in the past."""
    from dataclasses import replace

    def at(name, k, lag, **kw):
        return replace(server(name, **kw), last_seen=(tick(k) - pd.Timedelta(minutes=lag)).strftime("%Y-%m-%dT%H:%M:%SZ"))

    am = AlertManager()
    for k in (0, 1):
        alerts = am.update([at("on-time", k, 0, memory_percent="critical@10"),
                            at("behind", k, 15, memory_percent="critical@10"),
                            at("overdue", k, 15, cpu_percent="critical@0")], tick(k))
    by = {a.server_name: a for a in alerts}
    # on time: 55 min from 12:05
    assert (by["on-time"].predicted_crossing, by["on-time"].lead_minutes) == ("2024-03-01T13:00:00Z", 55.0)
    # 15 minutes behind: its forecast's 55 min run from 11:50, so 40 are left at 12:05
    assert (by["behind"].predicted_crossing, by["behind"].lead_minutes) == ("2024-03-01T12:45:00Z", 40.0)
    assert by["behind"].message == "memory_percent expected to reach 95 in 40 min (p50)"
    # a crossing 5 min after a sample 15 min old is due by now: lead 0, not "in 5 min"
    assert (by["overdue"].predicted_crossing, by["overdue"].lead_minutes) == ("2024-03-01T11:55:00Z", 0.0)
    assert by["overdue"].message == "cpu_percent expected to reach 95 by now (p50)"


def test_a_server_under_an_hour_old_raises_no_warning_but_its_critical_conditions_stand():
    young = lambda **kw: server(history_len=MIN_WARN_HISTORY - 1, **kw)          # noqa: E731
    grown = lambda **kw: server(history_len=MIN_WARN_HISTORY, **kw)              # noqa: E731
    assert AlertManager(open_after=1).update([young(memory_percent="warning@8")], tick(0)) == ()
    assert AlertManager(open_after=1).update([grown(memory_percent="warning@8")], tick(0))[0].severity == "warning"
    assert AlertManager(open_after=1, warn_probability=0.0).update([young(disk_percent="unlikely@3")], tick(0)) == ()
    for spec in ("now", "critical@10"):
        a = AlertManager(open_after=1).update([young(memory_percent=spec)], tick(0))[0]
        assert a.severity == "critical"


def loaded_server(cores, load):
    """Server "c" with quiet metrics and a load forecast of p10/p50/p90 = load -1/0/+1."""
    s = server("c", cores=cores)
    q = np.stack([np.full(H, load - 1), np.full(H, load), np.full(H, load + 1)], axis=1)
    return build_server_forecast("c", {**QUIET, "load_average": load},
                                 {m: (q if m == "load_average" else
                                      np.stack([s.metrics[m].p10, s.metrics[m].p50, s.metrics[m].p90], 1))
                                  for m in METRICS}, cores=cores, history_len=288)


def test_load_uses_core_scaled_thresholds():
    am = AlertManager(open_after=1, warn_probability=0.0)
    assert am.update([loaded_server(8, 15.0)], tick(0))[0].severity == "warning"    # p50 15 < 16 <= p90 on 8 cores
    assert AlertManager(open_after=1, warn_probability=0.0).update([loaded_server(8, 10.0)], tick(0)) == ()  # p90 11 < 16
    am2 = AlertManager(open_after=1)
    unknown = am2.update([loaded_server(None, 10.0)], tick(0))[0]
    assert unknown.severity == "critical"   # >= 8 absolute
    # the 8 is the fallback, not the host's: a 16-core host at 10 is busy, not critical
    assert unknown.message.endswith("critical 8 (cores unknown: fallback level)"), unknown.message
    assert "unknown" not in am.update([loaded_server(8, 15.0)], tick(1))[0].message
    # the override recomputes thresholds from the server's cores
    am3 = AlertManager(Thresholds(load_per_core=(0.5, 1.0)), open_after=1)
    assert am3.update([loaded_server(8, 10.0)], tick(0))[0].severity == "critical"      # >= 8 = 1.0 x 8


def test_argument_checks():
    with pytest.raises(ValueError):
        AlertManager(open_after=0)


def test_a_repeated_or_older_tick_changes_nothing():
    am = AlertManager()
    assert am.update([server(memory_percent="critical@10")], tick(0)) == ()
    assert am.update([server(memory_percent="critical@10")], tick(0)) == ()    # a redraw: no second tick
    a = am.update([server(memory_percent="critical@10")], tick(1))[0]
    assert a.state == "ongoing" and a.duration_minutes == 0.0
    assert am.update([server()], tick(0)) == (a,)                               # older: ignored
    later = am.update([server(memory_percent="critical@10")], tick(3))[0]
    assert later.id == a.id and later.duration_minutes == 10.0


def test_a_server_sampled_every_15_minutes_resolves_after_an_hour_not_after_12_samples():
    from dataclasses import replace

    def at(k, **kw):
        return replace(server("web", **kw), last_seen=tick(k).strftime("%Y-%m-%dT%H:%M:%SZ"))

    am = AlertManager()
    for k in (0, 3):
        am.update([at(k, memory_percent="critical@10")], tick(k))
    assert am.alerts[0].state == "ongoing"
    for k in (6, 9, 12, 15):                  # clear samples at +30 .. +75 min
        assert am.update([at(k)], tick(k))[0].state == "ongoing"
    a = am.update([at(18)], tick(18))[0]      # 55 min after the first clear sample
    assert (a.state, a.resolution, a.clear_minutes) == ("resolved", "cleared", 75.0)
    # every 5 minutes: still the 12th clear tick, an hour after the condition
    am = AlertManager()
    for k in (0, 1):
        am.update([server(memory_percent="critical@10")], tick(k))
    states = [am.update([server()], tick(k))[0].state for k in range(2, 14)]
    assert states == ["ongoing"] * 11 + ["resolved"]


def test_an_alert_judged_against_a_threshold_that_moved_is_judged_again():
    """A load alert raised against the fallback critical 8 (cores unknown) must not stay
    critical for an hour once the server's 8 cores make critical 16."""
    am = AlertManager(open_after=1, warn_probability=0.0)
    a = am.update([loaded_server(None, 10.0)], tick(0))[0]
    assert (a.severity, a.metric) == ("critical", "load_average")
    # under the new threshold there is no condition: resolved at once, saying why
    r = am.update([loaded_server(8, 10.0)], tick(1))[0]
    assert (r.id, r.state, r.resolution) == (a.id, "resolved", "threshold")
    assert "critical moved from 8 to 16" in r.message
    # with a condition under the new threshold, the severity is the new one's (it drops)
    am = AlertManager(open_after=1, warn_probability=0.0)
    a = am.update([loaded_server(None, 15.0)], tick(0))[0]
    b = am.update([loaded_server(8, 15.0)], tick(1))[0]
    assert (b.id, b.state, b.severity) == (a.id, "ongoing", "warning")
    assert "critical moved from 8 to 16" in b.message
    # the same threshold next tick: the usual rule again (escalates, never drops)
    c = am.update([loaded_server(8, 17.0)], tick(2))[0]
    d = am.update([loaded_server(8, 15.0)], tick(3))[0]
    assert (c.severity, d.severity, d.id) == ("critical", "critical", a.id)


def test_predict_summary_lists_critical_alerts_first_and_says_what_it_cut():
    """Cut at 10, the list dropped critical alerts for warnings and said nothing of the rest."""
    from engine.snapshot import Alert, Environment, Snapshot
    from engine.summary import format_summary

    def alert(i, severity):
        return Alert(id=i, severity=severity, server_name=f"s-{i:02d}", metric="cpu_percent", message=f"m{i}",
                     opened_at="2024-03-01T12:00:00Z", updated_at="2024-03-01T12:10:00Z", predicted_crossing=None,
                     lead_minutes=30.0, state="ongoing")

    alerts = tuple(alert(i, "warning") for i in range(10)) + tuple(alert(i, "critical") for i in range(10, 13))
    snap = Snapshot(data_time="2024-03-01T12:40:00Z", servers=(), alerts=alerts,
                    environment=Environment(0.0, 0.0, 0, 0, 100.0), metadata={"model_type": "TFT"})
    lines = format_summary(snap, top=5).splitlines()
    shown = [ln for ln in lines if ln.startswith("  [")]
    assert [ln.split("]")[0] for ln in shown[:3]] == ["  [critical"] * 3 and len(shown) == 5
    assert lines[-1] == "  … and 8 more (--json lists every alert)"


def test_a_small_probability_keeps_its_size_in_the_json_and_the_summary():
    """Rounded to 4 decimals 3e-05 read 0.0: a client showed 0% where the app showed <1%."""
    from engine.risk import format_probability
    from engine.snapshot import Environment

    env = Environment(3e-05, 0.123456, 0, 1, 100.0).to_json()
    assert env["incident_probability_30m"] == 3e-05 and env["incident_probability_8h"] == 0.1235
    env = Environment(0.99996, 1.0, 0, 1, 100.0).to_json()
    assert 0.99995 < env["incident_probability_30m"] < 1.0 and env["incident_probability_8h"] == 1.0
    assert format_probability(env["incident_probability_30m"]) == ">99%"
    assert [format_probability(p) for p in (0.0, 3e-05, 0.5, 0.995, 1.0)] == ["0%", "<1%", "50%", ">99%", "100%"]


def test_probabilities_in_the_json_carry_no_float_noise():
    from engine.snapshot import _p

    values = [k / 100 for k in range(0, 101)] + [0.6183689, 0.533, 0.99996, 3e-05]
    for v in values:
        text = repr(_p(v))
        assert len(text) <= 8, (v, text)          # e.g. 0.57, not 0.5699999999999999
    assert _p(0.6183689) == 0.6184 and _p(0.57) == 0.57 and _p(0.99996) == 0.99996
