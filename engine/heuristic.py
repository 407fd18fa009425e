"""The fallback forecaster: answers when the TFT cannot, in pure numpy, for the whole fleet at once.

It serves a server when no model is loaded (``REASON_NO_MODEL``, the caller appends the
load error), when the model fails, or when the server's history is shorter than the
model's encoder (:func:`heuristic_reason`).  Every such forecast is labelled
``SOURCE_HEURISTIC`` by the caller, with the reason.

Method, per series ``y`` (5-minute steps, oldest first) and future step ``h = 1..H``:

- **level forecast**: a least-squares line over the last 3 h (>= 30 min of history), its
  slope ``b`` shrunk by ``t^2 / (t^2 + 4)`` (``t`` its t-statistic) so that noise does not
  extrapolate.  Where the last hour's own line is less than half as steep, the 3 h line
  is a step, not a ramp, and the last hour's line is used instead (a server that jumped
  to a new level two hours ago and stayed is forecast to stay).  ``L`` = mean of the
  last 3 samples; its departure from the line ``l`` fades at the residuals' lag-1
  autocorrelation ``r`` (>= 1 h of history, else ``r = 1``), and the line continues with
  a damped slope:
  ``l + (L - l) * r^(h+1) + b * sum_{k=1..h+1} phi^k`` (``L`` and ``l`` are centred one step
  back).  Noise falls back to the local mean at once, a ramp or a random walk keeps going;
  ``phi = 0.985`` per step bounds the trend's reach (``b * phi / (1 - phi)`` ~ 66 steps).
  Under 30 min of history this is just ``L``.
- **seasonal forecast** (only with >= 1 day + 1 h of history): yesterday's profile at the
  same time (3-point smoothed) shifted to today's level,
  ``S(h) = y[t+h-288] + (L - L_yesterday)``: it follows the daily shape and, because the
  shift carries today's level, a steady day-over-day growth (a filling disk) as well.
- **blend**: ``p50 = a * seasonal + (1 - a) * level forecast`` with inverse-variance weight
  ``a = var_l / (var_l + var_s)``, where ``var_s`` is the variance of the day-over-day
  changes over the last day (the seasonal method's error) and ``var_l`` the variance of the
  series over the last day (the flat method's error).  A strong daily cycle or a trend gives
  ``a`` near 1; white noise gives ``a = 1/3``.  With less history, ``a = 0``.
- **band**: from the history's own errors.  One-step errors are the first differences over
  the last day; their q-quantile (minus their median) grows with ``sqrt(h)``, capped at the
  q-quantile (minus median) of the blend's long-horizon residuals (``a`` x day-over-day
  changes + ``(1 - a)`` x deviations from the day's mean; the cap applies with >= 3 h of
  such residuals, never below the one-step error nor the spread of the series' own
  h-step changes), then scaled per metric by ``BAND_SCALE`` (1.3 for CPU and load, chosen
  for 80 % coverage on training periods).  Each side is at least a floor
  (0.5 pp for percents; 2 % of the level, min 0.02, for load) x ``min(sqrt(h), 4)`` so a
  flat series still has a band; under 3 h of history also at least ``YOUNG_PRIOR`` (what
  servers in general move by in h steps), fading out as the history fills.

Output is clipped to the metric's range (percent 0-100, load >= 0) and ordered so that
p10 <= p50 <= p90.  :func:`heuristic_forecast_batch` runs the same arithmetic on a
right-aligned (n, L) batch; :func:`heuristic_forecast` is the batch of one.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.contract import MAX_FILL_STEPS, METRICS, PERCENT_METRICS, STEP_SECONDS

SEASON = 288                 # one day of 5-minute steps
LEVEL_WINDOW = 3             # samples averaged for the current level
TREND_WINDOW = 36            # 3 h for the slope
MIN_TREND = 6                # 30 min of history before a slope is used
RECENT_WINDOW = 12           # the last hour's line, for telling a step from a ramp
RECENT_AGREEMENT = 0.5       # the last hour's slope below half the 3 h one: a step, not a ramp
TREND_SHRINK = 4.0           # slope x t^2 / (t^2 + 4): a slope within noise (|t| ~ 1) counts a fifth
MIN_REVERSION = 12           # 1 h of history before departures from the mean are allowed to fade
DAMPING = 0.985              # per-step damping of the trend
RESID_WINDOW = SEASON        # errors are measured over the last day
MIN_SEASONAL_DIFFS = 12      # day-over-day changes needed to use the seasonal profile
MIN_SEASONAL_HISTORY = SEASON + MIN_SEASONAL_DIFFS   # 1 day + 1 h
MIN_CAP = 36                 # 3 h of residuals before the band growth is capped
PERCENT_FLOOR = 0.5          # band floor for percent metrics, percentage points
LOAD_FLOOR_ABS = 0.02
LOAD_FLOOR_REL = 0.02
FLOOR_GROWTH_MAX = 4.0       # the floor grows with sqrt(h) up to this factor
# A server with little history has shown none of its own errors: its band is at least what
# servers in general move by, fading out as its own history fills (none left at MIN_CAP, 3 h).
# The half-width covering 80 % of |y[t+h] - y[t]| over every server's training part of
# demo_data, Bitbrains and SMD (each data set weighted equally; flat series left out; load
# as a multiple of max(level, 0.5)), at h = 1, 3, 6, 12, 24, 48, 96 steps (2026-11-29;
# `python benchmarks/young_band_prior.py demo_data ../shared/data/real/bitbrains_rnd.csv.gz ../shared/data/real/smd.csv.gz`).
# One sample gave an 8 h CPU band of +-2 points and a "<1 %" risk (an operator's review).
YOUNG_STEPS = (1, 3, 6, 12, 24, 48, 96)
YOUNG_PRIOR: dict[str, tuple[float, ...]] = {
    "cpu_percent": (1.84, 2.94, 3.84, 5.45, 8.69, 14.14, 18.79),
    "memory_percent": (2.92, 3.73, 4.63, 4.63, 5.16, 6.81, 9.12),     # (12 steps: 3.77, kept rising)
    "disk_percent": (0.01, 0.02, 0.03, 0.04, 0.08, 0.16, 0.26),
    "load_average": (0.10, 0.15, 0.19, 0.23, 0.30, 0.43, 0.63),       # x max(level, 0.5)
}
LOAD_PRIOR_MIN_LEVEL = 0.5
# Per metric, a factor on the band's half-width above the floor.  CPU and load bands built
# as above covered 74 % of the demo fleet's training period (origins every 2 h, 8 h ahead);
# each factor is the smallest on a 0.1 grid giving >= 80 % there and on the Bitbrains
# training period, which already covered 81 % at 1.0.  Memory's and disk's bands are mostly
# the floor (the factor barely moves them: 81 % / 93 % at 1.0).  Measured by
# benchmarks/heuristic_bands.py (results: benchmarks/results/heuristic-bands-2026-11-27/):
#   training period      factor 1.0 -> 1.3:  demo CPU 73.9 -> 80.4 %, load 74.0 -> 80.2 %;
#                        Bitbrains CPU 80.8 -> 81.7 %, load 80.9 -> 81.8 %; pinball lower on both
#   held-out (checked):  demo CPU 73.6 -> 79.2 %, load 74.3 -> 79.8 % (pinball -2.1 / -2.2 %);
#                        Bitbrains 80.0 -> 80.5 %, 79.8 -> 80.4 %; SMD CPU 82.1 -> 88.0 %
#                        (pinball +2.1 %, 3 machines), load 88.4 -> 90.6 %
BAND_SCALE: dict[str, float] = {"cpu_percent": 1.3, "memory_percent": 1.0, "disk_percent": 1.0,
                                "load_average": 1.3}

REASON_NO_MODEL = "no model"            # caller appends ": <load error>"
REASON_MODEL_ERROR = "model failed"     # caller appends ": <exception>"
REASON_NO_HISTORY = "no history"

# Columns kept from the right: a day of day-over-day changes needs two days plus one sample.
HISTORY_WIDTH = 2 * SEASON + 1   # the history the heuristic reads (its seasonal part and band need two days)
_WIDTH = HISTORY_WIDTH


def heuristic_reason(history_len: int, min_len: int, gap_seconds: int = 0) -> str:
    """Why the heuristic serves a server with a short history, e.g. "history 2.0 h < 3.0 h the
    model needs"; when a long gap restarted the window, that gap (hourly samples are all
    gaps: without it the reason read as if the server were new)."""
    hours = STEP_SECONDS / 3600.0
    text = f"history {history_len * hours:.1f} h < {min_len * hours:.1f} h the model needs"
    if gap_seconds > 0:
        limit = MAX_FILL_STEPS * STEP_SECONDS // 60
        text += (f", since two samples {_duration(gap_seconds)} apart: over {limit} min without one "
                 f"starts the history again")
    return text


def _duration(seconds: int) -> str:
    minutes = int(seconds) // 60
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h".replace(".0 h", " h")
    return f"{minutes / 1440:.1f} days".replace(".0 days", " days")


def metric_range(metric: str) -> tuple[float, float]:
    """(low, high) of a metric's valid values."""
    if metric in PERCENT_METRICS:
        return 0.0, 100.0
    if metric == "load_average":
        return 0.0, np.inf
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def heuristic_forecast(history: np.ndarray, horizon: int = 96, quantiles: Sequence[float] = (0.1, 0.5, 0.9),
                       metric: str = "cpu_percent") -> np.ndarray:
    """(horizon, len(quantiles)) forecast of one metric from its history (1-D, oldest first, >= 1 sample)."""
    h = np.asarray(history, dtype=np.float64).ravel()
    return heuristic_forecast_batch(h[None, :], np.array([len(h)]), horizon, quantiles, metric)[0]


def heuristic_forecast_batch(values: np.ndarray, lengths: np.ndarray, horizon: int = 96,
                             quantiles: Sequence[float] = (0.1, 0.5, 0.9),
                             metric: str = "cpu_percent") -> np.ndarray:
    """(n, horizon, len(quantiles)) forecasts for n right-aligned histories of one metric.

    Row i's history is ``values[i, L - lengths[i]:]``; what lies left of it is ignored
    (it may be NaN).  Every length must be >= 1.
    """
    lo_clip, hi_clip = metric_range(metric)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (n, L), got shape {v.shape}")
    n, width = v.shape
    lengths = np.asarray(lengths, dtype=np.int64).ravel()
    if lengths.shape != (n,):
        raise ValueError(f"lengths must have shape ({n},), got {lengths.shape}")
    if n and (lengths.min() < 1 or lengths.max() > width):
        raise ValueError(f"lengths must lie in 1..{width}")
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    qs = np.asarray(quantiles, dtype=np.float64).ravel()
    if len(qs) == 0 or np.any(np.diff(qs) <= 0) or qs[0] <= 0 or qs[-1] >= 1:
        raise ValueError(f"quantiles must be increasing, inside (0, 1); got {tuple(quantiles)}")
    if n == 0:
        return np.empty((0, horizon, len(qs)))

    # Right-aligned window of fixed width: invalid cells are 0 and masked.
    w = _WIDTH
    lengths = np.minimum(lengths, w)
    take = min(width, w)
    valid = np.arange(w)[None, :] >= (w - lengths)[:, None]
    short = np.flatnonzero(lengths < take)
    if take == w and not len(short):
        y = v[:, width - w:]                     # every row fills the window: no copy needed
    else:
        y = np.zeros((n, w))
        y[:, w - take:] = v[:, width - take:]
        if len(short):   # what lies left of a short history may be anything (NaN): zero it
            y[short] = np.where(valid[short], y[short], 0.0)

    # Deviations from the day's mean: the flat forecast's residuals.
    y_day, v_day = y[:, -RESID_WINDOW:], valid[:, -RESID_WINDOW:]
    n_day = np.minimum(lengths, RESID_WINDOW)
    mean_day = y_day.sum(axis=1) / n_day
    dev = y_day - mean_day[:, None]
    dev *= v_day
    ss = np.einsum("ij,ij->i", dev, dev)
    var_l = ss / n_day

    # Local line over the last 3 h: a departure of the level from it fades at the residuals'
    # lag-1 autocorrelation; the line itself continues with a damped, noise-shrunk slope.
    k_level = np.minimum(lengths, LEVEL_WINDOW)
    level = y[:, -LEVEL_WINDOW:].sum(axis=1) / k_level
    line_end, slope, r1 = _local_line(y[:, -TREND_WINDOW:], valid[:, -TREND_WINDOW:],
                                      np.minimum(lengths, TREND_WINDOW))
    # A step inside the 3 h window (a deploy, a job starting) is no ramp: the line through it
    # rises steeply and ends above the new level, and the forecast would climb on from a
    # plateau.  Where the last hour's own line is less than half as steep as the 3 h one,
    # that hour's line is the trend.
    end_1h, slope_1h, r1_1h = _local_line(y[:, -RECENT_WINDOW:], valid[:, -RECENT_WINDOW:],
                                          np.minimum(lengths, RECENT_WINDOW))
    stepped = (lengths >= RECENT_WINDOW) & (np.abs(slope_1h) < RECENT_AGREEMENT * np.abs(slope))
    line_end = np.where(stepped, end_1h, line_end)
    slope = np.where(stepped, slope_1h, slope)
    r1 = np.where(stepped, r1_1h, r1)
    trend_ok = lengths >= MIN_TREND
    slope = np.where(trend_ok, slope, 0.0)
    line_end = np.where(trend_ok, line_end, level)
    r1 = np.where(lengths >= MIN_REVERSION, r1, 1.0)
    steps = np.arange(1, horizon + 1)
    damped = DAMPING * (1.0 - DAMPING ** (steps + 1)) / (1.0 - DAMPING)      # sum_{k=1..h+1} phi^k
    with np.errstate(divide="ignore"):
        fade = np.exp(np.log(r1)[:, None] * (steps + 1)[None, :])          # r1 ** (h+1)
    point = line_end[:, None] + (level - line_end)[:, None] * fade + slope[:, None] * damped[None, :]

    mix, mix_valid, n_mix = dev, v_day, n_day
    seasonal = lengths >= MIN_SEASONAL_HISTORY
    if seasonal.any():
        # Yesterday's profile (3-point smoothed) at the forecast times, shifted to today's level.
        c0 = w - SEASON
        if horizon < SEASON:
            prof = y[:, c0 - 1:c0 + horizon - 1] + y[:, c0:c0 + horizon]
            prof += y[:, c0 + 1:c0 + horizon + 1]
        else:
            cols = c0 + (np.arange(horizon) % SEASON)
            prof = y[:, cols - 1] + y[:, cols] + y[:, np.minimum(cols + 1, w - 1)]
        prof /= 3.0
        anchor = y[:, w - SEASON - LEVEL_WINDOW:w - SEASON].mean(axis=1)
        seas_point = prof + (level - anchor)[:, None]
        # Day-over-day changes over the last day: the seasonal method's residuals.
        rs_valid = valid[:, -2 * SEASON:-SEASON]
        rs = y[:, -SEASON:] - y[:, -2 * SEASON:-SEASON]
        rs *= rs_valid
        n_rs = np.clip(lengths - SEASON, 1, SEASON)
        rs_mean = rs.sum(axis=1) / n_rs
        var_s = np.einsum("ij,ij->i", rs, rs) / n_rs - rs_mean ** 2
        eps = 1e-12
        a = np.where(seasonal, (var_l + eps) / (var_l + np.maximum(var_s, 0.0) + 2 * eps), 0.0)
        point = a[:, None] * seas_point + (1.0 - a[:, None]) * point
        mix = rs - dev                                               # a * rs + (1 - a) * dev
        mix *= a[:, None]
        mix += dev
        mix_valid = v_day & (rs_valid | ~seasonal[:, None])
        n_mix = np.where(seasonal, n_rs, n_day)

    # Band: one-step errors growing with sqrt(h), capped by long-horizon residuals, floored.
    qs_all = np.concatenate([[0.5], qs])
    d1 = np.diff(y[:, -(RESID_WINDOW + 1):], axis=1)
    d1_valid = valid[:, -(RESID_WINDOW + 1):-1]
    q1 = _masked_quantiles(d1, d1_valid, np.clip(lengths - 1, 0, RESID_WINDOW), qs_all)
    off1 = q1[:, 1:] - q1[:, :1]                                   # (n, Q), signed
    qc = _masked_quantiles(mix, mix_valid, n_mix, qs_all)
    cap = np.maximum(np.abs(qc[:, 1:] - qc[:, :1]), np.abs(off1))
    # ... and never below the spread of the series' own h-step changes over its history: the
    # blend's in-sample residuals miss the level's and the trend's errors (CPU and load bands
    # covered 59-61 % instead of 80 % on the demo fleet's training period)
    cap = np.maximum(cap[:, None, :], _hstep_spread(y, valid, qs_all, steps))      # (n, H, Q)
    cap = np.where((n_mix >= MIN_CAP)[:, None, None], cap, np.inf)
    if metric in PERCENT_METRICS:
        floor = np.full(n, PERCENT_FLOOR)
    else:
        floor = np.maximum(LOAD_FLOOR_ABS, LOAD_FLOOR_REL * np.abs(level))
    growth = np.sqrt(steps)[None, :]
    floor_growth = floor[:, None] * np.minimum(growth, FLOOR_GROWTH_MAX)
    young = np.clip(1.0 - lengths / MIN_CAP, 0.0, 1.0)                          # 1 sample: ~all of it
    if young.any() and metric in YOUNG_PRIOR:
        prior = np.interp(steps, YOUNG_STEPS, YOUNG_PRIOR[metric])[None, :]
        if metric not in PERCENT_METRICS:
            prior = prior * np.maximum(np.abs(level), LOAD_PRIOR_MIN_LEVEL)[:, None]
        floor_growth = np.maximum(floor_growth, young[:, None] * prior)
    out = np.empty((n, horizon, len(qs)))
    previous = None
    for j, q in enumerate(qs):
        if q == 0.5:
            col = point.copy()
        else:
            half = np.minimum(np.abs(off1[:, j:j + 1]) * growth, cap[:, :, j]) * BAND_SCALE.get(metric, 1.0)
            half = np.maximum(half, floor_growth * (abs(q - 0.5) / 0.4))   # 1 x floor for p10/p90
            col = point + half if q > 0.5 else point - half
        np.clip(col, lo_clip, hi_clip, out=col)
        if previous is not None:      # ordered by construction; this makes it a guarantee
            np.maximum(col, previous, out=col)
        out[:, :, j] = previous = col
    return out


def _local_line(y: np.ndarray, valid: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row over the valid cells: (line at the level's centre, shrunk slope, residual lag-1 autocorrelation).

    The slope is the least-squares slope times ``t^2 / (t^2 + 4)``; the line passes through the
    window's mean with that slope, evaluated ``LEVEL_WINDOW // 2`` steps before the end.  The
    autocorrelation (clipped to 0..1) is of the unshrunk fit's residuals.
    """
    width = y.shape[1]
    x = np.arange(width, dtype=np.float64)[None, :]
    c = np.maximum(count, 1)
    xbar = (x * valid).sum(axis=1) / c
    ybar = (y * valid).sum(axis=1) / c
    dx = (x - xbar[:, None]) * valid
    dy = (y - ybar[:, None]) * valid
    sxx = np.einsum("ij,ij->i", dx, dx)
    ok = (sxx > 0) & (count >= 3)
    sxx = np.where(ok, sxx, 1.0)
    slope = np.where(ok, np.einsum("ij,ij->i", dx, dy) / sxx, 0.0)
    resid = dy - slope[:, None] * dx
    rss = np.einsum("ij,ij->i", resid, resid)
    resid_var = rss / np.maximum(count - 2, 1)
    t2 = slope ** 2 * sxx / np.maximum(resid_var, 1e-12)
    shrunk = slope * t2 / (t2 + TREND_SHRINK)
    line_end = ybar + shrunk * ((width - 1 - LEVEL_WINDOW // 2) - xbar)
    r1 = np.einsum("ij,ij->i", resid[:, 1:], resid[:, :-1]) / np.where(rss > 0, rss, 1.0)
    r1 = np.where(rss > 0, np.clip(r1, 0.0, 1.0), 1.0)
    return line_end, shrunk, r1


HSTEP_POINTS = (6, 24, 96)      # horizons (steps) at which the h-step changes are measured
MIN_HSTEP = 12                  # changes needed before a horizon's spread counts


def _hstep_spread(y: np.ndarray, valid: np.ndarray, qs_all: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(n, H, Q): |q-quantile - median| of y[t + h] - y[t] over the window, measured at
    HSTEP_POINTS and interpolated in sqrt(h) (scaled by sqrt(h / 6) below the first point,
    held beyond the last); 0 where a history has too few changes."""
    n = len(y)
    spreads = []
    for p in HSTEP_POINTS:
        d = y[:, p:] - y[:, :-p]
        dv = valid[:, p:] & valid[:, :-p]
        count = dv.sum(axis=1)
        q = _masked_quantiles(d, dv, count, qs_all)
        sp = np.abs(q[:, 1:] - q[:, :1])
        sp[count < MIN_HSTEP] = 0.0
        spreads.append(sp)
    table = np.stack(spreads, axis=1)                               # (n, P, Q)
    xs, xh = np.sqrt(np.asarray(HSTEP_POINTS, dtype=float)), np.sqrt(steps.astype(float))
    k = np.clip(np.searchsorted(xs, xh) - 1, 0, len(xs) - 2)
    t = np.clip((xh - xs[k]) / (xs[k + 1] - xs[k]), 0.0, 1.0)
    out = table[:, k] * (1 - t)[None, :, None] + table[:, k + 1] * t[None, :, None]
    first = xh < xs[0]
    out[:, first] = table[:, :1] * (xh[first] / xs[0])[None, :, None]
    return out if n else np.zeros((0, len(steps), len(qs_all) - 1))


def _masked_quantiles(x: np.ndarray, valid: np.ndarray, count: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """(n, len(qs)) linear-interpolated quantiles of each row's valid cells (0 for an empty row)."""
    s = np.where(valid, x, np.inf)
    s.sort(axis=1)
    c = np.asarray(count)
    pos = qs[None, :] * np.maximum(c - 1, 0)[:, None]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(c - 1, 0)[:, None])
    frac = pos - lo
    a = np.take_along_axis(s, lo, axis=1)
    b = np.take_along_axis(s, hi, axis=1)
    with np.errstate(invalid="ignore"):
        out = np.where(frac == 0, a, a + (b - a) * frac)
    return np.where((c > 0)[:, None], out, 0.0)
