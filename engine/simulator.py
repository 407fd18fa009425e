"""Seedable synthetic server fleet at a 5-minute cadence, with labelled incidents.

The simulator produces the four fleet metrics (``cpu_percent``, ``memory_percent``,
``disk_percent``, ``load_average``) for a mix of server profiles (web, database,
batch, cache, storage, ml, idle). It is meant to train and demo a forecaster that
must also work on real servers, so it has the shapes real fleets have:

* daily and weekly seasonality (business-hours peaks, quiet weekends, nightly
  batch jobs / backups / ingest windows), with per-server phase, amplitude and
  base level;
* AR(1) noise with heavy-ish (Student-t) innovations, slow trends (disks fill
  slowly, memory creeps until a restart), deploys (level shifts), cleanups;
* benign bursts (CPU to 60-88 % for 5-20 min, load bursts below 2 x cores) that
  stay below the critical thresholds and are *not* incidents;
* lightly used servers (CPU median ~2 %), flat-lined series, mostly-zero series
  with bursts (cron-style batch boxes, idle load averages);
* incidents (``memory_leak``, ``disk_fill``, ``cpu_runaway``, ``load_storm``) that
  ramp up for at least one hour and then cross the metric's critical threshold
  from :mod:`engine.thresholds`.

Everything outside a labelled incident is kept strictly below the critical
thresholds, so "the metric crossed its critical threshold" and "there is an
incident" are the same thing in this data.

Determinism: the fleet is simulated in chunks of one day (288 ticks). Every
random draw comes from a generator keyed by ``(seed, server index, day)``, and
the state that carries over midnight (AR noise, disk levels, memory creep,
running jobs and incidents) is carried explicitly. So the same seed and
arguments give byte-identical output, a server's series does not depend on how
many other servers are simulated, and :meth:`FleetSimulator.stream` continues
exactly the process that :meth:`FleetSimulator.generate` produces. The one
difference: ``generate(days)`` does not start incidents whose threshold crossing
would fall after the end of the span, so every rendered incident is labelled.

This module imports only numpy, pandas and :mod:`engine.thresholds`.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.thresholds import DEFAULT_THRESHOLDS

__all__ = [
    "FleetSimulator",
    "METRICS",
    "PROFILES",
    "INCIDENT_KINDS",
    "INCIDENT_METRIC",
    "STEP",
    "TICKS_PER_DAY",
    "LABEL_COLUMNS",
    "METRIC_COLUMNS",
]

METRICS: tuple[str, ...] = ("cpu_percent", "memory_percent", "disk_percent", "load_average")
STEP = pd.Timedelta(minutes=5)
_STEP_S = 300
TICKS_PER_HOUR = 12
TICKS_PER_DAY = 288
_CPU, _MEM, _DISK, _LOAD = range(4)

PROFILES: tuple[str, ...] = ("web", "database", "batch", "cache", "storage", "ml", "idle")
_PREFIX = {
    "web": "web",
    "database": "db",
    "batch": "batch",
    "cache": "cache",
    "storage": "storage",
    "ml": "ml",
    "idle": "idle",
}
# Fleet mix for servers after the first seven (which take one of each profile).
_PROFILE_WEIGHTS = {
    "web": 0.30,
    "database": 0.14,
    "batch": 0.13,
    "cache": 0.11,
    "storage": 0.10,
    "ml": 0.08,
    "idle": 0.14,
}

INCIDENT_KINDS: tuple[str, ...] = ("memory_leak", "disk_fill", "cpu_runaway", "load_storm")
INCIDENT_METRIC = {
    "memory_leak": "memory_percent",
    "disk_fill": "disk_percent",
    "cpu_runaway": "cpu_percent",
    "load_storm": "load_average",
}
# Which incident kinds each profile tends to have.
_KIND_WEIGHTS = {
    "web": (0.35, 0.15, 0.30, 0.20),
    "database": (0.20, 0.30, 0.15, 0.35),
    "batch": (0.20, 0.30, 0.35, 0.15),
    "cache": (0.55, 0.10, 0.15, 0.20),
    "storage": (0.10, 0.50, 0.10, 0.30),
    "ml": (0.40, 0.15, 0.30, 0.15),
    "idle": (0.35, 0.35, 0.20, 0.10),
}

METRIC_COLUMNS = ["server_name", "timestamp", *METRICS, "profile"]
LABEL_COLUMNS = ["server_name", "kind", "metric", "start", "crossing", "end", "threshold"]

_CRIT_CPU = DEFAULT_THRESHOLDS.critical("cpu_percent")
_CRIT_MEM = DEFAULT_THRESHOLDS.critical("memory_percent")
_CRIT_DISK = DEFAULT_THRESHOLDS.critical("disk_percent")
_CRIT_LOAD_PER_CORE = DEFAULT_THRESHOLDS.load_per_core[1]
# Benign behaviour is soft-capped below these (knee, cap) pairs: always < critical.
_CAP_CPU = (_CRIT_CPU - 11.0, _CRIT_CPU - 3.0)  # (84, 92)
_CAP_MEM = (_CRIT_MEM - 8.0, _CRIT_MEM - 3.0)  # (87, 92)
_CAP_DISK = (_CRIT_DISK - 7.0, _CRIT_DISK - 3.0)  # (88, 92)
_CAP_LOAD_PER_CORE = (_CRIT_LOAD_PER_CORE - 0.6, _CRIT_LOAD_PER_CORE - 0.15)  # (1.4, 1.85) x cores
_INCIDENT_GAP = TICKS_PER_HOUR  # at least an hour of normal operation between incidents
_MIN_LEAD = TICKS_PER_HOUR  # incidents ramp for at least an hour before crossing


# --------------------------------------------------------------------------- helpers


def _ar1(innov: np.ndarray, phi: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """AR(1) along the last axis: ``x[t] = phi * x[t-1] + innov[t]`` with ``x[-1] = x0``.

    A log-depth (Hillis-Steele) scan, vectorised over the leading axis; only ever
    multiplies by powers of ``phi`` <= 1, so it is numerically stable.
    """
    x = innov.copy()
    x[:, 0] += phi * x0
    a = np.repeat(phi[:, None], x.shape[1], axis=1)
    a[:, 0] = 0.0
    n = x.shape[1]
    s = 1
    while s < n:
        x[:, s:] = x[:, s:] + a[:, s:] * x[:, :-s]
        a[:, s:] = a[:, s:] * a[:, :-s]
        s *= 2
    return x


def _soft_cap(x: np.ndarray, knee: float, cap: float) -> np.ndarray:
    """Identity below ``knee``; above it bends smoothly towards (never past) ``cap``."""
    if np.any(x > knee):
        w = cap - knee
        x = np.where(x > knee, knee + w * np.tanh((x - knee) / w), x)
    return x


def _business(h: np.ndarray) -> np.ndarray:
    """Office-hours activity in [0, 1] for local hour ``h`` (lunch dip included)."""
    rise = 1.0 / (1.0 + np.exp(-(h - 8.5) * 1.5))
    fall = 1.0 / (1.0 + np.exp((h - 18.5) * 1.0))
    lunch = 1.0 - 0.12 * np.exp(-0.5 * ((h - 12.75) / 0.6) ** 2)
    return rise * fall * lunch


def _evening(h: np.ndarray) -> np.ndarray:
    """Consumer-traffic evening bump in [0, 1], peaking around 20:30 local."""
    d = (h - 20.5 + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / 1.6) ** 2)


def _u(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def _to_utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return t.tz_convert("UTC")


# --------------------------------------------------------------------------- per-server model


# Per-profile parameter ranges (uniform draws unless noted).
_SPECS: dict[str, dict] = {
    "web": dict(
        cores=((2, 4, 8), (0.3, 0.5, 0.2)), cpu_base=(3, 12), cpu_amp=(15, 45), cpu_sigma=(0.12, 0.28),
        weekend=(0.35, 0.7), evening=(0.0, 0.6), mem_base=(30, 60), mem_amp=(2, 8), mem_sigma=(0.2, 0.7),
        creep=(0.3, 2.0), creep_max=(5, 15), flat_mem=0.05, disk_base=(15, 50), disk_rate=(0.05, 0.5),
        comfort=(65, 85), cleanup=(5, 20), rot_rate=0.15, flat_disk=0.1, burst_rate=(0.5, 4.0),
        burst_level=(60, 88), load_burst_rate=(0.0, 1.0), deploy_rate=(0.1, 0.5), load_k=(0.8, 1.3),
        load_sigma=(0.03, 0.1), load_bias=(-0.01, 0.05), traffic=True,
    ),
    "database": dict(
        cores=((8, 16, 32), (0.4, 0.4, 0.2)), cpu_base=(8, 20), cpu_amp=(8, 25), cpu_sigma=(0.1, 0.2),
        weekend=(0.6, 0.9), evening=(0.0, 0.3), mem_base=(72, 86), mem_amp=(0.0, 1.5), mem_sigma=(0.05, 0.3),
        creep=(0.0, 0.2), creep_max=(2, 4), flat_mem=0.25, disk_base=(35, 70), disk_rate=(0.2, 1.0),
        comfort=(80, 87), cleanup=(5, 15), rot_rate=0.05, flat_disk=0.0, burst_rate=(0.2, 2.0),
        burst_level=(60, 85), load_burst_rate=(0.2, 1.5), deploy_rate=(0.02, 0.1), load_k=(0.9, 1.4),
        load_sigma=(0.05, 0.12), load_bias=(0.0, 0.1), traffic=True,
    ),
    "batch": dict(
        cores=((8, 16, 32), (0.35, 0.45, 0.2)), cpu_base=(1, 6), cpu_amp=(0, 3), cpu_sigma=(0.25, 0.4),
        weekend=(0.8, 1.0), evening=(0.0, 0.0), mem_base=(12, 30), mem_amp=(0, 0), mem_sigma=(0.3, 1.0),
        creep=(0.0, 0.0), creep_max=(5, 5), flat_mem=0.1, disk_base=(20, 55), disk_rate=(0.02, 0.3),
        comfort=(70, 85), cleanup=(5, 20), rot_rate=0.1, flat_disk=0.05, burst_rate=(0.0, 1.0),
        burst_level=(60, 88), load_burst_rate=(0.0, 0.5), deploy_rate=(0.02, 0.1), load_k=(0.9, 1.2),
        load_sigma=(0.03, 0.08), load_bias=(-0.03, 0.02), traffic=False,
    ),
    "cache": dict(
        cores=((2, 4, 8), (0.3, 0.5, 0.2)), cpu_base=(2, 8), cpu_amp=(5, 20), cpu_sigma=(0.1, 0.2),
        weekend=(0.4, 0.75), evening=(0.0, 0.6), mem_base=(78, 88), mem_amp=(0.0, 1.0), mem_sigma=(0.03, 0.2),
        creep=(0.0, 0.1), creep_max=(1, 2), flat_mem=0.4, disk_base=(8, 30), disk_rate=(0.0, 0.05),
        comfort=(60, 80), cleanup=(3, 10), rot_rate=0.05, flat_disk=0.5, burst_rate=(0.2, 2.0),
        burst_level=(60, 85), load_burst_rate=(0.0, 0.5), deploy_rate=(0.02, 0.15), load_k=(0.8, 1.1),
        load_sigma=(0.02, 0.06), load_bias=(-0.02, 0.02), traffic=True,
    ),
    "storage": dict(
        cores=((4, 8, 16), (0.3, 0.5, 0.2)), cpu_base=(2, 7), cpu_amp=(1, 6), cpu_sigma=(0.15, 0.3),
        weekend=(0.7, 1.0), evening=(0.0, 0.2), mem_base=(50, 75), mem_amp=(0.0, 2.0), mem_sigma=(0.1, 0.4),
        creep=(0.0, 0.3), creep_max=(2, 6), flat_mem=0.1, disk_base=(55, 80), disk_rate=(0.4, 2.0),
        comfort=(84, 88), cleanup=(6, 20), rot_rate=0.1, flat_disk=0.0, burst_rate=(0.0, 1.0),
        burst_level=(60, 80), load_burst_rate=(0.2, 1.5), deploy_rate=(0.01, 0.05), load_k=(0.9, 1.2),
        load_sigma=(0.05, 0.12), load_bias=(0.0, 0.1), traffic=False,
    ),
    "ml": dict(
        cores=((16, 32), (0.6, 0.4)), cpu_base=(2, 8), cpu_amp=(0, 4), cpu_sigma=(0.2, 0.4),
        weekend=(0.9, 1.0), evening=(0.0, 0.0), mem_base=(18, 32), mem_amp=(0, 0), mem_sigma=(0.3, 1.0),
        creep=(0.0, 0.0), creep_max=(5, 5), flat_mem=0.0, disk_base=(30, 60), disk_rate=(0.1, 0.8),
        comfort=(75, 87), cleanup=(5, 20), rot_rate=0.05, flat_disk=0.0, burst_rate=(0.0, 1.0),
        burst_level=(60, 85), load_burst_rate=(0.0, 0.5), deploy_rate=(0.01, 0.05), load_k=(0.9, 1.1),
        load_sigma=(0.05, 0.1), load_bias=(0.0, 0.05), traffic=False,
    ),
    "idle": dict(
        cores=((2, 4), (0.6, 0.4)), cpu_base=(0.8, 2.5), cpu_amp=(0.0, 0.8), cpu_sigma=(0.35, 0.6),
        weekend=(1.0, 1.0), evening=(0.0, 0.0), mem_base=(6, 25), mem_amp=(0, 0), mem_sigma=(0.02, 0.15),
        creep=(0.0, 0.05), creep_max=(1, 2), flat_mem=0.5, disk_base=(8, 40), disk_rate=(0.0, 0.05),
        comfort=(60, 80), cleanup=(2, 8), rot_rate=0.02, flat_disk=0.6, burst_rate=(0.5, 4.0),
        burst_level=(10, 70), load_burst_rate=(0.0, 0.3), deploy_rate=(0.0, 0.02), load_k=(0.8, 1.2),
        load_sigma=(0.02, 0.04), load_bias=(-0.04, -0.01), traffic=False,
    ),
}
# Timezone offsets of the users a server serves (hours), before a per-server jitter.
_TZ_CHOICES = (0.0, 0.0, 0.0, 0.0, 1.0, 1.0, -5.0, -6.0)


@dataclass
class _Server:
    idx: int
    name: str
    profile: str
    cores: int
    tz_s: float
    p: dict  # drawn scalar parameters
    phi: np.ndarray  # AR coefficients (cpu, mem, disk, load)


@dataclass
class _Window:
    """A job / backup / training window in absolute ticks [a, b)."""

    a: int
    b: int
    cpu: float = 0.0  # CPU level while running
    mem: float = 0.0  # memory added while running
    load: float = 0.0  # extra load per core (I/O wait) while running
    disk_temp: float = 0.0  # temp files: grow linearly to this, deleted at the end
    disk_boost: float = 0.0  # extra permanent disk growth (multiple of the base rate)
    ramp: int = 2


@dataclass
class _Incident:
    kind: str
    metric: int
    a: int  # start tick
    end: int  # first tick back to normal
    threshold: float
    curve: np.ndarray  # values over [a, end), combined with max() over the benign series
    side: dict[int, np.ndarray] = field(default_factory=dict)  # other metrics, below critical


@dataclass
class _State:
    ar: np.ndarray
    cpu_shift: float = 0.0
    mem_shift: float = 0.0
    creep: float = 0.0
    disk: float = 0.0
    windows: list[_Window] = field(default_factory=list)
    incidents: list[_Incident] = field(default_factory=list)
    busy_until: int = -(10**9)
    ml_next: int = 0


def _make_server(seed: int, idx: int, width: int) -> _Server:
    rng = np.random.default_rng([seed, idx, 0])
    if idx < len(PROFILES):
        profile = PROFILES[idx]
        rng.random()  # keep the draw sequence the same shape for every server
    else:
        names = list(_PROFILE_WEIGHTS)
        w = np.array([_PROFILE_WEIGHTS[k] for k in names])
        profile = names[int(np.searchsorted(np.cumsum(w) / w.sum(), rng.random(), side="right"))]
    spec = _SPECS[profile]
    choices, probs = spec["cores"]
    cores = int(rng.choice(np.array(choices), p=np.array(probs)))
    tz = float(rng.choice(np.array(_TZ_CHOICES))) + float(rng.uniform(-0.75, 0.75))
    p: dict = {}
    for key in (
        "cpu_base", "cpu_amp", "cpu_sigma", "weekend", "evening", "mem_base", "mem_amp", "mem_sigma",
        "creep", "creep_max", "disk_base", "disk_rate", "comfort", "burst_rate", "load_burst_rate",
        "deploy_rate", "load_k", "load_sigma", "load_bias",
    ):
        p[key] = _u(rng, spec[key])
    p["cleanup"] = spec["cleanup"]
    p["burst_level"] = spec["burst_level"]
    p["rot_rate"] = spec["rot_rate"]
    p["traffic"] = spec["traffic"]
    p["flat_mem"] = bool(rng.random() < spec["flat_mem"])
    p["flat_disk"] = bool(rng.random() < spec["flat_disk"])
    p["disk_base"] = min(p["disk_base"], p["comfort"] - 3.0)
    # Profile-specific extras (always drawn, so the sequence is fixed per profile).
    p["intermittent"] = bool(profile == "batch" and rng.random() < 0.5)
    if p["intermittent"]:
        p["cpu_base"] = float(rng.uniform(0.1, 0.8))
        p["cpu_sigma"] = float(rng.uniform(0.6, 0.9))
    p["cron_offset"] = int(rng.integers(0, TICKS_PER_HOUR))
    p["cron_level"] = float(rng.uniform(15, 60))
    p["job_hour"] = float(rng.uniform(0.0, 4.0))
    p["job_dur"] = float(rng.uniform(1.5, 5.0))
    p["job_cpu"] = float(rng.uniform(55, 88))
    p["job_mem"] = float(rng.uniform(15, 40))
    p["job_disk"] = float(rng.uniform(2, 10))
    p["adhoc_rate"] = float(rng.uniform(0.0, 1.5))
    p["backup_hour"] = float(rng.uniform(0.5, 3.0))
    p["backup_dur"] = float(rng.uniform(1.0, 2.5))
    p["backup_cpu"] = float(rng.uniform(25, 45))
    p["backup_load"] = float(rng.uniform(0.2, 0.6))
    p["backup_disk"] = float(rng.uniform(1, 4))
    p["ingest_hour"] = float(rng.uniform(21.0, 24.0)) % 24.0
    p["ingest_dur"] = float(rng.uniform(3.0, 6.0))
    p["ingest_cpu"] = float(rng.uniform(15, 35))
    p["ingest_load"] = float(rng.uniform(0.3, 0.8))
    p["ingest_boost"] = float(rng.uniform(2.0, 5.0))
    phi = np.array(
        [rng.uniform(0.6, 0.9), rng.uniform(0.9, 0.99), rng.uniform(0.9, 0.98), rng.uniform(0.5, 0.8)]
    )
    name = f"{_PREFIX[profile]}-{idx + 1:0{width}d}"
    return _Server(idx, name, profile, cores, tz * 3600.0, p, phi)


def _initial_state(seed: int, server: _Server) -> _State:
    rng = np.random.default_rng([seed, server.idx, 2])
    p = server.p
    st = _State(ar=np.zeros(4))
    st.ar = np.clip(rng.standard_normal(4), -2, 2)
    st.creep = float(rng.uniform(0, p["creep_max"]))
    st.disk = p["disk_base"]
    st.ml_next = int(rng.integers(0, 12 * TICKS_PER_HOUR))
    return st


# --------------------------------------------------------------------------- the simulator


class FleetSimulator:
    """A deterministic synthetic server fleet at a 5-minute cadence.

    Parameters
    ----------
    n_servers:
        Fleet size. Server ``i`` (0-based) is the same server whatever the fleet
        size; the first seven cover every profile once.
    seed:
        Non-negative integer; same seed + arguments -> byte-identical output.
    start:
        First timestamp (UTC; floored to the 5-minute grid). Default a Monday.
    incident_rate:
        Expected incidents per server per day (default 0.1: one per ten days).
        Candidates overlapping an earlier incident on the same server are skipped,
        so the realised rate is slightly lower.
    """

    def __init__(
        self,
        n_servers: int,
        seed: int = 0,
        start: pd.Timestamp | str = "2026-01-05T00:00:00Z",
        incident_rate: float = 0.1,
    ) -> None:
        if int(n_servers) < 1:
            raise ValueError("n_servers must be >= 1")
        if int(seed) < 0:
            raise ValueError("seed must be a non-negative integer")
        if incident_rate < 0:
            raise ValueError("incident_rate must be >= 0")
        self.n_servers = int(n_servers)
        self.seed = int(seed)
        self.incident_rate = float(incident_rate)
        self.start = _to_utc(start).floor("5min")
        self._start_s = int(self.start.value // 1_000_000_000)
        width = max(2, len(str(self.n_servers)))
        self._servers = [_make_server(self.seed, i, width) for i in range(self.n_servers)]
        # Output order: by server name.
        self._order = sorted(range(self.n_servers), key=lambda i: self._servers[i].name)

    # ------------------------------------------------------------------ public API

    def servers(self) -> pd.DataFrame:
        """One row per server (sorted by name): server_name, profile, cores."""
        rows = [self._servers[i] for i in self._order]
        return pd.DataFrame(
            {
                "server_name": [s.name for s in rows],
                "profile": [s.profile for s in rows],
                "cores": np.array([s.cores for s in rows], dtype=np.int64),
            }
        )

    def generate(self, days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Simulate ``days`` days from ``start``; returns ``(metrics, labels)``.

        ``metrics``: server_name, timestamp (datetime64[ns, UTC]), cpu_percent,
        memory_percent, disk_percent, load_average, profile; sorted by server_name,
        timestamp. ``labels``: one row per incident whose critical crossing lies in
        the span: server_name, kind, metric, start, crossing, end, threshold, where
        ``crossing`` is the first 5-minute timestamp at which the generated metric is
        >= ``threshold`` and ``end`` the first timestamp back to normal (it may lie
        after the span for incidents still running at the end).
        """
        n_ticks = int(round(float(days) * TICKS_PER_DAY))
        if n_ticks < 1:
            raise ValueError("days must cover at least one 5-minute step")
        n_days = -(-n_ticks // TICKS_PER_DAY)
        engine = _Engine(self, horizon=n_ticks)
        chunks = []
        incidents: list[tuple[int, _Incident]] = []
        for _ in range(n_days):
            values, started = engine.next_day()
            chunks.append(values)
            incidents.extend(started)
        values = np.concatenate(chunks, axis=2)[:, :, :n_ticks]  # (server idx, metric, tick)
        metrics = self._frame(values, n_ticks)
        labels = self._labels(values, incidents, n_ticks)
        return metrics, labels

    def stream(self, start: pd.Timestamp | str | None = None) -> Iterator[list[dict]]:
        """Yield, per 5-minute tick forever, a list of records (one per server, by name).

        Each record: server_name, timestamp (ISO 8601 UTC with ``Z``), the four
        metrics and profile. The process is the one :meth:`generate` produces
        (generated a day at a time internally); ``start`` (default: ``self.start``)
        fast-forwards to the first tick at or after it.
        """
        first = 0
        if start is not None:
            delta = (_to_utc(start) - self.start) // pd.Timedelta(seconds=1)
            if delta < 0:
                raise ValueError(f"stream start is before the simulation start {self.start}")
            first = -(-int(delta) // _STEP_S)
        return self._stream(first)

    # ------------------------------------------------------------------ internals

    def _stream(self, first: int) -> Iterator[list[dict]]:
        engine = _Engine(self, horizon=None)
        names = [self._servers[i].name for i in self._order]
        profiles = [self._servers[i].profile for i in self._order]
        day = 0
        while True:
            values, _ = engine.next_day()
            t0 = day * TICKS_PER_DAY
            day += 1
            if t0 + TICKS_PER_DAY <= first:
                continue
            vals = values[self._order].tolist()  # nested python floats
            for j in range(max(0, first - t0), TICKS_PER_DAY):
                ts = pd.Timestamp((self._start_s + (t0 + j) * _STEP_S) * 1_000_000_000, tz="UTC")
                iso = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
                yield [
                    {
                        "server_name": names[k],
                        "timestamp": iso,
                        "cpu_percent": v[0][j],
                        "memory_percent": v[1][j],
                        "disk_percent": v[2][j],
                        "load_average": v[3][j],
                        "profile": profiles[k],
                    }
                    for k, v in enumerate(vals)
                ]

    def _timestamps(self, n_ticks: int) -> np.ndarray:
        base = np.datetime64(self._start_s, "s").astype("datetime64[ns]")
        return base + np.arange(n_ticks, dtype=np.int64) * np.timedelta64(_STEP_S, "s").astype("timedelta64[ns]")

    def _frame(self, values: np.ndarray, n_ticks: int) -> pd.DataFrame:
        order = np.array(self._order)
        v = values[order]  # (n, 4, T) in name order
        n = len(order)
        names = np.array([self._servers[i].name for i in order], dtype=object)
        profiles = np.array([self._servers[i].profile for i in order], dtype=object)
        ts = pd.DatetimeIndex(np.tile(self._timestamps(n_ticks), n)).tz_localize("UTC")
        frame = pd.DataFrame(
            {
                "server_name": np.repeat(names, n_ticks),
                "timestamp": ts,
                "cpu_percent": v[:, _CPU, :].ravel(),
                "memory_percent": v[:, _MEM, :].ravel(),
                "disk_percent": v[:, _DISK, :].ravel(),
                "load_average": v[:, _LOAD, :].ravel(),
                "profile": np.repeat(profiles, n_ticks),
            }
        )
        frame["server_name"] = frame["server_name"].astype(str)
        frame["profile"] = frame["profile"].astype(str)
        return frame

    def _labels(self, values: np.ndarray, incidents: list[tuple[int, _Incident]], n_ticks: int) -> pd.DataFrame:
        rows = []
        for sidx, inc in incidents:
            seg = values[sidx, inc.metric, inc.a : min(inc.end, n_ticks)]
            hit = np.flatnonzero(seg >= inc.threshold)
            if hit.size == 0:
                continue  # never crossed inside the span: not an incident of this data
            rows.append(
                (
                    self._servers[sidx].name,
                    inc.kind,
                    METRICS[inc.metric],
                    inc.a,
                    inc.a + int(hit[0]),
                    inc.end,
                    float(inc.threshold),
                )
            )
        rows.sort(key=lambda r: (r[3], r[0]))

        def ts(col: list[int]) -> pd.DatetimeIndex:
            ns = np.array(col, dtype=np.int64) * (_STEP_S * 1_000_000_000) + self.start.value
            return pd.DatetimeIndex(ns.astype("datetime64[ns]")).tz_localize("UTC")

        return pd.DataFrame(
            {
                "server_name": pd.Series([r[0] for r in rows], dtype=str),
                "kind": pd.Series([r[1] for r in rows], dtype=str),
                "metric": pd.Series([r[2] for r in rows], dtype=str),
                "start": ts([r[3] for r in rows]),
                "crossing": ts([r[4] for r in rows]),
                "end": ts([r[5] for r in rows]),
                "threshold": np.array([r[6] for r in rows], dtype=np.float64),
            }
        )


class _Engine:
    """Runs the fleet one day (288 ticks) at a time, carrying state across days."""

    def __init__(self, sim: FleetSimulator, horizon: int | None) -> None:
        self.sim = sim
        self.horizon = horizon
        self.day = 0
        self.states = [_initial_state(sim.seed, s) for s in sim._servers]

    def next_day(self) -> tuple[np.ndarray, list[tuple[int, _Incident]]]:
        sim = self.sim
        d = self.day
        self.day += 1
        t0 = d * TICKS_PER_DAY
        ticks = t0 + np.arange(TICKS_PER_DAY)
        sec = sim._start_s + ticks * _STEP_S
        traffic = float(np.random.default_rng([sim.seed, 2**31, 3, d]).uniform(0.85, 1.15))
        out = np.empty((sim.n_servers, 4, TICKS_PER_DAY))
        started: list[tuple[int, _Incident]] = []
        for i, server in enumerate(sim._servers):
            out[i], new = _render_day(
                sim, server, self.states[i], d, t0, sec, traffic, self.horizon
            )
            started.extend((i, inc) for inc in new)
        return out, started


def _render_day(
    sim: FleetSimulator,
    s: _Server,
    st: _State,
    d: int,
    t0: int,
    sec: np.ndarray,
    traffic: float,
    horizon: int | None,
) -> tuple[np.ndarray, list[_Incident]]:
    n = TICKS_PER_DAY
    t1 = t0 + n
    p = s.p
    c = s.cores
    rng = np.random.default_rng([sim.seed, s.idx, 1, d])

    local = sec + s.tz_s
    hour = (local % 86400.0) / 3600.0
    dow = (np.floor(local / 86400.0).astype(np.int64) + 3) % 7  # 0 = Monday
    weekend = dow >= 5
    local0 = float(local[0])

    # ---- noise: AR(1) with Student-t innovations, unit variance
    innov = np.clip(rng.standard_t(4, size=(4, n)) / math.sqrt(2.0), -5.0, 5.0)
    innov *= np.sqrt(1.0 - s.phi**2)[:, None]
    z = _ar1(innov, s.phi, st.ar)
    st.ar = z[:, -1].copy()

    # ---- deploys: level shifts during local business hours on weekdays
    cpu_shift = np.full(n, st.cpu_shift)
    mem_shift = np.full(n, st.mem_shift)
    deploy_ticks = np.sort(rng.integers(0, n, rng.poisson(p["deploy_rate"])))
    deploys = []
    for k in deploy_ticks:
        dc = float(rng.normal(0.0, 0.25 * p["cpu_base"] + 1.0))
        dm = float(rng.normal(0.0, 3.0))
        if weekend[k] or not (9.0 <= hour[k] < 18.0):
            continue
        st.cpu_shift = float(np.clip(st.cpu_shift + dc, -0.5 * p["cpu_base"], 0.8 * p["cpu_base"] + 3.0))
        st.mem_shift = float(np.clip(st.mem_shift + dm, -8.0, min(8.0, _CAP_MEM[0] - 2.0 - p["mem_base"])))
        cpu_shift[k:] = st.cpu_shift
        mem_shift[k:] = st.mem_shift
        deploys.append(int(k))

    # ---- windows (jobs, backups, ingest, training) starting today
    def at_local_hour(h: float) -> int:
        off = (h * 3600.0 - (local0 % 86400.0)) % 86400.0
        return t0 + int(round(off / _STEP_S)) % n

    prof = s.profile
    if prof == "batch":
        a = at_local_hour(p["job_hour"] + float(rng.normal(0, 0.3)))
        dur = p["job_dur"] * float(rng.uniform(0.7, 1.3))
        runs = (not weekend[a - t0]) or rng.random() < 0.5
        lvl = min(88.0, p["job_cpu"] * float(rng.uniform(0.9, 1.05)))
        if runs:
            st.windows.append(
                _Window(a, a + max(2, int(dur * TICKS_PER_HOUR)), cpu=lvl, mem=p["job_mem"],
                        load=0.25, disk_temp=p["job_disk"], ramp=3)
            )
        for _ in range(rng.poisson(p["adhoc_rate"])):
            a = t0 + int(rng.integers(0, n))
            dur = float(rng.uniform(0.5, 3.0))
            st.windows.append(
                _Window(a, a + int(dur * TICKS_PER_HOUR), cpu=float(rng.uniform(30, 85)),
                        mem=float(rng.uniform(5, 25)), load=0.1, disk_temp=float(rng.uniform(0.5, 3)), ramp=2)
            )
    elif prof == "database":
        a = at_local_hour(p["backup_hour"] + float(rng.normal(0, 0.1)))
        dur = p["backup_dur"] * float(rng.uniform(0.85, 1.15))
        st.windows.append(
            _Window(a, a + int(dur * TICKS_PER_HOUR), cpu=p["backup_cpu"], load=p["backup_load"],
                    disk_temp=p["backup_disk"], ramp=2)
        )
    elif prof == "storage":
        a = at_local_hour(p["ingest_hour"] + float(rng.normal(0, 0.2)))
        dur = p["ingest_dur"] * float(rng.uniform(0.8, 1.2))
        st.windows.append(
            _Window(a, a + int(dur * TICKS_PER_HOUR), cpu=p["ingest_cpu"], load=p["ingest_load"],
                    disk_boost=p["ingest_boost"], ramp=3)
        )
    elif prof == "ml":
        while st.ml_next < t1:
            dur = int(float(rng.uniform(3.0, 30.0)) * TICKS_PER_HOUR)
            st.windows.append(
                _Window(st.ml_next, st.ml_next + dur, cpu=float(rng.uniform(70, 88)),
                        mem=float(rng.uniform(25, 50)), load=0.05, disk_boost=2.0, ramp=4)
            )
            st.ml_next += dur + int(float(rng.uniform(1.0, 14.0)) * TICKS_PER_HOUR)

    job_cpu = np.zeros(n)
    job_mem = np.zeros(n)
    job_load = np.zeros(n)
    job_disk = np.zeros(n)
    disk_boost = np.zeros(n)
    keep = []
    for w in st.windows:
        lo, hi = max(w.a, t0), min(w.b, t1)
        if hi > lo:
            j = np.arange(lo, hi)
            f = np.minimum(1.0, np.minimum((j - w.a + 1) / w.ramp, (w.b - j) / w.ramp))
            sl = slice(lo - t0, hi - t0)
            job_cpu[sl] = np.maximum(job_cpu[sl], w.cpu * f)
            job_mem[sl] = np.maximum(job_mem[sl], w.mem * f)
            job_load[sl] += w.load * c * f
            job_disk[sl] += w.disk_temp * (j - w.a + 1) / (w.b - w.a)
            disk_boost[sl] += w.disk_boost
        if w.b > t1:
            keep.append(w)
    st.windows = keep

    # ---- CPU
    wk = np.where(weekend, p["weekend"], 1.0) * np.where(dow == 0, 1.04, 1.0)
    shape = (_business(hour) + p["evening"] * _evening(hour)) / (1.0 + 0.5 * p["evening"])
    amp = p["cpu_amp"] * (traffic if p["traffic"] else 1.0)
    level = np.maximum(p["cpu_base"] + cpu_shift + amp * shape * wk, 0.05)
    level = np.maximum(level, job_cpu)
    sig = p["cpu_sigma"]
    cpu = level * np.exp(sig * z[_CPU] - 0.5 * sig * sig)
    if p["intermittent"]:
        cron = (np.arange(t0, t1) % TICKS_PER_HOUR) == p["cron_offset"]
        cron_lvl = p["cron_level"] * rng.uniform(0.6, 1.2, size=n)
        cpu = np.where(cron & (rng.random(n) < 0.8), np.maximum(cpu, cron_lvl), cpu)
    for _ in range(rng.poisson(p["burst_rate"])):
        k = int(rng.integers(0, n))
        ln = int(rng.integers(1, 5))
        target = _u(rng, p["burst_level"]) * rng.uniform(0.95, 1.0, size=min(ln, n - k))
        cpu[k : k + ln] = np.maximum(cpu[k : k + ln], target)
    cpu = np.clip(_soft_cap(cpu, *_CAP_CPU), 0.0, 100.0)

    # ---- memory
    creep = np.empty(n)
    seg_starts = [0, *deploys, n]
    cval = st.creep
    for lo, hi in zip(seg_starts[:-1], seg_starts[1:]):
        if hi <= lo:
            continue
        if lo > 0:
            cval = 0.0  # a deploy restarts the process
        rate = p["creep"] / TICKS_PER_DAY
        if rate > 0:
            creep[lo:hi] = (cval + rate * np.arange(1, hi - lo + 1)) % p["creep_max"]
        else:
            creep[lo:hi] = cval
        cval = float(creep[hi - 1])
    st.creep = cval
    if p["flat_mem"]:
        mem = p["mem_base"] + mem_shift + np.round(job_mem, 0)
    else:
        mem = (
            p["mem_base"] + mem_shift + creep + p["mem_amp"] * shape * wk + job_mem
            + p["mem_sigma"] * z[_MEM]
        )
    mem = np.clip(_soft_cap(mem, *_CAP_MEM), 0.0, 100.0)

    # ---- disk: slow growth, cleanups when it gets full, log rotation, temp files
    if p["flat_disk"]:
        disk = np.full(n, st.disk)
    else:
        g = p["disk_rate"] / TICKS_PER_DAY * (1.0 + disk_boost) * rng.gamma(0.5, 2.0, size=n)
        level_d = st.disk + np.cumsum(g)
        for k in np.sort(rng.integers(0, n, rng.poisson(p["rot_rate"]))):
            level_d[k:] -= float(rng.uniform(0.3, 3.0))
        for _ in range(8):
            over = np.flatnonzero(level_d >= p["comfort"])
            if over.size == 0:
                break
            level_d[over[0] :] -= _u(rng, p["cleanup"])
        level_d = np.maximum(level_d, 1.0)
        st.disk = float(level_d[-1])
        disk = level_d + 0.02 * z[_DISK]
    disk = disk + job_disk
    disk = np.clip(_soft_cap(disk, *_CAP_DISK), 0.0, 100.0)

    # ---- load average (1-minute): busy cores + I/O wait + noise
    load = (
        c * cpu / 100.0 * p["load_k"]
        + job_load
        + p["load_sigma"] * math.sqrt(c) * z[_LOAD]
        + p["load_bias"] * c
    )
    for _ in range(rng.poisson(p["load_burst_rate"])):
        k = int(rng.integers(0, n))
        ln = int(rng.integers(1, 5))
        load[k : k + ln] = np.maximum(load[k : k + ln], c * float(rng.uniform(1.1, 1.8)))
    load = np.maximum(_soft_cap(load, _CAP_LOAD_PER_CORE[0] * c, _CAP_LOAD_PER_CORE[1] * c), 0.0)

    vals = np.stack([cpu, mem, disk, load])

    # ---- incidents: plan today's (needs the benign series), then render all active
    new: list[_Incident] = []
    starts = np.sort(rng.integers(0, n, rng.poisson(sim.incident_rate)))
    for k in starts:
        kind = INCIDENT_KINDS[int(np.searchsorted(np.cumsum(_KIND_WEIGHTS[prof]), rng.random(), side="right"))]
        now = np.median(vals[:, max(0, int(k) - 6) : int(k) + 1], axis=1)  # robust to a burst at k
        inc = _plan_incident(rng, kind, t0 + int(k), now, c)
        if inc.a < st.busy_until + _INCIDENT_GAP:
            continue
        st.busy_until = inc.end
        cross = inc.a + int(np.flatnonzero(inc.curve >= inc.threshold)[0])
        if horizon is not None and cross >= horizon:
            continue  # would not cross inside the span: do not start it
        st.incidents.append(inc)
        new.append(inc)

    caps = (_CAP_CPU[1], _CAP_MEM[1], _CAP_DISK[1], _CAP_LOAD_PER_CORE[1] * c)
    keep_inc = []
    for inc in st.incidents:
        lo, hi = max(inc.a, t0), min(inc.end, t1)
        if hi > lo:
            sl = slice(lo - t0, hi - t0)
            isl = slice(lo - inc.a, hi - inc.a)
            vals[inc.metric, sl] = np.maximum(vals[inc.metric, sl], inc.curve[isl])
            for m, arr in inc.side.items():
                vals[m, sl] = np.maximum(vals[m, sl], np.minimum(arr[isl], caps[m]))
        if inc.end > t1:
            keep_inc.append(inc)
    st.incidents = keep_inc

    vals[:3] = np.clip(np.round(vals[:3], 2), 0.0, 100.0)
    vals[3] = np.maximum(np.round(vals[3], 3), 0.0)
    return vals, new


def _ramp(
    rng: np.random.Generator,
    L0: float,
    peak: float,
    thr: float,
    hours: tuple[float, float],
    power: tuple[float, float],
    sigma: float,
    margin: float,
) -> np.ndarray:
    """Rise from ``L0`` to ``peak`` (shape ``u**p``) plus bounded AR noise.

    The ramp is long enough that it stays below ``thr`` for the first hour, whatever
    the noise: ``L0 + (peak - L0) * (12 / R)**p + margin < thr``.
    """
    p = _u(rng, power)
    R = int(_u(rng, hours) * TICKS_PER_HOUR)
    k = (thr - margin - 0.02 - L0) / (peak - L0)
    r_min = int(math.floor(_MIN_LEAD / k ** (1.0 / p))) + 1
    R = max(R, r_min, _MIN_LEAD + 1)
    u = np.arange(1, R + 1) / R
    noise = np.clip(_ar1((rng.standard_normal(R) * sigma * 0.5)[None, :], np.array([0.8]), np.zeros(1))[0],
                    -margin, margin)
    return L0 + (peak - L0) * u**p + noise


def _plan_incident(rng: np.random.Generator, kind: str, a: int, now: np.ndarray, cores: int) -> _Incident:
    """Build an incident starting at tick ``a``; ``now``: the benign level of each metric there."""
    H = TICKS_PER_HOUR
    if kind == "memory_leak":
        thr = _CRIT_MEM
        L0 = min(float(now[_MEM]), thr - 7.0)
        peak = _u(rng, (97.5, 99.6))
        ramp = _ramp(rng, L0, peak, thr, (2.0, 10.0), (1.0, 1.6), 0.4, 0.8)
        hold_n = int(_u(rng, (0.5, 4.0)) * H)
        hold = np.minimum(peak + np.clip(rng.normal(0, 0.25, hold_n), -0.4, 0.4), 100.0)
        curve = np.concatenate([ramp, hold])  # then the process restarts: straight back to normal
        s = np.concatenate([((np.arange(1, ramp.size + 1)) / ramp.size) ** 3, np.ones(hold_n)])
        cpu_side = float(now[_CPU]) + _u(rng, (5.0, 30.0)) * s  # GC / swapping near exhaustion
        return _Incident(kind, _MEM, a, a + curve.size, thr, curve, {_CPU: cpu_side})
    if kind == "disk_fill":
        thr = _CRIT_DISK
        L0 = min(float(now[_DISK]), thr - 10.0)
        peak = _u(rng, (96.5, 99.9))
        ramp = _ramp(rng, L0, peak, thr, (3.0, 12.0), (0.9, 1.8), 0.05, 0.15)
        hold_n = int(_u(rng, (0.25, 3.0)) * H)
        hold = np.minimum(peak + np.clip(rng.normal(0, 0.03, hold_n), -0.1, 0.1), 100.0)
        tail_n = int(rng.integers(1, 4))  # cleanup: a quick drop back to where it was
        tail = peak - (peak - L0) * np.arange(1, tail_n + 1) / (tail_n + 1)
        curve = np.concatenate([ramp, hold, tail])
        return _Incident(kind, _DISK, a, a + curve.size, thr, curve)
    if kind == "cpu_runaway":
        thr = _CRIT_CPU
        L0 = min(float(now[_CPU]), thr - 15.0)
        peak = _u(rng, (97.5, 99.5))
        ramp = _ramp(rng, L0, peak, thr, (1.25, 3.0), (0.7, 2.0), 1.0, 2.0)
        hold_n = int(_u(rng, (0.5, 6.0)) * H)
        hold = np.minimum(peak + np.clip(rng.normal(0, 0.6, hold_n), -1.2, 1.2), 100.0)
        curve = np.minimum(np.concatenate([ramp, hold]), 100.0)  # then it is killed
        load_side = cores * curve / 100.0 * _u(rng, (1.0, 1.4))
        return _Incident(kind, _CPU, a, a + curve.size, thr, curve, {_LOAD: load_side})
    # load_storm
    thr = _CRIT_LOAD_PER_CORE * cores
    L0 = min(float(now[_LOAD]), 0.8 * cores)
    peak = cores * _u(rng, (2.5, 4.0))
    ramp = _ramp(rng, L0, peak, thr, (1.0, 2.0), (1.8, 3.0), 0.05 * cores, 0.12 * cores)
    hold_n = int(_u(rng, (0.5, 3.0)) * H)
    hold = peak + np.clip(rng.normal(0, 0.08 * cores, hold_n), -0.25 * cores, 0.25 * cores)
    tail_n = int(_u(rng, (0.5, 1.5)) * H)
    v = np.arange(1, tail_n + 1) / (tail_n + 1)
    tail = L0 + (peak - L0) * (1.0 - v) ** 2 + rng.normal(0, 0.03 * cores, tail_n)
    curve = np.maximum(np.concatenate([ramp, hold, tail]), 0.0)
    s = np.clip((curve - L0) / (peak - L0), 0.0, 1.0)
    cpu_side = float(now[_CPU]) + _u(rng, (15.0, 45.0)) * s
    return _Incident("load_storm", _LOAD, a, a + curve.size, thr, curve, {_CPU: cpu_side})
