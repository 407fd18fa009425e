"""(pred8h, pred30m, event8h, event30m) per metric for a data set's origins -> npz."""
import sys, argparse
from pathlib import Path
import numpy as np
sys.path.insert(0, '/work/main')
from engine.contract import METRICS
from engine.datasplit import extract_windows, origins_for, read_split
from engine.evaluation import HISTORY, calibrated_tft, load_grid
from engine.risk import crossing_probability_batch
from engine.sources import read_cores
from engine.tft_model import find_latest_model, load_model_dir, prepare_frame
from engine.thresholds import DEFAULT_THRESHOLDS
ap = argparse.ArgumentParser(); ap.add_argument('data', type=Path); ap.add_argument('out'); ap.add_argument('--all', action='store_true'); ap.add_argument('--every', type=int, default=12)
a = ap.parse_args()
loaded = load_model_dir(find_latest_model('/work/main/models')); config = loaded.config
grid = load_grid(a.data); prepared = prepare_frame(grid)
start = grid.groupby('server_name')['timestamp'].min() if a.all else read_split(a.data).heldout_start(grid)
origins = origins_for(prepared, start, horizon=config.max_prediction_length, min_history=max(config.history_length, HISTORY), every=a.every)
windows = extract_windows(prepared, origins, horizon=config.max_prediction_length, history=HISTORY)
q = calibrated_tft(loaded, prepared, origins, windows)
cores = read_cores(a.data)
out = {}
for m in METRICS:
    crit = np.array([DEFAULT_THRESHOLDS.for_metric(m, cores.get(str(s)))[1] for s in windows.server])
    current = np.array([h[-1] for h in windows.history[m]])
    moving = np.array([np.ptp(h) > 0 for h in windows.history[m]])
    keep = (current < crit) & moving & np.isfinite(windows.actual[m]).all(axis=1)
    out[m+'_p8'] = crossing_probability_batch(q[m], crit, q[m].shape[1], current)[keep]
    out[m+'_p30'] = crossing_probability_batch(q[m], crit, 6, current)[keep]
    out[m+'_e8'] = (windows.actual[m] >= crit[:, None]).any(axis=1)[keep]
    out[m+'_e30'] = (windows.actual[m][:, :6] >= crit[:, None]).any(axis=1)[keep]
    out[m+'_server'] = np.asarray(windows.server)[keep].astype(str)
    print(m, keep.sum(), out[m+'_e8'].sum(), out[m+'_e30'].sum())
np.savez(a.out, **out)
