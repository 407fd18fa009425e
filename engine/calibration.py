"""Conformal calibration of the p10-p90 band.

The TFT's raw band does not cover 80 % of what happens.  On a calibration split we
measure, per metric and per horizon bucket (one hour of steps), how far the truth
falls outside the band in units of the window's scale ``s`` (the encoder's standard
deviation, floored as the model's normaliser floors it):

    lower = q_0.9( (p10 - y) / s )      upper = q_0.9( (y - p90) / s )

and at inference move the band to ``[p10 - lower*s, p90 + upper*s]`` (split conformal
quantile regression, scaled; either term may be negative and narrow the band), each
bucket's numbers applied at its middle step and interpolated linearly between (no jump at
each hour of the horizon).  p50
is left as the model gave it.  The numbers live in config.json under ``calibration``.

Servers of different kinds need different corrections (a lightly used real VM and a
busy simulated web server are not wrong in the same way), so the adjustments are also
fitted per profile (Mondrian conformal prediction: one calibration per group) for every
profile with at least ``MIN_GROUP_WINDOWS`` calibration windows, under
``calibration["groups"][profile]``; other profiles use the pooled numbers.
"""
from __future__ import annotations

import numpy as np

from engine.tft_model import MAX_CALIBRATION_STD, clip_to_range

BUCKET_STEPS = 12
TARGET_COVERAGE = 0.8
MIN_GROUP_WINDOWS = 30


def window_scale(history: list[np.ndarray] | np.ndarray, min_scale: float, max_length: int) -> np.ndarray:
    """Per window: standard deviation of its last ``max_length`` history values, floored."""
    out = np.empty(len(history))
    for i, h in enumerate(history):
        h = np.asarray(h)[-max_length:]
        out[i] = h.std() if len(h) > 1 else 0.0
    return np.maximum(out, min_scale)


def aligned_window_scale(values: np.ndarray, lengths: np.ndarray, min_scale: float) -> np.ndarray:
    """``window_scale`` for right-aligned windows, vectorised: values (n, L), window i's history
    is ``values[i, L - lengths[i]:]`` (whatever lies before it is ignored)."""
    L = values.shape[1]
    valid = np.arange(L)[None, :] >= (L - lengths)[:, None]
    cnt = np.maximum(lengths.astype(np.float64), 1.0)
    h = np.where(valid, values.astype(np.float64), 0.0)
    dev = np.where(valid, h - (h.sum(axis=1) / cnt)[:, None], 0.0)
    std = np.where(lengths > 1, np.sqrt((dev * dev).sum(axis=1) / cnt), 0.0)
    return np.maximum(std, min_scale)


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    cum /= cum[-1]
    return float(v[min(np.searchsorted(cum, q), len(v) - 1)])


def fit_calibration(quantiles: dict[str, np.ndarray], actual: dict[str, np.ndarray],
                    scale: dict[str, np.ndarray], weights: np.ndarray | None = None,
                    mask: dict[str, np.ndarray] | None = None,
                    q_levels=(0.1, 0.5, 0.9), coverage: float = TARGET_COVERAGE,
                    groups: np.ndarray | None = None) -> dict:
    """Fit the per-metric, per-bucket adjustments.

    quantiles[m]: (n, H, 3) raw forecasts; actual[m]: (n, H); scale[m]: (n,);
    weights: (n,) sample weights (e.g. to give each data source an equal say);
    mask[m]: (n,) bool, windows that count for metric m;
    groups: (n,) profile per window: adds per-profile adjustments (see module doc).
    """
    out = _fit(quantiles, actual, scale, weights, mask, q_levels, coverage)
    if groups is not None:
        groups = np.asarray(groups)
        out["groups"] = {}
        for g in sorted(set(groups.tolist())):
            sel = groups == g
            if sel.sum() < MIN_GROUP_WINDOWS:
                continue
            sub = _fit({m: q[sel] for m, q in quantiles.items()}, {m: a[sel] for m, a in actual.items()},
                       {m: s[sel] for m, s in scale.items()}, None if weights is None else np.asarray(weights)[sel],
                       None if mask is None else {m: k[sel] for m, k in mask.items()}, q_levels, coverage)
            out["groups"][g] = {"lower": sub["lower"], "upper": sub["upper"], "windows": int(sel.sum())}
    return out


def _fit(quantiles, actual, scale, weights, mask, q_levels, coverage) -> dict:
    lo_j, hi_j = q_levels.index(0.1), q_levels.index(0.9)
    tail = 1.0 - (1.0 - coverage) / 2.0
    out = {"method": "split conformal quantile regression, scaled by the window's std",
           "bucket_steps": BUCKET_STEPS, "target_coverage": coverage, "lower": {}, "upper": {}}
    for m, q in quantiles.items():
        n, horizon, _ = q.shape
        keep = np.ones(n, bool) if mask is None else mask[m]
        if not keep.any():
            continue
        w = np.ones(n) if weights is None else np.asarray(weights, float)
        s = scale[m][keep][:, None]
        e_lo = (q[keep, :, lo_j] - actual[m][keep]) / s
        e_hi = (actual[m][keep] - q[keep, :, hi_j]) / s
        ww = np.repeat(w[keep][:, None], horizon, axis=1)
        lower, upper = [], []
        for b0 in range(0, horizon, BUCKET_STEPS):
            sl = slice(b0, b0 + BUCKET_STEPS)
            lower.append(_weighted_quantile(e_lo[:, sl].ravel(), ww[:, sl].ravel(), tail))
            upper.append(_weighted_quantile(e_hi[:, sl].ravel(), ww[:, sl].ravel(), tail))
        bound = MAX_CALIBRATION_STD       # what the loader accepts
        out["lower"][m] = [round(float(np.clip(v, -bound, bound)), 5) for v in lower]
        out["upper"][m] = [round(float(np.clip(v, -bound, bound)), 5) for v in upper]
    return out


def per_step(values, step: int, horizon: int) -> np.ndarray:
    """A bucket's adjustment at each step: linear between the buckets' middle steps (held
    flat before the first and after the last).  Held constant over each bucket, the band
    jumped at every hour of the horizon (a p90 of 14.8 at step 11, 26.6 at step 12)."""
    values = np.asarray(values, dtype=np.float64)
    centres = np.arange(len(values)) * step + (step - 1) / 2.0
    return np.interp(np.arange(horizon, dtype=np.float64), centres, values)


def apply_calibration(calibration: dict | None, metric: str, q: np.ndarray, scale: np.ndarray,
                      q_levels=(0.1, 0.5, 0.9), groups=None) -> np.ndarray:
    """Calibrated copy of q (n, H, 3) for one metric, clipped to its range and ordered.

    ``groups``: the (normalised) profile of each window; a profile with its own
    adjustments uses them, any other the pooled ones.
    """
    out = np.array(q, dtype=np.float64, copy=True)
    lo_j, mid_j, hi_j = q_levels.index(0.1), q_levels.index(0.5), q_levels.index(0.9)
    if calibration and metric in calibration.get("lower", {}):
        step = int(calibration["bucket_steps"])
        horizon = out.shape[1]
        n = out.shape[0]
        lower = np.tile(per_step(calibration["lower"][metric], step, horizon), (n, 1))
        upper = np.tile(per_step(calibration["upper"][metric], step, horizon), (n, 1))
        if groups is not None:
            groups = np.asarray(groups)
            for g, adj in (calibration.get("groups") or {}).items():
                sel = groups == g
                if sel.any() and metric in adj["lower"]:
                    lower[sel] = per_step(adj["lower"][metric], step, horizon)
                    upper[sel] = per_step(adj["upper"][metric], step, horizon)
        s = np.asarray(scale, dtype=np.float64)[:, None]
        out[:, :, lo_j] -= lower * s
        out[:, :, hi_j] += upper * s
    out = clip_to_range(metric, out)
    out[:, :, lo_j] = np.minimum(out[:, :, lo_j], out[:, :, mid_j])
    out[:, :, hi_j] = np.maximum(out[:, :, hi_j], out[:, :, mid_j])
    return out
