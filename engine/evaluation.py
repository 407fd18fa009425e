"""Rolling-origin evaluation: the TFT against seasonal-naive and linear-trend baselines.

For every series of a data set, forecast origins are placed every ``every`` steps
(2 h by default) over its held-out period, each with a full 8-hour horizon of truth
after it.  Per metric we report mean pinball loss at each quantile, their mean, p50
MAE and the empirical p10-p90 coverage, for the TFT and both baselines, separately
for servers the model saw in training and servers it never saw.  A metric that a
server's data does not carry (a constant column, e.g. Bitbrains' disk) is not scored.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.baselines import BASELINES
from engine.calibration import apply_calibration, window_scale
from engine.contract import METRICS, load_path, to_grid
from engine.datasplit import (SplitSpec, extract_windows, informative_columns, origins_for,
                              read_split)
from engine.tft_model import LoadedModel, ModelConfig, build_dataset, prepare_frame

DEFAULT_EVERY = 24     # an origin every 2 hours
HISTORY = 2 * 288      # steps of history a window keeps (the seasonal baseline's band needs two days)
FORECASTERS = ("tft", "seasonal_naive", "linear_trend")


def pinball(q_pred: np.ndarray, y: np.ndarray, q: float) -> np.ndarray:
    diff = y - q_pred
    return np.maximum(q * diff, (q - 1.0) * diff)


def load_grid(path: Path | str) -> pd.DataFrame:
    """Load a data path strictly (a bad row raises DataError) onto the 5-minute grid."""
    result = load_path(path)
    result.raise_for_problems()
    return to_grid(result.frame)


def quiet_lightning() -> None:
    """``model.predict`` builds a Lightning Trainer, which logs accelerator lines and
    advertising tips on every call: noise in a command's output."""
    import logging

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("lightning", "pytorch_lightning")):
            logging.getLogger(name).setLevel(logging.ERROR)


def stock_predict(loaded: LoadedModel, prepared: pd.DataFrame, origins: pd.DataFrame,
                  batch_size: int = 256) -> dict[str, np.ndarray]:
    """Raw TFT quantiles (n, H, Q) per target for each (series, origin_idx), through the
    library's own path: TimeSeriesDataSet + ``model.predict``."""
    config = loaded.config
    wanted = set(zip(origins["series"], origins["origin_idx"].astype(int)))
    dataset = build_dataset(config, prepared)
    index = dataset.decoded_index
    match = np.array([(s, int(t)) in wanted for s, t in zip(index["series"], index["time_idx_first_prediction"])])
    # At a series' last possible origin the library offers one sample per encoder
    # length: keep the longest encoder, as every other origin has.
    candidates = index[match]
    longest = candidates.groupby(["series", "time_idx_first_prediction"])["time_idx_first"].idxmin()
    keep = np.zeros(len(index), dtype=bool)
    keep[longest.to_numpy()] = True
    dataset = dataset.filter(lambda _: keep)
    quiet_lightning()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = loaded.model.predict(
            dataset.to_dataloader(train=False, batch_size=batch_size, num_workers=0),
            mode="quantiles", return_index=True,
            trainer_kwargs=dict(logger=False, enable_progress_bar=False, accelerator="cpu",
                                enable_model_summary=False),
        )
    idx = pred.index
    order = {(s, int(t)): i for i, (s, t) in enumerate(zip(idx["series"], idx["time_idx"]))}
    rows = [order[(s, int(t))] for s, t in zip(origins["series"], origins["origin_idx"])]
    outputs = pred.output if isinstance(pred.output, (list, tuple)) else [pred.output]
    return {m: outputs[i].cpu().numpy()[rows].astype(np.float64) for i, m in enumerate(config.targets)}


def calibrated_tft(loaded: LoadedModel, prepared: pd.DataFrame, origins: pd.DataFrame, windows) -> dict[str, np.ndarray]:
    config = loaded.config
    raw = stock_predict(loaded, prepared, origins)
    profiles = window_profiles(prepared, windows)
    out = {}
    for m in config.targets:
        scale = window_scale(windows.history[m], config.min_scale[m], config.max_encoder_length)
        out[m] = apply_calibration(config.calibration, m, raw[m], scale, tuple(config.quantiles), groups=profiles)
    return out


def window_profiles(prepared: pd.DataFrame, windows) -> np.ndarray:
    """The (normalised) profile of each window's series, as the model reads it."""
    per_series = prepared.groupby("series")["profile"].last()
    return per_series.reindex(windows.series).to_numpy()


@dataclass
class Scores:
    pinball: dict[float, float]
    mean_pinball: float
    p50_mae: float
    coverage: float
    windows: int

    def to_json(self) -> dict:
        return {"pinball": {str(k): round(v, 5) for k, v in self.pinball.items()},
                "mean_pinball": round(self.mean_pinball, 5), "p50_mae": round(self.p50_mae, 5),
                "coverage_p10_p90": round(self.coverage, 4), "windows": self.windows}


def score(q: np.ndarray, y: np.ndarray, quantiles=(0.1, 0.5, 0.9)) -> Scores:
    per_q = {qq: float(pinball(q[:, :, j], y, qq).mean()) for j, qq in enumerate(quantiles)}
    lo, mid, hi = quantiles.index(0.1), quantiles.index(0.5), quantiles.index(0.9)
    return Scores(
        pinball=per_q,
        mean_pinball=float(np.mean(list(per_q.values()))),
        p50_mae=float(np.abs(q[:, :, mid] - y).mean()),
        coverage=float(((y >= q[:, :, lo]) & (y <= q[:, :, hi])).mean()),
        windows=int(q.shape[0]),
    )


@dataclass
class DatasetReport:
    name: str
    split: dict
    # results[group][metric][forecaster] = Scores; group in ("seen", "heldout")
    results: dict[str, dict[str, dict[str, Scores]]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "split": self.split,
                "results": {g: {m: {f: s.to_json() for f, s in fs.items()} for m, fs in ms.items()}
                            for g, ms in self.results.items()}}


def evaluate_frame(loaded: LoadedModel | None, grid: pd.DataFrame, spec: SplitSpec, name: str,
                   seen_servers: set[str], every: int = DEFAULT_EVERY) -> DatasetReport:
    """Score the TFT (when given) and the baselines over the held-out period of ``grid``."""
    config = loaded.config if loaded else ModelConfig()
    horizon, q_levels = config.max_prediction_length, tuple(config.quantiles)
    prepared = prepare_frame(grid)
    origins = origins_for(prepared, spec.heldout_start(grid), horizon=horizon,
                          min_history=config.max_encoder_length, every=every)
    report = DatasetReport(name=name, split=spec.to_json())
    if origins.empty:
        return report
    # Only the rows the windows read: history before the first origin, and what follows.
    first = prepared["series"].map(origins.groupby("series")["origin_idx"].min())
    prepared = prepared[(prepared["time_idx"] >= first - HISTORY).fillna(False)].reset_index(drop=True)
    windows = extract_windows(prepared, origins, horizon=horizon, history=HISTORY)
    forecasts: dict[str, dict[str, np.ndarray]] = {}
    if loaded is not None:
        forecasts["tft"] = calibrated_tft(loaded, prepared, origins, windows)
    for bname, fn in BASELINES.items():
        forecasts[bname] = {
            m: apply_calibration(None, m, np.stack([fn(h, horizon, q_levels) for h in windows.history[m]]),
                                 np.ones(len(windows)), q_levels)
            for m in METRICS
        }
    informative = informative_columns(grid)
    seen = np.array([s in seen_servers for s in windows.server])
    for group, gmask in (("seen", seen), ("heldout", ~seen)):
        for m in METRICS:
            mask = gmask & informative[m].reindex(windows.server).to_numpy()
            if not mask.any():
                continue
            report.results.setdefault(group, {})[m] = {
                f: score(fc[m][mask], windows.actual[m][mask], q_levels) for f, fc in forecasts.items()
            }
    return report


def evaluate_paths(loaded: LoadedModel | None, paths: list[Path | str], every: int = DEFAULT_EVERY) -> list[DatasetReport]:
    seen = set(loaded.metadata.get("servers", [])) if loaded else set()
    reports = []
    for path in paths:
        grid = load_grid(path)
        reports.append(evaluate_frame(loaded, grid, read_split(path), str(path), seen, every))
    return reports


def improvement(ms: dict[str, Scores]) -> float | None:
    """How much lower the TFT's mean pinball loss is than the better baseline's (0.25 = 25 %)."""
    if "tft" not in ms:
        return None
    best = min(ms["seasonal_naive"].mean_pinball, ms["linear_trend"].mean_pinball)
    return 1.0 - ms["tft"].mean_pinball / best if best > 0 else None


def format_reports(reports: list[DatasetReport]) -> str:
    lines = []
    for rep in reports:
        lines.append(f"== {rep.name}")
        for group in ("seen", "heldout"):
            ms = rep.results.get(group)
            if not ms:
                continue
            label = "servers seen in training" if group == "seen" else "servers never seen in training"
            lines.append(f"  -- {label}")
            lines.append(f"  {'metric':<15}{'forecaster':<16}{'pinball10':>10}{'pinball50':>10}{'pinball90':>10}"
                         f"{'mean':>9}{'p50 MAE':>9}{'cover':>7}{'windows':>8}")
            for m, fs in ms.items():
                for f, s in fs.items():
                    lines.append(f"  {m:<15}{f:<16}{s.pinball[0.1]:>10.3f}{s.pinball[0.5]:>10.3f}{s.pinball[0.9]:>10.3f}"
                                 f"{s.mean_pinball:>9.3f}{s.p50_mae:>9.3f}{s.coverage:>7.1%}{s.windows:>8}")
                imp = improvement(fs)
                if imp is not None:
                    lines.append(f"  {'':<15}{'tft vs best baseline: ' + format(imp, '+.1%') + ' lower loss'}")
    return "\n".join(lines)


def reports_json(reports: list[DatasetReport], extra: dict[str, Any] | None = None) -> str:
    out = {"datasets": [r.to_json() for r in reports]}
    for rep, js in zip(reports, out["datasets"]):
        js["improvement_vs_best_baseline"] = {
            g: {m: (None if improvement(fs) is None else round(improvement(fs), 4)) for m, fs in ms.items()}
            for g, ms in rep.results.items()
        }
    if extra:
        out.update(extra)
    return json.dumps(out, indent=2)
