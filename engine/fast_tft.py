"""Fleet-wide TFT inference without TimeSeriesDataSet.

The library path (``engine.evaluation.stock_predict``: a TimeSeriesDataSet over a
prepared frame, its collate function and ``model.predict`` under a Lightning Trainer)
costs far more than the network itself.  ``FastTFT`` builds the very tensors that
``TimeSeriesDataSet.__getitem__`` + ``TimeSeriesDataSet._collate_fn`` would have built
straight from numpy windows and runs the whole fleet through the network in large
batches under ``torch.inference_mode()``.

What the library does per window, and what is replicated here (see
``pytorch_forecasting/data/timeseries/_timeseries.py``):

- metrics pass through float32 (``prepare_frame`` casts them); the level features are
  computed from those float32 values, the time features in float64 then cast;
- the encoder is LEFT-aligned and zero-padded on the right to the longest encoder
  *in the batch* (``rnn.pad_sequence``): the network splits encoder from decoder at
  ``encoder_lengths.max()``, so the encoder tensor must be exactly that long;
- targets are standard-scaled per window over the encoder only, with ``torch.std``
  (unbiased, n-1), plus float32 eps, then floored at the model's ``min_scale``
  (``FlooredEncoderNormalizer``), centred on the encoder's mean or, where config.json
  says ``"center": "last"``, on its last value; ``target_scale`` is a list of (batch, 2) float32
  [center, scale] per target, which the network uses to de-normalise its output;
- ``relative_time_idx`` is ``arange(-enc, dec) / max_encoder_length`` in float32 and
  ``encoder_length`` is ``(enc - L/2) / L * 2`` (both raw: their scalers are fitted on a
  constant 0 column and are the identity);
- the profile goes through ``NaNLabelEncoder(add_nan=True)``: anything outside the
  vocabulary is class 0 ("nan");
- a model that reads the same time yesterday (config ``day_ago``) takes windows a day
  longer than its encoder: each encoder and decoder step's value DAY_STEPS earlier (the
  window's first value where the window is younger, with DAY_KNOWN 0), scaled with the
  target's window centre and scale (``engine.tft_layers.DayAgoDataSet``).

The future values of the unknown reals (targets, levels) sit in the library's decoder
tensor but the network never reads them (they are no decoder variables); zeros here.
"""
from __future__ import annotations

import copy
import threading
import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from engine.calibration import aligned_window_scale, apply_calibration
from engine.contract import METRICS, UNKNOWN_PROFILE
from engine.device_inputs import CalibrationTables, batch_inputs, window_scale_t
from engine.fast_blocks import fuse_attention, fuse_grns, wrap_lstms
from engine.fast_vsn import fold_variable_selection
from engine.tft_model import (DAY_KNOWN, DAY_STEPS, TIME_FEATURES, LoadedModel, day_ago_feature, level_feature,
                              profile_encoder)

# Windows per forward pass on a CPU.  The network is memory-bound there: at 1,000 servers
# one batch of 1,024 spends most of its time moving (batch x 384 x 32) intermediates
# through main memory; small batches keep them in cache.  Measured (1,000 servers, two
# worker threads, shipped model, with keep_freed_memory below): 32 -> 0.53-0.62 s,
# 64 -> 0.43-0.53 s, 128 -> 0.45-0.52 s (before the allocator setting 32 was best: each
# forward's page faults grew with the batch).
CPU_BATCH = 64

# Windows per forward pass on a GPU: as many as fit in a share of its free memory, up to
# CUDA_BATCH_MAX, and the fleet split into equal batches.  Measured on an H100 (10,000
# servers, FastTFT.predict with inputs and calibration on the GPU, benchmarks/gpu_check.py,
# 2026-11-27): batches of 1,024 -> 280 ms, 2,048 -> 196 ms, 4,096 -> 170 ms, all 10,000 at
# once -> 145 ms, with 18 GB of GPU memory at its peak (about 1.9 MB per window).
CUDA_BATCH_MAX = 16384
CUDA_BYTES_PER_WINDOW = 2_000_000
CUDA_MEMORY_SHARE = 0.5


def cuda_batch(device: str) -> int:
    """The default batch on ``device``: what CUDA_MEMORY_SHARE of its free memory holds."""
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(min(CUDA_BATCH_MAX, max(256, CUDA_MEMORY_SHARE * free // CUDA_BYTES_PER_WINDOW)))


def even_batches(n: int, batch_size: int) -> list[slice]:
    """``n`` rows in the fewest batches of at most ``batch_size``, as equal as can be (10,000
    rows at 8,192 -> 5,000 + 5,000, not 8,192 + 1,808)."""
    if n <= 0:
        return []
    k = -(-n // batch_size)
    size = -(-n // k)
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


# -- the allocator -----------------------------------------------------------------

# glibc serves every allocation above a dynamic threshold (128 KB at first) with a fresh
# mmap and returns freed memory at the heap's top to the OS above 128 KB: each forward pass
# then takes a page fault on every 4 KB of its MB-sized intermediates, again and again.
# Measured (batch of 32 full windows, 1 thread, shipped model): 31-37 ms per forward with
# the defaults, 25-28 ms with these two settings.  Setting only one of them is WORSE
# (55-106 ms): it fixes the threshold, so glibc stops adapting it.
MMAP_THRESHOLD = 32 * 2**20      # glibc's maximum on 64-bit
TRIM_THRESHOLD = 128 * 2**20     # freed memory kept for reuse before it goes back to the OS
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _glibc_function(name: str):
    """glibc's ``name`` (a ctypes function), or None where malloc is not glibc's."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed memory instead of unmapping it (process-wide,
    idempotent).  True when applied; False where malloc is not glibc's."""
    import ctypes

    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Hand the memory malloc keeps for reuse back to the OS now (glibc's ``malloc_trim``,
    every thread's arena).  For after a one-off peak (a trace) that the steady state
    never reaches again.  True when glibc did it."""
    import ctypes

    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


# -- interpolation swap ----------------------------------------------------------------

def _interpolation_class():
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import TimeDistributedInterpolation

    return TimeDistributedInterpolation


def interpolation_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(in_size, out_size) matrix W with ``x @ W == F.interpolate(x, out_size, mode="linear",
    align_corners=True)`` for x of shape (N, in_size): the interpolation of the identity
    (so the weights are the very ones the library's kernel computes)."""
    eye = torch.eye(in_size, dtype=torch.float32).unsqueeze(1)            # (in, 1, in)
    return F.interpolate(eye, out_size, mode="linear", align_corners=True).squeeze(1).contiguous()


def _build_matmul_class():
    base = _interpolation_class()

    class MatmulInterpolation(base):
        """TimeDistributedInterpolation whose linear interpolation is one matmul by a fixed
        (in_size, out_size) matrix.  The matrix is a non-persistent buffer, so the
        state_dict keys (``mask`` when trainable, nothing otherwise) are unchanged."""

        def __init__(self, src, in_size: int):
            super().__init__(src.output_size, batch_first=src.batch_first, trainable=src.trainable)
            if src.trainable:          # keep the very same trained parameter and gate
                self.mask = src.mask
            self.in_size = int(in_size)
            self.register_buffer("weight_matrix", interpolation_matrix(self.in_size, self.output_size),
                                 persistent=False)

        def interpolate(self, x):
            if x.size(-1) != self.in_size:          # not the size it was built for
                return super().interpolate(x)
            upsampled = torch.matmul(x, self.weight_matrix.to(x.dtype))
            if self.trainable:
                upsampled = upsampled * self.gate(self.mask.unsqueeze(0)) * 2.0
            return upsampled

        def forward(self, x):
            if x.dim() <= 3 and x.size(-1) == self.in_size:
                # every row is interpolated on its own: no reshaping needed around the matmul
                return self.interpolate(x)
            return super().forward(x)

    MatmulInterpolation.__module__ = __name__
    MatmulInterpolation.__qualname__ = "MatmulInterpolation"
    return MatmulInterpolation


def __getattr__(name):
    # The class subclasses pytorch-forecasting's module: built on first use so that importing
    # this module does not import the library (and found by name, e.g. by pickle).
    if name == "MatmulInterpolation":
        cls = _build_matmul_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def swap_interpolation(model) -> int:
    """Replace, IN PLACE, each TimeDistributedInterpolation of ``model`` whose input size is
    known from its parent (ResampleNorm: input_size -> output_size; AddNorm: skip_size ->
    input_size) by a matmul with the equivalent precomputed matrix.  State-dict keys are
    unchanged.  Returns how many were swapped (0 when already swapped).

    Apply it to a copy when the original must keep running the library's own code.
    """
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import AddNorm, ResampleNorm

    base = _interpolation_class()
    matmul_class = globals().get("MatmulInterpolation") or __getattr__("MatmulInterpolation")
    ref = next(iter(model.parameters()), None)
    swapped = 0
    for parent in list(model.modules()):
        child = parent._modules.get("resample")
        if not isinstance(child, base) or isinstance(child, matmul_class):
            continue
        if isinstance(parent, ResampleNorm):
            in_size = parent.input_size
        elif isinstance(parent, AddNorm):
            in_size = parent.skip_size
        else:
            continue
        new = matmul_class(child, in_size)
        if ref is not None:
            new = new.to(ref.device)
        parent._modules["resample"] = new
        swapped += 1
    return swapped


_swap = swap_interpolation   # FastTFT's argument of the same name shadows it


# -- the traced network ---------------------------------------------------------------

# On a CPU the network is hundreds of small tensor ops per forward, each dispatched from
# Python under the GIL: two worker threads running batches side by side wait on each other
# there (measured, shipped model, 2 x 8 forwards of 64 windows on this 2-core machine: two
# threads 1.16x one thread's time for twice the work, two processes 1.08x; with the
# selection's row blocks at 256 instead of 1,024, 1.59x against 1.12x).  A torch.jit trace
# runs the same ops from C++ with the GIL released (two threads 1.0x) and with less
# dispatch per op (one thread 13-17 % faster).
#
# A trace records the ops one input went through: whatever Python decided from the data is
# frozen into it.  In this network those decisions are the encoder length
# (``int(encoder_lengths.max())`` in the library's forward), whether every window is full
# (the LSTMs skip pack / unpack, engine.fast_blocks), whether the time-derived inputs are
# the same in every window (engine.fast_vsn), and the shapes.  So a trace is used only for
# batches that decide all of them as the traced one did: every window full (its encoder
# the model's whole length), all ending at the same time, no day-ago inputs, the same
# tensor shapes; every other batch runs the network as it is.  Each trace is checked
# against the network on the batch it was made from and kept only if bit for bit equal.
#
# Traces run without the JIT's graph optimisations (no faster here, and their profiling
# kept ~30 MB more); tracing peaks at ~40 MB of intermediates in the tracing thread's
# malloc arena, handed back to the OS afterwards.  What a trace compiles stays in torch's
# global compilation unit for the life of the process, dropped or not (pytorch/pytorch#35600):
# ~35-45 MB per trace with the shipped model.  So traced batches come in at most four sizes
# whatever the fleet's (FastTFT._plan), each traced once (~0.5 s), and a FastTFT makes at
# most MAX_TRACES traces: any other batch runs untraced.
MAX_TRACES = 4
# Tracing a shape costs about 8 forwards (the trace, its check); it runs 15-25 % faster after.
# A FastTFT traces nothing until it has run TRACE_AFTER batches that could have been traced,
# and then a shape from its second batch on: ``tft-top predict`` on the demo fleet (13
# batches) never pays for a trace it would not earn back; a 1,000-server fleet traces at
# its second tick, the 48-server demo at its 17th.  (0: trace every shape at once.)
TRACE_AFTER = 16
TRACE_STEP = 16          # traced batches hold a multiple of this many windows (a quarter batch if more)
_NOT_YET = object()


def _quiet_tracing() -> None:
    """torch.jit.trace warns that Python decisions are frozen (the checks above say which are
    safe to freeze) and that it is deprecated (it still works: where it fails, FastTFT runs
    the network as it is): neither is for an operator's screen.  Process-wide filters, set
    where a FastTFT that may trace is made (not from its worker threads)."""
    tracer_warning = getattr(getattr(torch, "jit", None), "TracerWarning", None)
    if isinstance(tracer_warning, type) and issubclass(tracer_warning, Warning):
        warnings.filterwarnings("ignore", category=tracer_warning)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=DeprecationWarning)
    # (tracing reads every attribute of every module, torchmetrics' deprecated ones too)
    warnings.filterwarnings("ignore", message="This property will be removed in 2.0.0", category=DeprecationWarning)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit the same numbers, NaN where NaN (a window with a NaN gives NaN forecasts
    on both paths, and the batch a trace is made from may hold one)."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


def _layout(x: dict) -> tuple:
    """The network's input dict as (key, None for a tensor or the length of a list)."""
    return tuple((k, len(v) if isinstance(v, list) else None) for k, v in x.items())


def _flatten(x: dict) -> tuple:
    return tuple(t for v in x.values() for t in (v if isinstance(v, list) else (v,)))


class _Traced:
    """A traced network, run without the JIT's graph optimisations (a thread-local switch)."""

    __slots__ = ("net",)

    def __init__(self, net):
        self.net = net

    def __call__(self, *args):
        with torch.jit.optimized_execution(False):
            return self.net(*args)


class _FlatNetwork(torch.nn.Module):
    """The network with a flat tuple of tensors in and out (what torch.jit.trace takes):
    the predictions, one per target, then the encoder variable weights."""

    def __init__(self, model, layout: tuple):
        super().__init__()
        self.model = model
        self.layout = layout

    def forward(self, *args):
        x, i = {}, 0
        for key, count in self.layout:
            if count is None:
                x[key], i = args[i], i + 1
            else:
                x[key], i = list(args[i:i + count]), i + count
        out = self.model(x)
        pred = out["prediction"]
        pred = list(pred) if isinstance(pred, (list, tuple)) else [pred]
        return (*pred, out["encoder_variables"])


# -- the fast path -------------------------------------------------------------------

class FastForecast:
    """``quantiles``: per target (n, H, Q) float64, calibrated; ``block``: the same numbers as
    one (n, T, H, Q) array in target order (each ``quantiles[m]`` is a view of it);
    ``raw``: per target (n, H, Q) float64 as the network gave it, fetched from the device
    only when first read (nothing on the per-tick path reads it); ``importance``: per
    window, the encoder variable weights (summing to 1), or None."""

    __slots__ = ("quantiles", "block", "_raw", "importance")

    def __init__(self, block: np.ndarray, targets: Sequence[str],
                 raw: dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]],
                 importance: list[dict[str, float]] | None):
        self.block = block
        self.quantiles = {m: block[:, j] for j, m in enumerate(targets)}
        self._raw = raw
        self.importance = importance

    @property
    def raw(self) -> dict[str, np.ndarray]:
        if callable(self._raw):
            self._raw = self._raw()
        return self._raw


def _normalise_profile(text) -> str:
    """As ``engine.tft_model.normalise_profile``: strip, lower; missing or empty -> unknown."""
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return UNKNOWN_PROFILE
    out = str(text).strip().lower()
    return out or UNKNOWN_PROFILE


def down(t: torch.Tensor, pinned: bool) -> np.ndarray:
    """A device tensor as a numpy array (through page-locked memory when ``pinned``)."""
    if not pinned:
        return t.cpu().numpy()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t)
    return host.numpy()


class FastTFT:
    """Batched TFT inference over right-aligned numpy windows (see module docstring).

    ``predict(values, lengths, last_epoch, profiles)``: values (n, L, 4) in METRICS order,
    each window's valid part ``values[i, L - lengths[i]:]`` (the rest is ignored, NaN is
    fine there); a non-finite value inside the valid part gives that window (only) NaN
    forecasts.  The network runs on a private copy of ``loaded.model``; on the CPU, batches
    of full windows that end together run through a torch.jit trace of it (``trace``; see
    "the traced network" above), bit for bit the same numbers, once it has run ``trace_after``
    such batches untraced (see TRACE_AFTER).
    """

    def __init__(self, loaded: LoadedModel, device: str = "cpu", batch_size: int | None = None,
                 swap_interpolation: bool = True, fold_vsn: bool = True, fuse_blocks: bool = True,
                 workers: int = 1, on_device: bool | None = None, trace: bool = True,
                 trace_after: int = TRACE_AFTER):
        self.device = str(device)
        # on_device: calibrate where the network runs (engine.device_inputs), the whole fleet
        # at once, instead of per batch in numpy on the host; the default on CUDA
        self.on_device = self.device.startswith("cuda") if on_device is None else bool(on_device)
        if not self.device.startswith("cuda"):
            keep_freed_memory()
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = 1 if self.device.startswith("cuda") else int(workers)
        self._pool = None
        if batch_size is None:
            batch_size = cuda_batch(self.device) if self.device.startswith("cuda") else CPU_BATCH
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.loaded = loaded
        self.config = config = loaded.config
        self.batch_size = int(batch_size)
        # The original stays as it is (device, modules).  The copy is rebuilt on the CPU, whatever
        # device the model was loaded on: folding mixes its weights with new CPU tensors.
        model = copy.deepcopy(loaded.model).cpu()
        if self.device.startswith("cuda"):
            # Full float32 on the GPU, as on the CPU the model was trained and checked on: with
            # cuDNN's default TF32 the LSTMs put the H100's forecasts up to 0.15 (percent
            # units), 1.1 % relative, away from the CPU's.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.swapped = _swap(model) if swap_interpolation else 0
        # shared: inputs with few distinct values across a batch (time features; DAY_KNOWN is 0 or 1),
        # whose per-variable networks run once per distinct value
        self.folded = fold_variable_selection(model, (*TIME_FEATURES, "relative_time_idx", "encoder_length", DAY_KNOWN)) \
            if fold_vsn else 0
        self.fused = (fuse_attention(model) + fuse_grns(model) + wrap_lstms(model)) if fuse_blocks else 0
        self.model = model.to(self.device).eval()

        self.targets = list(config.targets)
        unknown = [m for m in self.targets if m not in METRICS]
        if unknown:
            raise ValueError(f"model targets {unknown} are not metrics {METRICS}")
        self._metric_pos = [METRICS.index(m) for m in self.targets]
        self.L = int(config.max_encoder_length)
        self.H = int(config.max_prediction_length)
        self.day_ago = bool(config.day_ago)
        self.W = int(config.history_length)        # the windows predict() takes
        self.min_length = max(int(config.min_encoder_length), 1)
        self.min_scale = np.array([config.min_scale[m] for m in self.targets], dtype=np.float64)

        hp = model.hparams
        self.reals = list(hp.x_reals)
        day = {day_ago_feature(m) for m in self.targets} | {DAY_KNOWN} if self.day_ago else set()
        known = set(TIME_FEATURES) | {"relative_time_idx", "encoder_length"} | set(self.targets) \
            | {level_feature(m) for m in self.targets} | day
        odd = [r for r in self.reals if r not in known]
        if odd:
            raise ValueError(f"FastTFT cannot build the model input(s) {odd}")
        if list(hp.x_categoricals) != ["profile"]:
            raise ValueError(f"FastTFT expects the one categorical 'profile', the model has {hp.x_categoricals}")
        future = set(model.decoder_variables) - (set(TIME_FEATURES) | {"relative_time_idx"} | day)
        if future:
            raise ValueError(f"decoder variables {sorted(future)} are not known in advance")
        self.encoder_variables = list(model.encoder_variables)
        self._profile_classes = dict(profile_encoder(config).classes_)
        self._col = {name: i for i, name in enumerate(self.reals)}
        self._tables = CalibrationTables(config, self.H, self.device) if self.on_device else None
        # traced networks by input signature (see "the traced network" above); None where a
        # trace did not equal the network.  On the CPU path only: the GPU's forward is kernels
        # queued from one thread, and a trace there has not been checked on a GPU.
        self.trace = bool(trace) and not self.device.startswith("cuda") and not self.on_device
        if self.trace:
            _quiet_tracing()
        self.trace_error: str | None = None      # why tracing was given up, if it was
        self._traced: dict[tuple, Callable | None] = {}
        # when to trace (see TRACE_AFTER): batches that could have run traced, and how often
        # each shape came
        self.trace_after = max(0, int(trace_after))
        self._eligible = 0
        self._sightings: dict[tuple, int] = {}
        self._trace_lock = threading.Lock()

    # -- inputs -------------------------------------------------------------------
    def _check(self, values, lengths, last_epoch, profiles):
        values = np.asarray(values)
        lengths = np.asarray(lengths)
        last_epoch = np.asarray(last_epoch)
        if values.ndim != 3 or values.shape[1] != self.W or values.shape[2] != len(METRICS):
            raise ValueError(f"values must have shape (n, {self.W}, {len(METRICS)}), got {values.shape}")
        n = values.shape[0]
        if lengths.shape != (n,) or last_epoch.shape != (n,) or len(profiles) != n:
            raise ValueError("values, lengths, last_epoch and profiles must describe the same windows")
        if n and not np.issubdtype(lengths.dtype, np.integer):
            if not np.all(lengths == np.round(lengths)):
                raise ValueError("lengths must be whole numbers")
        lengths = lengths.astype(np.int64)
        if n and lengths.min() < self.min_length:
            raise ValueError(f"window length {int(lengths.min())} is below the model's min_encoder_length "
                             f"{self.min_length}")
        if n and lengths.max() > self.W:
            raise ValueError(f"window length {int(lengths.max())} exceeds the model's history of {self.W} steps")
        return values, lengths, last_epoch.astype(np.int64), n

    def profile_codes(self, profiles: Sequence[str]) -> np.ndarray:
        """NaNLabelEncoder(add_nan=True) codes of the normalised profiles (unknown -> 0)."""
        return np.array([self._profile_classes.get(_normalise_profile(p), 0) for p in profiles], dtype=np.int64)

    def _calibrate(self, v32: np.ndarray, lengths: np.ndarray, profiles: np.ndarray, raw: dict,
                   out: dict) -> None:
        """out[m] = the calibrated raw[m] (engine.calibration), for one batch; the window scale
        is taken on the float32 values the stock path sees."""
        config = self.config
        for j, m in enumerate(self.targets):
            scale = aligned_window_scale(v32[:, :, self._metric_pos[j]], lengths, config.min_scale[m])
            out[m][...] = apply_calibration(config.calibration, m, raw[m], scale, tuple(config.quantiles),
                                            groups=profiles)

    def day_ago_inputs(self, v32: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the newest ``L`` steps of each (n, W, 4) window and the ``H`` after them: each
        target's value DAY_STEPS steps earlier, (n, L + H, targets) float32, and DAY_KNOWN,
        (n, L + H) float32; where the window has no such step, its first value and 0."""
        W, L, H = self.W, self.L, self.H
        src = np.arange(W - L, W + H) - DAY_STEPS                    # (L + H,), all < W: H <= DAY_STEPS
        start = (W - lengths)[:, None]                               # each window's first valid step
        pos = self._metric_pos
        whole = start[:, 0] <= src[0]          # yesterday is there for every step: one slice
        if whole.all():
            part = v32[:, src[0]:src[-1] + 1]
            vals = part if pos == list(range(v32.shape[2])) else part[:, :, pos]
            return np.ascontiguousarray(vals, dtype=np.float32), np.ones((len(v32), L + H), dtype=np.float32)
        known = src[None, :] >= start
        at = np.where(known, src[None, :], start)
        vals = np.take_along_axis(v32[:, :, pos], at[:, :, None], axis=1)
        return np.ascontiguousarray(vals, dtype=np.float32), known.astype(np.float32)

    # -- prediction ---------------------------------------------------------------
    def predict(self, values: np.ndarray, lengths: np.ndarray, last_epoch: np.ndarray,
                profiles: Sequence[str], with_importance: bool = False) -> FastForecast:
        values, lengths, last_epoch, n = self._check(values, lengths, last_epoch, profiles)
        codes = self.profile_codes(profiles)
        v32 = values.astype(np.float32, copy=False)
        day = None
        if self.day_ago:
            day = self.day_ago_inputs(v32, lengths)
            v32, lengths = v32[:, self.W - self.L:], np.minimum(lengths, self.L)     # the encoder's part
        normalised = np.array([_normalise_profile(p) for p in profiles], dtype=object)
        if self.on_device and n:
            return self._predict_on_device(v32, lengths, last_epoch, codes, normalised, with_importance, day)
        order, batches = self._plan(lengths, last_epoch, day is None)
        if order is not None:                    # the rows as batched (some twice); put back at the end
            v32, lengths, last_epoch, codes, normalised = (a[order] for a in (v32, lengths, last_epoch, codes,
                                                                              normalised))
        rows = n if order is None else len(order)
        Q = len(self.config.quantiles)
        raw = {m: np.empty((rows, self.H, Q), dtype=np.float64) for m in self.targets}
        block = np.empty((rows, len(self.targets), self.H, Q), dtype=np.float64)
        quantiles = {m: block[:, j] for j, m in enumerate(self.targets)}
        importance = np.empty((rows, len(self.encoder_variables)), dtype=np.float64) if with_importance else None

        v_t, ends_t, codes_t = (torch.from_numpy(np.ascontiguousarray(a)) for a in (v32, last_epoch, codes))
        day_t = None if day is None else tuple(torch.from_numpy(a) for a in day)
        traceable = self.trace and self.device == "cpu" and day_t is None

        def run(batch: tuple[slice, bool]) -> None:
            sl, may_trace = batch
            shared_end = bool((last_epoch[sl] == last_epoch[sl.start]).all())
            with torch.inference_mode():         # thread-local: set in the worker itself
                x = batch_inputs(self, v_t[sl], lengths[sl], ends_t[sl], codes_t[sl], shared_end,
                                 None if day_t is None else (day_t[0][sl], day_t[1][sl]))
                if self.device != "cpu":        # (on_device=False on a GPU: inputs made on the host)
                    x = {k: [t.to(self.device) for t in v] if isinstance(v, list) else v.to(self.device)
                         for k, v in x.items()}
                full = bool((lengths[sl] == self.L).all())
                net = self._traced_network(x) if traceable and may_trace and shared_end and full else None
                if net is None:
                    out = self.model(x)
                else:
                    flat = net(*_flatten(x))
                    out = {"prediction": list(flat[:-1]), "encoder_variables": flat[-1]}
                pred = out["prediction"]
                if not isinstance(pred, (list, tuple)):
                    pred = [pred]
                for m, p in zip(self.targets, pred):
                    raw[m][sl] = p.float().cpu().numpy()
                if with_importance:
                    importance[sl] = self._mean_encoder_weights(out, x["encoder_lengths"]).double().cpu().numpy()
            self._calibrate(v32[sl], lengths[sl], normalised[sl], {m: raw[m][sl] for m in self.targets},
                            {m: quantiles[m][sl] for m in self.targets})

        if self.workers > 1 and len(batches) > 1:
            # batches are independent: each worker thread runs whole ones (torch ops release
            # the GIL) and writes its own rows; no intra-op thread barriers involved
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tft-batch")
            list(self._pool.map(run, batches))
        else:
            for batch in batches:
                run(batch)

        if order is not None:
            back = np.empty(n, dtype=np.int64)
            back[order[::-1]] = np.arange(len(order))[::-1]      # each row's first place in the order
            block, raw = block[back], {m: r[back] for m, r in raw.items()}
            importance = None if importance is None else importance[back]
        return FastForecast(block, self.targets, raw, self._importance_dicts(importance))

    def _plan(self, lengths: np.ndarray, last_epoch: np.ndarray,
              plain: bool) -> tuple[np.ndarray | None, list[tuple[slice, bool]]]:
        """The batches, as (slice of the rows in the order returned, may it run traced); the
        order (None: the rows' own) may repeat a row, whose second forecast is not used.

        On the CPU (and without day-ago inputs) the full windows that end at the fleet's most
        common time are batched apart from the others (young servers, a silent one, a
        collector a step behind), so that one odd window does not send a whole fleet, or a
        whole batch, to the untraced network.  Their batches hold exactly ``batch_size``
        windows, the last one filled up (with its last window again) to a multiple of
        TRACE_STEP or a quarter batch: the traced batches then come in at most four sizes
        that do not change with the fleet's (64, 16, 32, 48 in batches of 64), and a fleet
        that grows or shrinks by a server, or whose odd windows come and go, traces nothing
        anew.  The others run untraced (their sizes come and go)."""
        n = len(lengths)
        full = lengths == self.L
        if not (plain and self.device == "cpu") or not full.any():
            return None, [(sl, False) for sl in even_batches(n, self.batch_size)]
        ends, counts = np.unique(last_epoch[full], return_counts=True)
        main = np.flatnonzero(full & (last_epoch == ends[counts == counts.max()].max()))    # a tie: the latest
        size, k = self.batch_size, len(main)
        step = min(size, max(TRACE_STEP, -(-size // 4)))
        padded = -(-k // step) * step
        order = np.concatenate([main, np.repeat(main[-1:], padded - k), np.flatnonzero(~np.isin(np.arange(n), main))])
        batches = [(slice(s, min(s + size, padded)), True) for s in range(0, padded, size)]
        batches += [(slice(padded + sl.start, padded + sl.stop), False) for sl in even_batches(n - k, size)]
        return order, batches

    def _traced_network(self, x: dict) -> Callable | None:
        """The traced network for batches like ``x`` (full, aligned windows: see "the traced
        network" above), traced when TRACE_AFTER says; None where it is not (yet) to be used."""
        key = (_layout(x), tuple(tuple(t.shape) for t in _flatten(x)))
        net = self._traced.get(key, _NOT_YET)
        if net is not _NOT_YET:
            return net
        with self._trace_lock:                   # one trace per signature, whichever worker asks
            net = self._traced.get(key, _NOT_YET)
            if net is _NOT_YET:
                if not self.trace or len(self._traced) >= MAX_TRACES:
                    return None                  # (a trace's memory is never given back: see above)
                self._eligible += 1
                seen = self._sightings[key] = self._sightings.get(key, 0) + 1
                if self._eligible <= self.trace_after or seen < min(2, self.trace_after + 1):
                    return None
                net = self._traced[key] = self._trace(x)
                release_freed_memory()
        return net

    def _trace(self, x: dict) -> Callable | None:
        model = self.model
        before = model.__dict__.get("_jit_is_scripting")
        flat = _flatten(x)
        network = _FlatNetwork(model, _layout(x))
        try:
            # tracing reads every attribute of every module; a LightningModule's `trainer`
            # raises when no Trainer is attached, unless it is being scripted
            model._jit_is_scripting = True
            with torch.inference_mode(False), torch.no_grad(), torch.jit.optimized_execution(False):
                net = _Traced(torch.jit.trace(network, flat, strict=False, check_trace=False))
            got = net(*flat)
        except Exception as exc:  # noqa: BLE001 - a torch without (working) tracing: run the network as it is
            self.trace = False
            self.trace_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
            return None
        finally:
            if before is None:
                model.__dict__.pop("_jit_is_scripting", None)
            else:
                model._jit_is_scripting = before
        want = network(*flat)
        if len(got) != len(want) or not all(_same(a, b) for a, b in zip(got, want)):
            return None                          # not the same numbers: this signature runs untraced
        return net

    def _importance_dicts(self, importance: np.ndarray | None) -> list[dict[str, float]] | None:
        if importance is None:
            return None
        names = self.encoder_variables
        return [dict(zip(names, row)) for row in importance.tolist()]      # tolist: Python floats

    @staticmethod
    def _mean_encoder_weights(out: dict, lens: torch.Tensor) -> torch.Tensor:
        """(b, V) each window's encoder variable weights, averaged over its valid steps."""
        w = out["encoder_variables"].squeeze(-2)                                # (b, T, V)
        mask = torch.arange(w.size(1), device=w.device)[None, :] < lens[:, None]
        return (w * mask[:, :, None]).sum(dim=1) / lens[:, None].to(w.dtype)

    def _predict_on_device(self, v32: np.ndarray, lengths: np.ndarray, last_epoch: np.ndarray,
                           codes: np.ndarray, normalised: np.ndarray, with_importance: bool,
                           day: tuple[np.ndarray, np.ndarray] | None = None) -> FastForecast:
        """The whole fleet on the model's device: the windows go up once, every batch's inputs
        are built there (engine.device_inputs), the forwards are queued back to back (on CUDA
        the host does not wait for one before launching the next), calibration runs there, and
        one copy per target brings the quantiles back."""
        dev = self.device
        cuda = dev.startswith("cuda")
        n = len(lengths)

        def up(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(a))
            return t.pin_memory().to(dev, non_blocking=True) if cuda else t

        config = self.config
        shared_end = bool(n) and bool((last_epoch == last_epoch[0]).all())
        with torch.inference_mode():
            v = up(v32)
            lens = up(lengths)
            ends = up(last_epoch)
            cats = up(codes)
            if day is not None:
                day = tuple(up(a) for a in day)
            preds: dict[str, list[torch.Tensor]] = {m: [] for m in self.targets}
            weights: list[torch.Tensor] = []
            for sl in even_batches(n, self.batch_size):
                x = batch_inputs(self, v[sl], lengths[sl], ends[sl], cats[sl], shared_end,
                                 None if day is None else (day[0][sl], day[1][sl]))
                out = self.model(x)
                pred = out["prediction"]
                if not isinstance(pred, (list, tuple)):
                    pred = [pred]
                for m, p in zip(self.targets, pred):
                    preds[m].append(p.float())
                if with_importance:
                    weights.append(self._mean_encoder_weights(out, x["encoder_lengths"]))
            rows = up(self._tables.group_index(normalised))
            raws = [torch.cat(preds[m]) for m in self.targets]
            cal = [self._tables.apply(m, raws[j], window_scale_t(v[:, :, self._metric_pos[j]], lens,
                                                                   config.min_scale[m]), rows)
                   for j, m in enumerate(self.targets)]
            # one copy back per dtype, into page-locked memory on CUDA (a pageable copy of the
            # 10,000-server result ran at a few GB/s)
            q_host = down(torch.stack(cal, dim=1), cuda)                     # (n, T, H, Q)
            imp_host = down(torch.cat(weights).double(), cuda) if with_importance else None
        raw_dev = torch.stack(raws)
        targets = self.targets

        def fetch_raw() -> dict[str, np.ndarray]:
            r_host = raw_dev.cpu().numpy()
            return {m: r_host[j].astype(np.float64) for j, m in enumerate(targets)}

        return FastForecast(q_host, targets, fetch_raw, self._importance_dicts(imp_host))

