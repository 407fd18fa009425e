"""Probabilities, breach times and trends from quantile forecasts; the fleet's environment.

Method
------
**Per step.**  The forecast quantiles of a step are read as a *split normal*: median p50,
lower sigma ``(p50 - p10) / 1.2816`` and upper sigma ``(p90 - p50) / 1.2816`` (each
floored at ``SIGMA_EPS``), so p10 and p90 are reproduced exactly and a skewed band gives a
skewed distribution.  ``P_t = P(X_t >= threshold) = 1 - Phi((threshold - p50) / sigma)`` with
the sigma of the threshold's side: threshold at p50 gives 0.5, at p90 gives 0.10; at or
below p10 at least 0.90 (also when the band has collapsed onto the threshold: a disk
forecast full at 100 against a critical level of 100 reads 0.9, not 0.5).

**Within a window.**  The probability of reaching the threshold within the first ``steps``
steps is the union over the steps, with the forecast errors' correlation in time taken into
account: a server that is above its forecast at 10:00 is above it at 10:05 too, but not
necessarily five hours later.  The window counts as ``steps / CORRELATION_STEPS``
independent looks, each as likely as the window's steps on average (in the log):
``P = max(max_t P_t, 1 - prod_t (1 - P_t) ** (1 / CORRELATION_STEPS))``.  The first term
is the lower bound every union has (perfect correlation); without it, a single spike of
the band would count for a 36th of itself.  With ``steps <= CORRELATION_STEPS`` the second
term never exceeds the first, so ``prob_30m`` (the first 6 steps) is the largest per-step
probability; ``prob_8h`` (the whole horizon, 96 steps) is the larger of that and
``1 - prod_t (1 - P_t) ** (1/36)``.  A step with no usable number (NaN) counts as P_t = 0.
Both are against the CRITICAL threshold; a current
value already at or above it gives 1.  CORRELATION_STEPS = 36 (3 h) was chosen on real VMs
(the Bitbrains servers seen in training, their held-out days) from 12, 18, 24, 36, 48 and the
plain max, by the Brier score of the 8 h figure, and checked elsewhere:
``benchmarks/results/risk-union-2026-11-28/``.  The alerts' warning bars are still judged
against the largest per-step probability (:func:`peak_probability_batch`), the reading they
were measured with.

**Minutes to breach.**  0 ("now") if the current value is at or above critical; else the
first step where p50 reaches it (``(t+1) * 5`` min, "p50"); else the first where p90 does
("p90"); else none.

**Trend.**  p50 at the horizon's end against the current value: "steady" within 2
percentage points (percent metrics) or within 10 % of the current value, at least 0.05,
(load); else "rising" / "falling".

**Server and fleet.**  A server's risk is the max over its metrics; its breach is the
earliest expected one (now or p50) over its metrics, and only when no metric has one, the
earliest p90-only one: a possible crossing of one metric must not stand in front of an
expected crossing of another (the row's risk would then be the other metric's).  The fleet's incident probability is
``1 - prod_i (1 - risk_i)``: the probability that at least one server crosses, treating
servers as independent (correlated incidents make the true value lower; it is a "how
likely is my pager to go off" number, not a sum).  High-risk servers have ``risk_8h >=
HIGH_RISK`` or a metric already at critical; fleet health is the percentage of servers
that are not high-risk; with no server (none reporting yet, or every one silent) the health
and the incident probabilities are unknown: NaN, null in the JSON.

:func:`build_fleet` computes everything for n servers from arrays in vectorised numpy
(:func:`risk_arrays`) and then builds the dataclasses; the scalar functions are the
reference it is tested against.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from engine.contract import METRICS, PERCENT_METRICS, STEP_SECONDS, UNKNOWN_PROFILE
from engine.snapshot import SOURCE_HEURISTIC, Environment, MetricForecast, ServerForecast
from engine.thresholds import DEFAULT_THRESHOLDS, Thresholds

Z90 = 1.2815515655446004          # Phi^-1(0.9)
SIGMA_EPS = 1e-9
HIGH_RISK = 0.5
STEP_MINUTES = STEP_SECONDS / 60.0
STEPS_30M = 6
CORRELATION_STEPS = 36         # 3 h: how long a forecast error persists (see the Method)
TREND_TOL_PERCENT = 2.0           # percentage points
TREND_TOL_LOAD_REL = 0.10         # of the current load
TREND_TOL_LOAD_ABS = 0.05

RISING, FALLING, STEADY = "rising", "falling", "steady"


# --------------------------------------------------------------------------- scalar reference


def step_probability(p10: float, p50: float, p90: float, threshold: float) -> float:
    """P(X >= threshold) for one step's split normal."""
    if threshold >= p50:
        sigma = max((p90 - p50) / Z90, SIGMA_EPS)
    else:
        sigma = max((p50 - p10) / Z90, SIGMA_EPS)
    p = 0.5 * math.erfc((threshold - p50) / sigma / math.sqrt(2.0))
    # p10 at or above the threshold: P >= 0.9 (a band collapsed onto it, p10 = p50 = threshold,
    # e.g. a disk forecast full against a critical level of 100, read 0.5 from the upper side)
    return max(p, 0.9) if p10 >= threshold else p


def crossing_probability(p10: Sequence[float], p50: Sequence[float], p90: Sequence[float],
                         threshold: float, steps: int, current: float | None = None) -> float:
    """P(reaching ``threshold`` within the first ``steps`` steps): the largest per-step
    probability, or the correlated union ``1 - prod_t (1 - P_t) ** (1 / CORRELATION_STEPS)``
    when that is larger (see the module's Method).

    1.0 when ``current`` is given and already >= threshold; 0.0 for ``steps`` <= 0.
    """
    if current is not None and current >= threshold:
        return 1.0
    best, log_none = 0.0, 0.0
    for t in range(min(int(steps), len(p50))):
        p = step_probability(float(p10[t]), float(p50[t]), float(p90[t]), threshold)
        if math.isnan(p):
            p = 0.0     # no evidence of a crossing, as in standard_scores (a NaN dropped the union)
        best = max(best, p)
        log_none += math.log1p(-p) if p < 1.0 else -math.inf
    return max(best, -math.expm1(log_none / CORRELATION_STEPS))


def minutes_to_breach(p50: Sequence[float], p90: Sequence[float], threshold: float, current: float,
                      step_minutes: float = STEP_MINUTES) -> tuple[float | None, str | None]:
    """(minutes, basis): (0, "now") at or above; first p50 step (t+1)*5 "p50"; else first p90 step "p90"; else (None, None)."""
    if current >= threshold:
        return 0.0, "now"
    for basis, series in (("p50", p50), ("p90", p90)):
        hits = np.flatnonzero(np.asarray(series) >= threshold)
        if len(hits):
            return float((hits[0] + 1) * step_minutes), basis
    return None, None


TREND_SLACK = 1e-9     # a change of exactly the tolerance is steady (1.0 -> 1.1 is 0.10000000000000009)


def trend_tolerance(metric: str, current: float) -> float:
    """How far p50 may move from the current value and still be "steady"."""
    if metric in PERCENT_METRICS:
        return TREND_TOL_PERCENT
    return max(TREND_TOL_LOAD_REL * abs(current), TREND_TOL_LOAD_ABS)


def trend(current: float, p50: Sequence[float], metric: str = "cpu_percent") -> str:
    """"rising" / "falling" / "steady": p50 at the horizon's end against the current value."""
    change = float(p50[-1]) - current
    tol = trend_tolerance(metric, current) + TREND_SLACK
    return RISING if change > tol else FALLING if change < -tol else STEADY


def build_metric_forecast(metric: str, current: float, q: np.ndarray,
                          thresholds: Thresholds = DEFAULT_THRESHOLDS, cores: int | None = None,
                          step_minutes: float = STEP_MINUTES) -> MetricForecast:
    """A MetricForecast from one metric's (H, 3) p10/p50/p90 forecast; probabilities against critical."""
    q = np.asarray(q, dtype=np.float64)
    warning, critical = thresholds.for_metric(metric, cores)
    p10, p50, p90 = (_frozen(q[:, j]) for j in range(3))
    current = float(current)
    minutes, basis = minutes_to_breach(p50, p90, critical, current, step_minutes)
    return MetricForecast(
        current=current, p10=p10, p50=p50, p90=p90, trend=trend(current, p50, metric),
        warning=float(warning), critical=float(critical),
        prob_30m=crossing_probability(p10, p50, p90, critical, STEPS_30M, current),
        prob_8h=crossing_probability(p10, p50, p90, critical, len(p50), current),
        minutes_to_breach=minutes, breach_basis=basis,
    )


def server_from_metrics(server_name: str, metrics: Mapping[str, MetricForecast], *,
                        profile: str = UNKNOWN_PROFILE, cores: int | None = None,
                        source: str = SOURCE_HEURISTIC, reason: str | None = None, last_seen: str = "",
                        history_len: int = 0, importance: dict[str, float] | None = None) -> ServerForecast:
    """Aggregate metric forecasts: risk = max over metrics, breach = earliest expected (now or p50)
    one, else earliest p90-only one (ties: first metric)."""
    risk_30m = max((f.prob_30m for f in metrics.values()), default=0.0)
    risk_8h = max((f.prob_8h for f in metrics.values()), default=0.0)
    minutes, which, key = None, None, None
    for name, f in metrics.items():
        if f.minutes_to_breach is None:
            continue
        k = (f.breach_basis == "p90", f.minutes_to_breach)
        if key is None or k < key:
            minutes, which, key = f.minutes_to_breach, name, k
    return ServerForecast(
        server_name=server_name, profile=profile, cores=cores, source=source, reason=reason,
        metrics=dict(metrics), risk_30m=risk_30m, risk_8h=risk_8h, minutes_to_breach=minutes,
        breach_metric=which, last_seen=last_seen, history_len=int(history_len), importance=importance,
    )


def build_server_forecast(server_name: str, current: Mapping[str, float], forecasts: Mapping[str, np.ndarray],
                          thresholds: Thresholds = DEFAULT_THRESHOLDS, *, cores: int | None = None,
                          profile: str = UNKNOWN_PROFILE, source: str = SOURCE_HEURISTIC,
                          reason: str | None = None, last_seen: str = "", history_len: int = 0,
                          importance: dict[str, float] | None = None) -> ServerForecast:
    """One server from its current values and (H, 3) forecasts per metric (METRICS order)."""
    metrics = {m: build_metric_forecast(m, current[m], forecasts[m], thresholds, cores)
               for m in METRICS if m in forecasts}
    return server_from_metrics(server_name, metrics, profile=profile, cores=cores, source=source,
                               reason=reason, last_seen=last_seen, history_len=history_len,
                               importance=importance)


def is_high_risk(server: ServerForecast) -> bool:
    """8 h risk >= HIGH_RISK, or a metric already at or above critical."""
    return server.risk_8h >= HIGH_RISK or any(f.current >= f.critical for f in server.metrics.values())


def environment(servers: Sequence[ServerForecast]) -> Environment:
    """Fleet-wide incident probabilities (independence), high-risk count and health; with no
    server (none reporting yet, or all silent) the health and probabilities are unknown (NaN,
    null in the JSON), not a healthy 100 % and 0 %."""
    total = len(servers)
    if total == 0:
        return Environment.unknown()
    high = sum(is_high_risk(s) for s in servers)
    return Environment(
        incident_probability_30m=_any_of([s.risk_30m for s in servers]),
        incident_probability_8h=_any_of([s.risk_8h for s in servers]),
        high_risk_servers=int(high), total_servers=total,
        fleet_health=100.0 * (1.0 - high / total),
    )


# --------------------------------------------------------------------------- vectorised


def standard_scores(q: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Per-step ``z = (threshold - p50) / sigma_side``, shape q.shape[:-1], for q (..., H, 3) and a
    threshold of shape q.shape[:-2] (or a scalar).  ``P_t = 1 - Phi(z_t)`` decreases with z, so the
    max of P over a window is ``1 - Phi(min z)``: only the window's minimum needs the error function."""
    q = np.asarray(q, dtype=np.float64)
    p10, p50, p90 = q[..., 0], q[..., 1], q[..., 2]
    threshold = np.asarray(threshold, dtype=np.float64)
    diff = (threshold[..., None] if threshold.ndim else threshold) - p50
    sigma = np.where(diff >= 0, p90 - p50, p50 - p10)
    sigma *= 1.0 / Z90
    np.maximum(sigma, SIGMA_EPS, out=sigma)
    diff /= sigma
    # p10 at or above the threshold: z <= -Z90 (P >= 0.9), which the split normal gives
    # unless the band has collapsed onto the threshold (p10 = p50 = threshold read 0.5)
    tie = p10 >= (threshold[..., None] if threshold.ndim else threshold)
    np.minimum(diff, -Z90, out=diff, where=tie)
    # a step with no usable number (NaN) is no evidence of a crossing, rather than a NaN that
    # would win every min/max over the horizon (the forecaster hands none to the engine)
    np.nan_to_num(diff, copy=False, nan=np.inf, posinf=np.inf, neginf=-np.inf)
    return diff


def upper_tail(z: np.ndarray) -> np.ndarray:
    """1 - Phi(z), vectorised."""
    return 0.5 * _erfc(np.asarray(z, dtype=np.float64) * (1.0 / math.sqrt(2.0)))


def exceedance_batch(q: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Per-step P(X >= threshold), shape q.shape[:-1] (see :func:`standard_scores` for shapes)."""
    return upper_tail(standard_scores(q, threshold))


def window_probability(z: np.ndarray) -> np.ndarray:
    """P(reaching the threshold within the steps of ``z`` (..., steps)), the standard scores
    of :func:`standard_scores`: the largest per-step probability or the correlated union,
    whichever is larger (the module's Method).  Shape z.shape[:-1]."""
    z = np.asarray(z, dtype=np.float64)
    zmin = z.min(axis=-1)
    peak = np.array(upper_tail(zmin), dtype=np.float64)
    if z.shape[-1] <= CORRELATION_STEPS:
        return peak                  # the union term cannot exceed the max here (see the Method)
    # only windows with a step nearer than 8 sigma (P_t > 1e-15; most of a quiet fleet has
    # none) can have a union that a float tells from the peak: the others keep the peak
    rows = np.flatnonzero(zmin < 8.0)
    if len(rows):
        flat = z.reshape(-1, z.shape[-1])[rows]
        with np.errstate(divide="ignore"):      # a certain step (P_t = 1): log 0 = -inf, P = 1
            log_none = np.log1p(-upper_tail(np.minimum(flat, 8.0))).sum(axis=-1)
        union = -np.expm1(log_none * (1.0 / CORRELATION_STEPS))
        peak = peak.reshape(-1)
        peak[rows] = np.maximum(peak[rows], union)
        peak = peak.reshape(zmin.shape)
    return peak


def crossing_probability_batch(q: np.ndarray, threshold: np.ndarray, steps: int,
                               current: np.ndarray | None = None) -> np.ndarray:
    """(n,) probabilities of reaching ``threshold[i]`` within the first ``steps`` steps of ``q[i]`` (n, H, 3)
    (:func:`window_probability`)."""
    return _within(q, threshold, steps, current, window_probability)


def peak_probability_batch(q: np.ndarray, threshold: np.ndarray, steps: int,
                           current: np.ndarray | None = None) -> np.ndarray:
    """(n,) largest per-step probabilities of reaching ``threshold[i]`` in the first ``steps``
    steps (the lower bound of :func:`crossing_probability_batch`; the alerts' warning bars
    are judged against it)."""
    return _within(q, threshold, steps, current, lambda z: upper_tail(z.min(axis=-1)))


def _within(q, threshold, steps, current, reduce) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    threshold = np.asarray(threshold, dtype=np.float64)
    steps = min(int(steps), q.shape[1])
    if steps <= 0:
        p = np.zeros(q.shape[0])
    else:
        p = reduce(standard_scores(q[:, :steps], threshold))
    if current is not None:
        p = np.where(np.asarray(current, dtype=np.float64) >= threshold, 1.0, p)
    return p


def threshold_arrays(thresholds: Thresholds, cores: Sequence[int | None] | None, n: int,
                     metrics: Sequence[str] = METRICS) -> tuple[np.ndarray, np.ndarray]:
    """(warning, critical), each (n, len(metrics)), for servers with the given core counts (None: unknown)."""
    cores = [None] * n if cores is None else list(cores)
    if len(cores) != n:
        raise ValueError(f"cores has {len(cores)} entries for {n} servers")
    warning = np.empty((n, len(metrics)))
    critical = np.empty((n, len(metrics)))
    # one row of thresholds per distinct core count (a fleet has a handful), then a gather
    codes = np.array([int(c) if c else 0 for c in cores], dtype=np.int64)      # 0: unknown
    kinds, which = np.unique(codes, return_inverse=True)
    rows = np.array([[thresholds.for_metric(m, int(c) or None) for m in metrics] for c in kinds],
                    dtype=np.float64).reshape(len(kinds), len(metrics), 2)
    warning[:] = rows[which, :, 0]
    critical[:] = rows[which, :, 1]
    return warning, critical


def risk_arrays(q: np.ndarray, current: np.ndarray, critical: np.ndarray,
                metrics: Sequence[str] = METRICS, step_minutes: float = STEP_MINUTES) -> dict[str, np.ndarray]:
    """Everything :func:`build_metric_forecast` computes, for q (n, M, H, 3), current and critical (n, M).

    Returns arrays keyed prob_30m, prob_8h, minutes (NaN: no breach), basis (0 none, 1 now,
    2 p50, 3 p90), trend (-1 falling, 0 steady, 1 rising) — all (n, M) — and per server
    risk_30m, risk_8h, high_risk (n,).
    """
    q = np.asarray(q, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    critical = np.asarray(critical, dtype=np.float64)
    n, m_count, horizon, _ = q.shape
    already = current >= critical
    if horizon < 1:
        raise ValueError("the forecast horizon must be >= 1 step")
    z = standard_scores(q, critical)                                          # (n, M, H)
    p30 = window_probability(z[:, :, :STEPS_30M])
    p8h = window_probability(z)
    p30 = np.where(already, 1.0, p30)
    p8h = np.where(already, 1.0, p8h)

    hit50 = q[..., 1] >= critical[..., None]
    hit90 = q[..., 2] >= critical[..., None]
    any50, any90 = hit50.any(axis=2), hit90.any(axis=2)
    first50, first90 = hit50.argmax(axis=2), hit90.argmax(axis=2)
    basis = np.select([already, any50, any90], [1, 2, 3], 0)
    minutes = np.select([already, any50, any90],
                        [0.0, (first50 + 1) * step_minutes, (first90 + 1) * step_minutes], np.nan)

    is_percent = np.array([m in PERCENT_METRICS for m in metrics])
    tol = np.where(is_percent[None, :], TREND_TOL_PERCENT,
                   np.maximum(TREND_TOL_LOAD_REL * np.abs(current), TREND_TOL_LOAD_ABS))
    change = q[:, :, -1, 1] - current
    tol = tol + TREND_SLACK
    trend_code = np.where(change > tol, 1, np.where(change < -tol, -1, 0))

    risk_30m = p30.max(axis=1) if m_count else np.zeros(n)
    risk_8h = p8h.max(axis=1) if m_count else np.zeros(n)
    high = (risk_8h >= HIGH_RISK) | already.any(axis=1)
    return {"prob_30m": p30, "prob_8h": p8h, "minutes": minutes, "basis": basis, "trend": trend_code,
            "risk_30m": risk_30m, "risk_8h": risk_8h, "high_risk": high}


def build_fleet(names: Sequence[str], current: np.ndarray,
                quantiles: Mapping[str, np.ndarray] | np.ndarray,
                thresholds: Thresholds = DEFAULT_THRESHOLDS, cores: Sequence[int | None] | None = None, *,
                profiles: str | Sequence[str] | None = None, source: str | Sequence[str] = SOURCE_HEURISTIC,
                reason: str | None | Sequence[str | None] = None, last_seen: str | Sequence[str] = "",
                history_len: int | Sequence[int] = 0,
                importance: Sequence[dict[str, float] | None] | None = None,
                metrics: Sequence[str] = METRICS,
                step_minutes: float = STEP_MINUTES, copy: bool = True) -> tuple[ServerForecast, ...]:
    """ServerForecasts for n servers, vectorised; pass them to :func:`environment` for the fleet.

    ``current`` is (n, M) in ``metrics`` order; ``quantiles`` maps each metric to (n, H, 3)
    p10/p50/p90, or is one (n, M, H, 3) array.  Per-server fields (``profiles``, ``source``,
    ``reason``, ``last_seen``, ``history_len``, ``importance``) are sequences of n, or one
    value for all.  Equal to building each server with :func:`build_server_forecast`.
    ``copy=False``: the caller hands an (n, M, H, 3) ``quantiles`` array over (the servers'
    p10/p50/p90 become read-only views of it) instead of it being copied.
    """
    names = list(names)
    n = len(names)
    metrics = tuple(metrics)
    if n == 0:
        return ()
    if isinstance(quantiles, Mapping):
        q = np.stack([np.asarray(quantiles[m], dtype=np.float64) for m in metrics], axis=1)
    else:
        q = np.asarray(quantiles, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64).reshape(n, len(metrics))
    if q.ndim != 4 or q.shape[:2] != (n, len(metrics)) or q.shape[2] < 1 or q.shape[3] != 3:
        raise ValueError(f"quantiles must be (n={n}, M={len(metrics)}, H>=1, 3), got {q.shape}")
    warning, critical = threshold_arrays(thresholds, cores, n, metrics)
    r = risk_arrays(q, current, critical, metrics, step_minutes)

    # One read-only copy: every p10/p50/p90 is a (strided) read-only view of it.
    block = q if isinstance(quantiles, Mapping) or not copy else np.array(q)   # np.stack already copied
    block.flags.writeable = False
    cur_l, warn_l, crit_l = current.tolist(), warning.tolist(), critical.tolist()
    p30_l, p8h_l = r["prob_30m"].tolist(), r["prob_8h"].tolist()
    minutes_l = r["minutes"].tolist()
    basis_l, trend_l = r["basis"].tolist(), r["trend"].tolist()
    basis_names = (None, "now", "p50", "p90")
    trend_names = {1: RISING, 0: STEADY, -1: FALLING}
    cores_l = [None] * n if cores is None else [int(c) if c else None for c in cores]
    profiles_l = _per_server(profiles if profiles is not None else UNKNOWN_PROFILE, n)
    sources_l = _per_server(source, n)
    reasons_l = _per_server(reason, n)
    seen_l = _per_server(last_seen, n)
    hist_l = _per_server(history_len, n)
    imp_l = _per_server(importance, n) if importance is not None else [None] * n

    # per server: the earliest expected (now / p50) breach over metrics, else the earliest
    # p90-only one (the first metric on ties), None when none; minutes are at most the horizon,
    # so adding 1e9 minutes puts every p90-only crossing after every expected one
    minutes_a = r["minutes"]
    found = ~np.isnan(minutes_a)
    ranked = np.where(found, minutes_a + np.where(r["basis"] == 3, 1e9, 0.0), np.inf)
    earliest = ranked.argmin(axis=1) if len(metrics) else np.zeros(n, dtype=int)
    any_l = found.any(axis=1).tolist()
    earliest_l = earliest.tolist()
    risk30_l = r["risk_30m"].tolist()
    risk8h_l = r["risk_8h"].tolist()

    servers = []
    for i, name in enumerate(names):
        fs = {}
        mins_i = minutes_l[i]
        for j, m in enumerate(metrics):
            minutes = mins_i[j]
            fs[m] = MetricForecast(
                current=cur_l[i][j], p10=block[i, j, :, 0], p50=block[i, j, :, 1], p90=block[i, j, :, 2],
                trend=trend_names[trend_l[i][j]], warning=warn_l[i][j], critical=crit_l[i][j],
                prob_30m=p30_l[i][j], prob_8h=p8h_l[i][j],
                minutes_to_breach=None if minutes != minutes else minutes,       # NaN -> None
                breach_basis=basis_names[basis_l[i][j]],
            )
        k = earliest_l[i]
        servers.append(ServerForecast(
            server_name=name, profile=profiles_l[i], cores=cores_l[i], source=sources_l[i],
            reason=reasons_l[i], metrics=fs, risk_30m=risk30_l[i], risk_8h=risk8h_l[i],
            minutes_to_breach=mins_i[k] if any_l[i] else None, breach_metric=metrics[k] if any_l[i] else None,
            last_seen=seen_l[i], history_len=int(hist_l[i]), importance=imp_l[i],
        ))
    return tuple(servers)


# --------------------------------------------------------------------------- helpers


def _any_of(risks: Sequence[float] | np.ndarray) -> float:
    """1 - prod(1 - r): P(at least one), assuming independence."""
    r = np.clip(np.asarray(risks, dtype=np.float64), 0.0, 1.0)
    return float(1.0 - np.prod(1.0 - r)) if r.size else 0.0


def _per_server(value, n: int) -> list:
    if value is None or isinstance(value, (str, int, float, np.integer, np.floating)):
        return [value] * n
    out = list(value)
    if len(out) != n:
        raise ValueError(f"expected {n} per-server values, got {len(out)}")
    return out


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.float64)
    out.flags.writeable = False
    return out


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, vectorised (Numerical Recipes' erfcc, relative error < 1.2e-7)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(-z * z + poly)
    return np.where(x >= 0, r, 2.0 - r)


def format_probability(p: float | None) -> str:
    """A probability as an operator reads it, the same in the app and `predict`: "0%" only
    for zero, "<1%" for a small chance (rounded it would read as none), ">99%" short of
    certain, else whole percents; "—" when unknown."""
    if p is None or not math.isfinite(p):
        return "—"
    if p <= 0:
        return "0%"
    if p < 0.01:
        return "<1%"
    if p > 0.99 and p < 1:
        return ">99%"
    return f"{p * 100:.0f}%"
