"""`tft-top serve`: the engine behind a small REST + WebSocket API (FastAPI on uvicorn).

One :class:`Daemon` owns one :class:`~engine.runtime.Engine`.  The engine ticks on a
background thread (never on the event loop) under ``Daemon.lock``; after each tick the
new immutable :class:`~engine.snapshot.Snapshot` is serialised once (JSON, and gzip for
clients that accept it) and handed to the request handlers and WebSocket clients, which
only ever read that published copy.

Routes (all JSON; every route but ``/health`` needs the API key when one is set)::

    GET  /health                      {"status": "ok"}
    GET  /status                      model, device, servers, tick latency, uptime, source, ...
    GET  /predictions/current         the snapshot (Snapshot.to_json(), plus _meta.importance)
    GET  /alerts/active               the ongoing alerts
    GET  /servers/{name}              one server's forecast and its alerts (404 when unknown)
    GET  /servers/{name}/history      the server's last 24 h from the window store
    POST /metrics                     records in the data contract (a list, or {"records": [...]})
    WS   /ws/predictions              the snapshot on connect, then one per tick
    GET  /docs, /openapi.json         FastAPI's docs

Safe by default: it listens on 127.0.0.1; on any other address it refuses to start
without an API key (``--api-key`` or ``$TFT_TOP_API_KEY``).  A key, once set, is
required on every route but /health (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``),
whatever the address.  On loopback it answers only to loopback Host names (no DNS
rebinding), and POST /metrics takes only ``Content-Type: application/json`` (which a web
page cannot send cross-site without a CORS preflight, which is never granted).  Request
bodies are capped (413), and errors never carry a traceback to the client.

POSTed records are validated by :func:`engine.contract.validate_records` (as files are);
the good ones go into the engine's window store at once, whatever else the request held,
and are forecast at the next tick.  A POST-fed fleet (no replay, no simulator) ticks only
when records came in since the last tick, so alert debouncing counts data, not idle time.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from engine.contract import METRICS, STEP_SECONDS, UNKNOWN_PROFILE, LoadResult, validate_records
from engine.runtime import FORGET_AFTER_SECONDS, STALE_AFTER_SECONDS, Engine, iso
from engine.forecaster import default_torch_threads
from engine.live import DEFAULT_SELECTOR
from engine.snapshot import Snapshot
from engine.sources import MAX_SIMULATED, Source, Tick
from engine.thresholds import DEFAULT_THRESHOLDS

log = logging.getLogger("tft_top.daemon")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_PUSH_INTERVAL_S = 5.0        # a POST-fed fleet forecasts at most this often
PUSH_IDLE_TICK_S = 60.0              # ... and at least this often, records or not (its clock moves)
MAX_BODY_BYTES = 1_000_000           # request bodies over this are refused with 413
API_KEY_ENV = "TFT_TOP_API_KEY"
POST_SOURCE = "POST /metrics"        # how refused records name where they came from
# A POSTed sample may be at most this far ahead of the daemon's clock (the wall clock for a
# POST-fed fleet, the newest sample for a replay or simulator): the fleet's time is its newest
# sample, so one sample from the future would make every other server stale.
MAX_AHEAD_SECONDS = 600
# servers a daemon holds at most: POSTed records of a new server beyond it are refused (the bound
# of --simulate, twice the largest fleet measured)
MAX_POSTED_SERVERS = MAX_SIMULATED
# the only routes that never need the key: liveness, and the API's own documentation (no fleet
# data; a browser cannot send the key for the page's own fetch of /openapi.json).  With a key,
# the schema declares it (X-API-Key or a bearer token): the docs' "Authorize" button takes it.
# Swagger UI's scripts come from a CDN (cdn.jsdelivr.net): on a network without it the page is
# blank, and /openapi.json is the API's description.
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
_GZIP_LEVEL = 5


class DaemonError(Exception):
    """The daemon cannot start as asked; the message is one line the user can act on."""


# ----------------------------------------------------------------------------- options


def api_key_from_env(explicit: str | None = None) -> str | None:
    """``explicit`` when given, else ``$TFT_TOP_API_KEY``; empty means none."""
    key = explicit if explicit is not None else os.environ.get(API_KEY_ENV)
    return key or None


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse (DaemonError) to listen beyond this machine without an API key."""
    if api_key is not None and (not api_key.strip() or any(c.isspace() for c in api_key)):
        raise DaemonError("the API key must be non-empty and must not contain spaces")
    if api_key is not None and not api_key.isascii():
        # HTTP headers arrive as bytes (read as latin-1): a non-ASCII key could never match
        raise DaemonError("the API key must be ASCII (HTTP headers cannot carry other characters reliably)")
    if not is_loopback(host) and not api_key:
        raise DaemonError(f"refusing to listen on {host} without an API key: pass --api-key KEY or set "
                          f"{API_KEY_ENV} (or listen on 127.0.0.1)")


def tick_interval(push: bool, speed: float = 1.0, interval: float | None = None, live: bool = False) -> float:
    """Seconds between ticks: ``interval`` if given; else 1/speed (replay, simulator) or 5 s
    (a POST-fed fleet; ``live``: a wall-clock source such as Prometheus, polled that often
    and forecast when a new 5-minute step has come)."""
    if interval is not None:
        if not (0 < interval <= MAX_TICK_INTERVAL_S):
            raise DaemonError(f"--interval must be a number of seconds > 0 and at most {MAX_TICK_INTERVAL_S:,} (a day)")
        return float(interval)
    if push or live:
        return DEFAULT_PUSH_INTERVAL_S
    if not (speed > 0 and math.isfinite(speed)) or 1.0 / speed > MAX_TICK_INTERVAL_S:
        raise DaemonError(f"--speed must be > 0, at least one tick a day (1/{MAX_TICK_INTERVAL_S:,})")
    return 1.0 / float(speed)


# (a longer wait overflowed the tick thread's timer: it died and the daemon kept saying "ok")
MAX_TICK_INTERVAL_S = 86_400


class PushSource(Source):
    """A fleet fed only by ``POST /metrics``: no history, nothing to poll."""

    name = POST_SOURCE
    can_seek = False

    def __init__(self) -> None:
        self.cores: dict[str, int] = {}

    def wall_time(self) -> float:
        return time.time()

    def backfill(self) -> pd.DataFrame:
        return validate_records([], self.name).frame   # the canonical empty frame

    def poll(self) -> Tick:
        return Tick(self.backfill())


def make_source(replay: Path | str | None = None, simulate: int | None = None, seed: int = 0,
                prometheus: str | None = None, selector: str = DEFAULT_SELECTOR) -> Source:
    """The daemon's source: a replay, a simulator, a Prometheus, or (none) a POST-fed fleet.

    Raises DaemonError for bad options and engine.contract.DataError for unusable data.
    """
    from engine.sources import ReplaySource, SimulatorSource

    chosen = [name for name, on in (("--replay", replay is not None), ("--simulate", simulate is not None),
                                    ("--prometheus", prometheus is not None)) if on]
    if len(chosen) > 1:
        raise DaemonError(f"{' and '.join(chosen)} exclude each other")
    if prometheus is not None:
        from engine.live import PrometheusSource

        try:
            return PrometheusSource(prometheus, selector=selector)
        except ValueError as exc:        # a bad URL or selector: one line, before anything loads
            raise DaemonError(str(exc)) from None
    if simulate is not None:
        from engine.sources import simulated_count_problem

        problem = simulated_count_problem(simulate)
        if problem:
            raise DaemonError(problem)
        return SimulatorSource(int(simulate), seed=seed)
    if replay is not None:
        if not Path(replay).exists():
            raise DaemonError(f"{replay}: no such file or directory")
        return ReplaySource(replay)
    return PushSource()


# ----------------------------------------------------------------------------- publishing


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, 4) if math.isfinite(v) else None


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """``snap.to_json()`` plus each TFT server's variable importance under ``_meta.importance``."""
    out = snap.to_json()
    preds = out["predictions"]
    for s in snap.servers:
        if s.importance and s.server_name in preds:
            preds[s.server_name]["_meta"]["importance"] = {str(k): _finite(v) for k, v in s.importance.items()}
    return out


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Published:
    """One tick's snapshot, serialised once for every reader."""

    seq: int
    snapshot: Snapshot
    body: bytes                  # the snapshot JSON
    gzip_body: bytes
    text: str                    # the same JSON as text, for WebSocket frames
    servers: dict[str, dict]     # server name -> its JSON (as in body)
    published_at: float          # time.time()
    boot: str = ""               # the publishing daemon's start id

    @classmethod
    def build(cls, seq: int, snap: Snapshot, boot: str = "") -> Published:
        data = snapshot_json(snap)
        # the daemon's tick number, so a client can match a POST's forecast_in_seq
        data["metadata"] = {**data["metadata"], "seq": seq}
        body = _dumps(data)
        return cls(seq=seq, snapshot=snap, body=body, gzip_body=gzip.compress(body, _GZIP_LEVEL),
                   text=body.decode(), servers=data["predictions"], published_at=time.time(), boot=boot)

    @property
    def etag(self) -> str:
        # with the daemon's start id: a restarted daemon's tick 20 is not the old one's
        return f'"{self.boot}-{self.seq}"'


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match: '*', or a list of tags, weak (W/) or strong, compared weakly (RFC 9110)."""
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any((t[2:] if t.startswith("W/") else t) == etag for t in tags)


def _accepts_gzip(header: str) -> bool:
    """Accept-Encoding names gzip with a q-value above 0, or, not naming gzip, * does."""
    qs: dict[str, float] = {}
    for part in header.lower().split(","):
        name, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        qs.setdefault(name, q)
    q = qs.get("gzip", qs.get("*", 0.0))      # an explicit gzip outranks *
    return q > 0


# ----------------------------------------------------------------------------- ASGI guard


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v.decode("latin-1")
    return None


async def _send_json(send, status: int, payload: dict, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = _dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _host_is_loopback(host_header: str) -> bool:
    host = host_header.strip()
    if host.startswith("["):                       # [::1]:8000
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:                     # 127.0.0.1:8000, localhost:8000
        host = host.partition(":")[0]
    return is_loopback(host)


def _same_origin(origin: str | None, host: str | None) -> bool:
    """True for a WebSocket handshake without an Origin (a program: tft-top --connect, curl,
    websocat) or from a page served by this daemon itself (its Origin names the Host asked)."""
    if origin is None:
        return True
    netloc = urlsplit(origin.strip()).netloc
    return bool(netloc) and host is not None and netloc.lower() == host.strip().lower()


class Guard:
    """Before any route runs: the Host check (a loopback daemon answers only to loopback names, which
    stops DNS rebinding), the API key (HTTP and WebSocket), and the request body cap."""

    def __init__(self, app, daemon: Daemon):
        self.app = app
        self.daemon = daemon       # read per request: RunningServer / serve set loopback_only

    def authorized(self, scope) -> bool:
        key = self.daemon.api_key
        if not key or scope.get("path") in OPEN_PATHS:
            return True
        given = _header(scope, b"x-api-key")
        if given is None:
            auth = _header(scope, b"authorization") or ""
            scheme, _, token = auth.strip().partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        return given is not None and hmac.compare_digest(given.encode(), key.encode())

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if kind == "websocket":     # the server's connection, to cut one whose client stopped reading
            scope["tft_top.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
        host = _header(scope, b"host")
        if self.daemon.loopback_only and host is not None and not _host_is_loopback(host):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "Host is not this machine"})
                return
            return await _send_json(send, 400, {"detail": f"refused: Host {host[:80]!r} is not a loopback name "
                                                          "(this daemon listens on loopback only)"})
        if kind == "websocket" and not _same_origin(_header(scope, b"origin"), host):
            # a browser sends its page's Origin and lets any page open a WebSocket (no CORS):
            # without this, a web page the operator visits could read a keyless daemon's fleet
            await send({"type": "websocket.close", "code": 1008, "reason": "cross-origin WebSocket refused"})
            return
        if not self.authorized(scope):
            if kind == "websocket":  # a close before accept: the handshake is refused (HTTP 403)
                await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong API key"})
                return
            return await _send_json(send, 401, {"detail": "missing or wrong API key: send 'Authorization: Bearer KEY'"
                                                          " or 'X-API-Key: KEY'"},
                                    [(b"www-authenticate", b"Bearer")])
        max_body = self.daemon.max_body
        if kind == "http" and max_body:
            length = _header(scope, b"content-length")
            if length is not None:
                try:
                    too_big = int(length) > max_body
                except ValueError:
                    return await _send_json(send, 400, {"detail": "bad Content-Length header"})
                if too_big:
                    return await _send_json(send, 413, {"detail": BodyTooLarge(max_body).detail},
                                            [(b"connection", b"close")])
            seen = 0
            limit = max_body

            async def counted():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise BodyTooLarge(limit)   # handled by the app as a 413
                return message

            return await self.app(scope, counted, send)
        return await self.app(scope, receive, send)


# ----------------------------------------------------------------------------- the daemon


@dataclass
class Ingested:
    accepted: list[int]          # 0-based indices of the records that reached the store
    refused: int                 # how many records did not
    problems: list[dict]         # {"row", "index", "column", "message", "text"}; row counts from 1
    notes: list[str]
    forecast_in_seq: int | None = None   # the first snapshot seq whose forecasts include them
    total: int | None = None     # records in the request (a list); None: not a list

    @property
    def refused_indices(self) -> list[int]:
        if self.total is not None:   # every record not accepted (a missing column refuses them all)
            taken = set(self.accepted)
            return [i for i in range(self.total) if i not in taken]
        return sorted({p["index"] for p in self.problems if p["index"] is not None})


def _problem_json(text: str, row: int | None, column: str | None, message: str) -> dict:
    return {"row": row, "index": None if row is None else row - 1, "column": column, "message": message,
            "text": text}


def _contract_names(records: list) -> dict[int, str] | None:
    """Each dict record's server name exactly as validate_records reads it (the same pandas steps:
    a batch with 12 and null names reads 12 as "12.0"); None when that cannot be done."""
    from engine.contract import COLUMN_ALIASES, _as_str, _normalise_columns, clean_record

    cleaned = {i: clean_record(r) for i, r in enumerate(records) if isinstance(r, dict)}
    positions = [i for i, (_, duplicate) in cleaned.items() if duplicate is None]
    try:
        df = pd.DataFrame.from_records([cleaned[i][0] for i in positions])
        for alias, name in COLUMN_ALIASES.items():
            if alias in df.columns and name in df.columns:
                df[name] = df[name].fillna(df.pop(alias))
        df, problems, _ = _normalise_columns(df, POST_SOURCE)
        if problems:
            return None
        names = _as_str(df["server_name"]).str.strip()
        return {i: str(n) for i, n in zip(positions, names, strict=True)}
    except Exception:  # noqa: BLE001 - only the row numbers of store refusals depend on it
        return None


class Daemon:
    """The engine, its tick thread, and the FastAPI app that serves what it publishes."""

    def __init__(self, engine: Engine, *, interval: float = 1.0, api_key: str | None = None,
                 max_body: int | None = MAX_BODY_BYTES, push: bool | None = None,
                 torch_threads: int | None = None):
        self.engine = engine
        self.torch_threads = torch_threads    # None: leave torch's setting alone
        self.interval = float(interval)
        self._published_at: deque[float] = deque(maxlen=21)     # monotonic times of the newest snapshots
        self._said_finished = False
        self.api_key = api_key or None
        self.max_body = max_body
        self.push = isinstance(engine.source, PushSource) if push is None else push
        self.loopback_only = True             # set from the address it listens on (RunningServer, serve)
        self.lock = threading.Lock()          # around every use of the engine
        self.latest: Published | None = None
        self.error: str | None = None         # why the engine could not start (or the last tick failed)
        self.ticks = 0
        self.started_at = time.time()
        self.boot = f"{time.time_ns():x}"        # in every ETag: unique across restarts and daemons
        self._dirty = False                   # POSTed records wait for the next tick
        self._last_tick = time.monotonic()    # of the last tick that ran
        # the seq the next tick's snapshot will carry, taken under ``lock`` with the tick itself:
        # a record stored under the lock is in every snapshot from this seq on, even when the
        # tick before it is still encoding its snapshot when the POST is answered
        self._next_seq = 1
        self._stop = threading.Event()
        self._published = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue] = set()
        self.app = self._build_app()

    announce = None         # serve's console: told how the model load went (a callable taking a line)

    # -- the tick thread -------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread (loads the model there); returns at once."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tft-top-daemon-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait for the first snapshot (or a start failure); True when there is one."""
        return self.wait_for_seq(1, timeout)

    def wait_for_seq(self, seq: int, timeout: float = 10.0) -> bool:
        with self._published:
            self._published.wait_for(lambda: (self.latest is not None and self.latest.seq >= seq)
                                     or (self.error is not None and self.latest is None), timeout)
        return self.latest is not None and self.latest.seq >= seq

    def _run(self) -> None:
        try:
            if self.torch_threads:
                import torch

                torch.set_num_threads(self.torch_threads)
            with self.lock:
                self.engine.start()
                # a replay plays the tick before its start too: the first snapshot has its alerts
                snap = self.engine.warm_up() or self.engine.tick(advance=False)
                seq = self._take_seq()
        except Exception as exc:  # noqa: BLE001 - reported by /status and the 503s
            self._fail(exc, starting=True)
            if self.announce is not None:
                self.announce(f"tft-top: {self.error}")
            return
        self._publish(snap, seq)
        if self.announce is not None:       # the console said "loading the model…" and nothing after
            self.announce(model_line(snap.metadata))
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(due - time.monotonic(), 0.0)):
            now = time.monotonic()
            due = due + self.interval if due + self.interval > now else now + self.interval
            with self.lock:
                dirty, self._dirty = self._dirty, False
            idle = (self.push or self.engine.finished) and not dirty
            # a POST-fed fleet's time is the wall clock: without records, a tick a minute
            # still moves it, so servers whose senders stopped show as silent
            if idle and not (self.push and time.monotonic() - self._last_tick >= PUSH_IDLE_TICK_S):
                continue
            try:
                with self.lock:
                    snap = self.engine.tick(advance=not self.push)
                    seq = self._take_seq()
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot
                self._fail(exc, starting=False)
                if dirty:
                    with self.lock:
                        self._dirty = True      # the records still wait: try again next interval
                continue
            self.error = None
            self._last_tick = time.monotonic()
            try:
                self._publish(snap, seq)
            except Exception as exc:  # noqa: BLE001 - a snapshot that cannot be encoded must not end the loop
                self._fail(exc, starting=False)
            if self.engine.finished and not self._said_finished and self.announce is not None:
                # (only /status and the metadata said so: the console went quiet mid-sentence)
                self._said_finished = True
                self.announce(f"tft-top: {self.engine.source.name} has run out of data at {snap.data_time}; "
                              "serving its last snapshot")

    def _take_seq(self) -> int:          # under self.lock, with the tick it numbers
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def _fail(self, exc: BaseException, starting: bool) -> None:
        text = " ".join(str(exc).split()) or type(exc).__name__
        self.error = f"{'engine failed to start' if starting else 'tick failed'}: {text}"
        log.error("%s", self.error, exc_info=not starting)
        with self._published:
            self._published.notify_all()

    def _publish(self, snap: Snapshot, seq: int) -> None:
        # (outside the lock: encoding a 1,000-server snapshot must not hold up POSTs)
        pub = Published.build(seq, snap, self.boot)
        with self._published:
            self.latest = pub
            self.ticks += 1
            self._published_at.append(time.monotonic())
            self._published.notify_all()
        loop = self._loop
        if loop is not None and self._clients:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._fanout, pub)

    def _fanout(self, pub: Published) -> None:   # on the event loop
        for q in list(self._clients):
            if q.full():             # a slow client skips to the newest snapshot
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(pub)

    # -- POST /metrics ---------------------------------------------------------------
    def note_refused(self, lines: list[str]) -> None:
        """A POST refused whole (not JSON, another content type, not a list of records):
        counted in problems_total like any refusal (a collector that always sends one shows)."""
        with self.lock:
            self.engine._note(lines)       # noqa: SLF001

    def ingest_records(self, records: Any) -> Ingested:
        """Validate (engine.contract, as for files) and append the good records to the store now;
        they are forecast at the next tick.  Returns what was accepted and what was refused."""
        result: LoadResult = validate_records(records, POST_SOURCE)
        problems = [_problem_json(str(p), p.row, p.column, p.message) for p in result.problems]
        if not isinstance(records, list) or any(p.row is None for p in result.problems):
            n = len(records) if isinstance(records, list) else 0
            self.note_refused([str(p) for p in result.problems])
            return Ingested([], n, problems, result.notes, total=n if isinstance(records, list) else None)
        bad_rows = {p.row for p in result.problems}
        good = [i for i in range(len(records)) if (i + 1) not in bad_rows]
        frame = result.frame
        index_of = self._frame_indices(records, good, frame)
        epochs = frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy()
        values = frame[list(METRICS)].to_numpy(dtype=np.float32)
        names = frame["server_name"].to_numpy()
        profiles = frame["profile"].to_numpy()
        accepted: list[int] = []
        refused: list[str] = []
        kept: set[str] = set()          # the servers of the records that reached the store
        with self.lock:
            store = self.engine.store
            # a live fleet's clock is the wall clock (POST-fed, Prometheus); a replay's or the
            # simulator's the step it gave last (not the store's newest sample: each accepted
            # POST moved that on by the 10 minutes allowed, and the fleet went silent behind it)
            source = self.engine.source
            wall = source.wall_time()
            clock = wall if wall is not None else source.data_clock()
            clock = store.newest_epoch() if clock is None else clock
            limit = None if clock is None else int(clock) + MAX_AHEAD_SECONDS
            for k in range(len(frame)):
                profile = str(profiles[k])
                column = "timestamp"
                if self.engine.fed_by_source(str(names[k])):
                    # its POSTed sample would come before the source's own, which the store
                    # would then refuse as older: the recorded data lost to one POST
                    reason = f"{names[k]} is fed by {source.name}; POST samples for other servers"
                    column = "server_name"
                elif str(names[k]) not in store and len(store) >= MAX_POSTED_SERVERS:
                    # (8 POSTs of 5,000 new names took a daemon to 40,000 servers, 10 s a tick
                    # and 6 GB; --simulate has the same bound)
                    reason = (f"this daemon already holds {len(store):,} servers, the most it takes: records of a "
                              f"new server are refused until silent ones are forgotten "
                              f"({FORGET_AFTER_SECONDS // 3600} h after their last sample)")
                    column = "server_name"
                elif limit is not None and int(epochs[k]) > limit:
                    reason = (f"{iso(int(epochs[k]))} is more than {MAX_AHEAD_SECONDS // 60} min ahead of this "
                              f"daemon's clock ({iso(limit - MAX_AHEAD_SECONDS)})")
                else:
                    reason = store.append(str(names[k]), int(epochs[k]), values[k],
                                          None if profile == UNKNOWN_PROFILE else profile)
                row = None if index_of is None else index_of[k] + 1
                if reason is None:
                    kept.add(str(names[k]))
                    if row is not None:
                        accepted.append(row - 1)
                    continue
                where = f"row {row}, column {column}: " if row is not None else ""
                text = f"{POST_SOURCE}: {where}{reason}"
                refused.append(text)
                problems.append(_problem_json(text, row, column, reason))
            if index_of is None and not refused:    # every validated record reached the store
                accepted = good
            notes = [str(p) for p in result.problems] + refused
            if notes:
                self.engine._note(notes)      # noqa: SLF001 - counted in the snapshot's problems_total
            stored = len(refused) < len(frame)
            if stored:
                self._dirty = True
                # a server whose newest sample is far behind the fleet's is stored but left out
                # of the forecasts as silent: the answer says so rather than promise a seq
                newest = self.engine.fleet_clock()
                last = {str(n): store.last_epoch(str(n)) for n in set(names.tolist())}
                behind = sorted(n for n, e in last.items()
                                if newest is not None and e is not None and e < newest - STALE_AFTER_SECONDS)
                for name in behind[:10]:
                    result.notes.append(f"{name}: its newest sample is over {STALE_AFTER_SECONDS // 60} min older "
                                        f"than the fleet's ({iso(newest)}): stored, but not forecast until it "
                                        "catches up")
                # (a seq is promised only when some stored server will be in it)
                if kept <= set(behind):
                    stored = False
            next_seq = self._next_seq if stored else None
        problems.sort(key=lambda p: (p["row"] is None, p["row"] or 0))
        return Ingested(sorted(accepted), len(records) - (len(frame) - len(refused)), problems, result.notes,
                        next_seq, total=len(records))

    @staticmethod
    def _frame_indices(records: list, good: list[int], frame: pd.DataFrame) -> list[int] | None:
        """Frame row -> index in ``records``, or None when they cannot be tied (never expected).

        The validated frame is sorted by (server, time); a server's kept records are in strictly
        increasing time in input order (later duplicates and backward steps are refused), so within
        each server the frame keeps the input order."""
        names = _contract_names(records)
        if names is None:
            return None
        by_name: dict[str, list[int]] = {}
        for i in good:
            by_name.setdefault(names[i], []).append(i)
        out: list[int] = []
        taken: dict[str, int] = {}
        for name in frame["server_name"].astype(str):
            k = taken.get(name, 0)
            candidates = by_name.get(name)
            if candidates is None or k >= len(candidates):
                return None
            out.append(candidates[k])
            taken[name] = k + 1
        return out if len(out) == len(good) else None

    # -- readers ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        pub = self.latest
        meta = pub.snapshot.metadata if pub else {}
        fc = self.engine.forecaster
        return {
            "status": "ok" if pub is not None and self.error is None else ("failed" if self.error else "starting"),
            "error": self.error,
            "model": None if fc.model_dir is None else str(fc.model_dir),
            "model_type": meta.get("model_type"),
            "model_loaded": fc.loaded,
            "model_reason": meta.get("model_reason", fc.model_reason),
            "device": fc.device,
            "source": self.engine.source.name,
            "source_status": meta.get("source_status"),     # a live source's own state ("prometheus STALE: …")
            "post_fed": self.push,
            "servers": len(pub.snapshot.servers) if pub else 0,
            "servers_on_tft": meta.get("servers_on_tft"),
            "servers_on_heuristic": meta.get("servers_on_heuristic"),
            "ongoing_alerts": sum(1 for a in pub.snapshot.alerts if a.state == "ongoing") if pub else 0,
            "data_time": pub.snapshot.data_time if pub else None,
            "generated_at": meta.get("generated_at"),
            "tick_latency_ms": meta.get("tick_latency_ms"),
            "tick_interval_s": self.interval,
            # what it reaches: a tick and its JSON, gzip and sends take longer than a short
            # interval (--speed 10 on 200 servers made 2 ticks a second, and only this says so)
            "tick_period_s": self.tick_period(),
            "ticks": self.ticks,
            "seq": pub.seq if pub else None,
            "finished": bool(meta.get("finished", False)),
            "problems_total": self.engine.problems_noted,
            "refused_records": self.engine.problems_noted,      # its old name, for clients of before 2026-11-29
            "recent_problems": list(self.engine.problems[-5:]),
            "uptime_s": round(time.time() - self.started_at, 1),
            "websocket_clients": len(self._clients),
            "auth": self.api_key is not None,
            "max_body_bytes": self.max_body,
        }

    def tick_period(self) -> float | None:
        """Seconds between the last (up to 20) published snapshots, on average; None before two."""
        times = list(self._published_at)
        return round((times[-1] - times[0]) / (len(times) - 1), 3) if len(times) > 1 else None

    def last_epoch(self, name: str) -> tuple[int | None, int | None]:
        """(the server's newest sample, the fleet's clock), epoch s."""
        with self.lock:
            return self.engine.store.last_epoch(name), self.engine.fleet_clock()

    def history(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            if self.engine.store.last_epoch(name) is None:
                return None
            epochs, values = self.engine.history(name)      # the last HISTORY_STEPS
        return {
            "server": name, "step_seconds": STEP_SECONDS,
            "start": iso(epochs[0]) if len(epochs) else None, "end": iso(epochs[-1]) if len(epochs) else None,
            "epochs": [int(e) for e in epochs],
            "metrics": {m: [_finite(x) for x in values[m]] for m in METRICS},
        }

    def _not_ready(self) -> JSONResponse:
        detail = self.error or "warming up: the first forecast is not ready yet"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})

    # -- the app ---------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        daemon = self

        @contextlib.asynccontextmanager
        async def lifespan(app):
            daemon._loop = asyncio.get_running_loop()
            try:
                yield
            finally:
                daemon._loop = None

        app = FastAPI(title="tft-top", version="0.1.0", lifespan=lifespan, redoc_url=None,
                      description="Forecasts of a server fleet's cpu/memory/disk/load 8 h ahead (TFT). "
                                  "Send the API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
                                  "when the daemon has one.")
        app.add_middleware(Guard, daemon=self)

        async def internal_error(request: Request, exc: Exception) -> JSONResponse:
            log.error("internal error on %s %s: %s", request.method, request.url.path,
                      " ".join(str(exc).split()) or type(exc).__name__)
            return JSONResponse({"detail": "internal error"}, status_code=500)

        app.add_exception_handler(Exception, internal_error)

        async def http_error(request: Request, exc: HTTPException) -> Response:
            from fastapi.exception_handlers import http_exception_handler

            response = await http_exception_handler(request, exc)
            if exc.status_code == 405:      # every method the path answers, HEAD included
                methods = set()
                for route in app.routes:
                    regex, allowed = getattr(route, "path_regex", None), getattr(route, "methods", None)
                    if regex is not None and allowed and regex.match(request.url.path):
                        methods |= set(allowed)
                if methods:
                    response.headers["Allow"] = ", ".join(sorted(methods))
            return response

        app.add_exception_handler(HTTPException, http_error)

        @app.get("/health", tags=["daemon"], summary="Liveness (no API key needed)",
                 openapi_extra={"security": []})
        async def health() -> dict:
            return {"status": "ok"}

        @app.head("/health", include_in_schema=False)      # a HEAD probe (one operation id in the docs)
        async def health_head() -> Response:
            return JSONResponse({"status": "ok"})     # (the GET's headers; the server sends no body)

        @app.get("/status", tags=["daemon"], summary="Model, device, fleet size, tick latency, uptime, source")
        async def status() -> dict:
            return daemon.status()

        @app.get("/predictions/current", tags=["forecasts"], summary="The current snapshot",
                 responses={200: {"description": "Snapshot.to_json(): predictions, alerts, environment, metadata"},
                            503: {"description": "no snapshot yet"}})
        async def predictions(request: Request) -> Response:
            return current(request, head=False)

        @app.head("/predictions/current", include_in_schema=False)
        async def predictions_head(request: Request) -> Response:
            # a cheap "has it changed?" probe: the GET's status and headers, no body
            return current(request, head=True)

        def current(request: Request, head: bool) -> Response:
            pub = daemon.latest
            if pub is None:
                return Response(status_code=503, headers={"Retry-After": "1"}) if head else daemon._not_ready()
            zipped = _accepts_gzip(request.headers.get("accept-encoding", ""))
            # (the gzip body is other bytes: another strong ETag, RFC 9110 8.8.3)
            etag = pub.etag[:-1] + '-gzip"' if zipped else pub.etag
            headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
            if _etag_matches(request.headers.get("if-none-match"), etag):
                return Response(status_code=304, headers=headers)
            body = pub.body
            if zipped:
                headers["Content-Encoding"] = "gzip"
                body = pub.gzip_body
            if head:
                headers.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
                return Response(status_code=200, headers=headers)
            return Response(body, media_type="application/json", headers=headers)

        @app.get("/alerts/active", tags=["forecasts"], summary="Ongoing alerts, newest first")
        async def alerts() -> Response:
            pub = daemon.latest
            if pub is None:
                return daemon._not_ready()
            active = [a.to_json() for a in pub.snapshot.alerts if a.state == "ongoing"]
            return JSONResponse({"data_time": pub.snapshot.data_time, "count": len(active), "alerts": active})

        # {name:path}: a POSTed server name may hold '/' (sent as %2F); /history is matched first.
        # The router sees the decoded path, so /servers/a%2Fhistory lands here too: the raw
        # (still encoded) path tells that "/history" was part of the name.
        @app.get("/servers/{name:path}/history", tags=["forecasts"],
                 summary="The server's last 24 h of samples (5-minute steps, oldest first)")
        async def server_history(name: str, request: Request) -> Response:
            raw = bytes(request.scope.get("raw_path") or b"").split(b"?", 1)[0]
            if raw and not raw.endswith(b"/history"):
                return await server(f"{name}/history")
            h = await run_in_threadpool(daemon.history, name)
            if h is None:
                return JSONResponse({"detail": f"unknown server {name!r}: no samples for it in the store"},
                                    status_code=404)
            return JSONResponse(h)

        @app.get("/servers/{name:path}", tags=["forecasts"], summary="One server's forecast and its alerts")
        async def server(name: str) -> Response:
            pub = daemon.latest
            if pub is None:
                return daemon._not_ready()
            if not name:        # GET /servers (redirected here) is no server's
                return JSONResponse({"detail": "give a server's name: /servers/NAME (the fleet: "
                                               "/predictions/current)"}, status_code=404)
            fc = pub.servers.get(name)
            if fc is None:
                last, clock = await run_in_threadpool(daemon.last_epoch, name)
                if last is not None:
                    # known to the store but not in this snapshot: left out as silent, or arrived
                    # after it was made; say which, with its alerts
                    mine = [a.to_json() for a in pub.snapshot.alerts if a.server_name == name]
                    silent = clock is not None and clock - last > STALE_AFTER_SECONDS
                    why = (f"is left out of the forecasts as silent: its newest sample is {iso(int(last))}"
                           if silent else f"has samples up to {iso(int(last))} that this snapshot does not "
                                          f"include yet (the next tick will)")
                    return JSONResponse({"detail": f"server {name!r} {why}", "server": name,
                                         "last_seen": iso(int(last)), "silent": silent, "alerts": mine},
                                        status_code=404)
                return JSONResponse({"detail": f"unknown server {name!r}: the fleet has {len(pub.servers)} "
                                               f"servers (see /predictions/current)"}, status_code=404)
            mine = [a.to_json() for a in pub.snapshot.alerts if a.server_name == name]
            return JSONResponse({"server": name, "data_time": pub.snapshot.data_time, "forecast": fc,
                                 "alerts": mine})

        record_schema = {
            "type": "object",
            "required": ["server_name", "timestamp", *METRICS],
            "properties": {
                "server_name": {"type": "string"}, "timestamp": {"type": ["string", "number"],
                                                                 "description": "ISO 8601 or epoch seconds"},
                **{m: {"type": "number"} for m in METRICS}, "profile": {"type": "string"},
            },
        }

        @app.post("/metrics", tags=["ingest"], status_code=202,
                  summary="Add samples: a JSON list of records (or {\"records\": [...]})",
                  openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                      "oneOf": [{"type": "array", "items": record_schema},
                                {"type": "object", "properties": {"records": {"type": "array",
                                                                              "items": record_schema}}}]}}}}},
                  responses={202: {"description": "all records accepted"},
                             400: {"description": "the body is not JSON"},
                             415: {"description": "the Content-Type is not application/json, or the body is compressed"},
                             503: {"description": "the engine has not started yet: retry"},
                             413: {"description": "the body is too large"},
                             422: {"description": "some or all records refused (the good ones are still accepted)"}})
        async def post_metrics(request: Request) -> Response:
            if daemon.latest is None:   # the engine (re)builds its store while it starts
                return daemon._not_ready()
            media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                # also keeps web pages from posting here: a JSON POST from a page needs a CORS preflight
                got = f"not {media}" if media else "the request had no Content-Type"
                detail = f"send the records as JSON (Content-Type: application/json); {got}"
                await run_in_threadpool(daemon.note_refused, [f"{POST_SOURCE}: {detail}"])   # (the lock: off the loop)
                return JSONResponse({"detail": detail}, status_code=415)
            coding = request.headers.get("content-encoding", "").strip().lower()
            if coding and coding != "identity":
                # (a gzip body was answered "not valid JSON ('utf-8' codec can't decode byte 0x8b…)")
                detail = f"Content-Encoding {coding} is not supported: send the records as plain JSON"
                await run_in_threadpool(daemon.note_refused, [f"{POST_SOURCE}: {detail}"])
                return JSONResponse({"detail": detail}, status_code=415)
            try:
                body = await request.body()
            except ClientDisconnect:        # the client left mid-body: no one to answer, nothing to log
                return Response(status_code=400)
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                # (RecursionError: nesting deeper than the parser goes, a client error like any other)
                msg = " ".join(str(exc).split()) if not isinstance(exc, RecursionError) else "nested too deeply"
                await run_in_threadpool(daemon.note_refused, [f"{POST_SOURCE}: the body is not valid JSON ({msg})"])
                return JSONResponse({"detail": f"the body is not valid JSON ({msg})"}, status_code=400)
            records = payload["records"] if isinstance(payload, dict) and "records" in payload else payload
            result = await run_in_threadpool(daemon.ingest_records, records)
            n = len(records) if isinstance(records, list) else 0
            out = {"accepted": n - result.refused, "refused": result.refused,
                   "accepted_indices": result.accepted, "refused_indices": result.refused_indices,
                   "problems": result.problems, "notes": result.notes,
                   "forecast_in_seq": result.forecast_in_seq}
            if not result.problems:
                out["detail"] = (f"accepted {out['accepted']} record(s); they are forecast at the next tick "
                                 f"(snapshot seq {result.forecast_in_seq} on)" if result.forecast_in_seq is not None
                                 else f"accepted {out['accepted']} record(s); stored, not forecast yet (see notes)")
                return JSONResponse(out, status_code=202)
            first = result.problems[0]["text"]
            more = len(result.problems) - 1
            head = (f"{out['refused']} of {n} record(s) refused (rows count from 1)" if n
                    else "the body was refused")
            out["detail"] = (f"{head}: {first}"
                             + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
                             + (f"; the other {out['accepted']} record(s) were accepted" if out["accepted"] else ""))
            return JSONResponse(out, status_code=422)

        @app.websocket("/ws/predictions")
        async def ws_predictions(websocket: WebSocket) -> None:
            await websocket.accept()
            q: asyncio.Queue = asyncio.Queue(maxsize=1)
            daemon._clients.add(q)
            receiver = asyncio.ensure_future(_until_disconnect(websocket))
            try:
                last = 0
                pub = daemon.latest
                if pub is not None:
                    await _send(websocket, pub.text)
                    last = pub.seq
                while True:
                    getter = asyncio.ensure_future(q.get())
                    done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if receiver in done:
                        getter.cancel()
                        return
                    pub = getter.result()
                    if pub.seq > last:
                        await _send(websocket, pub.text)
                        last = pub.seq
            except Exception:  # noqa: BLE001 - the client went away mid-send
                return
            finally:
                daemon._clients.discard(q)
                receiver.cancel()

        if self.api_key:
            # the docs' "Authorize" button: the key as X-API-Key (or a bearer token), on every
            # route but those open without it (their own "security": [])
            plain_openapi = app.openapi

            def openapi_with_key() -> dict:
                if app.openapi_schema is None:
                    schema = plain_openapi()
                    schema.setdefault("components", {})["securitySchemes"] = {
                        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                        "bearer": {"type": "http", "scheme": "bearer"}}
                    schema["security"] = [{"apiKey": []}, {"bearer": []}]
                    app.openapi_schema = schema
                return app.openapi_schema

            app.openapi = openapi_with_key
        return app


WS_SEND_TIMEOUT = 60.0      # seconds a client may take to read one snapshot before it is dropped


async def _send(websocket: WebSocket, text: str) -> None:
    """Send one snapshot; a client that does not read it within WS_SEND_TIMEOUT (a suspended
    `tft-top --connect`, a stuck reader) is dropped: it held its socket, a frame and the
    kernel's send buffer for as long as it lived, and the server's pings queued behind it."""
    try:
        await asyncio.wait_for(websocket.send_text(text), WS_SEND_TIMEOUT)
    except (asyncio.TimeoutError, TimeoutError):
        # a close frame would queue behind the unsent snapshot: cut the connection itself
        # (uvicorn's protocol object owns the ASGI send Guard was given; else a bounded close)
        transport = websocket.scope.get("tft_top.transport")      # (Guard puts it there)
        if transport is not None and hasattr(transport, "abort"):
            sock = transport.get_extra_info("socket")
            if sock is not None:        # a reset: the kernel drops the MBs queued for it, not trickles them out
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(code=1008, reason="not reading"), 1.0)
        raise


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) client frames until the client goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


# ----------------------------------------------------------------------------- running it


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= int(port) <= 65535:     # getaddrinfo would take 99999 modulo 65536
        raise DaemonError(f"--port must be 0..65535, not {port}")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DaemonError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise DaemonError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(daemon: Daemon, host: str, port: int, log_level: str, access_log: bool):
    import uvicorn

    return uvicorn.Config(daemon.app, host=host, port=port, log_level=log_level, access_log=access_log,
                          server_header=False, proxy_headers=False, ws_max_size=64 * 1024,
                          # per-message deflate compresses the same snapshot once per client on the
                          # event loop: with 100 clients /health took 2 s (1.3 ms without)
                          ws_per_message_deflate=False,
                          timeout_graceful_shutdown=3, lifespan="on")


class RunningServer:
    """A daemon served by uvicorn on a thread (tests, benchmarks): ``start()``, ``url``, ``stop()``."""

    def __init__(self, daemon: Daemon, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning",
                 access_log: bool = False):
        import uvicorn

        check_bind(host, daemon.api_key)
        self.daemon = daemon
        self.host = host
        daemon.loopback_only = is_loopback(host)
        self._sock = _bind(host, port)
        self.port = self._sock.getsockname()[1]
        self.server = uvicorn.Server(_uvicorn_config(daemon, host, self.port, log_level, access_log))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> RunningServer:
        self.daemon.start()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="tft-top-daemon-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise DaemonError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()
        self.daemon.stop()

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def build_daemon(*, model: Path | str | None = None, replay: Path | str | None = None,
                 simulate: int | None = None, seed: int = 0, speed: float = 1.0, interval: float | None = None,
                 api_key: str | None = None, device: str = "auto", max_body: int | None = MAX_BODY_BYTES,
                 thresholds=None, prometheus: str | None = None, selector: str = DEFAULT_SELECTOR) -> Daemon:
    """A daemon for the CLI's options (the engine is not started yet).  DaemonError / DataError."""
    source = make_source(replay=replay, simulate=simulate, seed=seed, prometheus=prometheus, selector=selector)
    every = tick_interval(isinstance(source, PushSource), speed=speed, interval=interval,
                          live=prometheus is not None)
    engine = Engine(source, model, device=device, thresholds=thresholds or DEFAULT_THRESHOLDS)
    return Daemon(engine, interval=every, api_key=api_key, max_body=max_body,
                  torch_threads=default_torch_threads())


def _signal_server(config):
    """A uvicorn.Server for the main thread.  uvicorn re-raises Ctrl-C / SIGTERM after its graceful
    shutdown, inside the event loop, which prints tracebacks; here a signal only means "shut down"."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                try:
                    yield
                finally:
                    getattr(self, "_captured_signals", []).clear()

    return Server(config)


def model_line(md: dict) -> str:
    """The console's line once the first snapshot is out: the model, or why the heuristic serves."""
    if md.get("model_loaded"):
        return (f"tft-top: model {md.get('model_dir')} loaded on {md.get('device')}; "
                f"first snapshot out ({md.get('servers_on_tft', 0)} servers on the TFT, "
                f"{md.get('servers_on_heuristic', 0)} on the heuristic)")
    return f"tft-top: no model ({md.get('model_reason') or 'none found'}): every forecast is the heuristic's"


def _say(line: str) -> None:
    print(line, flush=True)      # (a console piped to a log file would hold it back)


def serve(daemon: Daemon, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "info",
          access_log: bool = True, announce=_say) -> None:
    """Serve until Ctrl-C / SIGTERM (blocking).  DaemonError (one line) when it cannot start."""
    import uvicorn

    check_bind(host, daemon.api_key)
    sock = _bind(host, port)
    port = sock.getsockname()[1]          # the one the system chose for --port 0
    daemon.loopback_only = is_loopback(host)
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host     # ("[::1]" read "[[::1]]")
    shown = f"[{bare}]" if ":" in bare else bare
    auth = "API key required" if daemon.api_key else "no API key: loopback only"
    what = "a fleet fed by POST /metrics" if daemon.push else daemon.engine.source.name
    announce(f"tft-top: serving {what} on http://{shown}:{port} ({auth}, a tick every {daemon.interval:g} s); "
             f"docs at /docs; loading the model…")
    daemon.announce = announce
    daemon.start()
    try:
        _signal_server(_uvicorn_config(daemon, host, port, log_level, access_log)).run(sockets=[sock])
    finally:
        daemon.stop(timeout=2.0)
        with contextlib.suppress(OSError):
            sock.close()
