"""Per-module forward times (one thread, a 64-window batch) of two models on a 1,000-server
simulated fleet:  python benchmarks/results/day-ago-2026-11-27/prof_modules.py MODEL_A MODEL_B
(MODEL_B also sets the fleet's window width: give the day-ago model second)."""
import sys, time, statistics, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3])); warnings.filterwarnings("ignore")
import numpy as np, torch
from engine.runtime import Engine
from engine.sources import SimulatorSource
from engine.tft_model import load_model_dir
from engine.fast_tft import FastTFT
from engine.device_inputs import batch_inputs
torch.set_num_threads(1)
eng = Engine(SimulatorSource(1000, seed=0), sys.argv[2], device="cpu"); eng.start()
w = eng.store.windows()
for path in sys.argv[1:3]:
    loaded = load_model_dir(path); f = FastTFT(loaded)
    W, L = f.W, f.L
    v = w.values[:, -W:].astype(np.float32); lens = np.minimum(w.lengths, W)
    t = []
    for _ in range(5):
        t0 = time.perf_counter(); d = f.day_ago_inputs(v, lens) if f.day_ago else None; t.append(time.perf_counter() - t0)
    print(path[-25:], "day_ago_inputs ms", round(1000 * statistics.median(t), 1))
    ve, le = v[:, W - L:], np.minimum(lens, L)
    sl = slice(0, 64)
    day = None if d is None else tuple(torch.from_numpy(a)[sl] for a in d)
    with torch.inference_mode():
        ts = []; tf = []
        for _ in range(15):
            t0 = time.perf_counter()
            x = batch_inputs(f, torch.from_numpy(ve[sl]), le[sl], torch.from_numpy(w.last_epoch[sl].astype(np.int64)), torch.from_numpy(f.profile_codes(w.profiles[:64])), True, day)
            t1 = time.perf_counter(); f.model(x); t2 = time.perf_counter()
            ts.append(t1 - t0); tf.append(t2 - t1)
        print("  batch_inputs ms", round(1000 * statistics.median(ts), 2), "forward ms", round(1000 * statistics.median(tf), 2))
        # forward broken down by module
        times = {}
        def pre(name):
            def h(m, i): times.setdefault(name, []).append(-time.perf_counter())
            return h
        def post(name):
            def h(m, i, o): times[name][-1] += time.perf_counter()
            return h
        hs = []
        for name in ["encoder_variable_selection", "decoder_variable_selection", "lstm_encoder", "lstm_decoder", "multihead_attn", "static_enrichment", "pos_wise_ff", "static_context_variable_selection"]:
            mod = getattr(f.model, name)
            hs += [mod.register_forward_pre_hook(pre(name)), mod.register_forward_hook(post(name))]
        for _ in range(10): f.model(x)
        for h in hs: h.remove()
        print("  ", {k: round(1000 * statistics.median(v), 2) for k, v in times.items()})
