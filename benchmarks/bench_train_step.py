"""One training step (forward, backward, Adam) of the shipped TFT, with pytorch-forecasting's
interpolation and with it swapped for the equivalent matmul (engine.fast_tft.swap_interpolation),
in the same run; and whether the two give the same gradients.

    python benchmarks/bench_train_step.py [--batch 64] [--steps 10] [--device cpu|cuda]

The inputs are the network's input tensors for windows of a simulated fleet (built as the
inference path builds them: engine.device_inputs), the targets random: what is timed is the
network, not data loading.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.device_inputs import batch_inputs  # noqa: E402
from engine.fast_tft import FastTFT, swap_interpolation  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.sources import SimulatorSource  # noqa: E402
from engine.store import right_aligned  # noqa: E402
from engine.tft_model import find_latest_model, load_model_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_train_step: no CUDA device")
    warnings.filterwarnings("ignore")
    dev = args.device
    loaded = load_model_dir(args.model or find_latest_model(Path(__file__).resolve().parents[1] / "models"))
    L = loaded.config.max_encoder_length
    engine = Engine(SimulatorSource(args.batch, seed=0), None, device="cpu")
    engine.start()
    w = engine.store.windows()
    fast = FastTFT(loaded, device="cpu", batch_size=args.batch, fold_vsn=False, fuse_blocks=False)
    v32, lens = w.values[:, -L:].astype(np.float32), np.minimum(w.lengths, L).astype(np.int64)
    day = None
    if fast.day_ago:        # the same time yesterday: from the whole store window (day unknown where it is short)
        full = right_aligned(w.values.astype(np.float32), fast.W)
        day = tuple(torch.from_numpy(a) for a in fast.day_ago_inputs(full, np.minimum(w.lengths, fast.W)))
    x = batch_inputs(fast, torch.from_numpy(v32), lens, torch.from_numpy(w.last_epoch.astype(np.int64)),
                     torch.from_numpy(fast.profile_codes(w.profiles)), day=day)
    x = {k: [t.to(dev) for t in v] if isinstance(v, list) else v.to(dev) for k, v in x.items()}
    gen = torch.Generator().manual_seed(0)
    H, Q = loaded.config.max_prediction_length, len(loaded.config.quantiles)
    y = [torch.randn(args.batch, H, 1, generator=gen).to(dev) for _ in loaded.config.targets]
    q = torch.tensor(loaded.config.quantiles, device=dev)

    def loss_of(out):
        total = 0.0
        for pred, target in zip(out["prediction"], y):
            err = target - pred
            total = total + torch.maximum(q * err, (q - 1) * err).mean()
        return total

    library = copy.deepcopy(loaded.model).to(dev).train()
    swapped = copy.deepcopy(loaded.model).to(dev)
    n = swap_interpolation(swapped)
    swapped.train()
    torch.manual_seed(1)
    grads = []
    for model in (library, swapped):       # same dropout masks: reseed before each
        torch.manual_seed(1)
        model.zero_grad()
        loss_of(model(x)).backward()
        grads.append({k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None})
    diff = max(float((grads[0][k] - grads[1][k]).abs().max()) for k in grads[0])
    scale = max(float(g.abs().max()) for g in grads[0].values())
    print(f"device {dev}{' (' + torch.cuda.get_device_name(0) + ')' if dev.startswith('cuda') else ''}; "
          f"batch {args.batch}; {n} interpolations swapped; gradients library vs swapped: max abs diff "
          f"{diff:.2e} (largest gradient {scale:.2e})", flush=True)

    def step_ms(model) -> float:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        for i in range(args.steps + 2):
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_of(model(x)).backward()
            opt.step()
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    a, b = step_ms(library), step_ms(swapped)
    print(f"training step (forward + backward + Adam), median of {args.steps}: library {a:.1f} ms, "
          f"interpolation swapped {b:.1f} ms: {a / b:.2f}x", flush=True)


if __name__ == "__main__":
    main()
