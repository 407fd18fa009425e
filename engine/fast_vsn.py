"""The TFT's time-varying variable selection, folded into a few batched tensor ops
(an inference-only stand-in: the same function, much less work on a CPU).

pytorch-forecasting's ``VariableSelectionNetwork`` runs, for every real input and every
time step, its own small network one after the other (a ``Linear(1, s)`` prescaler, a
gated residual network from ``s`` to the hidden size, a residual interpolated from ``s``
to the hidden size), then a "flattened" network over the concatenation of all the
prescaled inputs.  At 1,000 servers x 384 steps that is ~65 % of the forward pass on a
CPU, most of it moving tensors that are linear functions of one scalar per variable.

``FoldedVariableSelection`` computes the same function with the algebra done once at
load time:

- a prescaled input ``e_v = x_v * w_v + b_v`` is affine in the scalar ``x_v``, so every
  linear map applied to it (the GRN's ``fc1``, the interpolation to the hidden size and
  its trainable gate, the flattened GRN's ``fc1`` and its interpolated residual over the
  concatenation) is folded into one vector pair (slope, offset) per variable, or one
  (V, k) matrix for the flattened network;
- the residual's LayerNorm normalises an affine function of one scalar: its mean and
  variance are closed-form in ``x_v`` (a quadratic for the variance), so it costs a few
  elementwise ops instead of a reduction;
- the per-variable networks run together: the variable is the batch axis of ``bmm``, and
  each variable keeps its own LayerNorm scale and shift;
- a GRN's ``fc2`` and its GLU's linear map follow each other with nothing in between, so
  they fold into one map, and the (closed-form) residual is a linear map of
  (x / sd, 1 / sd, 1): ONE matmul per block gives both GLU halves and the residual;
- the weighted sum over variables takes each LayerNorm's shift out of the sum (one small
  matmul with the weights) and applies the scale in the same pass as the weights;
- everything is laid out feature-major, (features, rows): a LayerNorm or softmax over
  13-32 features along the last axis is ~8x slower on a CPU than the same reduction
  across rows; rows are processed in cache-sized blocks;
- the static context enters the flattened network once per series, not once per step.

Dropout is the identity in eval mode, which is the only mode this module supports.
The result equals the library's to float32 rounding (tests/test_fast_tft.py checks it,
and FastTFT's parity test with the stock ``predict`` path runs through it).
``fold_variable_selection(model)`` swaps it in, in place, wherever the structure is the
one described here, and leaves any other VSN as it is.  Inputs that are functions of the
timestamp (``shared``) repeat across the servers of a batch: their GRN runs once per
distinct value and is gathered back (exact: a single-variable GRN sees its scalar only);
when the windows are aligned (same values at every step, the usual case) the weighted sum
over those variables is one (B, Vs) @ (Vs, H) matmul per step instead of a gather.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _interp_matrix(in_size: int, out_size: int) -> torch.Tensor:
    from engine.fast_tft import interpolation_matrix

    return interpolation_matrix(in_size, out_size).double()


def _resample_norm_linear(rn, in_size: int):
    """(M, g) with ``rn``'s pre-LayerNorm map ``x -> (x @ M) * g`` for x of size in_size."""
    out = rn.output_size
    m = _interp_matrix(in_size, out) if in_size != out else torch.eye(out, dtype=torch.float64)
    g = (torch.sigmoid(rn.mask.detach().double()) * 2.0) if rn.trainable_add else torch.ones(out, dtype=torch.float64)
    return m, g


def _foldable(vsn) -> bool:
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (AddNorm,
                                                                                    GatedResidualNetwork,
                                                                                    ResampleNorm)

    names = list(vsn.input_sizes)
    if len(names) < 2 or set(vsn.prescalers.keys()) != set(names):
        return False
    sizes = {vsn.input_sizes[n] for n in names}
    if len(sizes) != 1:
        return False
    size = sizes.pop()
    hidden = vsn.hidden_size
    for n in names:
        pre = vsn.prescalers[n]
        grn = vsn.single_variable_grns[n]
        if not (isinstance(pre, nn.Linear) and pre.in_features == 1 and pre.out_features == size):
            return False
        if not isinstance(grn, GatedResidualNetwork) or grn.context_size is not None or grn.residual:
            return False
        if grn.input_size != size or grn.output_size != hidden or grn.input_size == grn.output_size:
            return False
        if not isinstance(grn.resample_norm, ResampleNorm):
            return False
        if grn.fc1.out_features != grn.hidden_size or grn.hidden_size != min(size, hidden):
            return False
        an = grn.gate_norm.add_norm
        if not isinstance(an, AddNorm) or an.trainable_add or an.input_size != an.skip_size:
            return False
    f = getattr(vsn, "flattened_grn", None)
    if not isinstance(f, GatedResidualNetwork) or f.residual or f.input_size == f.output_size:
        return False
    an = f.gate_norm.add_norm
    if an.trainable_add or an.input_size != an.skip_size:
        return False
    return True


def _glu(x: torch.Tensor, dim: int) -> torch.Tensor:
    a, g = x.chunk(2, dim=dim)
    return a * torch.sigmoid(g)


def _norm(x: torch.Tensor, dim: int, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over ``dim`` (biased variance, as nn.LayerNorm), then weight and bias."""
    mean = x.mean(dim, keepdim=True)
    d = x - mean
    var = (d * d).mean(dim, keepdim=True)
    # (explicit ops: a broadcasting addcmul is ~3x slower on CPU)
    return d * torch.rsqrt(var + eps) * weight + bias


def _aligned(col: torch.Tensor) -> bool:
    """Whether every row of ``col`` (B, T) is its first row (a fleet's windows usually end
    at the same time: then a time feature has the same T values in every window)."""
    return col.size(0) == 1 or bool((col == col[:1]).all())


def _distinct(col: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, index) with ``values[index] == col.reshape(-1)`` and few values: the first
    row when the rows are aligned (one compare instead of a sort), else torch.unique."""
    B, T = col.shape
    if _aligned(col):
        return col[0], torch.arange(T, device=col.device).repeat(B)
    return torch.unique(col.reshape(-1), return_inverse=True)


def _softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


class FoldedVariableSelection(nn.Module):
    """Drop-in for a (foldable) ``VariableSelectionNetwork`` in eval mode: same inputs
    (dict of (B, T, 1) reals, context (B, T, C) or None), same outputs
    ((B, T, hidden), sparse weights (B, T, 1, V))."""

    block_rows = 1024     # rows per block on a CPU (about 2.6 MB of (8, 64, rows) float32)

    def __init__(self, vsn, shared: Sequence[str] = ()):
        super().__init__()
        if not _foldable(vsn):
            raise ValueError("this VariableSelectionNetwork does not have the foldable structure")
        self.names = list(vsn.input_sizes)
        self.hidden_size = int(vsn.hidden_size)
        V = len(self.names)
        grns = [vsn.single_variable_grns[n] for n in self.names]
        pres = [vsn.prescalers[n] for n in self.names]
        size = pres[0].out_features
        d = lambda t: t.detach().double()                                        # noqa: E731
        w = torch.stack([d(p.weight)[:, 0] for p in pres])                      # (V, s)
        b = torch.stack([d(p.bias) for p in pres])                              # (V, s)

        # single-variable GRNs: fc1 and the residual are affine in x_v
        a1, c1, ar, cr, ln_r_w, ln_r_b, w2, b2, wg, bg, ln_a_w, ln_a_b = ([] for _ in range(12))
        for v, g in enumerate(grns):
            W1, B1 = d(g.fc1.weight), d(g.fc1.bias)
            a1.append(W1 @ w[v])
            c1.append(W1 @ b[v] + B1)
            # the residual is LayerNorm(x * ar + cr): centred, x * a + c; its variance is the
            # quadratic A (x - x0)^2 + vmin in x; so LN = (x * a w + c w) / sqrt(var + eps) + beta
            m, gate = _resample_norm_linear(g.resample_norm, size)
            a = (w[v] @ m) * gate
            c = (b[v] @ m) * gate
            a, c = a - a.mean(), c - c.mean()
            A, C, D = (a * a).mean(), (a * c).mean(), (c * c).mean()
            x0 = -C / A if A > 0 else torch.zeros((), dtype=torch.float64)
            vmin = torch.clamp(D - C * C / A, min=0.0) if A > 0 else D
            gamma = d(g.resample_norm.norm.weight)
            ar.append(a * gamma)
            cr.append(c * gamma)
            ln_r_w.append(torch.stack([A, x0, vmin + float(g.resample_norm.norm.eps)]))
            ln_r_b.append(d(g.resample_norm.norm.bias))
            w2.append(d(g.fc2.weight))
            b2.append(d(g.fc2.bias))
            wg.append(d(g.gate_norm.glu.fc.weight))
            bg.append(d(g.gate_norm.glu.fc.bias))
            ln_a_w.append(d(g.gate_norm.add_norm.norm.weight))
            ln_a_b.append(d(g.gate_norm.add_norm.norm.bias))
        self.eps_a = float(grns[0].gate_norm.add_norm.norm.eps)
        # fc2 and the GLU's linear map follow each other with nothing in between (dropout is
        # the identity): one (2H, h) map.  The residual (x inv) * ar + inv * cr + ln_r_b is a
        # linear map of (x inv, inv, 1): so ONE (3H, h + 3) matrix per variable gives the
        # GLU's two halves and the residual from [elu(fc1 x); x inv; inv; 1]
        H = self.hidden_size
        self.h = int(grns[0].fc1.out_features)
        mats = []
        for v in range(V):
            wg_, bg_ = wg[v], bg[v]
            m = torch.zeros(3 * H, self.h + 3, dtype=torch.float64)
            m[:2 * H, :self.h] = wg_ @ w2[v]
            m[:2 * H, self.h + 2] = wg_ @ b2[v] + bg_
            m[2 * H:, self.h] = ar[v]
            m[2 * H:, self.h + 1] = cr[v]
            m[2 * H:, self.h + 2] = ln_r_b[v]
            mats.append(m)
        f32 = lambda t: t.float().contiguous()                                   # noqa: E731
        col = lambda ts: f32(torch.stack(ts)[:, :, None])                        # (V, k, 1)  # noqa: E731
        full = dict(a1=col(a1), c1=col(c1), ln_r_w=col(ln_r_w), ln_a_w=col(ln_a_w), ln_a_b=col(ln_a_b),
                    m=f32(torch.stack(mats)), ln_a_bt=f32(torch.stack(ln_a_b).T))
        # variables whose values repeat across the batch (functions of the timestamp): their
        # GRN runs once per distinct value; the others once per row
        self.shared = [v for v, n in enumerate(self.names) if n in set(shared)]
        self.dense = [v for v in range(V) if v not in self.shared]
        for prefix, idx in (("d_", self.dense), ("s_", self.shared)):
            for name, val in full.items():
                val = val[:, idx] if name == "ln_a_bt" else val[idx]
                self.register_buffer(prefix + name, val.contiguous(), persistent=False)

        # flattened GRN over concat_v(e_v): every linear map of it is (x @ P + q) @ M
        fg = vsn.flattened_grn
        P = torch.zeros(V, V * size, dtype=torch.float64)
        for v in range(V):
            P[v, v * size:(v + 1) * size] = w[v]
        q = b.reshape(-1)
        W1f, B1f = d(fg.fc1.weight).T, d(fg.fc1.bias)
        m, gate = _resample_norm_linear(fg.resample_norm, V * size)
        c = lambda t: t[:, None]                                                 # noqa: E731
        for name, val in dict(f_a1=(P @ W1f).T, f_c1=c(q @ W1f + B1f), f_ar=((P @ m) * gate).T,
                              f_cr=c((q @ m) * gate),
                              f_ln_r_w=c(d(fg.resample_norm.norm.weight)), f_ln_r_b=c(d(fg.resample_norm.norm.bias)),
                              f_w2=d(fg.fc2.weight), f_b2=c(d(fg.fc2.bias)),
                              f_wg=d(fg.gate_norm.glu.fc.weight), f_bg=c(d(fg.gate_norm.glu.fc.bias)),
                              f_ln_a_w=c(d(fg.gate_norm.add_norm.norm.weight)),
                              f_ln_a_b=c(d(fg.gate_norm.add_norm.norm.bias))).items():
            self.register_buffer(name, f32(val), persistent=False)
        self.f_eps_r = float(fg.resample_norm.norm.eps)
        self.f_eps_a = float(fg.gate_norm.add_norm.norm.eps)
        self.context = None
        if fg.context_size is not None:
            self.register_buffer("f_wc", f32(d(fg.context.weight)), persistent=False)
            self.context = True

    def forward(self, x: dict, context: torch.Tensor | None = None):
        # Everything runs "feature-major": (features, rows), rows on the last axis, so that
        # the LayerNorms and softmaxes over 13-32 features reduce across an axis the CPU
        # vectorises (a last-axis reduction over so few features is ~8x slower).
        B, T = next(iter(x.values())).shape[:2]
        n = B * T
        V = len(self.names)
        xt = torch.stack([x[name].reshape(n) for name in self.names])             # (V, n)

        # variable weights: the flattened GRN
        h = torch.addmm(self.f_c1, self.f_a1, xt)                                # (hf, n)
        if self.context is not None and context is not None:
            # the static context is the same at every step of a series (expand_static_context)
            ctx = self.f_wc @ context[:, 0].T                                   # (hf, B)
            h = (h.view(-1, B, T) + ctx[:, :, None]).view(-1, n)
        h = torch.addmm(self.f_b2, self.f_w2, F.elu(h))
        g = _glu(torch.addmm(self.f_bg, self.f_wg, h), 0)
        r = _norm(torch.addmm(self.f_cr, self.f_ar, xt), 0, self.f_ln_r_w, self.f_ln_r_b, self.f_eps_r)
        weights = _softmax(_norm(g + r, 0, self.f_ln_a_w, self.f_ln_a_b, self.f_eps_a), 0)  # (V, n)

        # the single-variable GRNs, variables on the batch axis of bmm, in row blocks small
        # enough for the (V, 2H, rows) intermediates to stay in cache
        out = torch.empty(self.hidden_size, n, dtype=xt.dtype, device=xt.device)
        cols, step_part = [], None
        if self.shared:
            shared_x = xt[self.shared].view(-1, B, T)
            if _aligned(shared_x.transpose(0, 1).reshape(B, -1)):
                # every window has the same values at step t: one GRN per step, and the
                # weighted sum over these variables is a (B, Vs) @ (Vs, H) matmul per step
                table = self._grn("s_", shared_x[:, :1])                             # (Vs, H, T)
                w_steps = weights[self.shared].view(-1, B, T).permute(2, 1, 0)      # (T, B, Vs)
                step_part = torch.bmm(w_steps.contiguous(), table.permute(2, 0, 1).contiguous())  # (T, B, H)
            else:
                # one GRN per distinct value, then a gather: exact, as a GRN sees its one scalar only
                cols = [_distinct(xt[v].view(B, T)) for v in self.shared]
                width = max(len(u) for u, _ in cols)
                uniq = torch.zeros(len(cols), 1, width, dtype=xt.dtype, device=xt.device)
                for j, (u, _) in enumerate(cols):
                    uniq[j, 0, :len(u)] = u
                table = self._grn("s_", uniq)                                      # (Vs, H, width)
                w_shared = weights[self.shared]
        if self.dense:
            w_dense = weights[self.dense].unsqueeze(1)                             # (Vd, 1, n)
            xd = xt[self.dense].unsqueeze(1)                                       # (Vd, 1, n)
        # (on a GPU, cache blocks would only multiply kernel launches: one block)
        block = n if xt.is_cuda else self.block_rows
        for s in range(0, n, block):
            blk = slice(s, s + block)
            acc = None
            if self.dense:
                acc = self._grn("d_", xd[:, :, blk], w_dense[:, :, blk])            # (H, rows)
            for j, (_, inv) in enumerate(cols):
                part = table[j].index_select(1, inv[blk]) * w_shared[j, blk]
                acc = part if acc is None else acc.add_(part)
            if acc is None:
                out[:, blk] = 0.0
            else:
                out[:, blk] = acc
        # (B, T, H) row-major, as the LSTM and the add-norms read it: a 2-D transpose copy,
        # then a contiguous add (adding into the feature-major view, a strided (B, T, H)
        # view of ``out``, took ~4x longer and left the LSTM a strided input)
        res = out.t().contiguous().view(B, T, -1)
        if step_part is not None:
            res += step_part.permute(1, 0, 2)
        return res, weights.T.reshape(B, T, 1, V)

    def _grn(self, p: str, xt: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """The GRNs of the variable subset with buffer prefix ``p`` on xt (k, 1, rows):
        (k, H, rows); with weights w (k, 1, rows), their weighted sum (H, rows)."""
        b = lambda name: getattr(self, p + name)                                  # noqa: E731
        k, _, rows = xt.shape
        H, h = self.hidden_size, self.h
        u = torch.empty(k, h + 3, rows, dtype=xt.dtype, device=xt.device)
        e = torch.mul(b("a1"), xt, out=u[:, :h])
        F.elu(e.add_(b("c1")), inplace=True)                                      # elu(fc1 x)
        q = b("ln_r_w")                                                          # (k, 3, 1): A, x0, vmin + eps
        torch.rsqrt(q[:, 0:1] * (xt - q[:, 1:2]).square() + q[:, 2:3], out=u[:, h + 1:h + 2])
        torch.mul(xt, u[:, h + 1:h + 2], out=u[:, h:h + 1])
        u[:, h + 2:].fill_(1.0)
        o = torch.bmm(b("m"), u)                                                  # (k, 3H, rows)
        z = torch.addcmul(o[:, 2 * H:], o[:, :H], torch.sigmoid(o[:, H:2 * H]))   # GLU + residual
        # the LayerNorm over the H features (explicit: var_mean over a middle axis is ~20x slower)
        z = z.sub_(z.mean(1, keepdim=True))
        scale = torch.rsqrt((z * z).mean(1, keepdim=True) + self.eps_a)          # (k, 1, rows)
        if w is None:
            return z.mul_(scale).mul_(b("ln_a_w")).add_(b("ln_a_b"))
        z.mul_(scale * w).mul_(b("ln_a_w"))
        return torch.addmm(z.sum(0), b("ln_a_bt"), w[:, 0])                     # + sum_k w_k beta_k

    def extra_repr(self) -> str:
        return f"variables={len(self.names)}, hidden_size={self.hidden_size}"


def fold_variable_selection(model, shared: Sequence[str] = ()) -> int:
    """Replace, IN PLACE, the foldable time-varying VSNs of a TFT (see module doc);
    returns how many were replaced.  ``shared``: inputs whose values repeat across a batch
    (time features): computed once per distinct value."""
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import VariableSelectionNetwork

    ref = next(iter(model.parameters()), None)
    n = 0
    for attr in ("encoder_variable_selection", "decoder_variable_selection"):
        vsn = getattr(model, attr, None)
        if isinstance(vsn, VariableSelectionNetwork) and _foldable(vsn):
            new = FoldedVariableSelection(vsn, shared)
            if ref is not None:
                new = new.to(ref.device)
            model._modules[attr] = new
            n += 1
    return n
