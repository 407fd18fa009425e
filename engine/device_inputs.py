"""FastTFT's per-window arithmetic in torch, run where the network runs.

``batch_inputs`` builds the network's input tensors (on the CPU and on a GPU alike).
On a GPU the calibration runs here too (``window_scale_t``, ``CalibrationTables``: torch
mirrors of ``engine.calibration``, which the CPU path uses): in numpy, inputs and
calibration took 0.19 s and 0.13 s of a 10,000-server tick on our 2-core machine; on an
H100 the whole FastTFT.predict went from 0.94 s to 0.20 s.  Only the raw windows go to the
device and only the calibrated quantiles come back.

Dtypes follow the library's path (float32 where it is float32) and ours (float64 where
the numpy calibration is); parity is tested against the numpy calibration and the
library's own path (``tests/test_fast_tft.py``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.calibration import per_step
from engine.tft_model import DAY_KNOWN, TARGET_RANGE, day_ago_feature, level_feature

_EPS32 = float(torch.finfo(torch.float32).eps)
TWO_PI = 2.0 * math.pi


def time_features_t(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """``engine.tft_model.time_features`` of int64 epoch seconds, float64 (as numpy)."""
    t = t.to(torch.float64)
    day = torch.remainder(t, 86400.0) / 86400.0
    week = torch.remainder(t / 86400.0 + 3.0, 7.0) / 7.0       # Monday 00:00 -> 0
    return {"hour_sin": torch.sin(TWO_PI * day), "hour_cos": torch.cos(TWO_PI * day),
            "dow_sin": torch.sin(TWO_PI * week), "dow_cos": torch.cos(TWO_PI * week)}


def level_values_t(metric: str, values: torch.Tensor) -> torch.Tensor:
    """``engine.tft_model.level_values`` (float64)."""
    v = values.to(torch.float64)
    if metric == "load_average":
        return torch.log1p(v.clamp(min=0.0)) / 4.0
    return v / 100.0


def batch_inputs(fast, v32: torch.Tensor, lengths: np.ndarray, last_epoch: torch.Tensor,
                 codes: torch.Tensor, shared_end: bool = False,
                 day: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """The network's inputs for one batch, exactly as TimeSeriesDataSet + its collate
    function build them (see engine.fast_tft's docstring), on v32's device: v32 (b, L, 4)
    float32 right-aligned windows, lengths (numpy: the batch's encoder length is needed on
    the host), last_epoch and codes (b,) int64 tensors.  ``shared_end``: every window ends
    at the same time, so the time features are computed for one row.  ``day``: for a model
    that reads the same time yesterday, ``FastTFT.day_ago_inputs`` of the batch, (b, L + H, M)
    values and (b, L + H) DAY_KNOWN, their encoder part right-aligned as v32."""
    dev = v32.device
    b = len(lengths)
    L, H, step = fast.L, fast.H, int(fast.config.step_seconds)
    T = int(lengths.max())
    lens = torch.from_numpy(np.ascontiguousarray(lengths, dtype=np.int64)).to(dev, non_blocking=True)
    k = torch.arange(T, device=dev)
    valid = k[None, :] < lens[:, None]                                      # (b, T)
    pos = torch.as_tensor(fast._metric_pos, device=dev)
    full = T == L and bool((lengths == L).all())

    def masked(x: torch.Tensor) -> torch.Tensor:
        """x where a step is inside its window, 0 after it (all inside when every window is full)."""
        return x if full else torch.where(valid, x, 0.0)

    if full:
        enc_vals = v32.index_select(2, pos)
    else:
        src = torch.clamp(L - lens[:, None] + k[None, :], max=L - 1)
        enc_vals = torch.gather(v32, 1, src[:, :, None].expand(b, T, v32.shape[2]))
        enc_vals = torch.where(valid[:, :, None], enc_vals, 0.0).index_select(2, pos)
    if day is not None:
        day_vals, day_known = day
        if full:
            enc_day, enc_known = day_vals[:, :L], day_known[:, :L]
        else:
            enc_day = torch.gather(day_vals, 1, src[:, :, None].expand(b, T, day_vals.shape[2]))
            enc_known = torch.gather(day_known, 1, src)

    center32, std = window_moments(enc_vals, lengths)
    if fast.config.normalizer_center == "last":       # the encoder's last value (left-aligned: lens - 1)
        center32 = enc_vals[torch.arange(b, device=dev), lens - 1]
    min_scale = torch.as_tensor(fast.min_scale, dtype=torch.float32, device=dev)
    scale = torch.maximum(std + _EPS32, min_scale)

    R = len(fast.reals)
    col = fast._col
    enc = torch.zeros((b, T, R), dtype=torch.float32, device=dev)
    dec = torch.zeros((b, H, R), dtype=torch.float32, device=dev)
    for j, m in enumerate(fast.targets):
        if m in col:
            enc[:, :, col[m]] = masked((enc_vals[:, :, j] - center32[:, None, j]) / scale[:, None, j])
        lf = level_feature(m)
        if lf in col:
            enc[:, :, col[lf]] = masked(level_values_t(m, enc_vals[:, :, j]).to(torch.float32))
    if day is not None:         # scaled as the target (engine.tft_layers.DayAgoDataSet)
        for j, m in enumerate(fast.targets):
            name = day_ago_feature(m)
            if name in col:
                c, s = center32[:, None, j], scale[:, None, j]
                enc[:, :, col[name]] = masked((enc_day[:, :, j] - c) / s)
                dec[:, :, col[name]] = (day_vals[:, L:, j] - c) / s
        if DAY_KNOWN in col:
            enc[:, :, col[DAY_KNOWN]] = masked(enc_known)
            dec[:, :, col[DAY_KNOWN]] = day_known[:, L:]
    if shared_end:      # every window ends at the same time (a fleet's usually do): one row
        lens_t, ends_t = torch.full((1,), T, dtype=torch.int64, device=dev), last_epoch[:1]
    else:
        lens_t, ends_t = lens, last_epoch
    enc_t = ends_t[:, None] - (lens_t[:, None] - 1 - k[None, :]) * step        # (1 or b, T)
    dec_t = ends_t[:, None] + (torch.arange(H, device=dev)[None, :] + 1) * step
    for name, vals in time_features_t(enc_t).items():
        if name in col:
            vals = vals.to(torch.float32)
            if shared_end and not full:   # window i's step k is the shared row's step k + T - len_i
                vals = vals[0][torch.clamp(k[None, :] + (T - lens[:, None]), max=T - 1)]
            enc[:, :, col[name]] = masked(vals)
    for name, vals in time_features_t(dec_t).items():
        if name in col:
            dec[:, :, col[name]] = vals.to(torch.float32)
    if "relative_time_idx" in col:
        rel = (k[None, :] - lens[:, None]).to(torch.float32) / float(L)
        enc[:, :, col["relative_time_idx"]] = masked(rel)
        dec[:, :, col["relative_time_idx"]] = (torch.arange(H, dtype=torch.float32, device=dev) / float(L))[None, :]
    if "encoder_length" in col:
        feat = ((lens.to(torch.float64) - 0.5 * L) / L * 2.0).to(torch.float32)
        enc[:, :, col["encoder_length"]] = masked(feat[:, None])
        dec[:, :, col["encoder_length"]] = feat[:, None]
    enc_cat = (codes[:, None].expand(b, T) if full else torch.where(valid, codes[:, None], 0))[:, :, None]
    dec_cat = codes[:, None, None].expand(b, H, 1)
    return dict(encoder_cont=enc, decoder_cont=dec, encoder_cat=enc_cat, decoder_cat=dec_cat,
                encoder_lengths=lens, decoder_lengths=torch.full((b,), H, dtype=torch.int64, device=dev),
                target_scale=[torch.stack([center32[:, j], scale[:, j]], dim=-1) for j in range(len(fast.targets))])


def window_moments(enc_vals: torch.Tensor, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window and target, ``torch.mean`` and ``torch.std`` (unbiased) of the first
    ``lengths[i]`` steps of the LEFT-aligned float32 encoder values (b, T, M).

    Computed as the library computes them (EncoderNormalizer: float32 torch reductions over
    each window's own values, no padding): the trained network turns a one-ulp difference in
    a window's centre into ~2e-3 (percent units) in its forecast; a float64 mean cast to
    float32 differed from the library's in 183 of 400 cells and put our forecasts 2.2e-3
    from the library's on the shipped model (5e-5 now).  Windows of one length are reduced
    together; a fleet's windows mostly share the full length."""
    t = enc_vals
    b, _, M = t.shape
    if b and bool((lengths == lengths[0]).all()):
        groups = [(slice(None), int(lengths[0]))]
    else:
        groups = [(torch.from_numpy(np.flatnonzero(lengths == n)).to(t.device), int(n)) for n in np.unique(lengths)]
    center = torch.empty((b, M), dtype=torch.float32, device=t.device)
    std = torch.empty((b, M), dtype=torch.float32, device=t.device)
    for rows, n in groups:
        x = t[rows, :n].transpose(1, 2).contiguous()                           # (k, M, n)
        center[rows] = torch.mean(x, dim=-1)
        std[rows] = torch.std(x, dim=-1)
    return center, std


def window_scale_t(values: torch.Tensor, lengths: torch.Tensor, min_scale: float) -> torch.Tensor:
    """``engine.calibration.aligned_window_scale`` of (n, L) right-aligned windows (float64)."""
    L = values.shape[1]
    valid = torch.arange(L, device=values.device)[None, :] >= (L - lengths)[:, None]
    cnt = torch.clamp(lengths.to(torch.float64), min=1.0)
    h = torch.where(valid, values.to(torch.float64), 0.0)
    devn = torch.where(valid, h - (h.sum(dim=1) / cnt)[:, None], 0.0)
    std = torch.where(lengths > 1, torch.sqrt((devn * devn).sum(dim=1) / cnt), 0.0)
    return torch.clamp(std, min=min_scale)


class CalibrationTables:
    """A model's calibration (engine.calibration) as per-metric (groups + 1, H) tensors of
    lower and upper adjustments on one device; row 0 is the pooled one."""

    def __init__(self, config, horizon: int, device):
        cal = config.calibration
        self.q_levels = tuple(config.quantiles)
        self.group_names: list[str] = []
        self.tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if not cal:
            return
        step = int(cal["bucket_steps"])
        groups = cal.get("groups") or {}
        self.group_names = list(groups)
        for m in config.targets:
            if m not in cal.get("lower", {}):
                continue
            lower = [per_step(cal["lower"][m], step, horizon)]
            upper = [per_step(cal["upper"][m], step, horizon)]
            for g in self.group_names:
                adj = groups[g]
                own = m in adj["lower"]
                lower.append(per_step(adj["lower"][m], step, horizon) if own else lower[0])
                upper.append(per_step(adj["upper"][m], step, horizon) if own else upper[0])
            self.tables[m] = (torch.from_numpy(np.stack(lower)).to(device),
                              torch.from_numpy(np.stack(upper)).to(device))

    def group_index(self, profiles) -> np.ndarray:
        """Row of each window's profile in the tables (0: pooled)."""
        rows = {g: i + 1 for i, g in enumerate(self.group_names)}
        return np.array([rows.get(p, 0) for p in profiles], dtype=np.int64)

    def apply(self, metric: str, q: torch.Tensor, scale: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``engine.calibration.apply_calibration`` of q (n, H, Q) float64."""
        lo_j, mid_j, hi_j = (self.q_levels.index(x) for x in (0.1, 0.5, 0.9))
        out = q.to(torch.float64).clone()
        if metric in self.tables:
            lower, upper = self.tables[metric]
            s = scale.to(torch.float64)[:, None]
            out[:, :, lo_j] -= lower[rows] * s
            out[:, :, hi_j] += upper[rows] * s
        lo, hi = TARGET_RANGE[metric]
        out = out.clamp(min=lo, max=hi if math.isfinite(hi) else None)
        out[:, :, lo_j] = torch.minimum(out[:, :, lo_j], out[:, :, mid_j])
        out[:, :, hi_j] = torch.maximum(out[:, :, hi_j], out[:, :, mid_j])
        return out
