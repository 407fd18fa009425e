"""The engine side of the app: one daemon thread owns the engine, a thread worker paces it.

Nothing here is imported by the engine, and nothing here imports the engine at module
level (pandas and torch take seconds): the default factory imports it inside the worker.

* ``EngineThread`` runs every engine call (construct, start, tick, seek_back, history)
  on one daemon thread, one at a time.
* ``EngineLoop.run`` runs inside the app's ``@work(thread=True)`` worker: it submits calls
  to the engine thread and waits for them in short slices, checking
  ``worker.is_cancelled`` between slices, so ``q`` quits at once even while torch is still
  importing or a forecast is running (the abandoned call finishes on the daemon thread,
  which never holds up the exit).
* ``Controls`` is what the UI thread changes (pause, speed, watched server, commands).
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.messages import EngineFailed, EngineNotice, EngineStatus, History, HistoryReady, SnapshotReady

POLL_S = 0.05        # how often a waiting worker looks at is_cancelled
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

EngineFactory = Callable[[], Any]


class Cancelled(Exception):
    """The worker was cancelled (the app is quitting)."""


class EngineThread:
    """A daemon thread that runs engine calls one at a time."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name="tft-top-engine", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            self.busy = True
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting worker
                fut.set_exception(exc)
            finally:
                self.busy = False

    def submit(self, fn: Callable, *args) -> Future:
        fut: Future = Future()
        self._q.put((fn, args, fut))
        return fut

    def close(self) -> None:
        self._q.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


@dataclass
class Controls:
    """Shared between the UI thread (writes) and the engine worker (reads)."""

    speed: float = 1.0
    paused: bool = False
    watched: str | None = None               # the drill-down's server
    latest_seq: int = 0
    commands: queue.Queue = field(default_factory=queue.Queue)   # "step_forward" | "step_back" | ("history", name)


def _is_input_error(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the input (engine.contract.DataError: a bad row, a bad split
    file), as opposed to a crash or a failure at run time."""
    from engine.contract import DataError      # (imported once the engine is, by the factory)

    return isinstance(exc, DataError)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    known = {"DataError", "ModelLoadError"}
    if type(exc).__name__ in known and msg:
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class EngineLoop:
    """Drives the engine from the worker thread and posts typed messages to ``post``."""

    def __init__(self, factory: EngineFactory, controls: Controls, post: Callable[[Any], Any],
                 engine_thread: EngineThread, is_cancelled: Callable[[], bool]):
        self.factory = factory
        self.controls = controls
        self.post = post
        self.thread = engine_thread
        self.is_cancelled = is_cancelled
        self.engine: Any = None
        self.seq = 0
        self.finished = False

    # -- helpers ---------------------------------------------------------------------
    def call(self, fn: Callable, *args):
        fut = self.thread.submit(fn, *args)
        while True:
            if self.is_cancelled():
                fut.cancel()
                raise Cancelled
            try:
                return fut.result(timeout=POLL_S)
            except FutureTimeout:
                continue

    def publish(self, snap, note: str | None = None) -> None:
        self.seq += 1
        self.controls.latest_seq = self.seq
        self.finished = bool(snap.metadata.get("finished", False))
        history = self.history(self.controls.watched)
        if self.is_cancelled():
            raise Cancelled
        self.post(SnapshotReady(snap, self.seq, history, note))

    def history(self, name: str | None) -> History | None:
        if not name:
            return None
        try:
            epochs, values = self.call(self.engine.history, name)
        except Cancelled:
            raise
        except Exception:  # noqa: BLE001 - an unknown server simply has no history
            return None
        return History(name, epochs, values)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - shown in the header, printed on exit
            if not self.is_cancelled():
                self.post(EngineFailed(one_line(exc), refused=self.seq == 0 and _is_input_error(exc)))

    def _run(self) -> None:
        c = self.controls
        self.post(EngineStatus("reading data…"))
        self.engine = self.call(self.factory)
        remote = getattr(self.engine, "url", None)      # a daemon (--connect) loads no model here
        self.post(EngineStatus(f"connecting to {remote}…" if remote else "importing torch, loading the model…"))
        self.call(self.engine.start)
        self.post(EngineStatus("first forecast…"))
        # a replay plays the tick before its start too, so that the first frame has its alerts
        warm_up = getattr(self.engine, "warm_up", None)
        first = self.call(warm_up) if warm_up is not None else None
        self.publish(first if first is not None else self.call(self.engine.tick, False))
        last_tick = time.monotonic()
        while True:
            if self.is_cancelled():
                raise Cancelled
            due = last_tick + 1.0 / max(c.speed, 1e-3)
            now = time.monotonic()
            running = not c.paused and not self.finished
            wait = POLL_S if not running else min(POLL_S, max(due - now, 0.0))
            try:
                cmd = c.commands.get(timeout=wait) if wait > 0 else c.commands.get_nowait()
            except queue.Empty:
                cmd = None
            if cmd is not None:
                self.handle(cmd)
                continue
            if running and time.monotonic() >= due:
                last_tick = time.monotonic()
                self.publish(self.call(self.engine.tick, True))

    def handle(self, cmd) -> None:
        if cmd == "step_forward":
            if self.finished:
                self.post(EngineNotice("the replay has finished: nothing to step forward to", "warning"))
                return
            self.publish(self.call(self.engine.tick, True), note="stepped forward")
        elif cmd == "step_back":
            source = getattr(self.engine, "source", None)
            if source is None or not getattr(source, "can_seek", False):
                self.post(EngineNotice("a live source cannot step back", "warning"))
                return
            self.publish(self.call(self.engine.seek_back, 1), note="stepped back")
        elif isinstance(cmd, tuple) and cmd[0] == "history":
            h = self.history(cmd[1])
            if h is not None:
                self.post(HistoryReady(h))


def next_speed(speed: float, faster: bool) -> float:
    if faster:
        bigger = [s for s in SPEEDS if s > speed + 1e-9]
        return bigger[0] if bigger else speed
    smaller = [s for s in SPEEDS if s < speed - 1e-9]
    return smaller[-1] if smaller else speed


def make_engine_factory(model: Path | None = None, replay: Path | None = None, simulate: int | None = None,
                        device: str = "auto", seed: int = 0, models_root: Path = Path("models"),
                        source_factory: Callable[[], Any] | None = None, thresholds=None) -> EngineFactory:
    """The real engine, built inside the worker (imports pandas / torch there, not at app start)."""

    def factory():
        from engine.runtime import Engine
        from engine.sources import ReplaySource, SimulatorSource

        if simulate:
            source = SimulatorSource(int(simulate), seed=seed)
        elif source_factory is not None:
            source = source_factory()
        else:
            source = ReplaySource(Path(replay) if replay is not None else Path("demo_data"))
        model_dir = model
        if model_dir is None:
            from engine.tft_model import find_latest_model

            model_dir = find_latest_model(models_root)
        from engine.thresholds import DEFAULT_THRESHOLDS

        return Engine(source, model_dir, device=device, thresholds=thresholds or DEFAULT_THRESHOLDS)

    return factory
