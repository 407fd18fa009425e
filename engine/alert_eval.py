"""How well alerts foresee labelled incidents: replay the held-out period tick by tick.

The engine runs exactly as in the app (store -> forecaster -> risk -> debounced alerts)
over a data directory that has an ``incidents.csv`` (server_name, metric, start,
crossing, end).  Then:

- **early detection**: an incident counts as caught early when an alert on the same
  server and metric was open at some time from ``MAX_EARLY`` before the incident began
  until ``lead_minutes`` (30) before the labelled crossing.  Lead time = crossing -
  the first moment in that span the alert was open.
- **precision**: an alert is true when it was open on a server and metric while a
  labelled incident was under way there (from ``MAX_EARLY`` before its start to its
  end); every other alert is a false alarm.  Reported for all alerts and for critical
  alerts alone.

Only incidents whose crossing lies at least ``lead_minutes`` after the earliest moment an
alert can open are scored: nothing could have warned earlier.  That moment is the replay's
first tick plus the debounce (an alert opens on its ``OPEN_AFTER``-th tick with the
condition), so an incident crossing 30 min after the first tick is not scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MAX_EARLY = pd.Timedelta(hours=2)
INCIDENTS_FILE = "incidents.csv"


@dataclass
class AlertRecord:
    id: int
    severity: str        # the highest severity it reached
    server_name: str
    metric: str
    opened_at: pd.Timestamp
    resolved_at: pd.Timestamp | None = None

    def open_during(self, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        return self.opened_at <= end and (self.resolved_at is None or self.resolved_at >= start)


@dataclass
class AlertEvaluation:
    incidents: int
    caught_early: int
    caught_before_crossing: int
    alerts: int
    true_alerts: int
    critical_alerts: int
    true_critical_alerts: int
    median_lead_minutes: float | None
    ticks: int
    seconds: float
    lead_minutes_required: float
    missed: list[str]
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)   # kind -> (scored, caught early)
    outside: int = 0     # labelled incidents of servers the data lacks, or crossing after it ends

    @property
    def early_share(self) -> float | None:
        return self.caught_early / self.incidents if self.incidents else None

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def critical_precision(self) -> float | None:
        return self.true_critical_alerts / self.critical_alerts if self.critical_alerts else None

    def to_json(self) -> dict:
        return {
            "incidents": self.incidents, "caught_early": self.caught_early,
            "caught_before_crossing": self.caught_before_crossing,
            "early_share": None if self.early_share is None else round(self.early_share, 4),
            "lead_minutes_required": self.lead_minutes_required,
            "median_lead_minutes": self.median_lead_minutes,
            "alerts": self.alerts, "true_alerts": self.true_alerts,
            "precision": None if self.precision is None else round(self.precision, 4),
            "critical_alerts": self.critical_alerts, "true_critical_alerts": self.true_critical_alerts,
            "critical_precision": None if self.critical_precision is None else round(self.critical_precision, 4),
            "ticks": self.ticks, "seconds": round(self.seconds, 1), "missed": self.missed,
            "by_kind": {k: {"incidents": n, "caught_early": e} for k, (n, e) in self.by_kind.items()},
            "incidents_outside_data": self.outside,
        }


def read_incidents(path: Path | str) -> pd.DataFrame | None:
    """The labelled incidents beside the data (``incidents.csv``), checked: every cell read as
    text (names stripped, as the metrics' are), a row with more or fewer fields than the
    header, a repeated column, a missing value, an unknown metric, a time that is neither ISO
    8601 nor epoch seconds (as the metrics take them), times out of order and an incident
    listed twice (it would be scored twice) are each refused with their row and column."""
    import csv

    path = Path(path)
    file = (path if path.is_dir() else path.parent) / INCIDENTS_FILE
    if not file.is_file():
        return None
    from engine.contract import METRICS, DataError, _check_timestamps

    def bad(row: int, column: str, what: str) -> DataError:   # row: the n-th data row, as for metrics
        return DataError(f"{file}: row {row + 1}, column {column}: {what}")

    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{file}: not a valid incidents table ({' '.join(str(exc).split())[:120]})") from None
    lines = [r for r in lines if any(c.strip() for c in r)]        # blank lines are nothing
    if not lines:
        raise DataError(f"{file}: not a valid incidents table (the file is empty)")
    header = [c.strip() for c in lines[0]]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{file}: column '{repeated[0]}' appears more than once")
    missing = [c for c in ("server_name", "metric", "start", "crossing", "end") if c not in header]
    if missing:
        raise DataError(f"{file}: not a valid incidents table (column {missing[0]!r} is missing)")
    for i, r in enumerate(lines[1:]):
        if len(r) != len(header):
            raise DataError(f"{file}: row {i + 1}: {len(r)} fields, the header has {len(header)}")
    table = pd.DataFrame([[c.strip() for c in r] for r in lines[1:]], columns=header, dtype=object)
    for col in ("server_name", "metric", "start", "crossing", "end"):
        for i in np.flatnonzero((table[col] == "").to_numpy()):
            raise bad(i, col, "missing value")
    known = table["metric"].isin(METRICS).to_numpy()
    for i in np.flatnonzero(~known):
        raise bad(i, "metric", f"{table['metric'].iloc[i]!r} is not one of {', '.join(METRICS)}")
    for col in ("start", "crossing", "end"):
        ns, wrong, describe = _check_timestamps(table[col])
        for i in np.flatnonzero(wrong):
            raise bad(i, col, describe(np.array([i]))[0])
        table[col] = pd.to_datetime(ns, unit="ns", utc=True)
    for i in np.flatnonzero((table["start"] > table["crossing"]).to_numpy() | (table["crossing"] > table["end"]).to_numpy()):
        r = table.iloc[i]
        raise bad(i, "crossing", f"start {r['start']:%Y-%m-%dT%H:%MZ}, crossing {r['crossing']:%Y-%m-%dT%H:%MZ} "
                                 f"and end {r['end']:%Y-%m-%dT%H:%MZ} are not in that order")
    key = table[["server_name", "metric", "crossing"]]
    for i in np.flatnonzero(key.duplicated().to_numpy()):
        first = int(np.flatnonzero((key == key.iloc[i]).all(axis=1).to_numpy())[0])
        raise bad(i, "crossing", f"the incident of {table['server_name'].iloc[i]!r} ({table['metric'].iloc[i]}, "
                                 f"crossing {table['crossing'].iloc[i]:%Y-%m-%dT%H:%MZ}) is listed again "
                                 f"(first on row {first + 1})")
    return table


def replay_alerts(data: Path | str, model_dir: Path | str | None, device: str = "cpu",
                  scope: dict | None = None) -> tuple[list[AlertRecord], pd.Timestamp, int, float]:
    """Run the engine over the held-out period; every alert ever opened, the replay start, ticks,
    seconds.  ``scope``, when given, receives the data's "servers" and its "end" (last time)."""
    import time

    from engine.runtime import Engine
    from engine.sources import ReplaySource

    t0 = time.perf_counter()
    from engine.datasplit import read_split

    source = ReplaySource(data)
    if scope is not None:
        scope["servers"] = set(source.grid["server_name"].unique())
        scope["end"] = source.last
    split = read_split(data)
    if split.heldout_from is None:   # no fixed boundary: the earliest per-server held-out start
        source.seek(split.heldout_start(source.grid).min())
    start = source.next_time
    engine = Engine(source, model_dir, device=device)
    engine.start()
    records: dict[int, AlertRecord] = {}
    ticks = 0
    while not engine.finished:
        snap = engine.tick()
        ticks += 1
        for a in snap.alerts:
            rec = records.get(a.id)
            if rec is None:
                rec = records[a.id] = AlertRecord(a.id, a.severity, a.server_name, a.metric, pd.Timestamp(a.opened_at))
            if a.severity == "critical":
                rec.severity = "critical"
            if a.resolved_at is not None:
                rec.resolved_at = pd.Timestamp(a.resolved_at)
    return list(records.values()), start, ticks, time.perf_counter() - t0


def score_alerts(alerts: list[AlertRecord], incidents: pd.DataFrame, replay_start: pd.Timestamp,
                 lead_minutes: float = 30.0, open_after: int | None = None,
                 ) -> tuple[int, int, int, list[float], list[str], list[bool]]:
    """``open_after``: the debounce the alerts were made with (default: the engine's
    OPEN_AFTER); it sets the earliest moment an alert could open."""
    from engine.alerts import OPEN_AFTER
    from engine.contract import STEP_SECONDS

    lead = pd.Timedelta(minutes=lead_minutes)
    debounce = OPEN_AFTER if open_after is None else open_after
    first_open = replay_start + (debounce - 1) * pd.Timedelta(seconds=STEP_SECONDS)   # the earliest alert
    scored = incidents[incidents["crossing"] >= first_open + lead]
    by_key: dict[tuple[str, str], list[AlertRecord]] = {}
    for a in alerts:
        by_key.setdefault((a.server_name, a.metric), []).append(a)
    early = before = 0
    leads: list[float] = []
    missed: list[str] = []
    for inc in scored.itertuples():
        window_start = inc.start - MAX_EARLY
        cands = [a for a in by_key.get((inc.server_name, inc.metric), []) if a.open_during(window_start, inc.crossing)]
        if cands:
            before += 1
            first = min(max(a.opened_at, window_start) for a in cands)
            if first <= inc.crossing - lead:
                early += 1
                leads.append((inc.crossing - first).total_seconds() / 60.0)
                continue
        missed.append(f"{inc.server_name} {inc.metric} crossing {inc.crossing:%Y-%m-%dT%H:%MZ}")
    return len(scored), early, before, leads, missed, alert_truth(alerts, incidents)


def alert_truth(alerts: list[AlertRecord], incidents: pd.DataFrame) -> list[bool]:
    """Per alert: whether it was open on its server and metric while a labelled incident was
    under way there (from MAX_EARLY before its start to its end)."""
    true_flags = []
    for a in alerts:
        same = incidents[(incidents["server_name"] == a.server_name) & (incidents["metric"] == a.metric)]
        true_flags.append(any(a.open_during(r.start - MAX_EARLY, r.end) for r in same.itertuples()))
    return true_flags


def score_by_kind(alerts: list[AlertRecord], incidents: pd.DataFrame, replay_start: pd.Timestamp,
                  lead_minutes: float = 30.0) -> dict[str, tuple[int, int]]:
    """(scored, caught early) per incident kind, where the table has a ``kind`` column."""
    if "kind" not in incidents:
        return {}
    out = {}
    for kind, part in incidents.groupby("kind", sort=True):
        if not str(kind).strip():       # an incident with no kind is scored, just not by kind
            continue
        n, early, *_ = score_alerts(alerts, part, replay_start, lead_minutes)
        if n:
            out[str(kind)] = (n, early)
    return out


def evaluate_alerts(data: Path | str, model_dir: Path | str | None, device: str = "cpu",
                    lead_minutes: float = 30.0) -> AlertEvaluation | None:
    """None when the data has no incidents.csv to score against."""
    incidents = read_incidents(data)
    if incidents is None:
        return None
    scope: dict = {}
    alerts, start, ticks, seconds = replay_alerts(data, model_dir, device, scope=scope)
    # an incident of a server the data does not have, or crossing after the data ends, cannot
    # be foreseen or missed: not scored, and counted (a labels file for another fleet shows)
    inside = incidents["server_name"].astype(str).isin(scope["servers"]).to_numpy() & \
        (incidents["crossing"] <= scope["end"]).to_numpy()
    outside = int((~inside).sum())
    # whether an alert is real is judged on every label: one raised in the run-up to an
    # incident that crosses after the data ends was right
    true_flags = alert_truth(alerts, incidents)
    incidents = incidents[inside]
    n, early, before, leads, missed, _ = score_alerts(alerts, incidents, start, lead_minutes)
    crit = [f for a, f in zip(alerts, true_flags) if a.severity == "critical"]
    return AlertEvaluation(
        incidents=n, caught_early=early, caught_before_crossing=before,
        alerts=len(alerts), true_alerts=int(sum(true_flags)),
        critical_alerts=len(crit), true_critical_alerts=int(sum(crit)),
        median_lead_minutes=None if not leads else round(float(np.median(leads)), 1),
        ticks=ticks, seconds=seconds, lead_minutes_required=lead_minutes, missed=missed,
        by_kind=score_by_kind(alerts, incidents, start, lead_minutes), outside=outside,
    )


def format_alert_evaluation(name: str, ev: AlertEvaluation) -> str:
    pct = lambda x: "—" if x is None else f"{x:.1%}"  # noqa: E731
    return "\n".join([
        f"== alerts on {name}: replay of the held-out period ({ev.ticks} ticks, {ev.seconds:.0f} s)",
        f"  labelled incidents scored: {ev.incidents}; alerted >= {ev.lead_minutes_required:.0f} min before the crossing: "
        f"{ev.caught_early} ({pct(ev.early_share)}); alerted before the crossing: {ev.caught_before_crossing}",
        f"  median lead time: {'—' if ev.median_lead_minutes is None else f'{ev.median_lead_minutes:.0f} min'}",
        *(["  caught early by kind: " + " · ".join(f"{k} {e}/{n}" for k, (n, e) in ev.by_kind.items())]
          if ev.by_kind else []),
        f"  precision: {pct(ev.precision)} of {ev.alerts} alerts; critical alerts: {pct(ev.critical_precision)} of {ev.critical_alerts}",
        *(["  missed: " + "; ".join(ev.missed)] if ev.missed else []),
        *([f"  not scored: {ev.outside} labelled incidents of servers the data lacks or crossing after it ends"]
          if ev.outside else []),
    ])
