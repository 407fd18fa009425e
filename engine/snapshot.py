"""The snapshot: one immutable picture of the fleet per tick, the only thing consumers read.

The TUI, `tft-top predict --json` and the REST daemon all read a ``Snapshot``; none of
them computes forecasts, risk or alerts themselves.  ``Snapshot.to_json()`` keeps the
shape operators of the original system know: ``predictions``, ``alerts``,
``environment`` and ``metadata``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SOURCE_TFT = "tft"
SOURCE_HEURISTIC = "heuristic"


def _p(x: float | None) -> float | None:
    """A probability to 4 significant digits of itself or, above one half, of its distance
    from 1: rounded to 4 decimals a small chance (3e-05) read 0.0 and a near certainty
    (0.99996) 1.0, and a client showed "0%" or "100%" where the app showed "<1%" or ">99%"."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    x = float(x)
    if x > 0.5:     # (the subtraction's float noise rounded off: 0.57, not 0.5699999999999999)
        return float(f"{1.0 - float(f'{1.0 - x:.4g}'):.12g}")
    return float(f"{x:.4g}")


def _r(x: float | None, nd: int = 3) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)


@dataclass(frozen=True, slots=True)
class MetricForecast:
    """One metric of one server: where it is and where it is heading."""

    current: float
    p10: np.ndarray              # (horizon,) read-only
    p50: np.ndarray
    p90: np.ndarray
    trend: str                   # "rising" | "falling" | "steady" (p50 at the horizon's end vs now)
    warning: float               # thresholds in the metric's own unit
    critical: float
    prob_30m: float              # P(reaching critical within 30 min)
    prob_8h: float               # P(reaching critical within the horizon)
    minutes_to_breach: float | None   # first step where p50 (else p90) reaches critical; None: no breach seen
    breach_basis: str | None     # "p50" | "p90" | "now" | None

    def to_json(self) -> dict[str, Any]:
        return {
            "current": _r(self.current), "p10": [_r(v) for v in self.p10], "p50": [_r(v) for v in self.p50],
            "p90": [_r(v) for v in self.p90], "trend": self.trend,
            "thresholds": {"warning": _r(self.warning), "critical": _r(self.critical)},
            "probability_30m": _p(self.prob_30m), "probability_8h": _p(self.prob_8h),
            "minutes_to_breach": _r(self.minutes_to_breach, 1), "breach_basis": self.breach_basis,
        }


@dataclass(frozen=True, slots=True)
class ServerForecast:
    server_name: str
    profile: str
    cores: int | None
    source: str                  # SOURCE_TFT | SOURCE_HEURISTIC
    reason: str | None           # why the heuristic served this server (None for the TFT)
    metrics: dict[str, MetricForecast]
    risk_30m: float              # max over metrics
    risk_8h: float
    minutes_to_breach: float | None   # earliest over metrics
    breach_metric: str | None
    last_seen: str               # ISO time of the server's newest sample
    history_len: int             # samples in the server's window
    importance: dict[str, float] | None = None   # TFT variable importance (encoder), when from the TFT

    @property
    def breach_basis(self) -> str | None:
        """Which forecast gives ``minutes_to_breach``: "p50" (expected), "p90" (only the
        upper band reaches critical: possible), "now", or None."""
        f = self.metrics.get(self.breach_metric) if self.breach_metric else None
        return f.breach_basis if f is not None and self.minutes_to_breach is not None else None

    def to_json(self) -> dict[str, Any]:
        out = {m: f.to_json() for m, f in self.metrics.items()}
        out["_meta"] = {
            "profile": self.profile, "cores": self.cores, "source": self.source, "reason": self.reason,
            "risk_30m": _p(self.risk_30m), "risk_8h": _p(self.risk_8h),
            "minutes_to_breach": _r(self.minutes_to_breach, 1), "breach_metric": self.breach_metric,
            "last_seen": self.last_seen, "history_len": self.history_len,
        }
        return out


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    severity: str                # "warning" | "critical"
    server_name: str
    metric: str
    message: str
    opened_at: str               # ISO data time
    updated_at: str              # the last tick with the alert's condition
    predicted_crossing: str | None   # ISO time the metric is predicted to reach critical
    lead_minutes: float | None       # predicted_crossing - updated_at, in minutes
    state: str                   # "ongoing" | "resolved"
    resolved_at: str | None = None
    duration_minutes: float = 0.0    # opened -> now (ongoing) or -> resolved_at
    clear_minutes: float = 0.0       # time since its condition last held (0: it holds now); resolved: at resolved_at
    resolution: str | None = None    # resolved: "cleared" (an hour without the condition), "silent"
                                     # (the server stopped reporting: nothing says it recovered) or
                                     # "threshold" (its critical threshold moved, and under the new
                                     # one there is no condition)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "severity": self.severity, "server": self.server_name, "metric": self.metric,
            "message": self.message, "opened_at": self.opened_at, "updated_at": self.updated_at,
            "predicted_crossing": self.predicted_crossing, "lead_time_minutes": _r(self.lead_minutes, 1),
            "state": self.state, "resolved_at": self.resolved_at, "duration_minutes": _r(self.duration_minutes, 1),
            "clear_minutes": _r(self.clear_minutes, 1), "resolution": self.resolution,
        }


@dataclass(frozen=True)
class Environment:
    incident_probability_30m: float   # P(at least one server reaches a critical threshold within 30 min)
    incident_probability_8h: float
    high_risk_servers: int            # servers with 8 h risk >= HIGH_RISK or already critical
    total_servers: int
    fleet_health: float               # % of servers that are not high-risk

    @classmethod
    def unknown(cls) -> "Environment":
        """A fleet with no server reporting (none yet, or every one silent): nothing is known of
        its health or incident probabilities (NaN, null in the JSON), which is not 100 % and 0 %."""
        return cls(math.nan, math.nan, 0, 0, math.nan)

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_probability_30m": _p(self.incident_probability_30m),
            "incident_probability_8h": _p(self.incident_probability_8h),
            "high_risk_servers": self.high_risk_servers, "total_servers": self.total_servers,
            "fleet_health": _r(self.health_floor(1), 1),
        }

    def health_floor(self, digits: int) -> float:
        """fleet_health to ``digits`` decimals, rounded down: one high-risk server among
        2,000 is 99.95 %, which rounding shows as a perfect 100 beside "1 high-risk"."""
        scale = 10 ** digits
        value = self.fleet_health
        return math.floor(value * scale + 1e-9) / scale if math.isfinite(value) else value

    def health_text(self, digits: int) -> str:
        value = self.health_floor(digits)
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


@dataclass(frozen=True)
class Snapshot:
    data_time: str | None             # ISO time of the newest sample the forecasts start from (None: no data yet)
    servers: tuple[ServerForecast, ...]
    alerts: tuple[Alert, ...]         # newest first; ongoing and recently resolved
    environment: Environment
    metadata: dict[str, Any] = field(default_factory=dict)
    # metadata keys: model_type ("TFT" | "heuristic" | "mixed"), model_dir, device, model_reason,
    # servers_on_tft, servers_on_heuristic, horizon_steps, step_seconds, quantiles,
    # tick_latency_ms, generated_at, source

    def server(self, name: str) -> ServerForecast | None:
        for s in self.servers:
            if s.server_name == name:
                return s
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "data_time": self.data_time,
            "predictions": {s.server_name: s.to_json() for s in self.servers},
            "alerts": [a.to_json() for a in self.alerts],
            "environment": self.environment.to_json(),
            "metadata": dict(self.metadata),
        }
