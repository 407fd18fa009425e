"""A real Prometheus server for the live-source tests, holding a slice of the demo fleet.

The slice is written as node_exporter-style OpenMetrics (per-CPU ``node_cpu_seconds_total``
counters, memory and filesystem byte gauges, ``node_load1``) at a 60 s resolution, turned
into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` and served by
``prometheus`` on a free loopback port with no scrape targets.  Everything here talks to
127.0.0.1 only and stops the processes and threads it started.
"""
from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
INSTALL_HINT = ("the prometheus binary is not installed: `apt-get install -y prometheus` "
                "(Debian/Ubuntu; brings /usr/bin/prometheus and /usr/bin/promtool; .ci/run does it)")

NODE_EXPORTER_HINT = ("node_exporter is not installed: `apt-get install -y prometheus-node-exporter` "
                      "(Debian/Ubuntu; .ci/run does it)")

STEP = 300
RESOLUTION = 60          # seconds between synthetic "scrapes"
MEM_TOTAL = 16 * 2**30
FS_SIZE = 100 * 10**9
BOOT_USED = 0.9          # /boot is 90 % full: a query that forgets mountpoint="/" shows it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def wait_until_serving(server, name: str, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; stop ``server`` and raise (with its log) if it
    exits or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {server.proc.returncode}: {server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} not ready after {timeout} s: {server.log.read_text()[-2000:]}")

class FakeClock:
    """A settable wall clock (epoch seconds) for the sources' ``clock=`` argument."""

    def __init__(self, now: float):
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fleet_slice(frame: pd.DataFrame, servers: list[str], hours: float, end_epoch: int) -> pd.DataFrame:
    """The last ``hours`` of ``servers`` from a canonical frame, shifted so the last sample is ``end_epoch``.

    The shift is a whole number of 5-minute steps, so the slice stays on the grid.
    """
    part = frame[frame["server_name"].isin(servers)]
    last = part["timestamp"].max()
    part = part[part["timestamp"] > last - pd.Timedelta(hours=hours)].copy()
    shift = (end_epoch - int(last.timestamp())) // STEP * STEP
    part["timestamp"] = part["timestamp"] + pd.Timedelta(seconds=shift)
    return part.sort_values(["server_name", "timestamp"]).reset_index(drop=True)


def _cpu_splits(cores: int) -> np.ndarray:
    """Per-CPU offsets of the idle fraction that cancel out on average (so avg, not sum, is right)."""
    return np.array([0.5 if k % 2 == 0 else -0.5 for k in range(cores)]) if cores % 2 == 0 else np.zeros(cores)


def openmetrics_lines(frame: pd.DataFrame, cores: dict[str, int], job: str) -> dict[str, list[str]]:
    """node_exporter-style samples for a 5-minute canonical frame, grouped by metric family.

    A value at 5-minute time t describes (t-5m, t]: the idle counters grow at the matching
    rate through that interval, and gauges hold the value there, sampled every 60 s.  So at
    a 5-minute evaluation time, ``rate(...[5m])`` and the gauges give back the frame's values.
    """
    families: dict[str, list[str]] = {f: [] for f in (
        "node_cpu_seconds", "node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes", "node_filesystem_free_bytes", "node_filesystem_size_bytes", "node_load1")}
    sub = np.arange(STEP - RESOLUTION, -1, -RESOLUTION)  # 240, 180, ..., 0 seconds before t
    for server, g in frame.groupby("server_name", sort=True):
        t = (g["timestamp"].astype("int64").to_numpy() // 10**9)
        ts = (t[:, None] - sub[None, :]).ravel()
        def per_sample(values: np.ndarray) -> np.ndarray:
            return np.repeat(np.asarray(values, dtype=np.float64), len(sub))
        cpu, mem = per_sample(g["cpu_percent"]) / 100, per_sample(g["memory_percent"]) / 100
        disk, load = per_sample(g["disk_percent"]) / 100, per_sample(g["load_average"])
        base = f'instance="{server}",job="{job}"'
        n_cores = cores[server]
        for k, offset in enumerate(_cpu_splits(n_cores)):
            idle_frac = np.clip(1 - cpu + offset * np.minimum(cpu, 1 - cpu), 0, 1)
            idle = 1e6 + np.cumsum(idle_frac * RESOLUTION)
            user = 2e6 + np.cumsum((1 - idle_frac) * RESOLUTION)
            for mode, counter in (("idle", idle), ("user", user)):
                labels = f'cpu="{k}",{base},mode="{mode}"'
                families["node_cpu_seconds"] += [f"node_cpu_seconds_total{{{labels}}} {v:.6f} {s}"
                                                 for v, s in zip(counter, ts)]
        families["node_memory_MemTotal_bytes"] += [f"node_memory_MemTotal_bytes{{{base}}} {MEM_TOTAL} {s}" for s in ts]
        families["node_memory_MemAvailable_bytes"] += [
            f"node_memory_MemAvailable_bytes{{{base}}} {v:.1f} {s}" for v, s in zip(MEM_TOTAL * (1 - mem), ts)]
        for mount, used in (("/", disk), ("/boot", np.full(len(ts), BOOT_USED))):
            labels = f'device="/dev/sda1",fstype="ext4",{base},mountpoint="{mount}"'
            families["node_filesystem_size_bytes"] += [f"node_filesystem_size_bytes{{{labels}}} {FS_SIZE} {s}" for s in ts]
            families["node_filesystem_avail_bytes"] += [
                f"node_filesystem_avail_bytes{{{labels}}} {v:.1f} {s}" for v, s in zip(FS_SIZE * (1 - used), ts)]
            # a filesystem without reserved blocks: free = avail (used / (used + avail) = used / size)
            families["node_filesystem_free_bytes"] += [
                f"node_filesystem_free_bytes{{{labels}}} {v:.1f} {s}" for v, s in zip(FS_SIZE * (1 - used), ts)]
        families["node_load1"] += [f"node_load1{{{base}}} {v:.6g} {s}" for v, s in zip(load, ts)]
    return families


def write_openmetrics(path: Path, parts: list[tuple[pd.DataFrame, dict[str, int], str]]) -> None:
    """Write (frame, cores, job) parts as one OpenMetrics file, families contiguous, ending in # EOF."""
    merged: dict[str, list[str]] = {}
    for frame, cores, job in parts:
        for family, lines in openmetrics_lines(frame, cores, job).items():
            merged.setdefault(family, []).extend(lines)
    with open(path, "w") as out:
        for family, lines in merged.items():
            out.write(f"# TYPE {family} {'counter' if family == 'node_cpu_seconds' else 'gauge'}\n")
            out.write("\n".join(lines))
            out.write("\n")
        out.write("# EOF\n")


class PrometheusServer:
    """``prometheus`` on 127.0.0.1:port over a data directory; ``start`` waits until it is ready."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "prometheus.log"

    def load_openmetrics(self, path: Path) -> None:
        result = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(path), str(self.data)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"promtool failed: {result.stderr[-2000:]}")

    def start(self, timeout: float = 30.0, scrape: dict[str, str] | None = None) -> None:
        """Start; ``scrape`` maps job names to loopback targets scraped every second (none by default)."""
        config = self.workdir / "prometheus.yml"
        jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
                       for job, target in (scrape or {}).items())
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1m\n"
                          + (f"scrape_configs:\n{jobs}" if jobs else "scrape_configs: []\n"))
        self._logfile = open(self.log, "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=3650d",
             "--log.level=warn"],
            stdout=self._logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until_serving(self, "prometheus", f"{self.url}/-/ready", timeout)

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """An instant query straight against the HTTP API (for the tests' own checks)."""
        params = {"query": promql, **({} if at is None else {"time": str(at)})}
        body = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/query", data=body, timeout=10) as r:
            return json.load(r)["data"]["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_logfile", None):
            self._logfile.close()


class FlakyProxy:
    """An HTTP forwarder on a loopback port, in front of a real server: ``mode`` is "up" or "slow".

    ``start()``/``stop()`` open and close the port, so a closed proxy looks like a Prometheus
    that is down (connection refused); "slow" holds each request ``delay`` seconds first.
    """

    def __init__(self, upstream: str, port: int | None = None, delay: float = 2.0):
        self.upstream, self.port, self.delay = upstream, port or free_port(), delay
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "up"
        self.requests = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                proxy.requests += 1
                if proxy.mode == "slow":
                    time.sleep(proxy.delay)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command)
                if self.headers.get("Content-Type"):
                    request.add_header("Content-Type", self.headers["Content-Type"])
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        status, payload, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
                except urllib.error.HTTPError as e:
                    status, payload, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timed out) first
                    pass

            do_GET = do_POST = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


class NodeExporter:
    """The real node_exporter on a loopback port, with only the collectors tft-top reads."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log = Path(workdir) / "node_exporter.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._logfile = open(self.log, "w")
        self.proc = subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address={self.target}", "--log.level=warn",
             "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
             "--collector.filesystem", "--collector.loadavg",
             # keep "/" even where it is an overlay (a container), which node_exporter skips by default
             "--collector.filesystem.fs-types-exclude=^(proc|sysfs|tmpfs|devtmpfs|cgroup2?|nsfs|mqueue)$"],
            stdout=self._logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until_serving(self, "node_exporter", f"http://{self.target}/metrics", timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_logfile", None):
            self._logfile.close()
