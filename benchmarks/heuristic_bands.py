"""The heuristic forecaster's p10-p90 coverage and mean pinball loss, per metric and per band
factor (engine.heuristic.BAND_SCALE), on one data set's training or held-out period.

Forecast origins every 2 h with two days of history before them and 8 h after, as
`tft-top eval` uses; "train" takes the servers not held out and the origins whose 8 h end
before the held-out period, "heldout" the held-out period of every server.  A metric whose
column never moves on a server is not scored there (the constant-column rule of eval).

    python benchmarks/heuristic_bands.py DATA [train|heldout] [--factors 1.0,1.2,1.3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine.heuristic as H  # noqa: E402
from engine.contract import METRICS  # noqa: E402
from engine.datasplit import extract_windows, informative_columns, origins_for, read_split  # noqa: E402
from engine.evaluation import HISTORY, load_grid, score  # noqa: E402
from engine.tft_model import prepare_frame  # noqa: E402


def windows(path: str, part: str):
    grid = load_grid(path)
    spec = read_split(path)
    prep = prepare_frame(grid)
    start = spec.heldout_start(grid)
    if part == "train":
        servers = [s for s in grid["server_name"].unique() if not spec.is_heldout_server(s)]
        prep = prep[prep["server_name"].isin(servers)]
        orig = origins_for(prep, pd.Series(grid["timestamp"].min(), index=start.index), horizon=96,
                           min_history=HISTORY, every=24)
        cut = start.dt.as_unit("s").astype("int64") // 300
        orig = orig[orig["origin_idx"] + 96 <= orig["server_name"].map(cut)]
    else:
        orig = origins_for(prep, start, horizon=96, min_history=HISTORY, every=24)
    return extract_windows(prep, orig, horizon=96, history=HISTORY), informative_columns(grid)


def forecast(hists: list[np.ndarray], metric: str) -> np.ndarray:
    width = max(len(h) for h in hists)
    values = np.full((len(hists), width), np.nan)
    for i, h in enumerate(hists):
        values[i, width - len(h):] = h
    return H.heuristic_forecast_batch(values, np.array([len(h) for h in hists]), 96, (0.1, 0.5, 0.9), metric)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("part", nargs="?", default="heldout", choices=["train", "heldout"])
    ap.add_argument("--factors", default=None, help="comma-separated band factors (default: BAND_SCALE's own)")
    args = ap.parse_args()
    w, info = windows(args.data, args.part)
    print(f"{args.data} {args.part}: {len(w)} forecast origins; per factor: p10-p90 coverage, mean pinball")
    shipped = dict(H.BAND_SCALE)
    for m in METRICS:
        keep = info[m].reindex(w.server).to_numpy()
        hists = [h for h, k in zip(w.history[m], keep) if k]
        if not hists:
            continue
        actual = w.actual[m][keep]
        factors = [float(f) for f in args.factors.split(",")] if args.factors else [shipped[m]]
        cells = []
        for f in factors:
            H.BAND_SCALE[m] = f
            s = score(forecast(hists, m), actual)
            cells.append(f"{f:.2f}: {s.coverage:.1%} {s.mean_pinball:.3f}")
        H.BAND_SCALE[m] = shipped[m]
        print(f"  {m:15} {len(hists):6d}  " + " | ".join(cells))


if __name__ == "__main__":
    main()
