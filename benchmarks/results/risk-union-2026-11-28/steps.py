"""Per-step standard scores z (n, H) per metric, events (any crossing in 8h / 30m), server, heldout flag -> npz."""
import sys, argparse
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from engine.contract import METRICS
from engine.datasplit import extract_windows, origins_for, read_split
from engine.evaluation import HISTORY, calibrated_tft, load_grid
from engine.risk import standard_scores
from engine.sources import read_cores
from engine.tft_model import find_latest_model, load_model_dir, prepare_frame
from engine.thresholds import DEFAULT_THRESHOLDS
ap = argparse.ArgumentParser(); ap.add_argument('data', type=Path); ap.add_argument('out'); ap.add_argument('--every', type=int, default=12)
a = ap.parse_args()
loaded = load_model_dir(find_latest_model(Path(__file__).resolve().parents[3] / 'models')); config = loaded.config
grid = load_grid(a.data); prepared = prepare_frame(grid)
split = read_split(a.data)
start = split.heldout_start(grid)
origins = origins_for(prepared, start, horizon=config.max_prediction_length, min_history=max(config.history_length, HISTORY), every=a.every)
windows = extract_windows(prepared, origins, horizon=config.max_prediction_length, history=HISTORY)
q = calibrated_tft(loaded, prepared, origins, windows)
cores = read_cores(a.data)
out = {}
out['_heldout_names'] = np.array(sorted({str(s) for s in windows.server if split.is_heldout_server(str(s))}))
for m in METRICS:
    crit = np.array([DEFAULT_THRESHOLDS.for_metric(m, cores.get(str(s)))[1] for s in windows.server])
    current = np.array([h[-1] for h in windows.history[m]])
    moving = np.array([np.ptp(h) > 0 for h in windows.history[m]])
    keep = (current < crit) & moving & np.isfinite(windows.actual[m]).all(axis=1)
    out[m+'_z'] = standard_scores(q[m], crit)[keep].astype(np.float32)
    ex = windows.actual[m] >= crit[:, None]
    out[m+'_ex'] = ex[keep]
    out[m+'_server'] = np.asarray(windows.server)[keep].astype(str)
    print(m, keep.sum(), ex[keep].any(axis=1).sum())
np.savez(a.out, **out)
