"""Three of the TFT's blocks in fewer, larger tensor ops (inference-only stand-ins: the same
outputs, less work on a CPU).  ``fuse_attention``, ``fuse_grns`` and ``wrap_lstms`` swap
them in, in place, on FastTFT's private copy of the model; tests/test_fast_tft.py compares
each with the library's module on random inputs, and FastTFT's parity test with the stock
``predict`` path runs through all of them.

**Attention.** pytorch-forecasting's ``InterpretableMultiHeadAttention`` loops over its
heads: per head a query and a key projection, ``bmm`` for the scores, a division by
sqrt(d_k), an out-of-place ``masked_fill`` (-1e9 where the mask is set), a softmax, ``bmm``
with the shared value projection; then it stacks the heads' outputs and their (batch,
queries, keys) weights, averages the outputs over heads and applies ``w_h``.  At a CPU
batch of 32 windows x 96 queries x 384 keys every one of those steps streams a 4.7 MB
score tensor through memory, and stacking the weights alone copies 9.4 MB: ~15 of a
40 ms forward pass.  The network's prediction never reads the weights (they are only
returned for interpretation).

``FusedAttention`` computes the same output with ``F.scaled_dot_product_attention``: the
heads' query and key projections as one matmul each, the heads as a batch axis of the
fused kernel, the value projection shared by every head (as in the library), the mask as
an additive -1e9 bias, the library's scale 1/sqrt(d_k).  A masked key gets weight
exp(-1e9 - max), exactly 0 in float32, in both.  The weights it returns are an empty
(batch, queries, heads, 0) tensor, so the TFT's slicing of them still works; a caller that
needs them must keep the library's module.

**Gated residual networks over time steps** (``static_enrichment``, ``pos_wise_ff``).  The
library's GRN applies its context projection to the static context *expanded over every
time step* (B x T rows of the same B vectors) and runs each step out of place.
``FastGRN`` projects a time-constant context once per series and broadcasts it, runs the
ELU in place, and folds ``fc2`` into the GLU's linear map (two linear maps in a row,
nothing between them in eval mode): the same function (fc1 + context, ELU, fc2, GLU, add,
LayerNorm) up to float32 rounding.

**LSTMs.** pytorch-forecasting's ``LSTM`` packs its input whenever it is given lengths
(``pack_padded_sequence(enforce_sorted=False)``: a sort, an ``index_select`` of the whole
(batch, steps, hidden) input, then the reverse to unpack), even when every sequence fills
the tensor, which is the usual case at inference: full 24-hour encoders, 96-step decoders.
``FastLSTM`` runs such a batch on the CPU as a plain ``nn.LSTM`` over the padded tensor (the
same kernel, the same output and final state, bit for bit) and hands anything else, and
everything on CUDA, to the library's own forward.

Dropout is the identity in eval mode, the only mode these modules support.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


_MASKED = -1e9      # the library's mask_bias


class FusedAttention(nn.Module):
    """Drop-in for pytorch-forecasting's ``InterpretableMultiHeadAttention`` in eval mode:
    ``forward(q, k, v, mask)`` with q (B, Lq, d), k and v (B, Lk, d), mask (B, Lq, Lk)
    True where the library masks; returns (output (B, Lq, d), empty weights)."""

    def __init__(self, attn):
        super().__init__()
        self.n_head = int(attn.n_head)
        self.d_k = int(attn.d_k)
        if not attn.attention.scale:
            raise ValueError("FusedAttention expects scaled dot-product attention")
        d = lambda t: t.detach().clone()                                          # noqa: E731
        self.register_buffer("wq", d(torch.cat([lin.weight for lin in attn.q_layers])), persistent=False)
        self.register_buffer("bq", d(torch.cat([lin.bias for lin in attn.q_layers])), persistent=False)
        self.register_buffer("wk", d(torch.cat([lin.weight for lin in attn.k_layers])), persistent=False)
        self.register_buffer("bk", d(torch.cat([lin.bias for lin in attn.k_layers])), persistent=False)
        self.register_buffer("wv", d(attn.v_layer.weight), persistent=False)
        self.register_buffer("bv", d(attn.v_layer.bias), persistent=False)
        self.register_buffer("wh", d(attn.w_h.weight), persistent=False)
        self.register_buffer("bh", None if attn.w_h.bias is None else d(attn.w_h.bias), persistent=False)

    def forward(self, q, k, v, mask=None):
        B, Lq, _ = q.shape
        Lk = k.size(1)
        h, dk = self.n_head, self.d_k
        qs = F.linear(q, self.wq, self.bq).view(B, Lq, h, dk).transpose(1, 2)      # (B, h, Lq, dk)
        ks = F.linear(k, self.wk, self.bk).view(B, Lk, h, dk).transpose(1, 2)      # (B, h, Lk, dk)
        vs = F.linear(v, self.wv, self.bv).unsqueeze(1).expand(B, h, Lk, dk)     # shared by heads
        heads = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=self._bias(mask, q.dtype))  # (B, h, Lq, dk)
        out = F.linear(heads.mean(1), self.wh, self.bh)
        return out, q.new_empty(B, Lq, h, 0)

    @staticmethod
    def _bias(mask, dtype):
        """The mask as an additive float bias (-1e9 where masked, as the library's fill).
        SDPA would convert a boolean mask itself, at ~4 ms per 64-window batch; a batch
        whose windows all have the same encoder length has ONE (Lq, Lk) mask, which it
        broadcasts.  That test reads one query row per window: in the TFT's mask
        (``get_attention_mask``) whether a key is masked depends on the window (encoder
        padding, decoder lengths) or on the query (causality), never on both, so windows
        whose rows agree have the same mask."""
        if mask is None:
            return None
        rows = mask[:, -1]                                                        # (B, Lk)
        if mask.size(0) == 1 or bool((rows == rows[:1]).all()):
            return mask[0].to(dtype).mul_(_MASKED)                                # (Lq, Lk)
        return mask.unsqueeze(1).to(dtype).mul_(_MASKED)                          # (B, 1, Lq, Lk)

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}, d_k={self.d_k}"


class FastGRN(nn.Module):
    """Drop-in for a pytorch-forecasting ``GatedResidualNetwork`` whose input, hidden and
    output sizes agree (no resampled residual) and whose add-norm has no trainable gate:
    ``forward(x, context=None, residual=None)`` as the library's, eval mode."""

    def __init__(self, grn):
        super().__init__()
        if not _fusable_grn(grn):
            raise ValueError("this GatedResidualNetwork does not have the structure FastGRN computes")
        d = lambda t: t.detach().clone()                                          # noqa: E731
        self.register_buffer("w1", d(grn.fc1.weight), persistent=False)
        self.register_buffer("b1", d(grn.fc1.bias), persistent=False)
        self.register_buffer("wc", d(grn.context.weight) if grn.context_size is not None else None,
                             persistent=False)
        # fc2 and the GLU's linear map follow each other with nothing in between (dropout is
        # the identity in eval mode): one map, folded in float64
        glu = grn.gate_norm.glu.fc
        w2, b2 = grn.fc2.weight.detach().double(), grn.fc2.bias.detach().double()
        wg, bg = glu.weight.detach().double(), glu.bias.detach().double()
        dtype = glu.weight.dtype
        self.register_buffer("wg", (wg @ w2).to(dtype), persistent=False)
        self.register_buffer("bg", (wg @ b2 + bg).to(dtype), persistent=False)
        norm = grn.gate_norm.add_norm.norm
        self.register_buffer("ln_w", d(norm.weight), persistent=False)
        self.register_buffer("ln_b", d(norm.bias), persistent=False)
        self.eps = float(norm.eps)
        self.size = int(grn.output_size)

    def forward(self, x, context=None, residual=None):
        if residual is None:
            residual = x
        h = F.linear(x, self.w1, self.b1)
        if context is not None:
            if self.wc is None:
                raise ValueError("this GRN has no context input")
            if context.dim() == 3 and context.size(1) > 1 and context.stride(1) == 0:
                context = context[:, :1]           # expanded over time: one projection per series
            h = h + F.linear(context, self.wc)
        F.elu(h, inplace=True)
        out = F.glu(F.linear(h, self.wg, self.bg), dim=-1)
        out += residual
        return F.layer_norm(out, (self.size,), self.ln_w, self.ln_b, self.eps)


def _fusable_grn(grn) -> bool:
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (AddNorm, GateAddNorm,
                                                                                    GatedResidualNetwork)

    if type(grn) is not GatedResidualNetwork or grn.residual:
        return False
    if not (grn.input_size == grn.hidden_size == grn.output_size) or hasattr(grn, "resample_norm"):
        return False
    gn = getattr(grn, "gate_norm", None)
    if not isinstance(gn, GateAddNorm) or not isinstance(gn.add_norm, AddNorm):
        return False
    an = gn.add_norm
    return not an.trainable_add and an.input_size == an.skip_size == grn.output_size


# the GRNs that run on every time step (the others see one row per series)
TIME_STEP_GRNS = ("static_enrichment", "pos_wise_ff")


def fuse_grns(model, names=TIME_STEP_GRNS) -> int:
    """Replace, IN PLACE, the TFT's GRNs ``names`` by ``FastGRN`` where their structure
    allows; returns how many were replaced."""
    n = 0
    for name in names:
        grn = getattr(model, name, None)
        if grn is None or not _fusable_grn(grn):
            continue
        _replace(model, name, FastGRN(grn))
        n += 1
    return n


def fuse_attention(model) -> int:
    """Replace, IN PLACE, a TFT's ``multihead_attn`` (pytorch-forecasting's
    InterpretableMultiHeadAttention) by ``FusedAttention``; returns 1 when replaced, 0 when
    there is nothing to replace (already fused, or another module)."""
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import InterpretableMultiHeadAttention

    attn = getattr(model, "multihead_attn", None)
    if not isinstance(attn, InterpretableMultiHeadAttention):
        return 0
    _replace(model, "multihead_attn", FusedAttention(attn))
    return 1


class FastLSTM(nn.Module):
    """Wraps a pytorch-forecasting ``LSTM`` (batch first): ``forward(x, hx, lengths,
    enforce_sorted)`` as the library's; when every length equals the number of steps the
    padded tensor is the sequence, and ``nn.LSTM``'s own forward runs it unpacked."""

    def __init__(self, lstm):
        super().__init__()
        if not (isinstance(lstm, nn.LSTM) and lstm.batch_first):
            raise ValueError("FastLSTM wraps a batch-first LSTM")
        self.lstm = lstm

    # Only on the CPU, where it is bit for bit the packed result.  On CUDA an unpacked
    # float32 batch may take cuDNN's persistent LSTM kernel (RNN_blockPersist_fp_LSTM), which
    # put an H200's forecasts 2.4e-4 relative away from the CPU's, against 4.6e-5 packed
    # (benchmarks/gpu_parity_parts.py, benchmarks/results/h200-2026-11-28/).
    unpack_on_cuda = False

    def forward(self, x, hx=None, lengths=None, enforce_sorted=True):
        if (lengths is not None and isinstance(x, torch.Tensor) and x.dim() == 3 and x.size(1) > 0
                and (x.device.type == "cpu" or self.unpack_on_cuda)
                and bool((lengths == x.size(1)).all())):
            return nn.LSTM.forward(self.lstm, x, hx)
        return self.lstm(x, hx, lengths=lengths, enforce_sorted=enforce_sorted)


def wrap_lstms(model, names=("lstm_encoder", "lstm_decoder")) -> int:
    """Wrap, IN PLACE, the TFT's LSTMs ``names`` in ``FastLSTM`` (pytorch-forecasting's
    LSTM class only); returns how many were wrapped."""
    from pytorch_forecasting.models.nn.rnn import LSTM

    n = 0
    for name in names:
        lstm = getattr(model, name, None)
        if isinstance(lstm, LSTM) and lstm.batch_first:
            _replace(model, name, FastLSTM(lstm))
            n += 1
    return n


def _replace(model, name: str, new: nn.Module) -> None:
    """model.<name> = new, on the device of the model's parameters."""
    ref = next(iter(model.parameters()), None)
    model._modules[name] = new if ref is None else new.to(ref.device)
