"""Heuristic band coverage for young histories (k samples), YOUNG_CAP False vs True: see README.md."""
import sys, numpy as np, pandas as pd
sys.path.insert(0, "/work/main")
import engine.heuristic as he   # needs the YOUNG_CAP switch of README.md here (removed after the run)
from engine.contract import load_path, METRICS
from engine.sources import to_grid
fr = to_grid(load_path("/work/main/demo_data").frame)
H = 96
res = {}
for name, g in fr.groupby("server_name"):
    v = g.sort_values("timestamp")[list(METRICS)].to_numpy(dtype=float)
    for o in range(300, len(v) - H, 24):
        for k in (3, 6, 12, 24, 35):
            for j, m in enumerate(METRICS):
                hist = v[o - k:o, j]; truth = v[o:o + H, j]
                if np.isnan(hist).any() or np.isnan(truth).any() or np.ptp(np.r_[hist, truth]) == 0: continue
                for cap in (False, True):
                    he.YOUNG_CAP = cap
                    q = he.heuristic_forecast(hist, H, (0.1, 0.5, 0.9), m)
                    cov = np.mean((truth >= q[:, 0]) & (truth <= q[:, 2]))
                    pin = np.mean([np.mean(np.maximum(a * (truth - q[:, i]), (a - 1) * (truth - q[:, i]))) for i, a in enumerate((0.1, 0.5, 0.9))])
                    res.setdefault((k, m, cap), []).append((cov, pin))
for k in (3, 6, 12, 24, 35):
    for m in METRICS:
        a = np.array(res[(k, m, False)]); b = np.array(res[(k, m, True)])
        print(f"k={k:2d} {m:15s} n={len(a):5d} cover {a[:,0].mean():.3f} -> {b[:,0].mean():.3f}  pinball {a[:,1].mean():.3f} -> {b[:,1].mean():.3f} ({100*(b[:,1].mean()/a[:,1].mean()-1):+.1f} %)")
