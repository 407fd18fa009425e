"""Live sources: this host (psutil) and a Prometheus server (node_exporter metrics).

Both implement :class:`engine.sources.Source`.  ``poll()`` never blocks on a timer: it
returns an empty :class:`Tick` until a new sample is due, so the engine loop decides how
often to call it.  Every record goes through :func:`engine.contract.validate_records`; a
refused record is reported in ``Tick.problems`` and never merged.

A value's timestamp means what it means in the recorded fleets and in PromQL: the value
at 5-minute time ``t`` describes the interval ``(t - 5 min, t]`` (CPU busy share, load at
the end, memory and disk at the end).

Neither source raises into the engine loop once constructed: :class:`PrometheusSource`
turns a Prometheus that is down, slow or answering errors into a problem line, marks
itself stale, retries with exponential backoff, and backfills the gap when it is back.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from engine.contract import METRICS, PERCENT_METRICS, STEP_SECONDS, Problem, validate_records
from engine.sources import Source, Tick

# Values this far outside the contract's range are rounding noise and are clipped to it;
# anything further out is left for validation to refuse.
NOISE = 1e-6
# CPU busy % from counter rates (``1 - rate(idle)``) is a ratio of counter deltas read by
# the kernel and timestamps taken by the scraper; on an idle host it is routinely a
# hundredth of a point below 0 (or above 100 on a saturated one).  That is measurement
# noise of the same kind, so CPU gets a wider margin (percentage points).
CPU_RATE_NOISE = 0.5

DEFAULT_SELECTOR = '{job="node"}'


def clip_noise(metric: str, value: float | None, margin: float = NOISE) -> float | None:
    """``value`` clipped into the metric's range when it is outside by at most ``margin``."""
    if value is None or not math.isfinite(value):
        return value
    high = 100.0 if metric in PERCENT_METRICS else math.inf
    if -margin <= value < 0.0:
        return 0.0
    if high < value <= high + margin:
        return high
    return value


def _empty_frame(source: str) -> pd.DataFrame:
    """An empty canonical frame (what validating no records gives, less the problem)."""
    return validate_records([], source).frame


def _human_seconds(seconds: float) -> str:
    seconds = max(0, int(math.ceil(seconds)))
    if seconds < 120:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min" if secs == 0 or minutes >= 10 else f"{minutes} min {secs} s"


def _iso(epoch_seconds: float) -> str:
    return pd.Timestamp(int(epoch_seconds), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _hhmm(epoch_seconds: float) -> str:
    return pd.Timestamp(int(epoch_seconds), unit="s", tz="UTC").strftime("%H:%M UTC")


# --------------------------------------------------------------------------- this host


class LocalSource(Source):
    """This host as a fleet of one: psutil CPU %, memory %, disk % of ``/``, 1-minute load.

    A sample is taken when the first poll comes and then once per interval (5 min, or
    ``demo_interval`` seconds for a demo), aligned to the wall clock's interval grid;
    polls in between return an empty Tick.  CPU % is the busy share of all CPUs since
    the previous sample (psutil's formula, from this source's own ``cpu_times`` deltas,
    so it does not depend on which thread polls or on other ``cpu_percent`` callers); the
    first sample's over its own ``first_window`` seconds, not since the source was built:
    that span is tft-top's own start (torch, the model), which read as a host at 100 %.
    There is no history to backfill: ``backfill()`` returns an empty frame, and the
    forecaster uses its heuristic until the host has enough history.
    """

    first_window = 0.5      # seconds the first CPU reading spans

    def __init__(self, interval_seconds: float = 300, demo_interval: float | None = None,
                 disk_path: str = "/", clock: Callable[[], float] = time.time):
        import psutil  # imported here: only this source needs it

        self._psutil = psutil
        self.interval = float(demo_interval if demo_interval else interval_seconds)
        if not self.interval >= 1:      # (samples are told apart to the second)
            raise ValueError(f"sampling interval must be at least 1 s, got {self.interval:g} s")
        self.disk_path = disk_path
        self.clock = clock
        self.host = socket.gethostname() or "localhost"
        self.name = f"local {self.host}"
        self.cores = {self.host: os.cpu_count() or 1}
        self._empty = _empty_frame(self.name)      # shared by the empty ticks (nobody mutates a Tick's frame)
        self.next_due: float | None = None        # clock time of the next sample; None: at the first poll
        self.last_sample_at: float | None = None
        self._cpu_last = None       # the previous cpu_times(); None: none yet (the first sample times its own)

    def wall_time(self) -> float:
        return float(self.clock())

    def backfill(self) -> pd.DataFrame:
        return self._empty

    def _cpu_percent(self) -> float:
        """Busy % of all CPUs since the previous call (psutil.cpu_percent's formula); the
        first call's over ``first_window`` seconds."""
        if self._cpu_last is None:
            self._cpu_last = self._psutil.cpu_times()
            time.sleep(self.first_window)
        now = self._psutil.cpu_times()
        if _cpu_total(now) - _cpu_total(self._cpu_last) <= 0:  # too soon after the last read
            time.sleep(0.1)
            now = self._psutil.cpu_times()
        before, self._cpu_last = self._cpu_last, now
        total = _cpu_total(now) - _cpu_total(before)
        busy = _cpu_busy(now) - _cpu_busy(before)
        return 0.0 if total <= 0 else min(max(100.0 * busy / total, 0.0), 100.0)

    def sample(self) -> dict[str, Any]:
        """One record for this host, now."""
        now = self.clock()
        return {
            "server_name": self.host,
            "timestamp": now,
            "cpu_percent": clip_noise("cpu_percent", self._cpu_percent()),
            "memory_percent": clip_noise("memory_percent", float(self._psutil.virtual_memory().percent)),
            "disk_percent": clip_noise("disk_percent", float(self._psutil.disk_usage(self.disk_path).percent)),
            "load_average": clip_noise("load_average", float(os.getloadavg()[0])),
            "profile": "local",
        }

    def poll(self) -> Tick:
        now = self.clock()
        clock_back = self.next_due is not None and self.next_due - now > self.interval
        if clock_back:           # the clock went back: sample now, not when it catches up again
            self.next_due = None
        if self.next_due is not None and now < self.next_due:
            return Tick(self._empty)
        try:
            record = self.sample()
        except Exception as exc:  # noqa: BLE001 - a sensor failing must not stop the engine loop
            record = None
            problems = [f"{self.name}: sampling failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"]
        self.last_sample_at = now
        self.next_due = (math.floor(now / self.interval) + 1) * self.interval
        if record is None:
            return Tick(self._empty, problems)
        result = validate_records([record], self.name)
        notes = [f"{self.name}: the clock went back; sampling goes on from now"] if clock_back else []
        return Tick(result.frame, notes + [str(p) for p in result.problems])

    def status_line(self) -> str:
        every = _human_seconds(self.interval)
        if self.next_due is None:
            return f"local {self.host} · every {every}"
        return f"local {self.host} · every {every} · next in {_human_seconds(self.next_due - self.clock())}"


def _cpu_total(times) -> float:
    total = sum(times)
    # Linux: guest time is already counted in user, guest_nice in nice.
    return total - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _cpu_busy(times) -> float:
    # iowait is idle time (as psutil counts it).
    return _cpu_total(times) - times.idle - getattr(times, "iowait", 0.0)


# --------------------------------------------------------------------------- Prometheus


PROBE_EVERY_S = 30.0     # between steps, a Prometheus is asked whether it is there this often
MAX_ANSWER_BYTES = 256 * 2**20     # a day of 5-minute steps for thousands of instances is tens of MB


class PrometheusError(Exception):
    """Prometheus could not answer; the message is one short line ("connection refused")."""


_LABEL = r"[A-Za-z_][A-Za-z0-9_]*"
_STRING = r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'" + r"|`[^`]*`"
_MATCHER = rf"\s*{_LABEL}\s*(?:=~|!~|!=|=)\s*(?:{_STRING})\s*"
_MATCHERS_RE = re.compile(rf"^(?:{_MATCHER}(?:,{_MATCHER})*,?\s*)?$")


def parse_selector(selector: str | None) -> str:
    """The label matchers inside a PromQL selector, ready to join with others.

    ``'{job="node"}'``, ``'job="node"'``, ``'{}'``, ``''`` and ``None`` are accepted;
    anything else (a metric name, unbalanced quotes) raises ValueError.
    """
    text = (selector or "").strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if not _MATCHERS_RE.match(text):
        raise ValueError(f"selector {selector!r} is not a list of PromQL label matchers such as "
                         "'{job=\"node\"}' or '{job=\"node\",instance=~\"web-.*\"}'")
    return text.strip().rstrip(",").strip()


def _matchers(*parts: str) -> str:
    return "{" + ",".join(p for p in parts if p) + "}"


def node_exporter_queries(selector: str | None = DEFAULT_SELECTOR, rate_window: str = "5m") -> dict[str, str]:
    """PromQL for the four canonical metrics (and ``cores``) over node_exporter's metrics.

    The selector's matchers are merged into every metric's own matchers; each result has
    one series per ``instance`` label.  Series that repeat for one instance (the same
    filesystem under two devices) are summed on both sides of a ratio, which keeps the ratio.
    """
    sel = parse_selector(selector)
    idle = _matchers('mode="idle"', sel)
    plain = _matchers(sel)
    root = _matchers('mountpoint="/"', sel)
    return {
        "cpu_percent": f"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{idle}[{rate_window}])))",
        "memory_percent": (f"100 * (1 - sum by (instance) (node_memory_MemAvailable_bytes{plain})"
                           f" / sum by (instance) (node_memory_MemTotal_bytes{plain}))"),
        # as df and psutil (--local) count it: used / (used + available to users), used = size -
        # free; 1 - avail/size counted root's reserved blocks as used (70 % against df's 26 %
        # on one ext4 root)
        "disk_percent": (f"100 * (sum by (instance) (node_filesystem_size_bytes{root})"
                         f" - sum by (instance) (node_filesystem_free_bytes{root}))"
                         f" / (sum by (instance) (node_filesystem_size_bytes{root})"
                         f" - sum by (instance) (node_filesystem_free_bytes{root})"
                         f" + sum by (instance) (node_filesystem_avail_bytes{root}))"),
        "load_average": f"max by (instance) (node_load1{plain})",
        "cores": f"count by (instance) (node_cpu_seconds_total{idle})",
    }


def _is_loopback(host: str | None) -> bool:
    return host in ("localhost", "::1") or bool(host and host.startswith("127."))


class PrometheusSource(Source):
    """A fleet from Prometheus: one server per ``instance`` of node_exporter's metrics.

    ``backfill()`` fetches the last ``backfill_hours`` at ``step``-second resolution with
    ``query_range``; each ``poll()`` fetches the grid steps that have passed since the
    last successful fetch (normally one, more after an outage: the gap is backfilled,
    at most ``backfill_hours``).  When Prometheus is down, slow or answers an error,
    ``poll()`` returns an empty Tick with one problem line, ``stale`` becomes True and
    the next try waits ``retry_base * 2**(failures-1)`` seconds, at most ``retry_cap``;
    polls before then return an empty Tick at once.  Nothing raises into the engine loop.

    ``cores`` is fetched on first access (the engine reads it before ``backfill``) and
    kept up to date in place as instances appear.  ``profile`` is "unknown" (Prometheus
    has no such label by convention).
    """

    def __init__(self, url: str, selector: str | None = DEFAULT_SELECTOR, timeout: float = 5.0,
                 step: int = STEP_SECONDS, backfill_hours: float = 24, retry_base: float = 10.0,
                 retry_cap: float = 300.0, clock: Callable[[], float] = time.time):
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"prometheus URL {url!r} is not an http(s)://host[:port] URL")
        if int(step) <= 0:
            raise ValueError(f"step must be a positive number of seconds, got {step}")
        self.queries = node_exporter_queries(selector)  # raises ValueError for a bad selector
        self.selector = selector or ""
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname  # IPv6 literal
        netloc = host if parsed.port is None else f"{host}:{parsed.port}"  # user:password@ left out
        self.url = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))
        self._headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
                         "User-Agent": "tft-top"}
        if parsed.username is not None:  # http://user:password@host: basic auth, never shown
            user = urllib.parse.unquote(parsed.username)
            password = urllib.parse.unquote(parsed.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        proxies = {} if _is_loopback(parsed.hostname) else None  # never send loopback via a proxy
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
        self.name = f"prometheus {self.url}" + (f" {self.selector.strip()}" if self.selector.strip() else "")
        self._empty = _empty_frame(self.name)
        self.timeout = float(timeout)
        self.step = int(step)
        self.backfill_hours = float(backfill_hours)
        self.retry_base, self.retry_cap = float(retry_base), float(retry_cap)
        self.clock = clock

        self.stale = False
        self.last_error: str | None = None
        self.next_retry_at: float | None = None
        self.failures = 0
        self.last_success_at: float | None = None
        self.last_step: int | None = None          # newest grid time fetched (epoch s); None: nothing yet
        self.instances: set[str] = set()
        # series found, but none with a sample at or before a 5-minute step yet (a node_exporter
        # scraped for the first time minutes ago): the step at which the first one will show
        self.first_step_at: int | None = None
        self.requests = 0
        self._cores: dict[str, int] = {}
        self._cores_tried = False
        self._cores_asked: set[str] = set()        # instances a cores query has looked for
        self._duplicates: set[str] = set()          # instances with two series for one metric (last fetch)
        self._pending: list[str] = []              # problems met outside poll(), reported by the next poll

    # -- Source interface ----------------------------------------------------------
    @property
    def cores(self) -> dict[str, int]:  # type: ignore[override]
        if not self._cores_tried and self._due():
            self._pending.extend(self._guarded(self._refresh_cores).problems)
        return self._cores

    def want_history(self, steps: int) -> None:
        self.backfill_hours = max(self.backfill_hours, int(steps) * STEP_SECONDS / 3600.0)

    def wall_time(self) -> float:
        return float(self.clock())

    def backfill(self) -> pd.DataFrame:
        """The last ``backfill_hours`` (an empty frame if Prometheus cannot be reached now)."""
        if not self._due():
            return self._empty
        tick = self._guarded(self._fetch_due)
        self._pending.extend(tick.problems)
        return tick.frame

    def poll(self) -> Tick:
        pending, self._pending = self._pending, []
        if not self._due():
            return Tick(self._empty, pending)
        tick = self._guarded(self._fetch_due)
        return Tick(tick.frame, pending + tick.problems)

    # -- state ---------------------------------------------------------------------
    def _due(self) -> bool:
        return self.next_retry_at is None or self.clock() >= self.next_retry_at

    def _guarded(self, fetch: Callable[[], Tick | None]) -> Tick:
        """Run a fetch; a failure becomes a problem line, staleness and the next retry time."""
        asked = self.requests
        try:
            tick = fetch() or Tick(self._empty)
        except PrometheusError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - nothing may raise into the engine loop
            return self._failed(f"{type(exc).__name__}: {exc}")
        self.stale, self.last_error, self.next_retry_at, self.failures = False, None, None, 0
        if self.requests != asked:      # (a poll between steps asks nothing: it is no contact)
            self.last_success_at = self.clock()
        return tick

    def _failed(self, reason: str) -> Tick:
        self.failures += 1
        delay = min(self.retry_cap, self.retry_base * 2 ** (self.failures - 1))
        self.stale, self.last_error = True, reason
        self.next_retry_at = self.clock() + delay
        # the time of the next try, not "in 20 s": the line is shown beside the header's live
        # countdown long after it was written, and a relative delay read as a second, stale one
        at = time.strftime("%H:%M:%S", time.gmtime(self.next_retry_at))
        line = f"prometheus {self.url}: {reason}; next try at {at} UTC ({_human_seconds(delay)} later)"
        return Tick(self._empty, [line])

    def status_line(self) -> str:
        """One short header line: "prometheus ok · 12 instances" or "prometheus STALE: … · retry in 20 s"."""
        if self.stale:
            wait = max(0.0, (self.next_retry_at or self.clock()) - self.clock())
            return f"prometheus STALE: {self.last_error} · retry in {_human_seconds(wait)}"
        if self.last_success_at is None:
            return f"prometheus {self.url} · connecting"
        n = len(self.instances)
        if not n and self.first_step_at is not None:
            return f"prometheus ok · series found, the first 5-minute step at {_hhmm(self.first_step_at)}"
        return f"prometheus ok · {n} instance{'' if n == 1 else 's'}"

    # -- fetching ------------------------------------------------------------------
    def _grid_now(self) -> int:
        return int(self.clock() // self.step * self.step)

    def _fetch_due(self) -> Tick | None:
        """Fetch every grid step after ``last_step`` up to now; None when no step is due."""
        end = self._grid_now()
        window = int(self.backfill_hours * 3600 // self.step * self.step)
        earliest = end - window + self.step  # the window is (end - backfill_hours, end], as for a replay
        clock_back = self.last_step is not None and end < self.last_step - self.step
        if clock_back:           # the clock went back: fetch from now on, not when it catches up again
            self.last_step = end - self.step
        start = earliest if self.last_step is None else max(self.last_step + self.step, earliest)
        if start > end:
            # between steps: a cheap query now and then, so that a Prometheus that has died
            # turns STALE within PROBE_EVERY_S, not at the next 5-minute step ("ok" meanwhile)
            if self.last_success_at is not None and self.clock() - self.last_success_at >= PROBE_EVERY_S:
                self._api("/api/v1/query", {"query": "vector(1)", "time": str(self.clock())}, "vector")
            return None
        if not self._cores_tried:
            self._refresh_cores()
        self._duplicates = set()
        columns = {metric: self._query_range(self.queries[metric], start, end) for metric in METRICS}
        first = self.last_step is None
        tick = self._to_tick(columns)
        if self._duplicates:
            names = sorted(self._duplicates)
            tick.problems.append(f"{self.name}: more than one series per step for {', '.join(names[:3])}"
                                 f"{f' and {len(names) - 3} more' if len(names) > 3 else ''} (another job "
                                 "scraping the same instance?): the last is used; narrow --selector")
        self.last_step = end
        if clock_back:
            tick.problems.append(f"{self.name}: the clock went back; fetching goes on from {_iso(end)}")
        if any(columns.values()):
            self.first_step_at = None
        elif first or self.first_step_at is not None:
            try:
                scraped = self._scraped_now()
            except PrometheusError:     # (the samples are fetched, last_step has moved: no failure
                scraped = False         # now; the line below says what is known)
            if scraped:
                # the series are there, but scraped only since the last 5-minute step: not a
                # problem, the status line says when the first step comes
                self.first_step_at = end + self.step
            else:
                # nothing matches (or the series found before a step went away again)
                self.first_step_at = None
                tick.problems.append(f"{self.name}: no node_exporter series match the selector over the last "
                                     f"{self.backfill_hours:g} h up to {_iso(end)} (is node_exporter scraped "
                                     "under it?)")
        if self.instances - set(self._cores) - self._cores_asked:
            try:
                self._refresh_cores()
            except PrometheusError as exc:
                # the samples are fetched and last_step has moved: keep them; the new
                # instances' core counts are asked again at the next fetch
                self._cores_asked -= self.instances - set(self._cores)
                tick.problems.append(f"prometheus {self.url}: core counts not read ({exc}); "
                                     "load thresholds use the default until they are")
        return tick

    def _refresh_cores(self) -> None:
        """CPU counts per instance, now (an instance's idle series exist as long as it is scraped)."""
        self._cores_tried = True
        self._cores_asked |= self.instances
        at = self.clock()
        for series in self._api("/api/v1/query", {"query": self.queries["cores"], "time": _num(at)}, "vector"):
            instance = series.get("metric", {}).get("instance")
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if instance and math.isfinite(value) and value >= 1:
                self._cores[instance] = int(value)  # in place: whoever holds the dict sees it

    def _scraped_now(self) -> bool:
        """Whether the selector's node_load1 has a sample now (an instant query)."""
        return bool(self._api("/api/v1/query", {"query": self.queries["load_average"], "time": _num(self.clock())},
                              "vector"))

    def _query_range(self, query: str, start: int, end: int) -> dict[tuple[str, int], str]:
        params = {"query": query, "start": _num(start), "end": _num(end), "step": f"{self.step}s"}
        values: dict[tuple[str, int], str] = {}
        for series in self._api("/api/v1/query_range", params, "matrix"):
            instance = str(series.get("metric", {}).get("instance", ""))
            for point in series.get("values", []):
                key = (instance, int(round(float(point[0]))))
                if key in values and values[key] != point[1]:
                    self._duplicates.add(instance)      # two series of one instance: said, last kept
                values[key] = point[1]
        return values

    def _to_tick(self, columns: dict[str, dict[tuple[str, int], str]]) -> Tick:
        keys = sorted(set().union(*(c.keys() for c in columns.values())))
        records: list[dict[str, Any]] = []
        for instance, ts in keys:
            record: dict[str, Any] = {"server_name": instance, "timestamp": ts, "profile": None}
            for metric, column in columns.items():
                value = _number(column.get((instance, ts)))
                if isinstance(value, float):
                    value = clip_noise(metric, value, CPU_RATE_NOISE if metric == "cpu_percent" else NOISE)
                record[metric] = value  # None or an unparsable string: validation words the problem
            records.append(record)
        if not records:
            return Tick(self._empty)
        self.instances = {instance for instance, _ in keys}
        result = validate_records(records, self.name)
        return Tick(result.frame, _describe(result.problems, keys, self.name))

    def _api(self, path: str, params: dict[str, str], result_type: str) -> list[dict]:
        """POST to the HTTP API; the ``data.result`` list, or PrometheusError with a short reason."""
        params = {**params, "timeout": f"{max(1, round(self.timeout * 1000))}ms"}  # server-side limit too
        request = urllib.request.Request(self.url + path, data=urllib.parse.urlencode(params).encode(),
                                         headers=self._headers, method="POST")
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            raise PrometheusError(_network_error(exc.reason, self.timeout)) from None
        except (TimeoutError, socket.timeout) as exc:
            raise PrometheusError(_network_error(exc, self.timeout)) from None
        except OSError as exc:  # http.client errors are OSErrors or HTTPExceptions
            raise PrometheusError(_network_error(exc, self.timeout)) from None
        except Exception as exc:  # noqa: BLE001 - http.client.HTTPException and kin
            raise PrometheusError(f"bad HTTP response ({type(exc).__name__})") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise PrometheusError(f"answer larger than {MAX_ANSWER_BYTES // 2**20} MB (narrow --selector)")
        try:
            payload = json.loads(body)
        except ValueError:
            raise PrometheusError("answer is not JSON (is this a Prometheus URL?)") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error", "unknown error") if isinstance(payload, dict) else "unknown error"
            error = " ".join(str(error).split())
            raise PrometheusError(f"query failed: {error[:200] + '…' if len(error) > 200 else error}")
        data = payload.get("data") or {}
        if not isinstance(data, dict):
            raise PrometheusError(f"unexpected answer (data is {type(data).__name__}, wanted an object)")
        if data.get("resultType") != result_type or not isinstance(data.get("result"), list):
            raise PrometheusError(f"unexpected answer (resultType {data.get('resultType')!r}, wanted {result_type})")
        return data["result"]


def _number(raw: object) -> object:
    """A sample value ("12.5", "NaN", "+Inf") as a float; None and unparsable values pass through."""
    if raw is None:
        return None
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return raw


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _http_error(exc: urllib.error.HTTPError) -> str:
    detail = ""
    try:
        payload = json.loads(exc.read() or b"{}")
        detail = f": {payload.get('error')}" if isinstance(payload, dict) and payload.get("error") else ""
    except (ValueError, OSError):
        pass
    if exc.code == 404 and not detail:
        # (a URL with a path, such as …:9090/graph, had a bare "HTTP 404 Not Found" retried forever)
        detail = ": no Prometheus API there (give the server's base URL, e.g. http://host:9090, without a path)"
    return f"HTTP {exc.code} {exc.reason}{detail}"[:200]


def _network_error(reason: object, timeout: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host ({reason.strerror or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[0].lower() + reason.strerror[1:]
    return str(reason) or type(reason).__name__


# what an instance lacks when a query found nothing for it (a record missing that metric
# is refused whole: the model reads all four)
_ABSENT = {
    "cpu_percent": 'no node_cpu_seconds_total{mode="idle"} series',
    "memory_percent": "no node_memory_MemAvailable_bytes and MemTotal_bytes series",
    "disk_percent": 'no filesystem mounted at "/" (node_filesystem_*{mountpoint="/"})',
    "load_average": "no node_load1 series",
}


def _describe(problems: Sequence[Problem], keys: list[tuple[str, int]], source: str) -> list[str]:
    """Problem strings that name the refused record by instance and time (not by row).

    The same refusal repeated over several steps (an instance without a "/" filesystem,
    say) is one line with a count, not one line per step.  A metric that no query found
    for the instance says which series it lacks, and that the server is left out.
    """
    lines: dict[tuple, list] = {}
    for p in problems:
        if p.row is None:
            lines.setdefault((str(p),), [str(p), 1, None])
            continue
        instance, ts = keys[p.row - 1]
        key = (instance, p.column, p.message)
        if key in lines:
            lines[key][1] += 1
            lines[key][2] = ts
            continue
        where = f"{instance or '(no instance label)'} at {_iso(ts)}"
        where += f", column {p.column}" if p.column else ""
        message = p.message
        if message == "missing value" and p.column in _ABSENT:
            message = f"{_ABSENT[p.column]} for this instance: it is left out until it has one"
        lines[key] = [f"{source}: {where}: {message}", 1, None]
    return [text if count == 1 else f"{text} (and {count - 1} more steps until {_iso(last)})"
            for text, count, last in lines.values()]
