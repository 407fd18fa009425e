"""Three ideas for the CPU forward pass, measured in one process on one thread, rounds
alternated (the machine's speed drifts by up to 2x within minutes):

1. the folded variable selection's row blocks: 256 / 512 / 1,024 (now) / 2,048 rows;
2. an upper bound for caching the level inputs' GRNs across ticks: the encoder's variable
   selection with 4 of its 8 per-window GRNs (the metrics' ``*_level`` inputs are fixed
   functions of each sample, so their GRN outputs could be kept from tick to tick; the
   weights still change) plus the weighted sum of a stand-in cached (rows, 4, 32) tensor,
   against all 8; the gather from such a cache is not counted;
3. ELU computed as max(x, exp(min(x, 0)) - 1) instead of torch's (expm1-based) kernel,
   which is ~5x slower than exp on its own: the whole forward with each, and how far the
   forecasts move.

    python benchmarks/results/speed-2026-11-29d/vsn_parts.py [ROUNDS]
"""
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine.fast_tft import FastTFT  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.sources import SimulatorSource  # noqa: E402
from engine.tft_model import load_model_dir  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
torch.set_num_threads(1)
M = str(ROOT / "models/tft_model_20261127T124449Z")
eng = Engine(SimulatorSource(1000, seed=0), M, device="cpu")
eng.start()
w = eng.store.windows()
f = FastTFT(load_model_dir(M), workers=1, trace=False)
W = f.W
v, lens, ends = w.values[:, -W:], np.minimum(w.lengths, W).copy(), w.last_epoch.copy()

# one 64-window batch's inputs to the network and to its encoder variable selection
cap = {}
enc = f.model.encoder_variable_selection
h1 = f.model.register_forward_pre_hook(lambda m, a: cap.setdefault("net", a))
h2 = enc.register_forward_pre_hook(lambda m, a, k: cap.setdefault("vsn", (a, k)), with_kwargs=True)
f.predict(v[:64], lens[:64], ends[:64], w.profiles[:64])
h1.remove()
h2.remove()
net_args, (vsn_args, vsn_kwargs) = cap["net"], cap["vsn"]


def timed(fn, n=10):
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def report(title, res):
    print(title)
    base = next(iter(res))
    for label, times in res.items():
        ratio = statistics.median([b / a for a, b in zip(res[base], times)])
        print(f"  {label:34s} median {statistics.median(times):6.2f} ms   per-round ratio to {base!r}: {ratio:.3f}")


with torch.inference_mode():
    # 1. row blocks
    res = {}
    for _ in range(ROUNDS):
        for rows in (1024, 256, 512, 2048):
            enc.block_rows = rows
            res.setdefault(f"{rows} rows", []).append(timed(lambda: enc(*vsn_args, **vsn_kwargs)))
    enc.block_rows = 1024
    report("1. encoder variable selection, one 64-window batch, by row block", res)

    # 2. 4 of 8 per-window GRNs (upper bound of a level-input cache)
    print("   per-window (dense) inputs:", [enc.names[i] for i in enc.dense])
    enc4 = copy.deepcopy(enc)
    keep = [i for i, j in enumerate(enc.dense) if not enc.names[j].endswith("_level")]
    for name in ("a1", "c1", "ln_r_w", "ln_a_w", "ln_a_b", "m"):
        setattr(enc4, "d_" + name, getattr(enc, "d_" + name)[keep].contiguous())
    enc4.d_ln_a_bt = enc.d_ln_a_bt[:, keep].contiguous()
    enc4.dense = [enc.dense[i] for i in keep]
    rows = 64 * W
    cached, weights = torch.randn(rows, 8 - len(keep), enc.hidden_size), torch.rand(rows, 8 - len(keep))

    def with_cache():
        out, wts = enc4(*vsn_args, **vsn_kwargs)
        return out.add_((cached * weights[:, :, None]).sum(1).view(out.shape)), wts

    res = {}
    for _ in range(ROUNDS):
        res.setdefault("all 8 GRNs (now)", []).append(timed(lambda: enc(*vsn_args, **vsn_kwargs)))
        res.setdefault("4 GRNs + a cached weighted sum", []).append(timed(with_cache))
    report("2. encoder variable selection: the level inputs' GRNs skipped (upper bound of caching them)", res)

    # 3. ELU through exp
    torch_elu = F.elu

    def exp_elu(x, alpha=1.0, inplace=False):
        assert alpha == 1.0
        n = torch.clamp_max(x, 0.0).exp_().sub_(1.0)
        return torch.maximum(x, n, out=x) if inplace else torch.maximum(x, n)

    ref = f.model(*net_args)["prediction"]
    F.elu = exp_elu
    new = f.model(*net_args)["prediction"]
    F.elu = torch_elu
    drift = max(((a - b).abs() / b.abs().clamp_min(1.0)).max().item() for a, b in zip(new, ref))
    res = {}
    for _ in range(ROUNDS):
        for label, fn in (("torch's ELU (now)", torch_elu), ("ELU through exp", exp_elu)):
            F.elu = fn
            res.setdefault(label, []).append(timed(lambda: f.model(*net_args), n=8))
    F.elu = torch_elu
    report(f"3. the whole forward, one 64-window batch (forecasts move by up to {drift:.1e} relative)", res)
