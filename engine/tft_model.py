"""The TFT and its model directory: the one place that defines both.

A model directory ``tft_model_<UTC stamp>/`` holds

- ``model.safetensors`` -- the weights (tensors only: loading them cannot run code);
- ``config.json``        -- everything needed to rebuild the architecture and the data
  preparation without the training data and without pickle;
- ``training_metadata.json`` -- what the model was trained on, how, and how it scored.

The TFT's inputs are only what real collectors provide: the four metrics (normalised
per encoder window, plus a fixed-scale "level" copy so the model still knows whether
a disk is at 20 % or at 90 %), time features computed from the timestamp (known for
future steps too) and the optional profile.  No server id is an input, and nothing is
fitted per server, so the model forecasts servers it has never seen.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from engine.contract import METRICS, PERCENT_METRICS, STEP_SECONDS, UNKNOWN_PROFILE, reason_line
# the directory's names, and finding the newest, live in engine.model_dir (no torch there)
from engine.model_dir import CONFIG_FILE, METADATA_FILE, MODEL_DIR_PREFIX, WEIGHTS_FILE, find_latest_model  # noqa: F401

FORMAT_NAME = "tft-top-model"
FORMAT_VERSION = 1

TIME_FEATURES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
QUANTILES = (0.1, 0.5, 0.9)
# Per-window scale floor (in each metric's own unit): a flat encoder window must
# still give a band of non-zero width.
DEFAULT_MIN_SCALE = {"cpu_percent": 1.0, "memory_percent": 0.5, "disk_percent": 0.25, "load_average": 0.05}
# Valid range of each target; forecasts are clipped to it.
TARGET_RANGE = {m: (0.0, 100.0) for m in PERCENT_METRICS} | {"load_average": (0.0, math.inf)}
GROUP_COLUMN = "series"          # server + segment: one continuous window series
TIME_IDX = "time_idx"            # 5-minute steps since the Unix epoch
WEIGHT_COLUMN = "disk_weight"    # 0 where a row's disk column carries no information
# "Same time yesterday": each target's value DAY_STEPS steps before every encoder and
# decoder step, a known-in-advance input (the horizon is shorter than a day), normalised
# with the target's own window scaling; DAY_KNOWN is 1 where that value exists, 0 where
# the series is younger than a day there (the input then holds the series' first value).
DAY_STEPS = 86400 // STEP_SECONDS
DAY_KNOWN = "day_ago_known"


class DeviceError(ValueError):
    """The device asked for (--device cuda) is not here."""


class ModelLoadError(Exception):
    """A model directory that cannot be used; the message is one line saying why."""


def level_feature(metric: str) -> str:
    return f"{metric}_level"


def day_ago_feature(metric: str) -> str:
    return f"{metric}_day_ago"


def level_values(metric: str, values: np.ndarray) -> np.ndarray:
    """Fixed-scale copy of a metric (no fitted state): percent/100, load as log1p/4."""
    values = np.asarray(values, dtype=np.float64)
    if metric == "load_average":
        return np.log1p(np.maximum(values, 0.0)) / 4.0
    return values / 100.0


def time_features(epoch_seconds: np.ndarray) -> dict[str, np.ndarray]:
    """Hour-of-day and day-of-week as sin/cos pairs, from UTC epoch seconds."""
    t = np.asarray(epoch_seconds, dtype=np.float64)
    day = (t % 86400.0) / 86400.0
    # 1970-01-01 was a Thursday: shift so that Monday 00:00 is 0.
    week = ((t / 86400.0 + 3.0) % 7.0) / 7.0
    two_pi = 2.0 * np.pi
    return {
        "hour_sin": np.sin(two_pi * day),
        "hour_cos": np.cos(two_pi * day),
        "dow_sin": np.sin(two_pi * week),
        "dow_cos": np.cos(two_pi * week),
    }


def normalise_profile(values: pd.Series) -> pd.Series:
    out = values.astype("string").str.strip().str.lower().fillna(UNKNOWN_PROFILE)
    return out.mask(out == "", UNKNOWN_PROFILE).astype(str)


@dataclass
class ModelConfig:
    """Everything in config.json.  ``to_json``/``from_json`` are exact inverses."""

    targets: tuple[str, ...] = METRICS
    quantiles: tuple[float, ...] = QUANTILES
    max_encoder_length: int = 288
    min_encoder_length: int = 36
    max_prediction_length: int = 96
    step_seconds: int = STEP_SECONDS
    profile_vocab: tuple[str, ...] = (UNKNOWN_PROFILE,)
    normalizer_method: str = "standard"
    normalizer_center: str = "last"      # "mean" | "last" (engine.tft_layers.FlooredEncoderNormalizer); config.json without it: "mean"
    min_scale: dict[str, float] | None = None
    hidden_size: int = 32
    attention_head_size: int = 2
    dropout: float = 0.1
    hidden_continuous_size: int = 16
    lstm_layers: int = 1
    learning_rate: float = 3e-3
    loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 5.0)
    # Conformal band adjustment, per target, per horizon bucket, in units of the
    # window scale (see engine.calibration).  None: not calibrated.
    calibration: dict[str, Any] | None = None
    # Read each target's value a day earlier (DAY_STEPS) as a known input; config.json
    # without it: False.
    day_ago: bool = False

    def __post_init__(self) -> None:
        if self.min_scale is None:
            self.min_scale = dict(DEFAULT_MIN_SCALE)
        if self.day_ago and self.max_prediction_length > DAY_STEPS:
            raise ValueError(f"day_ago needs a horizon of at most {DAY_STEPS} steps, not {self.max_prediction_length}")

    # -- features ---------------------------------------------------------------
    @property
    def unknown_reals(self) -> list[str]:
        return list(self.targets) + [level_feature(m) for m in self.targets]

    @property
    def known_reals(self) -> list[str]:
        day = [day_ago_feature(m) for m in self.targets] + [DAY_KNOWN] if self.day_ago else []
        return list(TIME_FEATURES) + day

    @property
    def history_length(self) -> int:
        """Samples of a server's history the model reads: the encoder, plus a day before
        it when it reads the same time yesterday."""
        return self.max_encoder_length + (DAY_STEPS if self.day_ago else 0)

    # -- (de)serialisation -------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "targets": list(self.targets),
            "quantiles": list(self.quantiles),
            "lengths": {
                "max_encoder_length": self.max_encoder_length,
                "min_encoder_length": self.min_encoder_length,
                "max_prediction_length": self.max_prediction_length,
                "step_seconds": self.step_seconds,
            },
            "features": {
                "static_categoricals": ["profile"],
                "time_varying_known_reals": self.known_reals,
                "time_varying_unknown_reals": self.unknown_reals,
                "add_relative_time_idx": True,
                "add_encoder_length": True,
                "add_target_scales": False,
                "level_features": "percent metrics / 100; load_average: log1p(load) / 4",
                "time_features": "UTC hour-of-day and day-of-week (Monday 00:00 = 0) as sin/cos",
                "day_ago": self.day_ago,
                "day_ago_features": (f"each target {DAY_STEPS} steps earlier, scaled as the target in its window; "
                                     f"{DAY_KNOWN}: 1 where that step exists, else 0 and the series' first value"
                                     if self.day_ago else None),
            },
            "categorical_vocabularies": {"profile": list(self.profile_vocab)},
            "normalizer": {
                "kind": "per-window (encoder) standard scaling with a scale floor",
                "method": self.normalizer_method,
                "center": self.normalizer_center,
                "min_scale": dict(self.min_scale),
            },
            "hyperparameters": {
                "hidden_size": self.hidden_size,
                "attention_head_size": self.attention_head_size,
                "dropout": self.dropout,
                "hidden_continuous_size": self.hidden_continuous_size,
                "lstm_layers": self.lstm_layers,
                "learning_rate": self.learning_rate,
                "loss_weights": list(self.loss_weights),
            },
            "calibration": self.calibration,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = CONFIG_FILE) -> "ModelConfig":
        """``where``: the file named in a refusal (read_config gives its path)."""
        if data.get("format") != FORMAT_NAME:
            raise ModelLoadError(f"{where}: format is {data.get('format')!r}, expected {FORMAT_NAME!r}")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version != FORMAT_VERSION:
            raise ModelLoadError(
                f"{where}: format_version {data.get('format_version')!r} is not supported (this tft-top reads {FORMAT_VERSION})"
            )
        try:
            lengths, hp = data["lengths"], data["hyperparameters"]
            config = cls(
                targets=tuple(data["targets"]),
                quantiles=tuple(float(q) for q in data["quantiles"]),
                max_encoder_length=int(lengths["max_encoder_length"]),
                min_encoder_length=int(lengths["min_encoder_length"]),
                max_prediction_length=int(lengths["max_prediction_length"]),
                step_seconds=int(lengths["step_seconds"]),
                profile_vocab=tuple(data["categorical_vocabularies"]["profile"]),
                normalizer_method=data["normalizer"]["method"],
                normalizer_center=_center(data["normalizer"].get("center", "mean")),
                min_scale={k: float(v) for k, v in data["normalizer"]["min_scale"].items()},
                hidden_size=int(hp["hidden_size"]),
                attention_head_size=int(hp["attention_head_size"]),
                dropout=float(hp["dropout"]),
                hidden_continuous_size=int(hp["hidden_continuous_size"]),
                lstm_layers=int(hp["lstm_layers"]),
                learning_rate=float(hp["learning_rate"]),
                loss_weights=tuple(float(w) for w in hp["loss_weights"]),
                calibration=data.get("calibration"),
                day_ago=_flag(data["features"].get("day_ago", False)),
            )
            _check_values(config, lengths, hp, data)
            return config
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ModelLoadError(f"{where}: missing or invalid field ({type(exc).__name__}: {exc})") from None


MAX_ENCODER_LENGTH = 8_640    # a month of 5-minute steps
MAX_HORIZON = 288             # a day (the product forecasts 8 h)
MAX_VOCABULARY = 10_000       # profile names, calibration groups
MAX_HIDDEN_SIZE = 1024        # (the shipped model: 32; 1024 is 53 M parameters)


def _check_values(config: "ModelConfig", lengths: dict, hp: dict, data: dict) -> None:
    """Values the types alone do not check: a config that loads must describe a model this
    engine can run as trained (swapped quantiles or a string vocabulary would load and
    forecast garbage).  Raises ValueError naming the field."""
    def whole(value: Any, name: str, lo: int, hi: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{name} {value!r} is not a whole number in {lo}..{hi}")

    def finite(value: Any, name: str, lo: float = -math.inf, positive: bool = False) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < lo or (positive and value <= 0):
            raise ValueError(f"{name} {value!r} is not a finite number{' > 0' if positive else ''}")

    targets = data["targets"]
    if not isinstance(targets, list) or not targets or len(set(targets)) != len(targets) \
            or any(t not in METRICS for t in targets):
        raise ValueError(f"targets {targets!r} must be distinct names from {list(METRICS)}")
    if [float(q) for q in data["quantiles"]] != list(QUANTILES):
        raise ValueError(f"quantiles {data['quantiles']!r} must be {list(QUANTILES)}")
    # an encoder of one step has no spread to normalise by; one over a month or a horizon
    # over a day is not a model of this project (and costs minutes and gigabytes per tick)
    whole(lengths["max_encoder_length"], "lengths.max_encoder_length", 2, MAX_ENCODER_LENGTH)
    whole(lengths["min_encoder_length"], "lengths.min_encoder_length", 2, lengths["max_encoder_length"])
    whole(lengths["max_prediction_length"], "lengths.max_prediction_length", 1, MAX_HORIZON)
    whole(lengths["step_seconds"], "lengths.step_seconds", STEP_SECONDS, STEP_SECONDS)
    vocab = data["categorical_vocabularies"]["profile"]
    if not isinstance(vocab, list) or not vocab or len(vocab) > MAX_VOCABULARY or len(set(vocab)) != len(vocab) \
            or not all(isinstance(v, str) and v for v in vocab):
        raise ValueError(f"categorical_vocabularies.profile must be a list of at most {MAX_VOCABULARY} distinct "
                         "non-empty names")
    if config.normalizer_method != "standard":
        raise ValueError(f"normalizer.method {config.normalizer_method!r} is not 'standard'")
    for m in config.targets:
        finite(data["normalizer"]["min_scale"].get(m), f"normalizer.min_scale.{m}", positive=True)
    for name, most in (("hidden_size", MAX_HIDDEN_SIZE), ("attention_head_size", 64),
                       ("hidden_continuous_size", MAX_HIDDEN_SIZE),
                       ("lstm_layers", 16)):       # (the shipped model: 32, 2, 16, 1)
        whole(hp[name], f"hyperparameters.{name}", 1, most)
    finite(hp["dropout"], "hyperparameters.dropout", 0.0)
    finite(hp["learning_rate"], "hyperparameters.learning_rate", positive=True)   # (a warm start trains with it)
    if not hp["dropout"] < 1:
        raise ValueError(f"hyperparameters.dropout {hp['dropout']!r} is not below 1")
    weights = hp["loss_weights"]
    if not isinstance(weights, list) or len(weights) != len(config.targets):
        raise ValueError(f"hyperparameters.loss_weights must list one weight per target")
    for w in weights:
        finite(w, "hyperparameters.loss_weights", 0.0)
    _check_calibration(config.calibration, config.targets, whole, finite, lengths["max_prediction_length"])


# A calibration adjustment moves a band edge by this many window standard deviations at
# most (the shipped model's are within -0.42..1.56).  A larger one in config.json is a
# typo or a tampered file (the calibration is outside the weights' config hash), and would
# turn every band into [0, 100] without a word; fitting clips to it (engine.calibration).
MAX_CALIBRATION_STD = 100.0


def _check_calibration(cal: Any, targets, whole, finite, horizon: int) -> None:
    """engine.calibration's tables: per target, one finite adjustment per horizon bucket."""
    if cal is None:
        return
    if not isinstance(cal, dict):
        raise ValueError("calibration must be an object or null")
    whole(cal.get("bucket_steps"), "calibration.bucket_steps", 1, horizon)
    buckets = -(-horizon // cal["bucket_steps"])
    groups = cal.get("groups") or {}
    if not isinstance(groups, dict) or len(groups) > MAX_VOCABULARY:
        raise ValueError(f"calibration.groups must be an object of at most {MAX_VOCABULARY} groups")

    def tables(part: Any, where: str) -> None:
        if not isinstance(part, dict):
            raise ValueError(f"{where} must be an object")
        lower, upper = part.get("lower"), part.get("upper")
        if not isinstance(lower, dict) or not isinstance(upper, dict) or set(lower) != set(upper):
            raise ValueError(f"{where}: lower and upper must name the same targets")
        for m in lower:
            if m not in targets:
                raise ValueError(f"{where}: {m!r} is not a target")
            lo, hi = lower[m], upper[m]
            if not isinstance(lo, list) or not isinstance(hi, list) or len(lo) != buckets or len(hi) != buckets:
                # (a shorter table crashed every tick with an IndexError)
                raise ValueError(f"{where}.{m}: lower and upper must each list {buckets} values, one per "
                                 f"{cal['bucket_steps']}-step bucket of the horizon")
            for v in lo + hi:
                finite(v, f"{where}.{m}")
                if abs(v) > MAX_CALIBRATION_STD:
                    raise ValueError(f"{where}.{m}: {v!r} moves the band by more than "
                                     f"{MAX_CALIBRATION_STD:g} window standard deviations")

    tables(cal, "calibration")
    for g, part in groups.items():
        tables(part, f"calibration.groups.{g}")
    # the counts calibrate weighs a new fit against ("many" loaded, then crashed calibrate)
    if cal.get("fitted_on_windows") is not None:
        whole(cal["fitted_on_windows"], "calibration.fitted_on_windows", 0, 10**12)
    for g, part in groups.items():
        if part.get("windows") is not None:
            whole(part["windows"], f"calibration.groups.{g}.windows", 0, 10**12)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"features.day_ago {value!r} is not true or false")
    return value


def _center(value: Any) -> str:
    from engine.tft_layers import CENTERS

    if value not in CENTERS:
        raise ValueError(f"normalizer.center {value!r} is not one of {CENTERS}")
    return value


# -- data preparation -------------------------------------------------------------

def prepare_frame(grid: pd.DataFrame, disk_informative: pd.Series | None = None) -> pd.DataFrame:
    """Add what the TFT reads to a 5-minute grid frame (see ``engine.contract.to_grid``).

    ``disk_informative``: optional per-server bool (index server_name); servers whose
    disk column carries no information get ``disk_weight`` 0 so training ignores it.
    """
    frame = grid.copy()
    seconds = frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy()
    frame[TIME_IDX] = (seconds // STEP_SECONDS).astype(np.int64)
    segment = frame["segment"] if "segment" in frame else 0
    frame[GROUP_COLUMN] = frame["server_name"].astype(str) + "#" + pd.Series(segment, index=frame.index).astype(str)
    for name, values in time_features(seconds).items():
        frame[name] = values.astype(np.float32)
    for metric in METRICS:
        frame[metric] = frame[metric].astype(np.float32)
        frame[level_feature(metric)] = level_values(metric, frame[metric].to_numpy()).astype(np.float32)
    _add_day_ago(frame)
    frame["profile"] = normalise_profile(frame["profile"])
    weight = np.ones(len(frame), dtype=np.float32)
    if disk_informative is not None:
        flags = frame["server_name"].map(disk_informative).fillna(True).astype(bool).to_numpy()
        weight[~flags] = 0.0
    frame[WEIGHT_COLUMN] = weight
    return frame


def _add_day_ago(frame: pd.DataFrame) -> None:
    """Each metric's value DAY_STEPS steps earlier in the same series (``day_ago_feature``)
    and DAY_KNOWN; where the series has no such step, the series' first value and 0."""
    n = len(frame)
    codes = pd.factorize(frame[GROUP_COLUMN])[0].astype(np.int64)
    t = frame[TIME_IDX].to_numpy(dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    src = np.zeros(n, dtype=np.int64)
    if n:
        t0 = t.min()
        order = np.lexsort((t, codes))
        span = int(t.max() - t0) + DAY_STEPS + 1
        keys = codes[order] * span + (t[order] - t0)
        want = codes * span + (t - t0 - DAY_STEPS)
        at = np.minimum(np.searchsorted(keys, want), n - 1)
        found = keys[at] == want
        first = order[np.unique(codes[order], return_index=True)[1]]      # each series' earliest row
        src = np.where(found, order[at], first[codes])
    for metric in METRICS:
        frame[day_ago_feature(metric)] = frame[metric].to_numpy(dtype=np.float32)[src]
    frame[DAY_KNOWN] = found.astype(np.float32)


def _normalizers(config: ModelConfig):
    from pytorch_forecasting.data import MultiNormalizer

    from engine.tft_layers import FlooredEncoderNormalizer

    return MultiNormalizer(
        [FlooredEncoderNormalizer(min_scale=config.min_scale[t], method=config.normalizer_method,
                                 center_on=config.normalizer_center) for t in config.targets]
    )


def profile_encoder(config: ModelConfig):
    from pytorch_forecasting.data.encoders import NaNLabelEncoder

    return NaNLabelEncoder(add_nan=True, warn=False).fit(pd.Series(sorted(config.profile_vocab)))


def build_dataset(config: ModelConfig, frame: pd.DataFrame, *, predict: bool = False,
                  weighted: bool = False, min_prediction_idx: int | None = None, **kwargs):
    """A TimeSeriesDataSet over ``prepare_frame`` output, fully determined by the config."""
    from pytorch_forecasting import TimeSeriesDataSet

    from engine.tft_layers import DayAgoDataSet

    reals = config.unknown_reals + config.known_reals
    return (DayAgoDataSet if config.day_ago else TimeSeriesDataSet)(
        frame,
        time_idx=TIME_IDX,
        target=list(config.targets),
        group_ids=[GROUP_COLUMN],
        weight=WEIGHT_COLUMN if weighted else None,
        max_encoder_length=config.max_encoder_length,
        min_encoder_length=config.min_encoder_length,
        max_prediction_length=config.max_prediction_length,
        min_prediction_length=config.max_prediction_length,
        static_categoricals=["profile"],
        time_varying_known_reals=config.known_reals,
        time_varying_unknown_reals=config.unknown_reals,
        target_normalizer=_normalizers(config),
        categorical_encoders={"profile": profile_encoder(config)},
        scalers={name: None for name in reals if name not in config.targets},
        add_relative_time_idx=True,
        add_encoder_length=True,
        add_target_scales=False,
        predict_mode=predict,
        min_prediction_idx=min_prediction_idx,
        **kwargs,
    )


def dummy_frame(config: ModelConfig) -> pd.DataFrame:
    """A tiny synthetic grid frame: enough for TimeSeriesDataSet to describe the inputs."""
    n = config.max_encoder_length + config.max_prediction_length
    ts = pd.date_range("2024-01-01", periods=n, freq=f"{config.step_seconds}s", tz="UTC")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"server_name": "dummy", "timestamp": ts, "profile": config.profile_vocab[0], "segment": 0})
    for metric in config.targets:
        frame[metric] = rng.uniform(10, 20, n)
    return prepare_frame(frame)


def build_model(config: ModelConfig, dataset=None):
    """Build the (untrained) TFT architecture from the config alone."""
    from pytorch_forecasting import TemporalFusionTransformer
    from pytorch_forecasting.metrics import MultiLoss

    from engine.tft_layers import TargetQuantileLoss

    if dataset is None:
        dataset = build_dataset(config, dummy_frame(config))
    loss = MultiLoss(
        [TargetQuantileLoss(quantiles=list(config.quantiles), use_weight=(t == "disk_percent")) for t in config.targets],
        weights=list(config.loss_weights),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TemporalFusionTransformer.from_dataset(
            dataset,
            hidden_size=config.hidden_size,
            attention_head_size=config.attention_head_size,
            dropout=config.dropout,
            hidden_continuous_size=config.hidden_continuous_size,
            lstm_layers=config.lstm_layers,
            learning_rate=config.learning_rate,
            output_size=[len(config.quantiles)] * len(config.targets),
            loss=loss,
            log_interval=-1,
            reduce_on_plateau_patience=3,
        )
    return model


# -- model directory I/O ------------------------------------------------------------

def utc_stamp(now: pd.Timestamp | None = None) -> str:
    now = now or pd.Timestamp.now(tz="UTC")
    return now.strftime("%Y%m%dT%H%M%SZ")


def save_model_dir(model, config: ModelConfig, metadata: dict[str, Any], out_root: Path,
                   stamp: str | None = None) -> Path:
    from safetensors.torch import save_model

    import shutil

    # written under a hidden name and renamed when complete: an interrupted write never
    # becomes the newest model (find_latest_model).  Creating the hidden directory claims the
    # name; a name taken (two runs in one second) moves the stamp on a second, unless the
    # caller gave the stamp.
    when = pd.Timestamp.now(tz="UTC")
    for attempt in range(1 if stamp else 120):
        name = stamp or utc_stamp(when + pd.Timedelta(seconds=attempt))
        out = Path(out_root) / f"{MODEL_DIR_PREFIX}{name}"
        partial = out.with_name(f".{out.name}.partial")
        if out.exists():
            continue
        try:
            partial.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            continue
        break
    else:
        taken = out if out.exists() else partial      # (a hidden one left by an earlier run)
        raise FileExistsError(f"{taken} exists already")
    try:
        save_model(model, str(partial / WEIGHTS_FILE), metadata={FINGERPRINT_KEY: config_fingerprint(config)})
        stamp_fingerprint(partial, config)          # + the tensors' checksum, over what was stored
        _readable_as_umask(partial / WEIGHTS_FILE)
        # the calibration and the metadata name the weights they were made with (the caller's
        # metadata dict gains it too: a later write_metadata of it keeps it)
        digest = _recorded(partial / WEIGHTS_FILE)[TENSORS_KEY]
        metadata[WEIGHTS_ID] = digest
        if config.calibration:
            config.calibration = {**config.calibration, WEIGHTS_ID: digest}
        write_config(partial, config)
        write_metadata(partial, metadata)
        if out.exists():
            raise FileExistsError(f"{out} exists already")
        partial.rename(out)
    except BaseException:          # Ctrl-C or a full disk: no half-written directory is left behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


# The weights file records a hash of the config fields that shape the network or its inputs
# (targets, quantiles, lengths, vocabulary, normaliser, sizes, features): a config.json
# edited after training (swapped targets, another encoder length, a renamed vocabulary) has
# the same tensor shapes, loads, and forecasts garbage; with the hash it is refused.  Not in
# the hash: the calibration (`tft-top calibrate` rewrites it) and training-only settings.
FINGERPRINT_KEY = "tft_top_config_sha256"


def config_fingerprint(config: ModelConfig) -> str:
    import hashlib

    full = config.to_json()
    features = full["features"]
    # the fields themselves, not the prose that describes them (rewording a description must
    # not make every existing model refuse to load)
    data = {
        "targets": full["targets"], "quantiles": full["quantiles"], "lengths": full["lengths"],
        "features": {k: features[k] for k in ("static_categoricals", "time_varying_known_reals",
                                              "time_varying_unknown_reals", "add_relative_time_idx",
                                              "add_encoder_length", "add_target_scales", "day_ago")},
        "categorical_vocabularies": full["categorical_vocabularies"],
        "normalizer": {k: full["normalizer"][k] for k in ("method", "center", "min_scale")},
        "hyperparameters": {k: v for k, v in full["hyperparameters"].items()
                            if k not in ("learning_rate", "loss_weights")},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ... and a SHA-256 of its own tensors (names, dtypes, shapes, bytes): safetensors has no
# checksum, so a flipped byte in the tensor data loaded and forecast quietly wrong (a
# reviewer XORed 400 bytes: the model loaded, p50 moved by up to 1.9 points).
TENSORS_KEY = "tft_top_tensors_sha256"
# The same checksum in training_metadata.json and in config.json's calibration: each names
# the weights it describes.  Copied from another model of the same shape, the weights loaded
# beside the other's bands and evaluation figures without a word (all 8 cells then missed).
WEIGHTS_ID = "weights_sha256"


def tensors_digest(state: dict) -> str:
    """SHA-256 over the tensors by sorted name: name, dtype, shape and raw bytes of each."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def stamp_fingerprint(model_dir: Path | str, config: ModelConfig | None = None) -> None:
    """Record in a model directory's weights file the fingerprint of its config and the
    checksum of its tensors (for a directory written before them; the tensors are unchanged)."""
    from safetensors.torch import load_file, save_file

    import os
    import stat

    model_dir = Path(model_dir)
    config = read_config(model_dir) if config is None else config
    path = model_dir / WEIGHTS_FILE
    mode = stat.S_IMODE(os.stat(path).st_mode)
    state = load_file(str(path))
    save_file(state, str(path), metadata={FINGERPRINT_KEY: config_fingerprint(config), TENSORS_KEY: tensors_digest(state)})
    os.chmod(path, mode)        # the mode it had (safetensors writes 0600): neither wider nor narrower


def _readable_as_umask(path: Path) -> None:
    """safetensors writes its file for its owner alone (0600), where the JSON beside it
    follows the umask (0644): a daemon run as another user, or a shared models folder,
    could read the config and not the weights.  Give it the umask's mode too."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def _recorded(weights_path: Path) -> dict:
    return _header(weights_path)[0]


# torch dtype -> the name a safetensors header gives it
_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL"}
_TORCH_DTYPE_NAMES = {v: str(k) for k, v in _SAFETENSORS_DTYPES.items()}


def _header(weights_path: Path) -> tuple[dict, dict[str, tuple[str, tuple[int, ...]]]]:
    """A safetensors file's metadata and, per tensor, its dtype name and shape: read from
    the header alone (the tensors stay on disk)."""
    from safetensors import safe_open

    with safe_open(str(weights_path), framework="pt") as f:
        stored = {}
        for key in f.keys():
            part = f.get_slice(key)
            stored[key] = (str(part.get_dtype()), tuple(int(n) for n in part.get_shape()))
        return dict(f.metadata() or {}), stored


def one_window_per_origin(index: pd.DataFrame, wanted: set | None = None) -> np.ndarray:
    """A mask over a TimeSeriesDataSet's ``decoded_index``: one window per (series, first
    prediction step), the one with the longest encoder, and only the origins in ``wanted``
    (pairs (series, time_idx of the first prediction); None: all).  At a series' last
    possible origin the library offers one window per encoder length (253 of them for a
    288-step encoder with a 36-step minimum): as a validation set those copies were 94 % of
    the windows early stopping judged."""
    series = index["series"].to_numpy()
    first = index["time_idx_first_prediction"].to_numpy()
    match = np.ones(len(index), dtype=bool) if wanted is None else \
        np.array([(s, int(t)) in wanted for s, t in zip(series, first)], dtype=bool)
    keep = np.zeros(len(index), dtype=bool)
    if match.any():
        longest = index[match].groupby(["series", "time_idx_first_prediction"])["time_idx_first"].idxmin()
        keep[longest.to_numpy()] = True
    return keep


def write_config(model_dir: Path, config: ModelConfig) -> None:
    replace_file(Path(model_dir) / CONFIG_FILE, json.dumps(config.to_json(), indent=2) + "\n")


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file beside it, then a rename): a
    rewrite interrupted by Ctrl-C or a full disk leaves the old file as it was."""
    import os
    import stat

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        if path.exists():           # the file keeps its permissions
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        tmp.replace(path)
    except OSError as exc:          # name the file being rewritten, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def read_config(model_dir: Path) -> ModelConfig:
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: {'not a file' if path.exists() else 'missing'}")
    data = _read_json(path, ModelLoadError)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    return ModelConfig.from_json(data, where=str(path))


MAX_JSON_BYTES = 16 << 20   # config.json and training_metadata.json are kilobytes; more is not ours


def _read_json(path: Path, error: type[Exception]) -> Any:
    """A model directory's JSON file, refused (``error``, one line) when it is too big to be
    ours, unreadable, invalid or nested too deeply, before it can take the memory or the stack."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{path}: {size:,} bytes is too big for this file (at most {MAX_JSON_BYTES:,})")
        return json.loads(path.read_text())
    except error:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # (ValueError: invalid JSON, or an integer of over 4,300 digits)
        why = "nested too deeply" if isinstance(exc, RecursionError) else _one_line(exc)
        raise error(f"{path}: not valid JSON ({why})") from None


@dataclass
class LoadedModel:
    model: Any            # TemporalFusionTransformer in eval mode
    config: ModelConfig
    model_dir: Path
    metadata: dict[str, Any]
    metadata_problem: str | None = None   # training_metadata.json there but unreadable: why
    weights_sha256: str | None = None     # the weights file's tensor checksum (WEIGHTS_ID)


def load_model_dir(model_dir: Path | str, device: str = "cpu", for_calibration: bool = False) -> LoadedModel:
    """Rebuild the TFT from config.json and load the weights strictly.

    Any problem raises ModelLoadError with a one-line reason.  ``for_calibration``: a
    calibration fitted for other weights is dropped rather than refused (calibrate replaces it).
    """
    model_dir = Path(model_dir)
    try:
        return _load_model_dir(model_dir, device, for_calibration)
    except OSError as exc:            # e.g. a directory this user may not read
        raise ModelLoadError(f"{model_dir}: cannot read ({reason_line(exc)})") from None


def _load_model_dir(model_dir: Path, device: str, for_calibration: bool = False) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: no such model directory")
    if not (model_dir / CONFIG_FILE).exists() and (newest := find_latest_model(model_dir)) is not None:
        # the models/ folder given for one of its models
        raise ModelLoadError(f"{model_dir}: holds model directories, it is not one (the newest: {newest.name}); "
                             "give one of them")
    config = read_config(model_dir)
    weights_path = model_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelLoadError(f"{weights_path}: {'not a file' if weights_path.exists() else 'missing'}")
    try:        # safetensors reports an unreadable file as a missing one: look first
        with open(weights_path, "rb"):
            pass
    except OSError as exc:
        raise ModelLoadError(f"{weights_path}: cannot read ({exc.strerror or reason_line(exc)})") from None
    # The header first (names, dtypes, shapes, the stamps): nothing is read or built for a
    # file that cannot be this config's weights.
    try:
        meta, stored = _header(weights_path)
    except PermissionError as exc:
        raise ModelLoadError(f"{weights_path}: cannot read ({reason_line(exc)})") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{weights_path}: corrupt weights file ({reason_line(exc)})") from None
    recorded, digest = meta.get(FINGERPRINT_KEY), meta.get(TENSORS_KEY)
    if recorded is None or digest is None:
        # every directory tft-top writes carries both (save_model_dir); without them a changed
        # config or a flipped byte in the tensors would load and forecast quietly wrong
        what = "config fingerprint" if recorded is None else "tensor checksum"
        raise ModelLoadError(f"{weights_path}: it carries no {what} (tft-top train writes both since 2026-11-27; "
                             f"to vouch for an older directory as it is: python -c \"from engine.tft_model import "
                             f"stamp_fingerprint; stamp_fingerprint({str(model_dir)!r})\")")
    if recorded != config_fingerprint(config):
        raise ModelLoadError(f"{model_dir}: config.json does not match the weights: its model fields (targets, "
                             "quantiles, lengths, vocabulary, normaliser, sizes) differ from those the weights "
                             "were trained with")
    try:
        model = build_model(config)
    except Exception as exc:  # a config the library refuses: say why, in one line
        raise ModelLoadError(f"{model_dir / CONFIG_FILE}: cannot build the model ({type(exc).__name__}: {reason_line(exc)})") from None
    expected = model.state_dict()
    # safetensors' save_model keeps one name of tensors that share storage: a name is
    # present when any name sharing its storage is.
    groups = _storage_groups(model)
    missing = sorted(k for k in expected if not any(alias in stored for alias in groups[k]))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ModelLoadError(f"{model_dir}: config.json does not match the weights: {', '.join(parts)}")
    for key, (dtype, shape) in stored.items():
        if shape != tuple(expected[key].shape):
            raise ModelLoadError(
                f"{model_dir}: config.json does not match the weights: {key} is {shape} in the file, "
                f"{tuple(expected[key].shape)} in the model"
            )
        want = _SAFETENSORS_DTYPES.get(expected[key].dtype)
        if dtype != want:     # load_model would cast (an int tensor truncated)
            raise ModelLoadError(f"{weights_path}: {key} is {_TORCH_DTYPE_NAMES.get(dtype, dtype)} in the file, "
                                 f"{expected[key].dtype} in the model")
    try:
        state = load_file(str(weights_path), device="cpu")
    except PermissionError as exc:
        raise ModelLoadError(f"{weights_path}: cannot read ({reason_line(exc)})") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{weights_path}: corrupt weights file ({reason_line(exc)})") from None
    if digest != tensors_digest(state):
        raise ModelLoadError(f"{weights_path}: corrupt weights file (its tensors do not match the checksum "
                             "stored with them)")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError(f"{weights_path}: {key} holds NaN or infinite values")
    fitted_for = (config.calibration or {}).get(WEIGHTS_ID)
    if fitted_for is not None and fitted_for != digest:
        if for_calibration:
            config.calibration = None
        else:
            raise ModelLoadError(f"{model_dir / CONFIG_FILE}: its calibration was fitted for other weights than "
                                 f"{WEIGHTS_FILE}'s (the directory mixes two models' files; beside the "
                                 f"training_metadata.json of these weights, tft-top calibrate fits bands for them)")
    from safetensors.torch import load_model

    load_model(model, str(weights_path), strict=True, device="cpu")
    metadata: dict[str, Any] = {}
    problem = None
    meta_path = model_dir / METADATA_FILE
    if meta_path.is_file():       # optional: what the training saw (eval's seen / never-seen split)
        try:
            metadata = _read_json(meta_path, ValueError)
        except ValueError as exc:
            metadata, problem = {}, f"{meta_path}: unreadable ({_one_line(exc)})"
        if not isinstance(metadata, dict):
            metadata, problem = {}, f"{meta_path}: not a JSON object"
        elif (wrong := _metadata_type_problem(metadata)) is not None:
            metadata, problem = {}, f"{meta_path}: {wrong}"
        elif metadata.get(WEIGHTS_ID, digest) != digest:
            metadata, problem = {}, f"{meta_path}: describes other weights than {WEIGHTS_FILE}'s"
    model.eval()
    model.to(device)
    return LoadedModel(model=model, config=config, model_dir=model_dir, metadata=metadata,
                       metadata_problem=problem, weights_sha256=digest)


def _metadata_type_problem(metadata: dict) -> str | None:
    """What is wrong with the fields of training_metadata.json that commands read (eval the
    training servers, calibrate the validation split's settings), or None."""
    servers = metadata.get("servers", [])
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        return "servers is not a list of server names"
    days = metadata.get("val_days", 1)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= 3650:
        return f"val_days is not a number of days in (0, 3650]: {_show_value(days)}"
    every = metadata.get("calib_every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= 100_000:
        return f"calib_every is not a whole number of steps from 1 to 100,000: {_show_value(every)}"
    data = metadata.get("data", [])
    if not isinstance(data, list) or not all(isinstance(d, dict) and isinstance(d.get("split", {}), dict)
                                             for d in data):
        return "data is not a list of data sets, each with its split as an object"
    return None


def _show_value(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "strerror", None) or exc).split())


def write_metadata(model_dir: Path | str, metadata: dict[str, Any]) -> None:
    """Rewrite ``training_metadata.json`` whole or not at all (replace_file)."""
    replace_file(Path(model_dir) / METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=False, default=str) + "\n")


def _storage_groups(model) -> dict[str, list[str]]:
    """For each state-dict key, every key (itself included) that shares its storage."""
    by_ptr: dict[tuple[int, int], list[str]] = {}
    state = model.state_dict()
    for key, tensor in state.items():
        by_ptr.setdefault((tensor.untyped_storage().data_ptr(), tensor.numel()), []).append(key)
    return {key: by_ptr[(t.untyped_storage().data_ptr(), t.numel())] for key, t in state.items()}


def quantile_index(config: ModelConfig, q: float) -> int:
    return list(config.quantiles).index(q)


def clip_to_range(metric: str, values: np.ndarray | torch.Tensor):
    lo, hi = TARGET_RANGE[metric]
    if isinstance(values, torch.Tensor):
        return values.clamp(min=lo, max=hi if math.isfinite(hi) else None)
    return np.clip(values, lo, hi)
