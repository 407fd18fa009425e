"""A client of `tft-top serve`: snapshots from a daemon instead of running the model.

``RemoteEngine(url, api_key)`` has the surface the TUI uses from :class:`engine.runtime.Engine`
(``start()``, ``tick()``, ``forecast()``, ``history(name)``, ``source.can_seek``,
``seek_back()``, ``last_snapshot``, ``finished``, ``problems``), so the app can watch a
daemon with the same loop:

* a background thread keeps a WebSocket to ``/ws/predictions`` open (or, where the
  WebSocket is refused by something in between, polls ``/predictions/current``) and keeps
  the newest snapshot;
* ``tick()`` never blocks on the network and never raises: it returns the newest snapshot
  with extra metadata: ``stale`` (True while the connection is lost or nothing came yet),
  ``remote_error`` (why, one line), ``remote_url``, ``remote_age_s`` (seconds since the
  newest snapshot arrived) and ``daemon_finished`` (``finished`` itself stays False: the
  app keeps reading a daemon whatever it replays).  Before the first snapshot it returns
  an empty one (no servers) saying what it is waiting for in ``model_reason``;
* a lost connection is retried with exponential backoff (0.5 s doubling to 10 s).

``snapshot_from_json`` rebuilds a :class:`~engine.snapshot.Snapshot` from the daemon's JSON
(numpy arrays from lists; values were rounded by ``to_json``).
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from engine.contract import METRICS
from engine.snapshot import Alert, Environment, MetricForecast, ServerForecast, Snapshot

WS_PATH = "/ws/predictions"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


# ----------------------------------------------------------------------------- JSON -> Snapshot


def _f(x: Any, default: float = math.nan) -> float:
    return default if x is None else float(x)


def _arr(values: Any) -> np.ndarray:
    a = np.array([math.nan if v is None else float(v) for v in (values or ())], dtype=np.float64)
    a.setflags(write=False)
    return a


def _metric_from_json(d: dict) -> MetricForecast:
    th = d.get("thresholds") or {}
    return MetricForecast(
        current=_f(d.get("current")), p10=_arr(d.get("p10")), p50=_arr(d.get("p50")), p90=_arr(d.get("p90")),
        trend=str(d.get("trend", "steady")), warning=_f(th.get("warning")), critical=_f(th.get("critical")),
        prob_30m=_f(d.get("probability_30m"), 0.0), prob_8h=_f(d.get("probability_8h"), 0.0),
        minutes_to_breach=None if d.get("minutes_to_breach") is None else float(d["minutes_to_breach"]),
        breach_basis=d.get("breach_basis"),
    )


def server_from_json(name: str, d: dict) -> ServerForecast:
    meta = d.get("_meta") or {}
    importance = meta.get("importance")
    return ServerForecast(
        server_name=name, profile=str(meta.get("profile", "unknown")), cores=meta.get("cores"),
        source=str(meta.get("source", "heuristic")), reason=meta.get("reason"),
        metrics={m: _metric_from_json(v) for m, v in d.items() if m != "_meta" and isinstance(v, dict)},
        risk_30m=_f(meta.get("risk_30m"), 0.0), risk_8h=_f(meta.get("risk_8h"), 0.0),
        minutes_to_breach=None if meta.get("minutes_to_breach") is None else float(meta["minutes_to_breach"]),
        breach_metric=meta.get("breach_metric"), last_seen=str(meta.get("last_seen") or ""),
        history_len=int(meta.get("history_len") or 0),
        importance=None if not importance else {str(k): _f(v, 0.0) for k, v in importance.items()},
    )


def alert_from_json(d: dict) -> Alert:
    return Alert(
        id=int(d["id"]), severity=str(d["severity"]), server_name=str(d["server"]), metric=str(d["metric"]),
        message=str(d.get("message", "")), opened_at=str(d.get("opened_at", "")),
        updated_at=str(d.get("updated_at", "")), predicted_crossing=d.get("predicted_crossing"),
        lead_minutes=None if d.get("lead_time_minutes") is None else float(d["lead_time_minutes"]),
        state=str(d.get("state", "ongoing")), resolved_at=d.get("resolved_at"),
        duration_minutes=_f(d.get("duration_minutes"), 0.0), clear_minutes=_f(d.get("clear_minutes"), 0.0),
        resolution=None if d.get("resolution") is None else str(d["resolution"]),
    )


def snapshot_from_json(d: dict) -> Snapshot:
    """The Snapshot that ``Snapshot.to_json()`` (or the daemon) wrote; raises ValueError if malformed.

    The four top-level parts must be there, with the types they have: any other JSON object
    (``{}``, ``{"status": "ok"}`` from another service) read as a healthy, empty fleet."""
    if not isinstance(d, dict):
        raise ValueError(f"not a tft-top snapshot: a JSON {type(d).__name__}, not an object")
    for key, kind in (("predictions", dict), ("alerts", list), ("environment", dict), ("metadata", dict)):
        if not isinstance(d.get(key), kind):
            raise ValueError(f"not a tft-top snapshot: no {key!r} {'object' if kind is dict else 'list'}")
    try:
        env = d.get("environment") or {}
        return Snapshot(
            data_time=None if d.get("data_time") is None else str(d["data_time"]),
            servers=tuple(server_from_json(n, s) for n, s in (d.get("predictions") or {}).items()),
            alerts=tuple(alert_from_json(a) for a in (d.get("alerts") or ())),
            environment=Environment(
                incident_probability_30m=_f(env.get("incident_probability_30m")),
                incident_probability_8h=_f(env.get("incident_probability_8h")),
                high_risk_servers=int(env.get("high_risk_servers") or 0),
                total_servers=int(env.get("total_servers") or 0),
                fleet_health=_f(env.get("fleet_health")),   # (null: no server reporting)
            ),
            metadata=dict(d.get("metadata") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValueError(f"not a tft-top snapshot: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------- the client


def normalise_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; a bare host:port gets http://."""
    given = url = url.strip()
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        parts.hostname
    except ValueError as exc:        # "Invalid IPv6 URL" said nothing of --connect or the value
        raise ValueError(f"--connect {given!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"--connect {given!r}: expected http://HOST:PORT (or https://)")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"--connect {given!r}: bad port") from None
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RemoteSource:
    """What the app reads from ``engine.source``: a daemon cannot be stepped back."""

    can_seek = False

    def __init__(self, url: str):
        self.name = f"remote {url}"
        self.cores: dict[str, int] = {}


class _Refused(Exception):
    """The daemon answered, but not with a snapshot (auth, bad URL): retrying may still help."""


class RemoteEngine:
    """Reads snapshots from a `tft-top serve` daemon; never raises into the caller's loop."""

    def __init__(self, url: str, api_key: str | None = None, *, transport: str = "auto",
                 poll_interval: float = 1.0, timeout: float = 5.0, connect_wait: float = 10.0,
                 min_backoff: float = 0.5, max_backoff: float = 10.0, trust_env: bool = False):
        if transport not in ("auto", "ws", "poll"):
            raise ValueError("transport must be 'auto', 'ws' or 'poll'")
        self.url = normalise_url(url)
        self.api_key = api_key or None
        self.transport = transport
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.connect_wait = connect_wait
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.trust_env = trust_env               # False: never go through $HTTP_PROXY & co.
        self.source = RemoteSource(self.url)
        self.finished = False
        self.started = False
        self.problems: list[str] = []
        self.last_snapshot: Snapshot | None = None
        self.last_error: str | None = None
        self.connected = False                   # a live WebSocket / the last poll answered
        self.reconnects = 0                      # connections (re)established after the first
        self.received = 0                        # snapshots received
        self.received_at: float | None = None    # time.time() of the newest
        self.mode = "ws" if transport != "poll" else "poll"
        self._latest: Snapshot | None = None
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws = None
        self._history_cache: dict[str, tuple[int, Any]] = {}

    # -- the Engine surface -----------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; wait up to ``connect_wait`` s for the first snapshot,
        or until the first attempt fails (a refused key or connection is shown at once, not
        after the wait; the retries go on behind)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tft-top-remote", daemon=True)
            self._thread.start()
        self.started = True
        self.wait_until(lambda r: r.received >= 1 or r.last_error is not None, self.connect_wait)

    def tick(self, advance: bool = True) -> Snapshot:
        """The newest snapshot received (immediately; ``advance`` is the daemon's business)."""
        with self._lock:
            snap, stale, err = self._latest, self.stale, self.last_error
        extra = {"stale": stale, "remote_error": err if stale else None, "remote_url": self.url,
                 "remote_age_s": None if self.received_at is None else round(time.time() - self.received_at, 1)}
        if snap is None:
            out = Snapshot(data_time=None, servers=(), alerts=(),
                           environment=Environment.unknown(),
                           metadata={"model_type": "unknown", "model_loaded": False, "device": "remote",
                                     # the reason first: at 120 columns a long URL cut "API key" off
                                     "model_reason": f"{err} · waiting for {self.url}" if err else
                                     f"waiting for {self.url}",
                                     "source": self.source.name, "finished": False, "tick_latency_ms": 0.0,
                                     "servers_on_tft": 0, "servers_on_heuristic": 0, **extra})
        else:
            meta = dict(snap.metadata)
            meta["source"] = f"{self.source.name}: {meta.get('source', '?')}"
            # the app stops ticking a finished engine; a daemon's stream is never finished for us
            # (a finished replay there may be restarted), so keep reading and say it apart
            meta["daemon_finished"] = bool(meta.get("finished", False))
            meta["finished"] = False
            meta.update(extra)
            if stale:        # the header shows a source's own state in place of its name, red if STALE
                # (the age first: a narrow header cuts the end, and the reason holds the long URL)
                age = extra["remote_age_s"]
                meta["source_status"] = ("remote STALE" + (f" · last data {age:.0f} s ago" if age is not None else "")
                                         + f": {err or 'no snapshot'}")
            elif meta["daemon_finished"]:
                meta["source_status"] = f"{self.source.name}: replay finished"
            out = replace(snap, metadata=meta)
        self.last_snapshot = out
        return out

    def forecast(self, t0: float | None = None) -> Snapshot:
        return self.tick(False)

    def seek_back(self, steps: int = 1) -> Snapshot:
        raise ValueError("a remote daemon cannot step back")

    def history(self, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The server's last 24 h from the daemon.  KeyError when the daemon does not know it (as
        Engine.history); an unreachable daemon gives an empty history, never an exception."""
        import httpx

        seq = self.received
        cached = self._history_cache.get(name)
        if cached is not None and cached[0] == seq:
            return self._as_of_shown(cached[1])
        empty = (np.zeros(0, dtype=np.int64), {m: np.zeros(0) for m in METRICS})
        try:
            with httpx.Client(base_url=self.url, headers=self._headers(), timeout=self.timeout,
                              trust_env=self.trust_env) as client:
                r = client.get(f"/servers/{_quote(name)}/history")
        except httpx.HTTPError as exc:
            self._set_error(f"history of {name}: {_one_line(exc)}")
            return empty
        if r.status_code == 404:
            raise KeyError(name)
        if r.status_code != 200:
            self._set_error(f"history of {name}: HTTP {r.status_code}: {_detail(r)}")
            return empty
        try:
            d = r.json()
            out = (np.asarray(d["epochs"], dtype=np.int64),
                   {m: _arr(d["metrics"].get(m)).copy() for m in METRICS})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._set_error(f"history of {name}: bad answer ({_one_line(exc)})")
            return empty
        self._history_cache = {name: (seq, out)}
        return self._as_of_shown(out)

    def _as_of_shown(self, history):
        """The history up to the data time of the snapshot the app last took (``tick``): a
        paused app shows an older snapshot while the daemon's history runs on to its now, and
        the drill-down's 24 h must end where that snapshot's forecast begins."""
        shown = self.last_snapshot.data_time if self.last_snapshot is not None else None
        epochs, values = history
        if shown is None or not len(epochs):
            return history
        cut = int(pd.Timestamp(shown).timestamp())
        keep = epochs <= cut
        if keep.all():
            return history
        return epochs[keep], {m: v[keep] for m, v in values.items()}

    def status(self) -> dict | None:
        """The daemon's /status, or None when it cannot be had (see last_error)."""
        import httpx

        try:
            with httpx.Client(base_url=self.url, headers=self._headers(), timeout=self.timeout,
                              trust_env=self.trust_env) as client:
                r = client.get("/status")
            if r.status_code == 200:
                return r.json()
            self._set_error(f"/status: HTTP {r.status_code}: {_detail(r)}")
        except (httpx.HTTPError, ValueError) as exc:
            self._set_error(f"/status: {_one_line(exc)}")
        return None

    @property
    def stale(self) -> bool:
        """True while there is no live connection to the daemon (or nothing received yet)."""
        return not self.connected or self._latest is None

    def wait_for(self, received: int, timeout: float) -> bool:
        """Wait until ``received`` snapshots have arrived in all; True when they have."""
        with self._new:
            return self._new.wait_for(lambda: self.received >= received, timeout)

    def wait_until(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked at each change of state)."""
        with self._new:
            return self._new.wait_for(lambda: predicate(self), timeout)

    def close(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        if self._thread is not None:
            self._thread.join(self.timeout + 1.0)
            self._thread = None

    stop = close

    # -- the connection thread -----------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _set_error(self, text: str) -> None:
        with self._new:
            self.last_error = text
            self._new.notify_all()

    def _set_connected(self, up: bool, error: str | None = None) -> None:
        with self._new:
            self.connected = up
            if error is not None:
                self.last_error = error
            self._new.notify_all()

    def _accept(self, data: dict) -> None:
        snap = snapshot_from_json(data)
        with self._new:
            self._latest = snap
            self.received += 1
            self.received_at = time.time()
            self.connected = True
            self.last_error = None
            self._new.notify_all()

    def _run(self) -> None:
        delay = self.min_backoff
        while not self._stop.is_set():
            before, mode = self.received, self.mode
            try:
                if self.mode == "ws":
                    self._ws_session()
                else:
                    self._poll_session()
                error = None if self._stop.is_set() else "the daemon closed the connection"
            except _Refused as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - whatever happens, retry; never raise to the caller
                error = self._describe(exc)
            if self._stop.is_set():
                break
            if self.mode != mode and self.received == before:
                continue            # the WebSocket was refused: poll at once, and show its reason
            self._set_connected(False, error)
            if self.received > before:      # it was working: retry soon
                delay = self.min_backoff
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_backoff)
        self._set_connected(False)

    def _describe(self, exc: BaseException) -> str:
        from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

        if isinstance(exc, InvalidStatus):
            code = exc.response.status_code
            if code == 401:
                return f"missing or wrong API key: the daemon refused the connection (HTTP {code})"
            if self.transport == "auto":
                # something in between does not pass WebSockets, or the daemon refused the
                # handshake (403 is all a refused handshake says: a wrong key, path or Host
                # name alike): a plain GET gets its reason, or the snapshot
                self.mode = "poll"
                return f"WebSocket refused (HTTP {code}); asking /predictions/current"
            if code == 403:
                return (f"the daemon refused the connection (HTTP {code}): a missing or wrong API key, "
                        f"a wrong path, or a Host name it does not answer to")
            return f"WebSocket refused (HTTP {code})"
        if isinstance(exc, ConnectionClosed):
            rcvd = exc.rcvd
            why = "" if rcvd is None else f" (close code {rcvd.code}{': ' + rcvd.reason if rcvd.reason else ''})"
            return f"connection to the daemon lost{why}"
        if isinstance(exc, InvalidMessage):     # something answered, but not a WebSocket handshake
            if self.transport == "auto":
                self.mode = "poll"
                return f"{self.url} did not answer as a tft-top daemon; trying /predictions/current"
            return f"{self.url} did not answer as a tft-top daemon ({_one_line(exc)})"
        if isinstance(exc, ConnectionRefusedError):
            return f"cannot connect to {self.url}: connection refused"
        return f"cannot reach {self.url}: {_one_line(exc)}"

    def _ws_session(self) -> None:
        from websockets.sync.client import connect

        parts = urlsplit(self.url)
        ws_url = urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path + WS_PATH, "", ""))
        with connect(ws_url, additional_headers=self._headers(), open_timeout=self.timeout, proxy=None,
                     ping_interval=10, ping_timeout=10, close_timeout=1, max_size=MAX_MESSAGE_BYTES,
                     compression=None) as ws:      # (the daemon does not deflate: see _uvicorn_config)
            self._ws = ws
            self._on_connected()
            try:
                while not self._stop.is_set():
                    try:
                        message = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    self._accept_text(message)
            finally:
                self._ws = None

    def _on_connected(self) -> None:
        with self._new:
            if self.received:
                self.reconnects += 1
            self.connected = True
            self.last_error = None
            self._new.notify_all()

    def _accept_text(self, message) -> None:
        try:
            self._accept(json.loads(message))
        except ValueError as exc:
            self._set_error(f"bad snapshot from the daemon: {_one_line(exc)}")

    def _poll_session(self) -> None:
        import httpx

        etag = None
        with httpx.Client(base_url=self.url, headers=self._headers(), timeout=self.timeout,
                          trust_env=self.trust_env) as client:
            while not self._stop.is_set():
                r = client.get("/predictions/current", headers={"If-None-Match": etag} if etag else None)
                if r.status_code == 200:
                    if not self.connected:
                        self._on_connected()
                    etag = r.headers.get("etag")
                    self._accept_text(r.content)
                elif r.status_code == 304:
                    self._set_connected(True)
                elif r.status_code == 503:          # warming up: connected, nothing to show yet
                    self._set_connected(True, f"the daemon is not ready: {_detail(r)}")
                elif r.status_code in (401, 403):
                    raise _Refused(f"{_detail(r)} (the daemon refused the request: HTTP {r.status_code})")
                else:
                    raise _Refused(f"/predictions/current answered HTTP {r.status_code}: {_detail(r)}")
                self._stop.wait(self.poll_interval)


def _detail(r) -> str:
    """One line for a refusal: the daemon's JSON detail, else what answered instead."""
    try:
        return " ".join(str(r.json().get("detail")).split())
    except (ValueError, AttributeError):
        text = " ".join(r.text[:200].split())
        if text.startswith("<") or "html" in r.headers.get("content-type", ""):
            return "an HTML page: this URL is not a tft-top daemon"
        return text or "an empty answer"


def _quote(name: str) -> str:
    """A server's name as one path segment.  A name of dots alone ("." or "..") is encoded
    too: as it is, the client resolves it as a path step (/servers/../history is /history)."""
    from urllib.parse import quote

    if name and set(name) == {"."}:
        return "%2E" * len(name)
    return quote(name, safe="")
