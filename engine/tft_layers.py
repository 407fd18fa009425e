"""Small extensions of pytorch-forecasting pieces that the TFT config refers to by name."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_forecasting import TimeSeriesDataSet
from pytorch_forecasting.data import EncoderNormalizer
from pytorch_forecasting.metrics import QuantileLoss

from engine.tft_model import day_ago_feature


CENTERS = ("mean", "last")


class FlooredEncoderNormalizer(EncoderNormalizer):
    """Per-window (encoder) standard scaling whose scale never falls below ``min_scale``.

    A flat encoder window would otherwise give a scale of ~1e-3 and a band of zero
    width; the floor is in the metric's own unit (e.g. 1 percentage point of CPU).

    ``center_on``: "mean" (the library's: the encoder's mean) or "last" (the encoder's
    last value).  The network's output is de-normalised as ``out * scale + center``;
    centred on the mean, the network pulls a window far from its centre back towards
    the day's mean (most likely because its variable selection layer-normalises every
    input, so a large deviation and a larger one look alike): a server at 80 % for four
    hours after twenty at 10 % was forecast at 41 % five minutes ahead.  Centred on the
    last value, the same pull is towards where the server is now.
    """

    def __init__(self, min_scale: float = 1.0, method: str = "standard", center_on: str = "mean", **kwargs):
        if center_on not in CENTERS:
            raise ValueError(f"center_on must be one of {CENTERS}, got {center_on!r}")
        super().__init__(method=method, **kwargs)
        self.min_scale = float(min_scale)
        self.center_on = center_on

    def _set_parameters(self, y_center, y_scale):
        super()._set_parameters(y_center=y_center, y_scale=y_scale)
        if self.center_on == "last":
            last = y_center[..., -1]
            if isinstance(self.center_, torch.Tensor):
                self.center_ = torch.as_tensor(last, dtype=self.center_.dtype)
            else:
                self.center_ = np.array(last, dtype=np.asarray(self.center_).dtype)   # a copy: y may be read-only
        if isinstance(self.scale_, torch.Tensor):
            self.scale_ = self.scale_.clamp(min=self.min_scale)
        else:
            self.scale_ = np.maximum(self.scale_, np.asarray(self.min_scale, dtype=np.asarray(self.scale_).dtype))


class TargetQuantileLoss(QuantileLoss):
    """QuantileLoss that applies the dataset's sample weight only when ``use_weight``.

    pytorch-forecasting has one weight per sample for all targets; we use it as the
    disk-target mask (traces without a disk column get weight 0), so only the disk
    loss reads it and the other targets ignore it.
    """

    def __init__(self, quantiles=None, use_weight: bool = False, **kwargs):
        super().__init__(quantiles=quantiles, **kwargs)
        self.use_weight = use_weight

    def update(self, y_pred, target):
        if not self.use_weight and isinstance(target, (list, tuple)):
            target = target[0]
        super().update(y_pred, target)


class DayAgoDataSet(TimeSeriesDataSet):
    """TimeSeriesDataSet whose "same time yesterday" inputs (``<target>_day_ago``, raw in
    the frame) are scaled as their target is in each window: ``(x - center) / scale`` with
    the target's encoder centre and scale, so yesterday's value and today's history are
    on one scale (a scaler of the library's own would fit the lagged column's own window).
    Every other part of a sample is the library's."""

    def __getitem__(self, idx: int):
        x, y = super().__getitem__(idx)
        for i, target in enumerate(self.target_names):
            name = day_ago_feature(target)
            if name in self.reals:
                pos = self.reals.index(name)
                center, scale = torch.as_tensor(np.asarray(x["target_scale"][i]), dtype=torch.float32)
                x["x_cont"][:, pos] = (x["x_cont"][:, pos] - center) / scale
        return x, y
