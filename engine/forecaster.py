"""Fleet forecasting: the TFT where it can answer, the heuristic where it cannot, labelled.

Every server's forecast carries its ``source`` ("tft" or "heuristic") and, for the
heuristic, why: no model (and the loader's one-line reason), or too little history for
the model.  ``model_type`` is "TFT" only when every server came from the TFT.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.contract import METRICS
from engine.heuristic import REASON_MODEL_ERROR, heuristic_forecast_batch, heuristic_reason
from engine.store import FleetWindows, right_aligned

QUANTILES = (0.1, 0.5, 0.9)
HORIZON = 96


def default_torch_threads() -> int | None:
    """One intra-op thread: the cores are used by running whole batches side by side
    (``default_workers``) instead.  torch's own intra-op threads stall for seconds in their
    barriers as soon as anything else runs (measured: 48 servers took 0.17 s on one thread,
    up to 6 s on two on this 2-core machine with one other busy process); independent
    batches on separate threads have no barrier to wait at.  None (torch's own choice)
    when OMP_NUM_THREADS is set."""
    import os

    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return 1


def default_workers() -> int:
    """Threads that run TFT batches side by side on a CPU: one per core (at most 8), or
    one when OMP_NUM_THREADS says how torch should use the cores."""
    import os

    if os.environ.get("OMP_NUM_THREADS"):
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a CUDA device is present, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from engine.tft_model import DeviceError

        raise DeviceError(NO_CUDA)
    return device


NO_CUDA = "--device cuda: no CUDA device is available here (use --device cpu or auto)"


@dataclass
class FleetForecast:
    names: list[str]
    quantiles: dict[str, np.ndarray]       # metric -> (n, H, 3)
    source: list[str]                      # "tft" | "heuristic"
    reason: list[str | None]
    importance: list[dict[str, float] | None]
    block: np.ndarray | None = None         # (n, M, H, 3) in METRICS order, when quantiles are views of it

    def stacked(self) -> np.ndarray:
        """All quantiles as one (n, M, H, 3) array in METRICS order (no copy where possible)."""
        if self.block is not None:
            return self.block
        return np.stack([np.asarray(self.quantiles[m], dtype=np.float64) for m in METRICS], axis=1)

    @property
    def model_type(self) -> str:
        kinds = set(self.source)
        if kinds == {"tft"}:
            return "TFT"
        if "tft" in kinds:
            return "mixed"
        return "heuristic"


class Forecaster:
    """Loads the model once, then forecasts whole fleets from window-store snapshots."""

    def __init__(self, model_dir: Path | str | None, device: str = "auto", batch_size: int | None = None):
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.requested_device = device
        self.device = "cpu"
        self.batch_size = batch_size
        self.fast = None
        self.model_reason: str | None = "model not loaded yet"
        self.horizon = HORIZON
        self.quantiles = QUANTILES
        self.min_history = 1
        self.capacity = 0
        self.calibrated: bool | None = None     # whether every target's bands are calibrated (None: no model)
        self.uncalibrated: list[str] = []       # the targets whose bands are not

    def load(self) -> None:
        """Load the model; on any failure keep going on the heuristic and remember why."""
        from engine.tft_model import ModelLoadError, load_model_dir

        if self.model_dir is None:
            self.model_reason = "no model directory found under models/"
            return
        try:
            self.device = resolve_device(self.requested_device)
        except ValueError as exc:           # --device cuda without one: the message says it all
            self.model_reason = str(exc)
            return
        try:
            threads = default_torch_threads()
            if threads:
                import torch

                torch.set_num_threads(threads)
            loaded = load_model_dir(self.model_dir, device=self.device)
            from engine.fast_tft import FastTFT

            self.fast = FastTFT(loaded, device=self.device, batch_size=self.batch_size,
                                workers=default_workers())
        except ModelLoadError as exc:
            self.model_reason = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: run on the heuristic, say why
            self.model_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            return
        config = loaded.config
        # (a config.json without a calibration gives the raw bands; a fit leaves out a metric
        # with no usable window, e.g. a disk flat in every calibration window)
        tables = (config.calibration or {}).get("lower") or {}
        self.uncalibrated = [m for m in config.targets if m not in tables]
        self.calibrated = not self.uncalibrated
        self.model_reason = None
        self.horizon = config.max_prediction_length
        self.quantiles = tuple(config.quantiles)
        self.min_history = config.min_encoder_length
        self.capacity = config.history_length     # the encoder, and a day more for a day_ago model

    @property
    def loaded(self) -> bool:
        return self.fast is not None

    def forecast(self, windows: FleetWindows, with_importance: bool = False) -> FleetForecast:
        n = len(windows.names)
        M = len(METRICS)
        block = None        # (n, M, H, 3), METRICS order; every quantiles[m] is a view of it
        source = ["heuristic"] * n
        reason: list[str | None] = [None] * n
        importance: list[dict[str, float] | None] = [None] * n
        use_tft = np.zeros(n, dtype=bool)
        if self.fast is not None:
            use_tft = windows.lengths >= self.min_history
        tft_idx = np.flatnonzero(use_tft)
        whole = len(tft_idx) == n
        failure = None
        non_finite: set[int] = set()
        if len(tft_idx):
            L = self.capacity  # the model reads the newest history_length samples
            values = right_aligned(windows.values, L)     # (a store narrower than the model's history: padded)
            try:
                rows = slice(None) if whole else tft_idx      # the whole fleet: views, no copies
                out = self.fast.predict(values[rows], np.minimum(windows.lengths[rows], L),
                                        windows.last_epoch[rows],
                                        windows.profiles if whole else [windows.profiles[i] for i in tft_idx],
                                        with_importance=with_importance)
            except Exception as exc:  # noqa: BLE001 - a model failing at run time: fall back, say why
                failure = f"{REASON_MODEL_ERROR}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                use_tft[:] = False
            else:
                if whole and tuple(self.fast.targets) == tuple(METRICS):
                    block = out.block
                else:
                    block = np.zeros((n, M, self.horizon, len(self.quantiles)))
                    for j, m in enumerate(METRICS):
                        block[tft_idx, j] = out.quantiles[m]
                # a window the network cannot answer (NaN, inf) goes to the heuristic, said so: a
                # NaN would otherwise reach the risk (a NaN step hides a crossing at another)
                broken = ~np.isfinite(block[tft_idx]).all(axis=(1, 2, 3))
                if whole and not broken.any():
                    source = ["tft"] * n
                    if out.importance is not None:
                        importance = list(out.importance)
                else:
                    for k, i in enumerate(tft_idx):        # out's rows are tft_idx's, in order
                        if broken[k]:
                            use_tft[i] = False
                            non_finite.add(int(i))
                            continue
                        source[i] = "tft"
                        if out.importance is not None:
                            importance[i] = out.importance[k]
        if block is None:
            block = np.zeros((n, M, self.horizon, len(self.quantiles)))
        heur_idx = np.flatnonzero(~use_tft)
        if len(heur_idx):
            for j, m in enumerate(METRICS):
                block[heur_idx, j] = heuristic_forecast_batch(
                    windows.values[heur_idx, :, j], windows.lengths[heur_idx], self.horizon, self.quantiles, m)
            for i in heur_idx:
                if failure is not None:
                    reason[i] = failure
                elif i in non_finite:
                    reason[i] = f"{REASON_MODEL_ERROR}: non-finite forecast for this window"
                elif self.fast is None:
                    reason[i] = f"no model: {self.model_reason}"
                else:
                    gap = 0 if windows.gap_before is None else int(windows.gap_before[i])
                    reason[i] = heuristic_reason(int(windows.lengths[i]), self.min_history, gap)
        quantiles = {m: block[:, j] for j, m in enumerate(METRICS)}
        return FleetForecast(names=list(windows.names), quantiles=quantiles, source=source, reason=reason,
                             importance=importance, block=block)
