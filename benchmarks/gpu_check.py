"""GPU checks of the fast inference path (needs CUDA; prints what it measured).

1. Parity on the GPU: FastTFT on CUDA (inputs and calibration there, engine.device_inputs)
   against FastTFT on the CPU (inputs and calibration on the host) and against the library's own path
   (TimeSeriesDataSet + ``predict`` on the GPU), on a simulated fleet with short windows.
2. The interpolation swap: pytorch-forecasting's TimeDistributedInterpolation against our
   matmul (same output?), and the forward's GPU time with the library's modules, with the
   swap alone, and with everything FastTFT changes; the library forward's top kernels.
3. 10,000 servers: FastTFT.predict (upload, inputs, forward, calibration, download) per
   batch size, and where the GPU time of the best one goes.

    python benchmarks/gpu_check.py [--model DIR] [--servers 10000] [--runs 5]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.device_inputs import batch_inputs  # noqa: E402
from engine.fast_tft import FastTFT, swap_interpolation  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.sources import SimulatorSource  # noqa: E402
from engine.store import right_aligned  # noqa: E402
from engine.tft_model import find_latest_model, load_model_dir  # noqa: E402


def fleet_windows(n: int, seed: int = 0):
    """The windows of a simulated fleet (see ``arrays`` to shorten some)."""
    engine = Engine(SimulatorSource(n, seed=seed), None, device="cpu")
    engine.start()
    return engine.store.windows()


def arrays(w, L: int, short_every: int | None = 7):
    """The windows as FastTFT.predict takes them, ``L`` (the model's history_length) wide:
    narrower store windows are padded on the left (padding is ignored)."""
    lens = np.minimum(w.lengths, L).astype(np.int64)
    if short_every:
        lens[::short_every] = np.maximum(40, lens[::short_every] // 3)
    return right_aligned(w.values, L), lens, w.last_epoch.astype(np.int64), list(w.profiles)


DEV = "cuda"


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def cuda_ms(fn, runs: int = 10, warm: int = 3) -> float:
    if DEV != "cuda":
        return wall_ms(fn, runs, warm)
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def wall_ms(fn, runs: int = 5, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def rel_diff(a: dict, b: dict) -> tuple[float, float]:
    """Largest |a - b|, and largest |a - b| / max(|b|, 1) (relative, where values are not tiny)."""
    absd = max(float(np.nanmax(np.abs(a[m] - b[m]))) for m in a)
    reld = max(float(np.nanmax(np.abs(a[m] - b[m]) / np.maximum(np.abs(b[m]), 1.0))) for m in a)
    return absd, reld


def top_kernels(prof, k: int = 10) -> list[tuple[str, float, float]]:
    rows = [(e.key, e.device_time_total) for e in prof.key_averages() if e.device_time_total > 0]
    # keep GPU kernels (leaf events): names the CUDA runtime gives, not aten:: ops
    rows = [r for r in rows if not r[0].startswith(("aten::", "cuda", "Memcpy", "Memset"))] or rows
    total = sum(t for _, t in rows) or 1.0
    rows.sort(key=lambda r: -r[1])
    return [(name[:70], t / 1000.0, 100.0 * t / total) for name, t in rows[:k]], total / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--servers", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dry-run", action="store_true", help="run every step on the CPU (to try the script)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    global DEV
    if args.dry_run:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    else:
        print(f"GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    model_dir = args.model or find_latest_model(Path(__file__).resolve().parents[1] / "models")
    loaded = load_model_dir(model_dir)
    L, H = loaded.config.history_length, loaded.config.max_prediction_length    # (history: the encoder, + a day for day_ago)

    global ACTIVITIES
    ACTIVITIES = [torch.profiler.ProfilerActivity.CUDA if DEV == "cuda" else torch.profiler.ProfilerActivity.CPU]

    # 1. parity -------------------------------------------------------------------
    w = fleet_windows(500, seed=3)
    v, lens, ends, profiles = arrays(w, L)
    ref = FastTFT(loaded, device="cpu").predict(v, lens, ends, profiles)
    for label, fast in (("cuda, inputs+calibration on the GPU", FastTFT(loaded, device=DEV, on_device=True)),
                        ("cuda, inputs and calibration on the host", FastTFT(loaded, device=DEV, on_device=False)),
                        ("cuda, library modules (no swap/fold/fuse)",
                         FastTFT(loaded, device=DEV, swap_interpolation=False, fold_vsn=False, fuse_blocks=False))):
        out = fast.predict(v, lens, ends, profiles)
        a, r = rel_diff(out.quantiles, ref.quantiles)
        print(f"parity 500 windows ({(lens < L).sum()} short): FastTFT {label} vs FastTFT cpu: "
              f"max abs {a:.2e}, max rel {r:.2e}", flush=True)
    try:
        from bench_inference import stock_forecast

        engine = Engine(SimulatorSource(300, seed=5), model_dir, device=DEV)
        engine.start()
        windows = engine.store.windows()
        ours = engine.forecaster.forecast(windows)
        stock = stock_forecast(engine, windows, "gpu" if DEV == "cuda" else "cpu")
        a, r = rel_diff(ours.quantiles, stock.quantiles)
        print(f"parity 300 servers: FastTFT cuda vs TimeSeriesDataSet + predict on the GPU: "
              f"max abs {a:.2e}, max rel {r:.2e}", flush=True)
    except Exception as exc:  # noqa: BLE001 - report and go on to the timings
        print(f"stock parity failed: {type(exc).__name__}: {exc}", flush=True)

    # 2. the interpolation swap ------------------------------------------------------
    from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import ResampleNorm

    lib = ResampleNorm(1, 32).to(DEV)
    swapped = copy.deepcopy(lib)
    k = swap_interpolation(swapped)
    x = torch.randn(1024, 384, 1, device=DEV)
    with torch.inference_mode():
        d = (lib(x) - swapped(x)).abs().max().item()
    print(f"interpolation in ResampleNorm(1 -> 32), 1024x384 rows: {k} swapped; library vs matmul "
          f"max abs diff {d:.2e}", flush=True)

    w1k = fleet_windows(1000, seed=0)
    v1, l1, e1, p1 = arrays(w1k, L, short_every=None)
    variants = {
        "library modules": FastTFT(loaded, device=DEV, batch_size=1000, swap_interpolation=False,
                                   fold_vsn=False, fuse_blocks=False),
        "interpolation swapped": FastTFT(loaded, device=DEV, batch_size=1000, fold_vsn=False, fuse_blocks=False),
        "FastTFT (swap+fold+fuse)": FastTFT(loaded, device=DEV, batch_size=1000),
    }
    base = variants["FastTFT (swap+fold+fuse)"]
    x1 = batch_inputs(base, torch.from_numpy(v1.astype(np.float32)).to(DEV), l1, torch.from_numpy(e1).to(DEV),
                      torch.from_numpy(base.profile_codes(p1)).to(DEV))
    for label, fast in variants.items():
        with torch.inference_mode():
            ms = cuda_ms(lambda f=fast: f.model(x1))
        print(f"forward, 1,000 full windows, one batch: {label}: {ms:.2f} ms", flush=True)
    with torch.inference_mode(), torch.profiler.profile(
            activities=ACTIVITIES) as prof:
        variants["library modules"].model(x1)
        sync()
    rows, total = top_kernels(prof)
    print(f"library forward at 1,000 windows: {total:.2f} ms of GPU kernels; top kernels:")
    for name, ms, pct in rows:
        print(f"  {pct:5.1f} %  {ms:8.3f} ms  {name}")
    with torch.inference_mode(), torch.profiler.profile(
            activities=ACTIVITIES) as prof:
        base.model(x1)
        sync()
    rows, total = top_kernels(prof)
    print(f"FastTFT forward at 1,000 windows: {total:.2f} ms of GPU kernels; top kernels:")
    for name, ms, pct in rows:
        print(f"  {pct:5.1f} %  {ms:8.3f} ms  {name}", flush=True)
    del variants, x1

    # 3. 10,000 servers -----------------------------------------------------------------
    n = args.servers
    wn = fleet_windows(n, seed=0)
    vn, ln, en, pn = arrays(wn, L, short_every=None)
    best = None
    for bs in (1024, 2048, 4096, n):
        for on_device in (True, False):
            fast = FastTFT(loaded, device=DEV, batch_size=bs, on_device=on_device)
            ms = wall_ms(lambda f=fast: f.predict(vn, ln, en, pn, with_importance=True), runs=args.runs)
            print(f"{n} servers, batch {bs}, {'inputs+calibration on the GPU' if on_device else 'inputs+calibration on the host'}: "
                  f"predict {ms:.1f} ms (median of {args.runs})", flush=True)
            if on_device and (best is None or ms < best[0]):
                best = (ms, bs)
        if DEV == "cuda":
            torch.cuda.empty_cache()
    fast = FastTFT(loaded, device=DEV, batch_size=best[1])
    fast.predict(vn, ln, en, pn, with_importance=True)
    with torch.profiler.profile(activities=sorted({torch.profiler.ProfilerActivity.CPU, *ACTIVITIES},
                                                  key=str)) as prof:
        t0 = time.perf_counter()
        fast.predict(vn, ln, en, pn, with_importance=True)
        wall = (time.perf_counter() - t0) * 1000
    rows, total = top_kernels(prof, 12)
    print(f"{n} servers, batch {best[1]}: predict {wall:.1f} ms wall under the profiler, "
          f"{total:.1f} ms of GPU kernels; top kernels:")
    for name, ms, pct in rows:
        print(f"  {pct:5.1f} %  {ms:8.3f} ms  {name}", flush=True)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50), flush=True)
    if DEV == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
