"""The traced network's batching on a fleet with odd windows, in one process, rounds alternated
(the machine's speed drifts by up to 2x within minutes: separate processes were not comparable).
    python benchmarks/results/speed-2026-11-29c/mixed_fleet_inproc.py [ROUNDS]
"new": FastTFT as committed; "before": the same with the plan of bd39ff8 (no regrouping, traced
only when the whole fleet is full and ends together); "untraced": trace=False, no regrouping.
"mixed": 1,000 simulated servers, 10 of them a step behind, 5 with 100 samples of history."""
import sys, time, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np, torch
from engine.runtime import Engine
from engine.sources import SimulatorSource
from engine.tft_model import load_model_dir
from engine.fast_tft import FastTFT, even_batches
torch.set_num_threads(1)
M = str(__import__("pathlib").Path(__file__).resolve().parents[3] / "models/tft_model_20261127T124449Z")
eng = Engine(SimulatorSource(1000, seed=0), M, device="cpu"); eng.start()
w = eng.store.windows(); loaded = load_model_dir(M)
new = FastTFT(loaded, workers=2)
old = FastTFT(loaded, workers=2)
# the code before: no plan; the whole fleet traced only when every window is full and ends together
def old_plan(lengths, last_epoch, plain):
    ok = bool((lengths == old.L).all() and (last_epoch == last_epoch[0]).all())
    return None, [(sl, ok) for sl in even_batches(len(lengths), old.batch_size)]
old._plan = old_plan
untraced = FastTFT(loaded, workers=2, trace=False)
untraced._plan = lambda l, e, p: (None, [(sl, False) for sl in even_batches(len(l), untraced.batch_size)])
W = new.W; v = w.values[:, -W:]; lens = np.minimum(w.lengths, W).copy(); ends = w.last_epoch.copy()
mixed_lens, mixed_ends = lens.copy(), ends.copy()
mixed_ends[::100] -= 300; mixed_lens[5::200] = 100
fleets = {"aligned": (lens, ends), "mixed": (mixed_lens, mixed_ends)}
res = {}
for f in (new, old, untraced):
    for name, (l, e) in fleets.items(): f.predict(v, l, e, w.profiles)
for rep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 6):
    for name, (l, e) in fleets.items():
        for label, f in (("new", new), ("old", old), ("untraced", untraced)):
            t0 = time.perf_counter(); f.predict(v, l, e, w.profiles); res.setdefault((name, label), []).append(time.perf_counter() - t0)
for name in fleets:
    med = {label: statistics.median(res[(name, label)]) for label in ("new", "old", "untraced")}
    ratios = [a / b for a, b in zip(res[(name, "new")], res[(name, "old")])]
    print(f"{name:8s} predict medians: new {med['new']:.3f}  before {med['old']:.3f}  untraced {med['untraced']:.3f}  "
          f"new/before per round median {statistics.median(ratios):.3f}")
