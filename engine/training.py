"""`tft-top train`: fit the TFT with Lightning, calibrate its bands, write a model directory.

Each data path is split by its ``split.json`` (or the defaults, see engine.datasplit):
training sees only servers that are not held out, and only data before the held-out
period.  Within that, each series' last ``val_days`` are kept for validation: forecasts
in their first half form the early-stopping set, origins in their second half the
conformal calibration set.  Training draws every forecast origin alike (the library's
encoder-length copies at a series' end share one origin's weight).  The model written has
the weights of the epoch with the lowest validation loss.
"""
from __future__ import annotations

import contextlib
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.calibration import fit_calibration, window_scale
from engine.contract import METRICS, STEP_SECONDS, UNKNOWN_PROFILE, DataError
from engine.datasplit import (SplitSpec, check_heldout_names, extract_windows, informative_columns, origins_for,
                              read_split, training_part)
from engine.evaluation import (DEFAULT_EVERY, check_unique_servers, evaluate_frame, format_reports, load_grid,
                               quiet_lightning, reports_record, stock_predict, window_profiles)
from engine.tft_model import (DeviceError, LoadedModel, ModelConfig, build_dataset, build_model,
                              normalise_profile, one_window_per_origin, prepare_frame, save_model_dir)

# The most a per-target loss weight or an incident kind's ramp draw weight may be: weights
# are relative (the shipped model's loss weights: 1, 2.5, 10, 6), and a larger one is a typo that turns the
# loss or the sampler's sums into inf.
MAX_LOSS_WEIGHT = 1000.0


@dataclass
class TrainOptions:
    data: list[str]
    out: str = "models"
    epochs: int = 20
    max_time_min: float | None = None
    device: str = "auto"
    batch_size: int = 64
    batches_per_epoch: int = 200
    val_days: float = 2.0
    max_train_days: float | None = 21.0   # per server, the most recent days before the held-out period
    calib_every: int = 24
    seed: int = 0
    patience: int = 4
    config: ModelConfig | None = None
    init_from: str | None = None          # warm start: a model directory with the same architecture
    loss_weights: tuple[float, ...] | None = None
    learning_rate: float | None = None    # None: the config's (a warm start keeps its model's)
    workers: int = 0                      # DataLoader worker processes
    ramp_share: float | None = None       # share of training windows drawn from labelled ramps (None: uniform)
    ramp_kinds: dict[str, float] | None = None   # relative weight of each incident kind's ramps (default 1)
    center: str | None = None             # normaliser centre, "mean" | "last" (None: the config's / init model's)
    day_ago: bool | None = None           # read the same time yesterday (None: the config's / init model's)
    evaluate: bool = True
    progress: bool = True


def _say(text: str) -> None:
    """A line on stdout.  A closed stdout (``train … | head``, a log pipe that died) must not
    cost a run that may have hours in it: the line is dropped, and stdout goes to /dev/null
    from then on (so no later print, nor Python's flush at exit, meets the broken pipe)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import io
        import os

        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):      # not a file: swap the object
            sys.stdout = open(os.devnull, "w")
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def epoch_lines_callback():
    """A Lightning callback that says, in one line per epoch, what the progress bar shows on
    a terminal: where stdout is a file or a pipe the bar is off (Rich redraws it with control
    codes, and a pipe that closes made it end the run with exit 1 and no word)."""
    import lightning.pytorch as pl

    class EpochLines(pl.Callback):
        def __init__(self):
            self.t0 = time.time()

        def on_train_epoch_end(self, trainer, pl_module):      # (after the epoch's validation)
            if not trainer.is_global_zero:
                return
            m = trainer.callback_metrics
            parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
            for label, value in (("train loss", m.get("train_loss_epoch", m.get("train_loss"))),
                                 ("validation loss", m.get("val_loss"))):
                if value is not None:
                    parts.append(f"{label} {float(value):.4g}")
            _say(", ".join(parts) + f" ({_duration(time.time() - self.t0)})")

    return EpochLines()


def best_weights_callback():
    """A Lightning callback that keeps, in memory, a copy of the weights at the lowest
    ``val_loss`` seen and puts them back when fitting ends.  Lightning's EarlyStopping
    only stops: without this the model written is the last epoch's, ``patience`` epochs
    past its best.  (No checkpoint files: nothing pickled, nothing left on disk.)"""
    import lightning.pytorch as pl

    class BestWeights(pl.Callback):
        def __init__(self):
            self.best: float | None = None
            self.best_epoch: int | None = None
            self.state: dict | None = None

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get("val_loss")
            if value is None:
                return
            value = float(value)
            if value == value and (self.best is None or value < self.best):
                self.best, self.best_epoch = value, int(trainer.current_epoch)
                self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

        def on_fit_end(self, trainer, pl_module):
            if self.state is not None:
                pl_module.load_state_dict(self.state, strict=True)

    return BestWeights()


def resolve_device(device: str) -> tuple[str, int]:
    """(accelerator, device count) for Lightning."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            from engine.forecaster import NO_CUDA

            raise DeviceError(NO_CUDA)
        return "gpu", torch.cuda.device_count()
    return "cpu", 1


@dataclass
class Source:
    path: str
    grid: pd.DataFrame
    train: pd.DataFrame     # prepared training part (features added)
    val_start: pd.Series    # per server: first validation timestamp
    informative: pd.DataFrame  # per server and metric: does its training part move at all?
    split: SplitSpec        # its split.json (or the defaults)


def _prepare_source(path: str, opts: TrainOptions) -> Source:
    grid = load_grid(path)
    spec = read_split(path)
    part = training_part(grid, spec)
    if part.empty:
        held = (f"from {spec.heldout_from:%Y-%m-%dT%H:%MZ}" if spec.heldout_from is not None
                else f"the last {spec.heldout_days:g} days of each server")
        raise DataError(f"{path}: no rows before the held-out period (what training and its calibration use): "
                        f"the held-out period ({held}"
                        f"{', and the held-out servers' if spec.heldout_servers else ''}) covers all of its data")
    last = part.groupby("server_name")["timestamp"].transform("max")
    if opts.max_train_days:
        part = part[part["timestamp"] > last - pd.Timedelta(days=opts.max_train_days)].reset_index(drop=True)
        last = part.groupby("server_name")["timestamp"].transform("max")
    val_start = (part.assign(v=last - pd.Timedelta(days=opts.val_days))
                 .groupby("server_name")["v"].first())
    # (judged on the training part only: the held-out rows must not decide what is learned)
    informative = informative_columns(part).reindex(grid["server_name"].unique(), fill_value=False)
    return Source(path=path, grid=grid, train=prepare_frame(part, disk_informative=informative["disk_percent"]),
                  val_start=val_start, informative=informative, split=spec)


def _prepare_sources(opts: TrainOptions) -> tuple[list[Source], pd.DataFrame]:
    sources = [_prepare_source(p, opts) for p in opts.data]
    check_heldout_names([(s.split, s.path, s.grid) for s in sources])
    check_unique_servers([(str(s.path), s.grid) for s in sources])
    return sources, pd.concat([s.train for s in sources], ignore_index=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _ramps(sources: list[Source]) -> pd.DataFrame:
    """Labelled incidents (server_name, start, crossing) of the data sets that have an
    incidents.csv; only training rows are ever sampled, so held-out ones never count."""
    from engine.alert_eval import read_incidents

    tables = [t for t in (read_incidents(s.path) for s in sources) if t is not None]
    if not tables:
        return pd.DataFrame(columns=["server_name", "start", "crossing", "kind"])
    tables = [t if "kind" in t else t.assign(kind="") for t in tables]
    return pd.concat(tables, ignore_index=True)[["server_name", "start", "crossing", "kind"]]


def ramp_sample_weights(dataset, rows: pd.DataFrame, ramps: pd.DataFrame,
                        share: float, kinds: dict[str, float] | None = None,
                        base: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Per training window, its weight for a WeightedRandomSampler, and how many windows are
    ramp windows: those whose first forecast step lies inside a labelled incident's ramp
    (from 15 minutes after its start to its crossing), i.e. the model sees the climb begin
    and must forecast where it goes.  Ramp windows together get ``share`` of the draws.

    Without this, a ramp is a few % of the windows (most of the data is quiet servers and
    real traces without labels) and the model learns that every excursion reverts: on the
    demo fleet's held-out ramps its p50 stayed flat or fell while memory and disk climbed.
    Windows whose forecast starts before the onset are not favoured: an onset itself is not
    foreseeable, and teaching it would put spikes into every forecast.

    ``kinds`` (incident kind -> relative weight, default 1 each) shifts draws between kinds
    inside that share: with {"cpu_runaway": 4} a CPU runaway's ramp window is drawn four
    times as often as another kind's (a window inside ramps of several kinds takes the
    largest weight); the ramp windows' total share stays ``share``.

    ``base`` (default 1 each) is every window's weight before the ramps are favoured, e.g.
    ``origin_weights``: a window outside the ramps keeps it, and inside the ramp share each
    window's weight stays proportional to its base times its kind's weight."""
    if not 0 < share < 1:
        raise ValueError(f"ramp share {share} must lie strictly between 0 and 1")
    index = dataset.decoded_index
    first_pred = index["time_idx_first_prediction"].to_numpy()
    server_of = rows.groupby("series")["server_name"].first()
    servers = server_of.reindex(index["series"]).to_numpy()
    kinds = dict(kinds or {})
    if any(not w > 0 for w in kinds.values()):
        raise ValueError(f"ramp kind weights {kinds} must be positive")
    rel = np.zeros(len(index))             # 0: not a ramp window, else its kind's relative weight
    by_server = {name: np.flatnonzero(servers == name) for name in set(ramps["server_name"]) & set(servers)}
    for r in ramps.itertuples():
        pos = by_server.get(r.server_name)
        if pos is None or not len(pos):
            continue
        a = (int(r.start.timestamp()) // STEP_SECONDS) + 3
        b = int(r.crossing.timestamp()) // STEP_SECONDS
        fp = first_pred[pos]
        hit = pos[(fp >= a) & (fp <= b)]
        rel[hit] = np.maximum(rel[hit], kinds.get(getattr(r, "kind", ""), 1.0))
    is_ramp = rel > 0
    n_ramp = int(is_ramp.sum())
    weights = np.ones(len(index)) if base is None else np.asarray(base, dtype=np.float64).copy()
    if len(weights) != len(index) or not np.all(weights > 0):
        raise ValueError("base weights must be positive, one per window")
    if 0 < n_ramp < len(index):
        inside = weights[is_ramp] * rel[is_ramp]
        weights[is_ramp] = share / (1.0 - share) * weights[~is_ramp].sum() * inside / inside.sum()
    return weights, n_ramp


class WindowSampler:
    """A sampler for the training DataLoader: each epoch draws ``num_samples`` window indices,
    with replacement, each with probability proportional to its weight.

    torch's WeightedRandomSampler draws with ``torch.multinomial``, which refuses more than
    2^24 categories: about 3,200 servers at 21 days of training windows.  This draws with a
    cumulative sum and a binary search (any number of windows), only as many as an epoch
    uses, from a numpy generator seeded once, so a run's draws repeat with its seed."""

    def __init__(self, weights: np.ndarray, num_samples: int, seed: int = 0) -> None:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError("window weights must be finite, non-negative and not all zero")
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        self.cdf = np.cumsum(w / w.sum())
        self.cdf[-1] = 1.0
        self.num_samples = int(num_samples)
        self.rng = np.random.default_rng(seed)

    CHUNK = 65536     # draws made at a time: an epoch's worth at once took ~1.5 KB per batch of 64

    def __iter__(self):
        # (the generator's doubles come in the same order whatever the chunks: the same draws
        # as one call for the whole epoch, without its list; --batches-per-epoch 10^7 needed ~15 GB)
        left = self.num_samples
        while left > 0:
            k = min(left, self.CHUNK)
            yield from np.searchsorted(self.cdf, self.rng.random(k), side="right").tolist()
            left -= k

    def __len__(self) -> int:
        return self.num_samples


def origin_weights(index: pd.DataFrame) -> np.ndarray:
    """Per training window (a TimeSeriesDataSet's ``decoded_index``), 1 / the number of
    windows that forecast the same steps of the same series (the same first prediction step).

    At a series' last possible origin the library offers one window per encoder length,
    253 of them for a 288-step encoder with a 36-step minimum, each scoring the same last 8 h.
    Drawn uniformly those copies were about 6 % of all training draws (about 250x their
    share) on the shipped model's data; weighted by 1 / copies every origin is drawn
    alike, whatever its encoder length, and the short-encoder copies still teach young
    servers (a random one of them per draw of that origin)."""
    copies = index.groupby(["series", "time_idx_first_prediction"])["series"].transform("size")
    return 1.0 / copies.to_numpy(dtype=np.float64)



def _validation_origins(frame: pd.DataFrame, val_start: pd.Series, config: ModelConfig,
                        every: int, alternating: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Origins in each series' validation days, split at the days' midpoint: early stopping
    takes the origins whose whole forecast ends before it, calibration those from it on.
    The steps the band is calibrated on are then never steps the best epoch was chosen on
    (origins alternating every 2 h with an 8 h horizon shared most of them).

    ``alternating``: the split of models trained before 2026-11-27's change (their
    training_metadata.json has no ``validation_split``): origins alternate, early stopping
    on the even ones, calibration on the odd ones -- recalibrating such a model on the new
    split would calibrate it on origins its best epoch was chosen on."""
    horizon = config.max_prediction_length
    origins = origins_for(frame, val_start, horizon=horizon, min_history=config.max_encoder_length, every=every)
    if alternating:
        odd = (origins["origin_idx"] // every) % 2 == 1
        return origins[~odd].reset_index(drop=True), origins[odd].reset_index(drop=True)
    start_idx = val_start.dt.as_unit("s").astype("int64") // STEP_SECONDS
    last_idx = frame.groupby("series")["time_idx"].max()
    first = origins["server_name"].map(start_idx).to_numpy(dtype=np.int64)
    last = origins["series"].map(last_idx).to_numpy(dtype=np.int64)
    mid = first + (last - first + 1) // 2
    o = origins["origin_idx"].to_numpy(dtype=np.int64)
    stop = origins[o + horizon <= mid].reset_index(drop=True)
    calib = origins[o >= mid].reset_index(drop=True)
    return stop, calib


def recalibrate(model_dir: Path | str, opts: TrainOptions, force: bool = False) -> dict:
    """Fit the model's band calibration again on the calibration split of ``opts.data``
    (the split the model was trained with: see _validation_origins) and rewrite its
    config.json; returns the calibration.  Unless ``force``, a fit on under half the windows
    of the one it replaces, or without per-profile tables the old one has, is refused (on
    a small or partial data set it would silently replace a better calibration)."""
    from engine.tft_model import ModelLoadError, load_model_dir, write_config, write_metadata

    loaded = load_model_dir(model_dir, for_calibration=True)
    if loaded.metadata_problem:     # it says which split the model was trained with: not guessed
        raise ModelLoadError(f"{loaded.metadata_problem}: cannot tell which split the model was trained with")
    meta = dict(loaded.metadata)
    if "servers" not in meta:
        # no record of the training (no training_metadata.json, or one `eval --record` began):
        # which split it was trained with is not guessed either
        raise ModelLoadError(f"{model_dir}: training_metadata.json does not record the training: cannot tell which "
                             "split the model was trained with")
    alternating = "validation_split" not in meta          # trained before the midpoint split
    # the validation days and origin spacing the model was trained with, where recorded
    opts = TrainOptions(**{**opts.__dict__, **{k: meta[k] for k in ("val_days", "calib_every") if k in meta}})
    sources, frame = _prepare_sources(opts)
    _check_calibration_split(model_dir, meta, sources, frame)
    val_start_all = pd.concat([s.val_start for s in sources])
    _, calib_origins = _validation_origins(frame, val_start_all, loaded.config, opts.calib_every, alternating)
    if calib_origins.empty:
        raise DataError(f"{', '.join(map(str, opts.data))}: too little data to calibrate on: no forecast origin in "
                        f"the validation days with {loaded.config.max_encoder_length} steps of history before it "
                        f"and {loaded.config.max_prediction_length} after")
    new = _calibrate(loaded, frame, calib_origins, sources)
    old = loaded.config.calibration or {}
    lost = [m for m in loaded.config.targets
            if m in (old.get("lower") or {}) and m not in ((new or {}).get("lower") or {})]
    if lost:
        # (flat columns in every calibration window give nothing to fit: writing the result
        # would silently drop the calibration the model has for them)
        raise DataError(f"{', '.join(map(str, opts.data))}: no calibration window where {', '.join(lost)} "
                        f"moves: the model's calibration is left as it was")
    before, after = int(old.get("fitted_on_windows") or 0), int((new or {}).get("fitted_on_windows") or 0)
    dropped = sorted(set(old.get("groups") or {}) - set((new or {}).get("groups") or {}))
    if not force and (after < before / 2 or dropped):
        why = (f"would rest on {after} windows against the {before} it replaces" if after < before / 2 else
               f"would lack the per-profile table(s) of {', '.join(dropped)}")
        raise DataError(f"{', '.join(map(str, opts.data))}: the new calibration {why}: the model's "
                        f"calibration is left as it was (--force replaces it anyway)")
    meta["recalibrated"] = {"utc": pd.Timestamp.now(tz="UTC").isoformat(), "data": list(opts.data),
                            "windows": int(len(calib_origins)),
                            "split": "odd origins of the alternation it was trained with" if alternating
                            else "origins in the second half of the validation days"}
    meta["calibration_windows"] = int(len(calib_origins))
    from engine.tft_model import WEIGHTS_ID

    meta[WEIGHTS_ID] = loaded.weights_sha256
    if new:
        new = {**new, WEIGHTS_ID: loaded.weights_sha256}
    if "evaluation" in meta:
        # measured with the bands replaced now: kept, named for what it is (eval --record
        # measures the model as it is now)
        meta["evaluation_before_recalibration"] = meta.pop("evaluation")
    # the metadata first: if it cannot be written, the config is left as it was too (the
    # metadata alone, rewritten back, is the one file that can go back)
    old_meta = dict(loaded.metadata)
    write_metadata(model_dir, meta)
    loaded.config.calibration = new
    try:
        write_config(Path(model_dir), loaded.config)
    except OSError:
        try:
            write_metadata(model_dir, old_meta)
        except OSError:
            pass
        raise
    return loaded.config.calibration


def _check_calibration_split(model_dir, meta: dict, sources: list[Source], frame: pd.DataFrame) -> None:
    """Refuse (DataError) calibration data that reaches past the model's training data: a
    split changed since training (a data set recorded with another held-out period or set
    of servers), or servers it never trained on.  Fitting the bands there would fit them on
    the data its evaluation scores (a split.json moved to 2030 fitted on all 48 demo servers,
    the 8 held out among them, and on the held-out days)."""
    from engine.datasplit import data_key, recorded_training_end, recorded_training_ends

    recorded = {data_key(d.get("path")): d.get("split") or {} for d in meta.get("data") or []}
    for src in sources:
        was = recorded.get(data_key(src.path))
        now = src.split.to_json()
        if was is not None and (was.get("heldout_from"), was.get("heldout_servers")) != \
                (now["heldout_from"], now["heldout_servers"]):
            raise DataError(f"{src.path}: its split ({now['origin']}) is not the one {model_dir} was trained with "
                            f"(held out from {was.get('heldout_from')}, servers {was.get('heldout_servers')}): "
                            "the calibration is left as it was")
        # the default split (each server's last days) moves with the data: a file cut or grown
        # since training has its validation days elsewhere (cut by 3 days, the bands were
        # fitted on days the model trained on, and calibrate said "calibrated on 24 windows")
        ended = recorded_training_end(meta, src.path)
        step = pd.Timedelta(seconds=STEP_SECONDS)
        if ended is not None and len(src.train):
            end_now = src.train["timestamp"].max()
            if abs(end_now - ended) > step:
                raise DataError(f"{src.path}: its training part now ends {end_now:%Y-%m-%d %H:%M}, not "
                                f"{ended:%Y-%m-%d %H:%M} as when {model_dir} was trained (the data changed, and "
                                "with it the split): the calibration is left as it was")
        ends = recorded_training_ends(meta, src.path)
        if ends and len(src.train):
            for name, end_now in src.train.groupby("server_name")["timestamp"].max().items():
                end_then = ends.get(str(name))
                if end_then is not None and abs(end_now - end_then) > step:
                    raise DataError(f"{src.path}: server {name}'s training part now ends {end_now:%Y-%m-%d %H:%M}, "
                                    f"not {end_then:%Y-%m-%d %H:%M} as when {model_dir} was trained (its data changed, "
                                    "and with it the split): the calibration is left as it was")
    trained = set(meta.get("servers") or [])
    unseen = sorted(set(frame["server_name"].astype(str)) - trained)
    if unseen:
        raise DataError(f"{', '.join(str(s.path) for s in sources)}: {len(unseen)} server(s) the model never trained "
                        f"on ({', '.join(unseen[:5])}{' …' if len(unseen) > 5 else ''}): calibrating on them would fit "
                        "the bands on data meant for its evaluation; give the data with the split it was trained with")


def train(opts: TrainOptions) -> Path:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    t0 = time.time()
    accelerator, devices = resolve_device(opts.device)     # a missing CUDA is said before the data is read
    # (quiet: a refused --data must leave its one error line alone on stderr; the seed is
    # recorded in training_metadata.json)
    pl.seed_everything(opts.seed, workers=True, verbose=False)
    init = None
    if opts.init_from:      # a missing or broken warm start is said before the data is read (minutes, for
        from engine.tft_model import load_model_dir      # the shipped model's four data sets)

        init = load_model_dir(opts.init_from)
    sources, frame = _prepare_sources(opts)
    vocab = sorted(set(normalise_profile(frame["profile"])) | {UNKNOWN_PROFILE})
    from engine.tft_model import MAX_VOCABULARY

    if len(vocab) > MAX_VOCABULARY:     # a model with more would be written and never load
        raise DataError(f"{', '.join(str(s.path) for s in sources)}: column profile: {len(vocab) - 1:,} distinct "
                        f"profiles, a model holds at most {MAX_VOCABULARY - 1:,} (a profile is a server's role, "
                        f"such as web or database, not its name)")
    if init is not None:
        base = init.config
        # a warm start keeps its model's profile embedding: data with fewer profiles trains in
        # it; a profile it has no row for cannot be learned into it
        extra = sorted(set(vocab) - set(init.config.profile_vocab))
        if extra:
            raise DataError(f"--init-from {opts.init_from}: this data's profile(s) {extra} are not in its "
                            f"vocabulary {list(init.config.profile_vocab)} (train a new model, or give them "
                            f"as one of those)")
        vocab = list(init.config.profile_vocab)
    else:
        base = opts.config or ModelConfig()
    overrides = {"profile_vocab": tuple(vocab), "calibration": None}
    if opts.loss_weights:
        overrides["loss_weights"] = tuple(opts.loss_weights)
    if opts.learning_rate is not None:
        overrides["learning_rate"] = float(opts.learning_rate)
    if opts.center is not None:
        overrides["normalizer_center"] = opts.center
    if opts.day_ago is not None:
        overrides["day_ago"] = bool(opts.day_ago)
    config = ModelConfig(**{**base.__dict__, **overrides})

    val_start_all = pd.concat([s.val_start for s in sources])
    row_val_start = frame["server_name"].map(val_start_all)
    fit_rows = frame[frame["timestamp"] < row_val_start].reset_index(drop=True)
    need = config.min_encoder_length + config.max_prediction_length
    if (fit_rows.groupby("series").size().max() if len(fit_rows) else 0) < need:
        raise DataError(f"{', '.join(map(str, opts.data))}: too little data to train on: no server has "
                        f"{need} steps ({need * STEP_SECONDS / 3600:g} h) before its validation days (the "
                        f"last {opts.val_days:g} days before the held-out period; samples come every 5 min, and a "
                        f"gap over 35 min breaks a series)")
    train_ds = build_dataset(config, fit_rows, weighted=True)

    stop_origins, calib_origins = _validation_origins(frame, val_start_all, config, opts.calib_every)
    if stop_origins.empty or calib_origins.empty:
        raise DataError(f"{', '.join(map(str, opts.data))}: too little data to validate on: the validation days "
                        f"need forecast origins with {config.max_encoder_length} steps of history before them and "
                        f"{config.max_prediction_length} after, in both halves of the validation days (the first "
                        "half for early stopping, the second for calibration)")
    val_ds = build_dataset(config, frame, weighted=True)
    wanted = set(zip(stop_origins["series"], stop_origins["origin_idx"].astype(int)))
    keep = one_window_per_origin(val_ds.decoded_index, wanted)      # as evaluation scores them
    val_ds = val_ds.filter(lambda _: keep)

    model = build_model(config, train_ds)
    if init is not None:
        if init.config.day_ago == config.day_ago:
            model.load_state_dict(init.model.state_dict(), strict=True)
        else:
            kept, fresh = warm_start_partial(model, init.model)
            _say(f"warm start from {opts.init_from}: {kept} tensors kept; {len(fresh)} new or reshaped by the "
                 f"day-ago inputs start fresh (e.g. {fresh[0] if fresh else '-'})")
    # pytorch-forecasting's interpolation as the equivalent matmul (same state_dict keys, the
    # same outputs and gradients): a training step of the shipped network at batch 64 took
    # 382 instead of 488 ms on a 2-core CPU (benchmarks/bench_train_step.py); on a GPU the
    # library's kernel was 98 % of the forward's time.  The saved model loads as ever.
    from engine.fast_tft import swap_interpolation

    swap_interpolation(model)
    n_params = int(sum(p.numel() for p in model.parameters()))
    early_stopping = EarlyStopping(monitor="val_loss", patience=opts.patience, mode="min")
    best_weights = best_weights_callback()
    quiet_lightning()      # (its accelerator lines and tips: the run's own summary says the device)
    bar = bool(opts.progress) and sys.stdout.isatty()      # else a line per epoch (epoch_lines_callback)
    trainer = pl.Trainer(
        max_epochs=opts.epochs,
        max_time=None if opts.max_time_min is None else {"minutes": opts.max_time_min},
        accelerator=accelerator,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        gradient_clip_val=0.1,
        limit_train_batches=opts.batches_per_epoch,
        callbacks=[early_stopping, best_weights] + ([epoch_lines_callback()] if opts.progress and not bar else []),
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=bar,
        enable_model_summary=False,
        deterministic=False,
    )
    loader = dict(num_workers=opts.workers, persistent_workers=opts.workers > 0,
                  pin_memory=accelerator == "gpu")
    ramp_windows = 0
    weights = origin_weights(train_ds.decoded_index)
    end_copies = float(1.0 - weights.sum() / len(weights))     # share of the windows that repeat an origin
    if opts.ramp_share:
        ramps = _ramps(sources)
        if ramps.empty:
            raise DataError(f"--ramp-share {opts.ramp_share}: no labelled incidents: none of the --data has an "
                            "incidents.csv (beside the data file, or inside the data directory)")
        unknown = sorted(set(opts.ramp_kinds or {}) - set(ramps["kind"]))
        if unknown:
            raise DataError(f"--ramp-kinds: no labelled incident of kind {', '.join(map(repr, unknown))} in the "
                            f"data's incidents.csv (kinds there: {', '.join(sorted(k for k in set(ramps['kind']) if k)) or 'none'})")
        weights, ramp_windows = ramp_sample_weights(train_ds, fit_rows, ramps, opts.ramp_share, opts.ramp_kinds,
                                                    base=weights)
        if ramp_windows == 0:
            raise DataError(f"--ramp-share {opts.ramp_share}: no training window starts its forecast inside a "
                            "labelled ramp (incidents.csv names no trained server, or only held-out periods)")
    # every rank draws the same list (same seed); Lightning's DistributedSamplerWrapper gives
    # each its own slice of it, batches_per_epoch batches each
    draws = opts.batches_per_epoch * opts.batch_size * devices if opts.batches_per_epoch else len(weights)
    sampler = WindowSampler(weights, draws, opts.seed)
    train_dl = train_ds.to_dataloader(train=True, batch_size=opts.batch_size, sampler=sampler,
                                      shuffle=False, **loader)
    val_dl = val_ds.to_dataloader(train=False, batch_size=opts.batch_size * 4, **loader)
    data_seconds = time.time() - t0     # reading, validating and preparing the data, building the model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ctrl_c_passes_through():       # (the CLI says what an interrupt left: nothing written)
            trainer.fit(model, train_dl, val_dl)
    fit_seconds = time.time() - t0
    if trainer.global_rank != 0:
        raise SystemExit(0)

    model = model.cpu().eval()
    loaded = LoadedModel(model=model, config=config, model_dir=Path("."), metadata={})
    with ctrl_c_passes_through():
        config.calibration = _calibrate(loaded, frame, calib_origins, sources)
    callback_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    full_epochs = _full_epochs(trainer)
    servers = sorted(frame["server_name"].unique())
    metadata: dict[str, Any] = {
        "created_utc": pd.Timestamp.now(tz="UTC").isoformat(),
        "data": [{
            "path": s.path,
            "servers": int(s.grid["server_name"].nunique()),
            "trained_servers": int(s.train["server_name"].nunique()),
            "span": [s.grid["timestamp"].min().isoformat(), s.grid["timestamp"].max().isoformat()],
            "training_span": [s.train["timestamp"].min().isoformat(), s.train["timestamp"].max().isoformat()],
            # each server's own end: the default split is per server, and a file cut for some
            # servers moves theirs without moving the span's end
            "training_ends": {str(k): v.isoformat() for k, v in s.train.groupby("server_name")["timestamp"].max().items()},
            "split": s.split.to_json(),
            "disk_masked_servers": int((s.train.groupby("server_name")["disk_weight"].max() == 0).sum()),
        } for s in sources],
        "servers": servers,
        "training_rows": int(len(fit_rows)),
        "training_windows": int(len(train_ds)),
        "validation_windows": int(len(val_ds)),
        "calibration_windows": int(len(calib_origins)),
        "parameters": n_params,
        # full epochs: one cut short by --max-time counted as an epoch (11 of 200 batches
        # read "trained 1 epoch(s)"); the batches trained say the rest
        "epochs": full_epochs,
        "training_steps": int(trainer.global_step),
        "batches_per_epoch": opts.batches_per_epoch,
        "max_epochs": opts.epochs,
        "max_time_min": opts.max_time_min,
        "seed": opts.seed,
        "val_days": opts.val_days,
        "calib_every": opts.calib_every,
        "patience": opts.patience,
        "validation": "one window per early-stopping origin (the longest encoder)",
        "validation_split": "early stopping: origins whose forecast ends in the first half of the validation "
                            "days; calibration: origins in the second half (no step shared)",
        "training_draws": "each origin alike: a window is drawn with weight 1 / the windows forecasting from "
                          "its origin" + (", ramp windows together the ramp share" if opts.ramp_share else ""),
        "origin_copy_windows_share": round(end_copies, 4),
        "ramp_share": opts.ramp_share,
        "ramp_kinds": opts.ramp_kinds,
        "ramp_windows": int(ramp_windows),
        "batch_size": opts.batch_size,
        "data_loader_workers": opts.workers,
        "losses": {"final_train_loss": callback_metrics.get("train_loss_epoch", callback_metrics.get("train_loss")),
                   "final_val_loss": callback_metrics.get("val_loss")},
        # (EarlyStopping sets stopped_epoch when patience runs out, also in the last epoch)
        "early_stopped": bool(early_stopping.stopped_epoch > 0) and full_epochs < opts.epochs,
        "best_val_loss": best_weights.best,
        "weights_from_epoch": best_weights.best_epoch,    # the best validation epoch (0-based), restored
        "warm_start_from": opts.init_from,
        # from the start of `train` to the end of fitting, data preparation included (that part
        # alone: data_seconds, absent from models trained before 2026-11-29)
        "training_seconds": round(fit_seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "device": accelerator if accelerator == "cpu" else f"cuda x{devices} ({torch.cuda.get_device_name(0)})",
        "versions": _versions(),
        "evaluation": None,
    }
    out = save_model_dir(model, config, metadata, Path(opts.out))
    # what the run did, in a line (the rest is in training_metadata.json)
    why = ("stopped early: the validation loss stopped falling" if metadata["early_stopped"] else
           f"stopped at --max-time {opts.max_time_min:g} min" if opts.max_time_min and metadata["epochs"] < opts.epochs
           else f"ran its {opts.epochs} epoch(s)")
    best, epoch = metadata["best_val_loss"], metadata["weights_from_epoch"]
    kept = (f"weights of epoch {epoch + 1}, validation loss {best:.4g}" if epoch is not None and best is not None
            else "the last epoch's weights (no finite validation loss)")
    _say(f"trained {metadata['epochs']} full epoch(s), {metadata['training_steps']} batches, on {metadata['device']} "
         f"in {_duration(fit_seconds)} ({why}); {kept}")
    _say(f"model written to {out}{_default_note(out)}")
    if opts.evaluate:
        from engine.tft_model import load_model_dir, write_metadata

        later = f"tft-top eval --model {out} " + " ".join(f"--data {s.path}" for s in sources) + " --record"
        _say(f"evaluating it on the held-out data (Ctrl-C skips this; later: {later})")
        try:
            loaded = load_model_dir(out)
            with ctrl_c_passes_through():
                reports = [evaluate_frame(loaded, s.grid, s.split, s.path, set(servers)) for s in sources]
        except KeyboardInterrupt:
            _say(f"evaluation interrupted: the model is saved without it; to evaluate it: {later}")
            return out
        # the shape `eval --record` writes (datasets, targets), less the alerts, not scored here
        metadata["evaluation"] = reports_record(reports, {"every": DEFAULT_EVERY, "data": [str(s.path) for s in sources],
                                                          "alerts_skipped": True})
        metadata["total_seconds"] = round(time.time() - t0, 1)
        write_metadata(out, metadata)
        _say(format_reports(reports))
    return out


def _full_epochs(trainer) -> int:
    """Epochs trained to their end (Lightning counts one --max-time cut short too)."""
    per_epoch = trainer.num_training_batches
    steps = int(trainer.global_step)
    if isinstance(per_epoch, int) and per_epoch > 0:
        return steps // per_epoch
    return int(trainer.current_epoch)


def _default_note(out: Path) -> str:
    """Say so when the new model is now the one the app, predict, serve and eval pick up."""
    from engine.tft_model import find_latest_model

    latest = find_latest_model(Path("models"))
    if latest is not None and latest.resolve() == out.resolve():
        return " (now the default model: the newest under models/)"
    return ""


@contextlib.contextmanager
def ctrl_c_passes_through():
    """Let a Ctrl-C inside Lightning come out as KeyboardInterrupt (the CLI: exit 130).

    Lightning (fit, and the predict that pytorch-forecasting's ``predict`` runs) catches the
    interrupt itself, tears down and calls ``sys.exit(1)``: the run would end as a plain
    failure, with nothing to say what was or was not written.  A handler of ours notes that
    the signal came; a ``SystemExit(1)`` after it is turned back into the interrupt."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield                  # signals reach the main thread only; an ignored Ctrl-C stays ignored
        return
    came: list[bool] = []

    def handler(signum, frame):
        came.append(True)
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    except SystemExit as exc:
        if exc.code == 1 and came:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, before)


def warm_start_partial(model, source) -> tuple[int, list[str]]:
    """Copy into ``model`` every tensor of ``source`` with the same name and shape (a model
    whose inputs changed: the variable selections over the changed inputs start fresh, the
    rest -- LSTMs, attention, the other variables' networks, the output -- as trained).
    Returns how many were copied and the names left as initialised."""
    own = model.state_dict()
    theirs = source.state_dict()
    take = {k: v for k, v in theirs.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(take, strict=False)
    return len(take), sorted(k for k in own if k not in take)


def _calibrate(loaded: LoadedModel, frame: pd.DataFrame, origins: pd.DataFrame, sources: list[Source]) -> dict:
    config = loaded.config
    windows = extract_windows(frame, origins, horizon=config.max_prediction_length,
                              history=config.max_encoder_length)
    raw = stock_predict(loaded, frame, origins)
    scale = {m: window_scale(windows.history[m], config.min_scale[m], config.max_encoder_length) for m in METRICS}
    # the same judgement as training's: on the training rows, never the held-out ones
    informative = pd.concat([s.informative for s in sources])
    mask = {m: informative[m].reindex(windows.server).to_numpy() for m in METRICS}
    calibration = fit_calibration(raw, windows.actual, scale, None, mask, tuple(config.quantiles),
                                  groups=window_profiles(frame, windows))
    calibration["fitted_on_windows"] = int(len(windows))
    return calibration


def _versions() -> dict[str, str]:
    import lightning
    import pytorch_forecasting
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "pytorch_forecasting": pytorch_forecasting.__version__, "lightning": lightning.__version__,
            "pandas": pd.__version__, "numpy": np.__version__}

