"""Debounced alerts from the fleet's forecasts, one :class:`AlertManager` per running engine.

Condition, per (server, metric), each tick:

- **critical**: the current value is at or above critical, or p50 reaches critical
  anywhere in the horizon;
- **warning**: otherwise, p90 reaches critical anywhere in the horizon AND the
  largest per-step probability of reaching it within the horizon (engine.risk's
  ``peak_probability_batch``, from the three quantiles; the lower bound of the risk 8h
  shown, which also counts the steps together) is at least the metric's ``warn_probability`` (see WARN_PROBABILITY:
  memory 0.2, load 0.3, disk 0.1, CPU 0.5, i.e. no p90-only CPU warnings);
- else none.

A server with under ``MIN_WARN_HISTORY`` (an hour) of history raises no warning: its band
rests on a handful of one-step changes (three samples with one spike gave a load p90 five
times the spike, a "may reach critical in 30 min" warning on a server seen 15 minutes);
its critical conditions (at critical now, p50 reaching it) stand.

A value forecast to sit at the warning threshold is not an alert: it shows in the fleet
table (colour, risk), but an alert means a critical crossing is forecast or under way.
(Measured with tft_model_20261126T080658Z on the demo fleet's held-out replay: alerting also when p50
reaches the warning level added 30 alerts to 135 and one early-caught incident to 11 of
25; precision 18 % instead of 22 %.  On a fresh simulated fleet, seed 101: 17 instead of
16 of 37 incidents early, precision 10.5 % instead of 16.9 %.)

Debounce: an alert opens only once a condition (either severity) has held for
``open_after`` (2) consecutive ticks, and resolves once it has been absent for
``resolve_after`` 5-minute steps of data time (12: an hour; see RESOLVE_AFTER): its first
clear sample and the one that resolves it lie ``resolve_after - 1`` steps apart (a condition
that comes back inside that window keeps the alert open; for a server sampled every 5 min
that is 12 clear ticks, for one sampled every 15 min 5, not 12).  Only ticks that bring a
new sample from the server count, either way: a stretch with no sample is no evidence.  While open, each tick with a condition updates the same alert (same id):
``updated_at``, ``predicted_crossing``, ``lead_minutes``, message, and severity, which may
escalate warning -> critical but never drops while the alert is open (only resolving
ends it), except when the critical threshold it was judged against moves (a load alert
raised against the fallback 8 before the server's core count was known): then the
severity is the new judgement's, and an alert with no condition under a raised threshold
resolves at once (``resolution: "threshold"``, its message saying how the threshold
moved; under a lowered one it clears as usual).  At most one open alert per (server, metric).  Alerts of a server that has left
the fleet resolve at once; a metric missing from a present server counts as a clear tick.

An open alert's ``duration_minutes`` grows every tick (opened -> now); while its condition
is absent it keeps the message, crossing and lead of the last tick that had it (its
``updated_at``) and ``clear_minutes`` says for how long the condition has been absent, so
a reader never takes a stale "in 5 min" for a current forecast.

``predicted_crossing`` is the server's last sample + the minutes until the critical threshold
is reached: 0 when already there, else the first p50 step for a critical condition, the first
p90 step for a warning one; ``lead_minutes`` is what is left of them at the tick's ``now``
(less than the minutes for a server whose newest sample is older than the fleet's; 0 when
the crossing is due by now).  Times are data times (the tick's
``now``), ISO 8601 UTC.

:meth:`AlertManager.update` returns the ongoing alerts and the most recent resolved ones
(at most ``max_resolved``), newest first: by id, i.e. by the time they opened.
Alerts are immutable; every change is a ``dataclasses.replace``.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from engine.risk import STEP_MINUTES, peak_probability_batch
from engine.snapshot import Alert, MetricForecast, ServerForecast
from engine.thresholds import Thresholds

WARNING, CRITICAL = "warning", "critical"
ONGOING, RESOLVED = "ongoing", "resolved"
_RANK = {WARNING: 1, CRITICAL: 2}
OPEN_AFTER = 2
# An hour (at 5-minute steps) without a condition before an alert resolves: a forecast
# crossing that clears for less than that is the same risk flickering, and re-paging for
# it is noise.  Chosen on a fresh simulated fleet (seed 101) with the model then shipped
# (tft_model_20261126T080658Z): resolving after 3 / 6 / 12 clear ticks gave 231 / 187 / 147
# alerts, 17 / 20 / 25 % of them real, the same 16 of 37 incidents caught >= 30 min ahead.
# With the model shipped now, on the demo held-out replay: 117 / 104 / 97 alerts, 24 / 27 /
# 29 % real, the same 12 of 25 caught (`python benchmarks/alert_policies.py [--data
# demo_data]`).  24 ticks would raise precision further, but an alert that stays open two
# hours after its cause cleared tells the operator less.
RESOLVE_AFTER = 12
# A p90-only (warning) condition also needs P(reaching critical within 8 h) >= a bar per
# metric: the largest per-step probability (engine.risk.peak_probability_batch; until
# 2026-11-28 risk 8h was that number, and the bars were measured with it).  p90 touching critical alone is a
# 10 %-per-step event that hot, noisy servers produce all day.  Each bar is chosen on a fresh
# simulated fleet (seed 101, with the model shipped: tft_model_20261127T124449Z) as the
# smallest probability on a 0.05 grid whose alerts on that metric are >= 80 % real (a
# metric's alerts depend only on its own forecasts, so one replay scores every combination;
# `python benchmarks/alert_policies.py --by-metric --settings 2:12:0.1,2:12:0.15,...,2:12:0.5`);
# where two bars give the same alerts there, the bar in place stays.
# P is at least 0.1 whenever p90 reaches critical, so 0.1 means "every p90 crossing":
#   memory  0.15 / 0.2 / 0.3 -> 30 / 18 / 15 alerts, 50 / 83 / 100 % real, 15 / 14 / 13 of 15 ahead -> 0.2
#   load    0.2 / 0.25 / 0.3 -> 15 / 8 / 8 alerts, 47 / 88 / 88 % real, 0 of 7 ahead at any bar
#           (0.25 and 0.3 alike: 0.3 stays)                                          -> 0.3
#   disk    0.1 -> 7 alerts, 86 % real, 6 of 6 ahead                                   -> 0.1
#   cpu     0.4 / 0.45 / 0.5 -> 16 / 14 / 11 alerts, 56 / 64 / 82 % real, 0 of 9 ahead at any
#           bar from 0.2 up: only 0.5 reaches 80 %, i.e. CPU warns only when p50 crosses
#           (P >= 0.5 means p50 reaches critical, a critical alert): 0.5.
# Together on that fleet: 20 of 37 incidents >= 30 min ahead, 44 alerts 84 % real; one bar
# of 0.45 for all (the rule applied to the fleet as a whole) gave 17 of 37, 45 alerts 84 %.
# On the demo fleet's held-out replay (not used to choose, but its figures for memory 0.2
# with load 0.25 were seen before the load tie was settled: 11 of 25 ahead, 34 alerts 79 %
# real): see README.  The model shipped before (tft_model_20261127T061002Z) gave memory
# 0.3, load 0.3: 20 of 37 ahead, 43 alerts 86 % real on the fresh fleet.  Servers below a
# bar still rank by risk in the fleet table.
MIN_WARN_HISTORY = 12        # samples (an hour) before a server's p90-only conditions warn
WARN_PROBABILITY: dict[str, float] = {
    "cpu_percent": 0.5, "memory_percent": 0.2, "disk_percent": 0.1, "load_average": 0.3,
}


@dataclass
class _Condition:
    severity: str
    minutes: float             # the lead: from the tick's ``now`` to the crossing (0: there, or overdue)
    message: str
    critical: float            # the critical threshold it was judged against
    crossing: pd.Timestamp     # the server's own forecast start + its minutes to the threshold


@dataclass
class _Track:
    pending: int = 0           # consecutive ticks with a condition, before opening
    clear: int = 0             # consecutive ticks without one, while open
    alert: Alert | None = None
    opened: pd.Timestamp | None = None
    last_condition: pd.Timestamp | None = None
    critical: float | None = None   # the threshold the open alert was last judged against
    first_clear: pd.Timestamp | None = None   # the first tick of the current clear stretch


class AlertManager:
    """Turns each tick's forecasts into debounced alerts; call :meth:`update` once per tick."""

    def __init__(self, thresholds: Thresholds | None = None, open_after: int = OPEN_AFTER, resolve_after: int = RESOLVE_AFTER,
                 max_resolved: int = 200,
                 warn_probability: float | Mapping[str, float] | None = None) -> None:
        """``thresholds``: None uses each MetricForecast's own warning/critical (what risk.py put
        there from the engine's thresholds); a Thresholds overrides them, per server core count.
        ``warn_probability``: one bar for every metric, or one per metric (every metric of
        METRICS named); None: WARN_PROBABILITY."""
        if open_after < 1 or resolve_after < 1 or max_resolved < 0:
            raise ValueError("open_after and resolve_after must be >= 1, max_resolved >= 0")
        self.warn_probability = _bars(WARN_PROBABILITY if warn_probability is None else warn_probability)
        self.thresholds = thresholds
        self.open_after = int(open_after)
        self.resolve_after = int(resolve_after)
        self.max_resolved = int(max_resolved)
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._resolved: deque[Alert] = deque()
        self._next_id = 1
        self.alerts: tuple[Alert, ...] = ()
        self._last_now: pd.Timestamp | None = None
        self._last_seen: dict[str, str] = {}     # server -> its newest sample at the last update

    def ongoing(self) -> tuple[Alert, ...]:
        """Open alerts, newest first."""
        return tuple(sorted((t.alert for t in self._tracks.values() if t.alert is not None),
                            key=lambda a: -a.id))

    def update(self, servers: Sequence[ServerForecast], now: pd.Timestamp) -> tuple[Alert, ...]:
        """Advance one tick at data time ``now``; returns ongoing + recently resolved alerts, newest first."""
        now = _utc(now)
        if self._last_now is not None and now <= self._last_now:
            # the debounce counts ticks of new data: a redraw at the same time, or an older one
            # (durations would go negative), changes nothing
            return self.alerts
        self._last_now = now
        stamp = _iso(now)
        # A server whose newest sample is the one it had at the last update sent nothing new:
        # its forecast is the same one, so its conditions neither count towards opening or
        # clearing nor refresh a lead (read from the fleet's time, the old crossing would creep
        # to "now").  It is shown as it was until it reports again or goes silent.
        quiet = {s.server_name for s in servers
                 if s.last_seen and self._last_seen.get(s.server_name) == s.last_seen}   # ("": not known)
        self._last_seen = {s.server_name: s.last_seen for s in servers}
        conditions, criticals = self._conditions([s for s in servers if s.server_name not in quiet], now)
        present = {s.server_name for s in servers}
        for key, cond in conditions.items():
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = _Track()
            if track.alert is None:
                track.pending += 1
                if track.pending >= self.open_after:
                    self._open(key, track, cond, now, stamp)
            else:
                track.clear = 0
                self._refresh(track, cond, now, stamp)
        for key in [k for k in self._tracks if k not in conditions]:
            if key[0] in quiet:
                track = self._tracks[key]
                if track.alert is not None:     # open all the while: its duration grows; the rest
                    # (lead, clear_minutes, message) stays as of its last sample, its updated_at
                    track.alert = replace(track.alert, duration_minutes=_minutes(now - track.opened))
                continue
            track = self._tracks[key]
            if track.alert is None:                 # a pending condition broke off
                del self._tracks[key]
                continue
            if key[0] not in present:               # left out as silent (engine.runtime): not recovered
                self._resolve(key, track, now, stamp, "silent")
                continue
            moved = criticals.get(key)
            if moved is not None and track.critical is not None and moved > track.critical:
                # its threshold moved (a load alert raised against the fallback 8 before the
                # server's core count was known): judged against the new one there is no
                # condition, so it was never this alert's to hold open for an hour
                self._resolve(key, track, now, stamp, "threshold",
                              note=f"critical moved from {_num(track.critical)} to {_num(moved)}")
                continue
            if track.clear == 0:
                track.first_clear = now
            track.clear += 1
            # absent for an hour of data time, from the first sample without it to this one
            # (11 steps: the 12th clear sample of a server sampled every 5 min), not for 12
            # ticks: a server sampled every 15 min would hold its alerts 3 h.  The stretch
            # between the last sample with the condition and the first without it is no
            # evidence either way and does not count; later gaps between clear samples do.
            if _minutes(now - track.first_clear) >= (self.resolve_after - 1) * STEP_MINUTES - 1e-9:
                self._resolve(key, track, now, stamp, "cleared")
            else:
                track.alert = replace(track.alert, duration_minutes=_minutes(now - track.opened),
                                      clear_minutes=_minutes(now - track.last_condition))
        self.alerts = tuple(sorted([*(t.alert for t in self._tracks.values() if t.alert is not None),
                                    *self._resolved], key=lambda a: -a.id))
        return self.alerts

    # ------------------------------------------------------------------ transitions

    def _open(self, key: tuple[str, str], track: _Track, cond: _Condition, now: pd.Timestamp, stamp: str) -> None:
        track.alert = Alert(
            id=self._next_id, severity=cond.severity, server_name=key[0], metric=key[1],
            message=cond.message, opened_at=stamp, updated_at=stamp, predicted_crossing=_iso(cond.crossing),
            lead_minutes=cond.minutes, state=ONGOING,
        )
        track.opened = track.last_condition = now
        track.pending = track.clear = 0
        track.critical = cond.critical
        self._next_id += 1

    def _refresh(self, track: _Track, cond: _Condition, now: pd.Timestamp, stamp: str) -> None:
        old = track.alert
        if track.critical is not None and cond.critical != track.critical:
            # judged against a threshold that has moved since (e.g. the load's, once the
            # server's cores are known): the severity is the new judgement's, not the old one's
            severity = cond.severity
            message = f"{cond.message}; critical moved from {_num(track.critical)} to {_num(cond.critical)}"
        else:
            severity = cond.severity if _RANK[cond.severity] > _RANK[old.severity] else old.severity
            # the sticky severity first: a narrow log cuts the end of a message
            message = cond.message if severity == cond.severity else f"{severity} until it resolves: {cond.message}"
        track.last_condition = now
        track.critical = cond.critical
        track.alert = replace(old, severity=severity, message=message, updated_at=stamp,
                              predicted_crossing=_iso(cond.crossing), lead_minutes=cond.minutes,
                              duration_minutes=_minutes(now - track.opened), clear_minutes=0.0)

    def _resolve(self, key: tuple[str, str], track: _Track, now: pd.Timestamp, stamp: str,
                 resolution: str, note: str | None = None) -> None:
        # updated_at stays the last tick with the condition, the one predicted_crossing and the
        # lead were read on; clear_minutes says how long it had been absent
        message = track.alert.message if note is None else f"{track.alert.message}; {note}"
        # a server gone silent sent no sample without the condition: its clear_minutes stay
        # what its last sample said (0 when the condition held to the end), not the silence
        clear = track.alert.clear_minutes if resolution == "silent" else _minutes(now - track.last_condition)
        self._resolved.append(replace(track.alert, state=RESOLVED, resolved_at=stamp, resolution=resolution,
                                      message=message,
                                      duration_minutes=_minutes(now - track.opened),
                                      clear_minutes=clear))
        while len(self._resolved) > self.max_resolved:
            self._resolved.popleft()
        del self._tracks[key]

    # ------------------------------------------------------------------ conditions

    def _conditions(self, servers: Sequence[ServerForecast], now: pd.Timestamp
                    ) -> tuple[dict[tuple[str, str], _Condition], dict[tuple[str, str], float]]:
        """The (server, metric) pairs with a condition this tick, vectorised over the fleet;
        and every pair's critical threshold this tick.  A forecast's minutes count from its
        server's own last sample, which may be older than ``now`` (a collector that posts
        later than the others, a lagging scrape): the crossing is that sample's time + the
        minutes, and the lead what is left of them at ``now``."""
        criticals: dict[tuple[str, str], float] = {}
        keys: list[tuple[str, str]] = []
        forecasts: list[MetricForecast] = []
        crit: list[float] = []
        young: list[bool] = []
        guessed: list[bool] = []      # a load level from the fallback, the core count unknown
        for s in servers:
            for m, f in s.metrics.items():
                c = f.critical if self.thresholds is None else self.thresholds.for_metric(m, s.cores)[1]
                criticals[(s.server_name, m)] = float(c)
                if c == f.critical and f.minutes_to_breach is None:
                    # engine.risk found no crossing of this very threshold by now, p50 or p90
                    # (the same comparisons _evaluate makes): no condition, nothing to stack
                    continue
                keys.append((s.server_name, m))
                forecasts.append(f)
                crit.append(c)
                young.append(s.history_len < MIN_WARN_HISTORY)
                guessed.append(m == "load_average" and not s.cores)
        if not keys:
            return {}, criticals
        lengths = {len(f.p50) for f in forecasts}
        # a bar above 1 is never reached: no p90-only warning for a server under an hour old
        bars = np.where(young, 2.0, [self.warn_probability[k[1]] for k in keys])
        if len(lengths) == 1 and lengths != {0}:
            found = _evaluate(np.stack([f.p50 for f in forecasts]), np.stack([f.p90 for f in forecasts]),
                              np.array([f.current for f in forecasts]), np.array(crit),
                              p10=np.stack([f.p10 for f in forecasts]) if bars.any() else None, warn_probability=bars)
        else:   # ragged horizons: one at a time
            found = []
            for k, (f, c) in enumerate(zip(forecasts, crit, strict=True)):
                for _, severity, basis, minutes in _evaluate(
                        np.asarray(f.p50, dtype=np.float64)[None], np.asarray(f.p90, dtype=np.float64)[None],
                        np.array([f.current]), np.array([c]),
                        p10=np.asarray(f.p10, dtype=np.float64)[None] if bars[k] > 0 else None,
                        warn_probability=float(bars[k])):
                    found.append((k, severity, basis, minutes))
        out = {}
        origins: dict[str, pd.Timestamp] = {}
        by_name = {s.server_name: s for s in servers}
        for k, severity, basis, minutes in found:
            name = keys[k][0]
            if name not in origins:
                seen = by_name[name].last_seen
                try:
                    origins[name] = min(_utc(seen), now) if seen else now
                except ValueError:
                    origins[name] = now
            crossing = origins[name] + pd.Timedelta(minutes=minutes)
            lead = max(0.0, _minutes(crossing - now))
            message = _message(keys[k][1], basis, lead, forecasts[k].current, crit[k])
            if guessed[k]:      # (a 16-core host at load 15 is busy, not critical: say what the 8 is)
                message += " (cores unknown: fallback level)"
            out[keys[k]] = _Condition(severity, lead, message, float(crit[k]), crossing)
        return out, criticals


def _evaluate(p50: np.ndarray, p90: np.ndarray, current: np.ndarray, critical: np.ndarray,
              step_minutes: float = 5.0, p10: np.ndarray | None = None,
              warn_probability: float | np.ndarray = 0.0) -> list[tuple[int, str, str, float]]:
    """(row, severity, basis, minutes) for rows with a condition; basis now|p50|p90
    (minutes to the critical threshold).  With ``warn_probability`` > 0 (and p10), a p90-only
    condition also needs the largest per-step P(reaching critical) in the horizon >=
    warn_probability (one bar, or one per row): engine.risk's ``peak_probability_batch``
    (the lower bound of ``prob_8h``)."""
    p50 = np.nan_to_num(p50, nan=-np.inf)
    p90 = np.nan_to_num(p90, nan=-np.inf)
    already = current >= critical
    hit50 = p50 >= critical[:, None]
    hit90 = p90 >= critical[:, None]
    any50, any90 = hit50.any(axis=1), hit90.any(axis=1)
    rows = np.flatnonzero(already | any50 | any90)
    if not len(rows):
        return []
    first50, first90 = (h[rows].argmax(axis=1) for h in (hit50, hit90))
    likely = np.ones(len(rows), dtype=bool)
    bars = np.broadcast_to(np.asarray(warn_probability, dtype=np.float64), critical.shape)
    if p10 is not None and bars[rows].any():
        q = np.stack([np.nan_to_num(p10, nan=-np.inf)[rows], p50[rows], p90[rows]], axis=-1)
        likely = peak_probability_batch(q, critical[rows], q.shape[1], current[rows]) >= bars[rows]
    out = []
    for k, row in enumerate(rows.tolist()):
        if already[row]:
            out.append((row, CRITICAL, "now", 0.0))
        elif any50[row]:
            out.append((row, CRITICAL, "p50", float((first50[k] + 1) * step_minutes)))
        elif likely[k]:
            out.append((row, WARNING, "p90", float((first90[k] + 1) * step_minutes)))
    return out


def _bars(warn_probability: float | Mapping[str, float]) -> dict[str, float]:
    """The warning bar of every metric, checked: each in [0, 1], every metric named once."""
    from engine.contract import METRICS

    if isinstance(warn_probability, Mapping):
        unknown = sorted(set(warn_probability) - set(METRICS))
        missing = [m for m in METRICS if m not in warn_probability]
        if unknown or missing:
            raise ValueError(f"warn_probability must name each of {list(METRICS)}: "
                             f"{'unknown ' + ', '.join(unknown) if unknown else 'missing ' + ', '.join(missing)}")
        bars = {m: float(warn_probability[m]) for m in METRICS}
    else:
        bars = dict.fromkeys(METRICS, float(warn_probability))
    if not all(0.0 <= b <= 1.0 for b in bars.values()):
        raise ValueError("warn_probability must lie in [0, 1]")
    return bars


def _message(metric: str, basis: str, minutes: float, current: float, critical: float) -> str:
    if basis == "now":
        return f"{metric} at {_num(current)}, at or above critical {_num(critical)}"
    # (minutes 0 with a forecast basis: the crossing its server's last sample forecast is due by
    # now, and no newer sample has come to say whether it came)
    when = f"in {_in(minutes)}" if minutes > 0 else "by now"
    if basis == "p50":
        return f"{metric} expected to reach {_num(critical)} {when} (p50)"
    return f"{metric} may reach {_num(critical)} {when} (p90)"


def _in(minutes: float) -> str:
    """55 -> "55 min", 340 -> "5h40m" (as the app's lead column writes it)."""
    m = int(round(minutes))
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{_num(minutes)} min"


def _minutes(delta: pd.Timedelta) -> float:
    return delta.total_seconds() / 60.0


def _num(x: float) -> str:
    """95.0 -> "95", 12.5 -> "12.5", 3.14159 -> "3.14"."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat().replace("+00:00", "Z")
