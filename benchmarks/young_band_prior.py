"""The band a server with little history gets from the heuristic (engine.heuristic.YOUNG_PRIOR):
the half-width covering 80 % of |y[t+h] - y[t]| over every server's training part of each data
set (each data set weighted equally; series flat over their whole training part left out;
load as a multiple of max(level, 0.5)), at h = 1, 3, 6, 12, 24, 48, 96 steps.

    python benchmarks/young_band_prior.py demo_data ../shared/data/real/bitbrains_rnd.csv.gz ../shared/data/real/smd.csv.gz
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.contract import METRICS, load_path  # noqa: E402
from engine.datasplit import read_split  # noqa: E402
from engine.heuristic import LOAD_PRIOR_MIN_LEVEL, YOUNG_STEPS  # noqa: E402


def changes(path: str) -> dict[str, dict[int, np.ndarray]]:
    frame = load_path(path).frame
    start = read_split(path).heldout_start(frame)
    out = {m: {h: [] for h in YOUNG_STEPS} for m in METRICS}
    for name, g in frame.groupby("server_name"):
        s = start.get(name)
        g = (g[g.timestamp < s] if s is not None else g).set_index("timestamp").asfreq("5min")
        for m in METRICS:
            y = g[m].to_numpy(float)
            if not np.nanstd(y) > 0:
                continue
            for h in YOUNG_STEPS:
                d = y[h:] - y[:-h]
                if m == "load_average":
                    d = d / np.maximum(y[:-h], LOAD_PRIOR_MIN_LEVEL)
                out[m][h].append(np.abs(d[~np.isnan(d)]))
    return {m: {h: np.concatenate(v) for h, v in hs.items() if v} for m, hs in out.items()}


def main() -> None:
    warnings.filterwarnings("ignore")
    per_set = [changes(p) for p in sys.argv[1:]]
    for m in METRICS:
        row = []
        for h in YOUNG_STEPS:
            parts = [c[m][h] for c in per_set if h in c[m]]
            values = np.concatenate(parts)
            weights = np.concatenate([np.full(len(x), 1.0 / len(x)) for x in parts])
            order = np.argsort(values)
            cum = np.cumsum(weights[order])
            cum /= cum[-1]
            row.append(f"{values[order][np.searchsorted(cum, 0.8)]:.2f}")
        print(f"{m:<16}", " ".join(row))


if __name__ == "__main__":
    main()
