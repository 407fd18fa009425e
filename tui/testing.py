"""Test and benchmark helpers: synthetic snapshots and stand-in engines.

These build ``engine.snapshot`` dataclasses from made-up numbers so that the app can be
driven without the engine (fast tests, the 1,000-server benchmark).  The app itself never
uses them.
"""
from __future__ import annotations

import threading
import time

import numpy as np

PROFILES = ("web", "database", "cache", "batch", "ml", "storage")
METRICS = ("cpu_percent", "memory_percent", "disk_percent", "load_average")


def synthetic_snapshot(n: int, t: int = 0, seed: int = 0, model_type: str = "TFT", horizon: int = 96):
    """A plausible fleet snapshot at tick ``t`` (values drift with t, so consecutive ticks differ)."""
    from engine.snapshot import Alert, Environment, MetricForecast, ServerForecast, Snapshot

    rng = np.random.default_rng(seed)
    base = rng.uniform(5, 90, size=(n, 4))
    phase = rng.uniform(0, 6.28, size=n)
    cores = rng.choice([2, 4, 8, 16, 32], size=n)
    steps = np.arange(1, horizon + 1)
    servers = []
    epoch0 = 1_768_521_600 + 300 * t
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch0))
    for i in range(n):
        metrics = {}
        for j, m in enumerate(METRICS):
            crit = 2.0 * cores[i] if m == "load_average" else 95.0
            warn = 1.0 * cores[i] if m == "load_average" else (80.0 if m == "cpu_percent" else 85.0)
            scale = cores[i] / 50.0 if m == "load_average" else 1.0
            cur = float(np.clip(base[i, j] + 8 * np.sin(phase[i] + 0.05 * t + j), 0, 100)) * scale
            p50 = np.clip(cur + scale * 6 * np.sin(phase[i] + 0.05 * (t + steps) + j), 0, 100 * scale)
            p10 = np.clip(p50 - 5 * scale, 0, None)
            p90 = p50 + 5 * scale
            for a in (p10, p50, p90):
                a.setflags(write=False)
            over = np.flatnonzero(p50 >= crit)
            mtb = float(5 * (over[0] + 1)) if len(over) else None
            p8 = float(np.clip((p90.max() - warn) / max(crit - warn, 1e-9), 0, 1))
            metrics[m] = MetricForecast(current=cur, p10=p10, p50=p50, p90=p90, trend="steady", warning=warn,
                                        critical=crit, prob_30m=p8 * 0.3, prob_8h=p8, minutes_to_breach=mtb,
                                        breach_basis="p50" if mtb is not None else None)
        r8 = max(f.prob_8h for f in metrics.values())
        r30 = max(f.prob_30m for f in metrics.values())
        breaches = [(f.minutes_to_breach, m) for m, f in metrics.items() if f.minutes_to_breach is not None]
        mtb, bm = min(breaches) if breaches else (None, None)
        src = "tft" if model_type == "TFT" or (model_type == "mixed" and i % 5) else "heuristic"
        servers.append(ServerForecast(
            server_name=f"{PROFILES[i % len(PROFILES)]}-{i:04d}", profile=PROFILES[i % len(PROFILES)],
            cores=int(cores[i]), source=src, reason=None if src == "tft" else "no model: test reason",
            metrics=metrics, risk_30m=r30, risk_8h=r8, minutes_to_breach=mtb, breach_metric=bm,
            last_seen=iso, history_len=288,
            importance={"cpu_percent": 0.3, "memory_percent": 0.25, "hour_sin": 0.2, "load_average": 0.15,
                        "disk_percent": 0.1} if src == "tft" else None))
    hot = [s for s in servers if s.risk_8h > 0.5][:20]
    alerts = tuple(
        Alert(id=k + 1, severity="critical" if s.risk_30m > 0.2 else "warning", server_name=s.server_name,
              metric=s.breach_metric or "cpu_percent", message=f"{s.server_name} predicted to breach",
              opened_at=iso, updated_at=iso, predicted_crossing=None, lead_minutes=s.minutes_to_breach,
              state="ongoing" if k % 3 else "resolved", resolved_at=None if k % 3 else iso,
              duration_minutes=15.0 * k)
        for k, s in enumerate(hot))
    n_h = sum(1 for s in servers if s.source != "tft")
    env = Environment(incident_probability_30m=float(1 - np.prod([1 - s.risk_30m for s in servers])),
                      incident_probability_8h=float(1 - np.prod([1 - s.risk_8h for s in servers])),
                      high_risk_servers=len(hot), total_servers=n,
                      fleet_health=100.0 * (n - len(hot)) / max(n, 1))
    md = {"model_type": model_type, "device": "cpu", "model_loaded": model_type != "heuristic",
          "model_reason": None if model_type != "heuristic" else "test", "servers_on_tft": n - n_h,
          "servers_on_heuristic": n_h, "tick_latency_ms": 12.0, "source": "synthetic", "finished": False}
    return Snapshot(data_time=iso, servers=tuple(servers), alerts=alerts, environment=env, metadata=md)


class _Source:
    can_seek = True
    name = "synthetic"


class FakeEngine:
    """Engine-shaped: synthetic snapshots; ``start_delay`` / ``tick_delay`` make it slow on purpose.

    ``block`` (a threading.Event) makes ``tick(advance=True)`` wait until it is set: a forecast
    that never finishes on its own.
    """

    def __init__(self, n: int = 6, model_type: str = "TFT", start_delay: float = 0.0, tick_delay: float = 0.0,
                 block: threading.Event | None = None):
        self.n, self.model_type = n, model_type
        self.start_delay, self.tick_delay, self.block = start_delay, tick_delay, block
        self.t = 0
        self.source = _Source()
        self.started = False
        self.ticks = 0

    def start(self) -> None:
        time.sleep(self.start_delay)
        self.started = True

    def tick(self, advance: bool = True):
        if advance:
            if self.block is not None:
                self.block.wait()
            self.t += 1
        time.sleep(self.tick_delay)
        self.ticks += 1
        return synthetic_snapshot(self.n, self.t, model_type=self.model_type)

    def seek_back(self, steps: int = 1):
        self.t = max(self.t - steps, 0)
        return synthetic_snapshot(self.n, self.t, model_type=self.model_type)

    def history(self, name: str):
        epochs = 1_768_521_600 + 300 * self.t - 300 * np.arange(287, -1, -1)
        return epochs, {m: np.linspace(10, 50, 288) for m in METRICS}
