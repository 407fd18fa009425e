"""Heuristic p10-p90 coverage and pinball on the demo fleet: python benchmarks/results/review-2026-11-27/heuristic_bands.py train|heldout"""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main")
import engine.heuristic as H
from engine.evaluation import load_grid, score, HISTORY
from engine.datasplit import read_split, origins_for, extract_windows, informative_columns
from engine.tft_model import prepare_frame
from engine.baselines import BASELINES
from engine.contract import METRICS
path = "/work/main/demo_data"; part = sys.argv[1]
grid = load_grid(path); spec = read_split(path)
prep = prepare_frame(grid)
start = spec.heldout_start(grid)
if part == "train":   # origins in the training period only: from day 2 to 8 h before the held-out start
    servers = [s for s in grid["server_name"].unique() if not spec.is_heldout_server(s)]
    prep = prep[prep["server_name"].isin(servers)]
    first = grid["timestamp"].min()
    orig = origins_for(prep, pd.Series(first, index=start.index), horizon=96, min_history=HISTORY, every=24)
    cut = (start.dt.as_unit("s").astype("int64") // 300)
    orig = orig[orig["origin_idx"] + 96 <= orig["server_name"].map(cut)]
else:
    orig = origins_for(prep, start, horizon=96, min_history=HISTORY, every=24)
W = extract_windows(prep, orig, horizon=96, history=HISTORY)
info = informative_columns(grid)
def heur(hists, m):
    L = max(len(h) for h in hists); v = np.full((len(hists), L), np.nan); ln = np.array([len(h) for h in hists])
    for i, h in enumerate(hists): v[i, L - len(h):] = h
    return H.heuristic_forecast_batch(v, ln, 96, (0.1, 0.5, 0.9), m)
print(part, "windows", len(W))
for m in METRICS:
    mask = info[m].reindex(W.server).to_numpy(); y = W.actual[m][mask]
    hs = [h for h, k in zip(W.history[m], mask) if k]
    s = score(heur(hs, m), y)
    print(f"  {m:15} pinball {s.mean_pinball:.3f} cov {s.coverage:.1%}")
