"""The engine loop: source -> window store -> forecaster -> risk -> alerts -> snapshot.

One ``Engine`` drives one fleet.  ``start()`` loads the model (slow: torch) and the
source's history; each ``tick()`` takes one step of new samples and returns a fresh
immutable ``Snapshot``.  The TUI calls it from a worker thread, the daemon from its
loop, ``tft-top predict`` once.
"""
from __future__ import annotations

import copy
import functools
import gc
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.alerts import OPEN_AFTER, AlertManager
from engine.contract import MAX_FILL_STEPS, METRICS, STEP_SECONDS
from engine.forecaster import Forecaster
from engine.risk import build_fleet, environment
from engine.snapshot import Snapshot
from engine.sources import Source, Tick
from engine.store import WindowStore
from engine.thresholds import DEFAULT_THRESHOLDS, Thresholds, describe_thresholds

HISTORY_STEPS = 288  # the drill-down shows the last 24 h
ALERT_STATES_KEPT = 64       # replay positions whose alert state is kept, so stepping back keeps the log
STALE_EXAMPLES = 10          # stale servers named in a snapshot's metadata (all are counted)
STALE_AFTER_SECONDS = (MAX_FILL_STEPS + 1) * STEP_SECONDS   # silent longer than this: left out
# silent longer than this: forgotten, history and all (checked every forecast); a
# fleet whose host names churn would otherwise grow without bound
FORGET_AFTER_SECONDS = 24 * 3600


def _changed_thresholds(t: Thresholds) -> str | None:
    default = set(describe_thresholds(DEFAULT_THRESHOLDS).split(","))
    changed = [p for p in describe_thresholds(t).split(",") if p not in default]
    return ",".join(changed) or None


def iso(epoch_seconds: int | float) -> str:
    return _iso(int(epoch_seconds))


@functools.lru_cache(maxsize=4096)
def _iso(epoch_seconds: int) -> str:
    # (cached: a 1,000-server tick formats the same few times 1,000 times; 6 ms uncached)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


_collector_quieted = False


def quiet_collector(gen0_threshold: int = 10_000) -> None:
    """Keep the cyclic garbage collector from rescanning the process every tick.

    Everything alive once the first engine has started (imported libraries, the model, the
    store) lives as long as the process: ``gc.freeze`` takes it out of the collector's scans.  A
    tick then makes ~8 objects per server (forecasts, snapshot), none in reference cycles
    (refcounting frees them); at the default threshold (700 allocations) those set off
    hundreds of collections per tick, full ones included.  Measured at 10,000 servers
    (risk + alerts + snapshot): 0.78 s per tick as it was, 0.47 s frozen, 0.30 s frozen with
    a first-generation threshold of 10,000 (0.27 s with no collector at all).  Only raises
    the threshold, never lowers one set higher.
    """
    global _collector_quieted
    if not _collector_quieted:      # once per process: collect first, so no garbage is frozen
        gc.collect()
        gc.freeze()
        _collector_quieted = True
    t0, t1, t2 = gc.get_threshold()
    if 0 < t0 < gen0_threshold:
        gc.set_threshold(gen0_threshold, t1, t2)


class Engine:
    def __init__(self, source: Source, model_dir: Path | str | None, device: str = "auto",
                 thresholds: Thresholds = DEFAULT_THRESHOLDS, batch_size: int | None = None):
        self.source = source
        self.forecaster = Forecaster(model_dir, device=device, batch_size=batch_size)
        self.thresholds = thresholds
        # (fixed for the engine's life: described once, not on every tick)
        self._thresholds_meta = {"thresholds": describe_thresholds(thresholds),   # --thresholds' syntax
                                 "thresholds_changed": _changed_thresholds(thresholds)}  # pairs not at their default
        self.store = WindowStore(capacity=HISTORY_STEPS)
        self.alerts = AlertManager(thresholds)
        self.problems: list[str] = []       # refused records, newest last (capped)
        self.problems_noted = 0                # problem lines ever noted (the list above keeps 200)
        self.finished = False
        self.started = False
        self.last_snapshot: Snapshot | None = None
        # replay position -> alert state after the forecast at that position
        self._alert_states: OrderedDict[int, AlertManager] = OrderedDict()
        self._alerts_since: str | None = None    # the alert log starts here (None: with the replay)
        self._alerts_restarted = False           # set by a long step back: the next forecast's time
        self._alerted_epoch = -1   # data time of the last alert update
        self.last_problem_at: float | None = None    # wall clock of the newest problem
        self._cores_seen: dict[str, int] = {}
        self._source_names: set[str] = set()   # servers the source has sent samples for
        self.forgotten = 0                  # servers forgotten after a day of silence
        self._backfill: pd.DataFrame | None = None   # a live source's history, until warm_up or a tick
        self._forecast_key: tuple | None = None    # (store version, fleet clock) of the last forecast

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.forecaster.load()
        self._reset_store()
        self.started = True
        quiet_collector()

    def warm_up(self, steps: int = OPEN_AFTER - 1) -> Snapshot | None:
        """Play the ``steps`` ticks before the start, so that the first frame shows the alerts
        a running engine would (they open after OPEN_AFTER ticks of new data: without it a
        server already at critical had no alert on the first frame, and a live fleet showed
        none until its next sample, 5 minutes on).  A replay starts ``steps`` ticks earlier;
        a live source with history (Prometheus, the simulator) replays the last ``steps``
        5-minute steps of the history it gave at the start.  Call it right after ``start()``.
        Returns the last snapshot, or None when there is nothing to play (a source with no
        history: it waits for its data)."""
        if not self.started or steps <= 0:
            return None
        if not self.source.can_seek:
            return self._warm_up_from_backfill(steps)
        position = getattr(self.source, "position", None)
        if position is None:
            return None
        target = max(position - steps, 1)
        if target >= position:
            return None
        # the log starts with the warm-up: an alert already open then shows as opened at its
        # first tick, which the log's "since" says (as predict's does)
        self._alerts_restarted = True
        return self._play(target, position)

    def _play(self, start: int, end: int, t0: float | None = None) -> Snapshot:
        """Replay only: rebuild the store at position ``start`` and play on to ``end``."""
        self.source.position = start  # type: ignore[attr-defined]
        self.finished = False
        self._reset_store()
        snap = self.forecast(t0)
        while self.source.position < end and not self.finished:  # type: ignore[attr-defined]
            snap = self.tick()
        return snap

    def _warm_up_from_backfill(self, steps: int) -> Snapshot | None:
        frame, self._backfill = self._backfill, None
        if frame is None or not len(frame) or self.last_snapshot is not None:
            return None
        stamps = frame["timestamp"]
        newest = stamps.max()
        cuts = [newest - pd.Timedelta(seconds=STEP_SECONDS * k) for k in range(steps, 0, -1)] + [newest]
        if not (stamps <= cuts[0]).any():
            return None             # the history is shorter than the warm-up
        # the same store as start() built, step by step (its refusals were noted then)
        self._new_store(self.store.capacity)
        self._alerts_restarted = True           # the log starts with the warm-up (see warm_up)
        self.store.extend_frame(frame[stamps <= cuts[0]])
        snap = self.forecast()
        for lo, hi in zip(cuts, cuts[1:]):
            self.store.extend_frame(frame[(stamps > lo) & (stamps <= hi)])
            snap = self.forecast()
        return snap

    def _new_store(self, capacity: int) -> None:
        self.store = WindowStore(capacity=capacity)
        self.forgotten = 0          # of this store: a step back rebuilds it and forgets again
        for name, cores in self.source.cores.items():
            self.store.set_cores(name, cores)
        self._cores_seen = dict(self.source.cores)

    def _reset_store(self) -> None:
        capacity = max(HISTORY_STEPS, getattr(self.forecaster, "capacity", HISTORY_STEPS))
        if not getattr(self.forecaster, "loaded", True):
            # the heuristic serves the whole fleet: keep what its yesterday's profile reads (two days)
            from engine.heuristic import HISTORY_WIDTH

            capacity = max(capacity, HISTORY_WIDTH)
        want_history = getattr(self.source, "want_history", None)
        if want_history is not None:        # the model's whole history, where the source has it
            want_history(capacity)
        self._new_store(capacity)
        frame = self.source.backfill()
        # a live source's history, kept for warm_up() until the first tick
        self._backfill = None if self.source.can_seek else frame
        self._learn_names(frame)
        self._note(self.store.extend_frame(frame))

    def _note(self, problems: list[str]) -> None:
        if problems:
            # one line each, of a readable length (an HTTP error page can be kilobytes of lines)
            lines = [_one_line(p) for p in problems]
            self.problems = (self.problems + lines)[-200:]
            self.problems_noted += len(lines)
            self.last_problem_at = time.time()

    def _learn_names(self, frame: pd.DataFrame) -> None:
        if len(frame):
            self._source_names.update(frame["server_name"].unique().tolist())

    def fed_by_source(self, name: str) -> bool:
        """Whether the source sends samples for server ``name`` (a replay and the simulator
        know their servers; a live source, those it has sent so far)."""
        return name in self._source_names or self.source.feeds(name)

    def ingest(self, tick: Tick) -> None:
        self._note(tick.problems)
        self._learn_names(tick.frame)
        self._sync_cores()
        self._note(self.store.extend_frame(tick.frame) if len(tick.frame) else [])
        self.finished = tick.finished

    def _sync_cores(self) -> None:
        """Core counts a live source learns after the start (a new instance, a retried query)."""
        cores = getattr(self.source, "cores", None) or {}
        if cores != self._cores_seen:            # (a dict compare: ~50 us for 1,000 servers)
            for name, n in cores.items():
                if self._cores_seen.get(name) != n:
                    self.store.set_cores(name, n)
            self._cores_seen = dict(cores)

    def tick(self, advance: bool = True) -> Snapshot:
        """Take one step of new samples (unless ``advance`` is False) and forecast."""
        t0 = time.perf_counter()
        self._backfill = None
        if advance and not self.finished:
            polled = self.source.poll()
            self.ingest(polled)
            if self._unchanged(polled):
                return self._refreshed(self.last_snapshot)
        return self.forecast(t0)

    def _unchanged(self, polled: Tick) -> bool:
        """A live source polled between its samples (this host every 5 minutes, Prometheus at
        each 5-minute step; the app polls every second): nothing new, so the last forecast
        stands.  (Forecasting again made a 1,000-server fleet cost half a core all the time.)"""
        return (self.last_snapshot is not None and not self.source.can_seek and not len(polled.frame)
                and not polled.problems and not polled.finished
                and self._forecast_key == (self.store.version, self.fleet_clock()))

    def _refreshed(self, snap: Snapshot) -> Snapshot:
        """The last snapshot with the source's state as it is now (a countdown, a retry)."""
        meta = {**snap.metadata, "source_status": _status_line(self.source),
                "generated_at": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.last_snapshot = replace(snap, metadata=meta)
        return self.last_snapshot

    def seek_back(self, steps: int = 1) -> Snapshot:
        """Replay only: go back ``steps`` ticks (the store and alerts are rebuilt)."""
        if not self.source.can_seek:
            raise ValueError("this source cannot step back")
        t0 = time.perf_counter()
        target = max(self.source.position - steps, 1)  # type: ignore[attr-defined]
        # the alert state as it was just before the forecast at the target position
        before = self._alert_states.get(target - 1)
        self._alerted_epoch = -1
        for pos in [p for p in self._alert_states if p >= target]:
            del self._alert_states[pos]
        if before is not None:
            self.alerts = copy.deepcopy(before)
            return self._play(target, target, t0)
        # further back than the states kept: the log starts again here, and says so; ids go
        # on from the newest given (an id never names two alerts).  Warmed up as at the start:
        # a server critical there has its alert, not an empty log while it burns.
        fresh = AlertManager(self.thresholds)
        fresh._next_id = self.alerts._next_id          # noqa: SLF001
        self.alerts = fresh
        self._alerts_restarted = True                  # its data time: set by the next forecast
        return self._play(max(target - (OPEN_AFTER - 1), 1), target, t0)

    def _alerts_since_now(self, data_time: str | None) -> str | None:
        if self._alerts_restarted:
            self._alerts_since, self._alerts_restarted = data_time, False
        return self._alerts_since

    # -- forecasting ---------------------------------------------------------------
    def fleet_clock(self, newest: int | None = None) -> int | None:
        """The fleet's time, epoch s: its newest sample (``newest``, or the store's), or for a
        live source the wall clock on the 5-minute grid when that is later."""
        newest = self.store.newest_epoch() if newest is None else newest
        wall = getattr(self.source, "wall_time", lambda: None)()
        if newest is None or wall is None:
            return newest
        return max(newest, int(wall) // STEP_SECONDS * STEP_SECONDS)

    # -- forecasting ---------------------------------------------------------------
    def forecast(self, t0: float | None = None) -> Snapshot:
        t0 = time.perf_counter() if t0 is None else t0
        newest = self.store.newest_epoch()
        if newest is not None:       # (one numpy compare over the fleet; a copy only when one goes)
            self.forgotten += len(self.store.forget(newest - FORGET_AFTER_SECONDS))
        # A server silent for longer than a fillable gap is stale: its forecast would
        # start in the past, so it leaves the snapshot (its alerts resolve) until it reports.
        # The fleet's time is its newest sample, or for a live source the wall clock, when
        # later: a feed that stops altogether leaves every server silent, not a frozen
        # snapshot that reads as current.
        clock = self.fleet_clock(newest)
        self._forecast_key = (self.store.version, clock)
        fresh_after = None if clock is None else clock - STALE_AFTER_SECONDS
        windows = self.store.windows(fresh_after=fresh_after)
        stale = [] if fresh_after is None else self.store.stale(fresh_after)
        fc = self.forecaster.forecast(windows, with_importance=True)
        current = windows.values[:, -1, :].astype(np.float64)
        servers = build_fleet(
            names=windows.names, profiles=windows.profiles, cores=windows.cores, quantiles=fc.stacked(), copy=False,
            current=current, thresholds=self.thresholds, source=fc.source, reason=fc.reason,
            importance=fc.importance, last_seen=[iso(e) for e in windows.last_epoch],
            history_len=[int(x) for x in windows.lengths],
        )
        # the data's time: the newest fresh sample (the server holding the store's newest sample
        # is always fresh, so this is None only while the store is empty: then no alert update)
        now_epoch = int(windows.last_epoch.max()) if len(windows.names) else newest
        # alerts advance with the data; with every server silent by the wall clock, with it
        # (their alerts then close as silent)
        alert_epoch = now_epoch if len(windows.names) or clock is None else clock
        if alert_epoch is None:
            alerts = self.alerts.alerts
        elif alert_epoch > self._alerted_epoch:   # debounce counts new data, not redraws
            now = pd.Timestamp(alert_epoch, unit="s", tz="UTC")
            alerts = self.alerts.update(servers, now)
            self._alerted_epoch = alert_epoch
        else:
            alerts = self.alerts.alerts
        position = getattr(self.source, "position", None)
        if self.source.can_seek and position is not None:
            self._alert_states[position] = copy.deepcopy(self.alerts)
            while len(self._alert_states) > ALERT_STATES_KEPT:
                self._alert_states.popitem(last=False)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        n_tft = sum(1 for s in fc.source if s == "tft")
        snap = Snapshot(
            data_time=None if now_epoch is None else iso(now_epoch),
            servers=tuple(servers),
            alerts=tuple(alerts),
            environment=environment(servers),
            metadata={
                "model_type": fc.model_type if len(windows.names) else ("TFT" if self.forecaster.loaded else "heuristic"),
                "model_dir": None if self.forecaster.model_dir is None else str(self.forecaster.model_dir),
                "model_loaded": self.forecaster.loaded,
                # False: the model's config.json has no band calibration, its p10-p90 are the raw
                # network's (the badge says so); None without a model
                "bands_calibrated": self.forecaster.calibrated if self.forecaster.loaded else None,
                "bands_uncalibrated": list(self.forecaster.uncalibrated) if self.forecaster.loaded else [],
                "model_reason": self.forecaster.model_reason or _run_time_failure(fc.reason),
                "heuristic_why": fallback_why(fc.reason),
                "device": self.forecaster.device,
                "servers_on_tft": n_tft,
                "servers_on_heuristic": len(fc.source) - n_tft,
                "horizon_steps": self.forecaster.horizon,
                "step_seconds": STEP_SECONDS,
                "quantiles": list(self.forecaster.quantiles),
                **self._thresholds_meta,
                "alerts_since": self._alerts_since_now(None if now_epoch is None else iso(now_epoch)),
                "tick_latency_ms": round(latency_ms, 1),
                "generated_at": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": self.source.name,
                "finished": self.finished,
                "problems_total": self.problems_noted,
                "refused_records": self.problems_noted,      # its old name, for clients of before 2026-11-29
                "last_problem": self.problems[-1] if self.problems else None,
                "last_problem_at": None if self.last_problem_at is None else
                pd.Timestamp(self.last_problem_at, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source_status": _status_line(self.source),
                "stale_servers": len(stale),
                "forgotten_servers": self.forgotten,     # silent a day: dropped, history and all
                "stale_after_minutes": STALE_AFTER_SECONDS / 60,   # silent longer than this: left out
                # a few of them, the most recently seen first, with their newest sample's time
                "stale_examples": [{"server": name, "last_seen": iso(e)} for name, e in stale[:STALE_EXAMPLES]],
            },
        )
        self.last_snapshot = snap
        return snap

    def history(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The server's last 24 h (HISTORY_STEPS) in its window: epoch seconds and per-metric
        values, oldest first.  (A model that reads the same time yesterday keeps 48 h.)"""
        w = self.store.windows([name])
        n = min(int(w.lengths[0]), HISTORY_STEPS)
        epochs = w.last_epoch[0] - STEP_SECONDS * np.arange(n - 1, -1, -1)
        values = w.values[0, w.values.shape[1] - n:]          # the valid part (empty when n == 0)
        return epochs, {m: values[:, j].astype(np.float64) for j, m in enumerate(METRICS)}


def fallback_why(reasons) -> str | None:
    """Why the servers on the heuristic are there, in a few words for a badge: "short history"
    when every one is too young for the model, the one reason they share, else "several
    reasons" (each server's own is in its drill-down and the JSON)."""
    given = [r for r in reasons if r]
    if not given:
        return None
    if all(r.startswith("history ") for r in given):
        return "short history"
    distinct = set(given)
    return distinct.pop() if len(distinct) == 1 else "several reasons"


def _run_time_failure(reasons) -> str | None:
    """A model that loaded but failed at run time: the commonest failure among the servers'
    reasons (the badge and /status say why, not only each server)."""
    from collections import Counter

    from engine.heuristic import REASON_MODEL_ERROR

    failed = Counter(r for r in reasons if r and r.startswith(REASON_MODEL_ERROR))
    return failed.most_common(1)[0][0] if failed else None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _status_line(source) -> str | None:
    """A live source's own one-line state ("prometheus STALE: … · retry in 20 s"), if it has one."""
    status = getattr(source, "status_line", None)
    if status is None:
        return None
    try:
        return _one_line(status())
    except Exception:  # noqa: BLE001 - a status line must never stop a tick
        return None


WARMUP_STEPS = 12  # predict replays the hour before --at so that debounced alerts can open


def predict_at(data: Path | str, model_dir: Path | str | None, at: pd.Timestamp | None = None,
               device: str = "auto", warmup_steps: int = WARMUP_STEPS,
               thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Snapshot:
    """The snapshot as of ``at`` (default: the data's last sample), for `tft-top predict`."""
    from engine.sources import ReplaySource

    from engine.contract import DataError

    if at is not None and pd.isna(at):
        raise DataError("--at: not a time")
    try:
        # (cut at ``at`` itself: a sample stamped 03:14 belongs to the 03:10 step, but is not
        # known as of 03:10:00)
        source = ReplaySource(data, until=at)
    except DataError as exc:
        raise DataError(f"--at {exc}" if at is not None and "outside the data" in str(exc) else str(exc)) from None
    if at is not None and at > source.data_last.floor(f"{STEP_SECONDS}s") + pd.Timedelta(seconds=STEP_SECONDS):
        raise DataError(f"--at {at:%Y-%m-%dT%H:%M:%SZ} is outside the data ({source.data_first:%Y-%m-%dT%H:%MZ} .. "
                        f"{source.data_last:%Y-%m-%dT%H:%MZ})")
    end = source.last if at is None else min(at.floor(f"{STEP_SECONDS}s"), source.last)
    since = end - pd.Timedelta(seconds=STEP_SECONDS * (warmup_steps - 1))
    source.seek(since)
    engine = Engine(source, model_dir, device=device, thresholds=thresholds)
    engine.start()
    snap = engine.tick(advance=False)
    while source.next_time is not None and source.next_time <= end:
        snap = engine.tick()
    # the alert log covers only the replayed hour: an alert open for longer shows as opened in
    # it, and older resolved ones are absent; say where that history starts
    first = max(since, source.first)
    meta = {**snap.metadata, "alerts_since": f"{first:%Y-%m-%dT%H:%M:%SZ}"}
    if at is not None:
        meta["requested_at"] = f"{at:%Y-%m-%dT%H:%M:%SZ}"
        newest = source.newest_sample
        if at - newest > pd.Timedelta(seconds=STEP_SECONDS):
            # --at inside a silence of the whole fleet: the forecast is as of its newest data
            # before it, and must say so rather than pass for the time asked (judged by the
            # sample's own time: samples at :02 and :07 asked at :06 are not a silence)
            meta["newest_before_requested"] = f"{newest:%Y-%m-%dT%H:%M:%SZ}"
    if snap.data_time is not None:
        # every server of the data that the snapshot leaves out: stale in the store, or silent
        # since before the day the replay loaded (a single row far ahead makes the rest so)
        grid = source.grid
        last = grid.loc[grid["timestamp"] <= pd.Timestamp(snap.data_time), ["server_name", "timestamp"]] \
            .groupby("server_name", sort=False)["timestamp"].max()
        left = last[~last.index.isin({s.server_name for s in snap.servers})]
        left = left.sort_values(ascending=False, kind="stable")       # the most recently seen first
        # silent a day: forgotten, as the app and the daemon forget it (it read as stale here)
        old = left < pd.Timestamp(snap.data_time) - pd.Timedelta(seconds=FORGET_AFTER_SECONDS)
        for kind, part in (("stale", left[~old]), ("forgotten", left[old])):
            meta[f"{kind}_servers"] = len(part)
            meta[f"{kind}_examples"] = [{"server": str(name), "last_seen": f"{t:%Y-%m-%dT%H:%M:%SZ}"}
                                        for name, t in part.iloc[:STALE_EXAMPLES].items()]
    return replace(snap, metadata=meta)
