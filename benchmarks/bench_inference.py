"""Per-tick cost of forecasting a fleet: the stock pytorch-forecasting path vs ours.

A tick is: new samples -> window store -> forecasts -> risk -> alerts -> snapshot.
Both paths share everything but the forecast itself:

- stock: the store's windows -> a pandas frame -> TimeSeriesDataSet(predict=True)
  -> ``model.predict(mode="quantiles")`` -> the same calibration;
- ours:  the store's windows -> FastTFT (tensors built directly, folded variable selection,
  small batches run side by side on the cores, inference_mode).

Prints, per fleet size, the median of --runs ticks for each path and their ratio, the
split of our tick into its stages, and the process RSS after the 1,000-server ticks.

    python benchmarks/bench_inference.py [--model DIR] [--sizes 25 100 1000] [--runs 3] [--warmup 1] [--device auto]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.calibration import apply_calibration, window_scale  # noqa: E402
from engine.contract import METRICS  # noqa: E402
from engine.forecaster import FleetForecast, default_torch_threads, default_workers  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.sources import SimulatorSource  # noqa: E402
from engine.evaluation import quiet_lightning  # noqa: E402
from engine.tft_model import build_dataset, find_latest_model, normalise_profile, prepare_frame  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stock_forecast(engine: Engine, windows, accelerator: str = "cpu") -> FleetForecast:
    """The library's own path over the same windows (on ``accelerator``: "cpu" or "gpu")."""
    fast = engine.forecaster.fast
    loaded, config = fast.loaded, fast.loaded.config
    L = config.max_encoder_length
    W = config.history_length         # the encoder, and the day before it for a day_ago model
    rows = []
    for i, name in enumerate(windows.names):
        n = int(min(windows.lengths[i], W))
        H = config.max_prediction_length
        ts = pd.to_datetime(windows.last_epoch[i] - 300 * (n - 1) + 300 * np.arange(n + H), unit="s", utc=True)
        vals = np.concatenate([windows.values[i, -n:], np.repeat(windows.values[i, -1:], H, axis=0)])
        frame = pd.DataFrame(vals, columns=list(METRICS))
        frame["timestamp"] = ts
        frame["server_name"] = name
        frame["profile"] = windows.profiles[i]
        frame["segment"] = 0
        rows.append(frame)
    prepared = prepare_frame(pd.concat(rows, ignore_index=True))
    dataset = build_dataset(config, prepared, predict=True)
    quiet_lightning()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = loaded.model.predict(dataset.to_dataloader(train=False, batch_size=1024, num_workers=0),
                                    mode="quantiles", return_index=True,
                                    trainer_kwargs=dict(logger=False, enable_progress_bar=False,
                                                        accelerator=accelerator, devices=1,
                                                        enable_model_summary=False))
    order = {s.split("#")[0]: k for k, s in enumerate(pred.index["series"])}
    groups = normalise_profile(pd.Series(windows.profiles)).to_numpy()
    rows_idx = [order[n] for n in windows.names]
    out = {}
    for j, m in enumerate(config.targets):
        raw = pred.output[j].cpu().numpy()[rows_idx].astype(np.float64)
        hist = [windows.values[i, -int(min(windows.lengths[i], L)):, j] for i in range(len(windows.names))]
        out[m] = apply_calibration(config.calibration, m, raw, window_scale(hist, config.min_scale[m], L),
                                   tuple(config.quantiles), groups=groups)
    n = len(windows.names)
    return FleetForecast(list(windows.names), out, ["tft"] * n, [None] * n, [None] * n)


def bench(model_dir: Path, n: int, runs: int, device: str, with_stock: bool, stock_runs: int | None = None,
          warmup: int = 1) -> dict:
    engine = Engine(SimulatorSource(n, seed=0), model_dir, device=device)
    engine.start()
    if not engine.forecaster.loaded:
        raise SystemExit(f"model did not load: {engine.forecaster.model_reason}")
    for _ in range(warmup):
        engine.tick()
    ours, stock, stages = [], [], []
    cuda = engine.forecaster.device.startswith("cuda")
    stock_runs = runs if stock_runs is None else stock_runs
    for run in range(runs):
        tick = engine.source.poll()           # the samples arrive (not timed: the simulator is not us)
        t0 = time.perf_counter()
        engine.ingest(tick)
        t1 = time.perf_counter()
        windows = engine.store.windows()
        fc = engine.forecaster.forecast(windows, with_importance=True)
        t2 = time.perf_counter()
        original = engine.forecaster.forecast
        engine.forecaster.forecast = lambda w, with_importance=False, _fc=fc: _fc   # reuse: time the rest alone
        snap = engine.forecast(t2)
        engine.forecaster.forecast = original
        t3 = time.perf_counter()
        assert snap.metadata["servers_on_tft"] == n
        ours.append(t3 - t0)
        stages.append((t1 - t0, t2 - t1, t3 - t2))
        if with_stock and run < stock_runs:
            # the library's path at its best: one intra-op thread (as the engine runs) and
            # every core, whichever is faster; on CUDA its network runs there, as ours
            import torch

            best = float("inf")
            before = torch.get_num_threads()
            for threads in ([before] if cuda else sorted({before, os.cpu_count() or 1})):
                torch.set_num_threads(threads)
                s0 = time.perf_counter()
                sfc = stock_forecast(engine, windows, "gpu" if cuda else "cpu")
                engine.forecaster.forecast = lambda w, with_importance=False, _fc=sfc: _fc
                engine.forecast(s0)
                engine.forecaster.forecast = original
                best = min(best, time.perf_counter() - s0 + (t1 - t0))
            torch.set_num_threads(before)
            stock.append(best)
            worst = max(float(np.max(np.abs(sfc.quantiles[m] - fc.quantiles[m]))) for m in METRICS)
            # relative to the library's value, where that is at least 1 (% points or load): below
            # it a relative difference says nothing (a p10 of 0.001 %)
            worst_rel = max(float(np.max(np.abs(sfc.quantiles[m] - fc.quantiles[m])[np.abs(sfc.quantiles[m]) >= 1]
                                      / np.abs(sfc.quantiles[m])[np.abs(sfc.quantiles[m]) >= 1], initial=0.0))
                            for m in METRICS)
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    return {
        "n": n, "ours": med(ours), "stock": med(stock),
        "ingest": med([s[0] for s in stages]), "forecast": med([s[1] for s in stages]),
        "risk_alerts_snapshot": med([s[2] for s in stages]),
        "rss_mb": rss_mb(), "device": engine.forecaster.device,
        "max_abs_diff": worst if with_stock else None,
        "max_rel_diff": worst_rel if with_stock else None,
        # batch shapes running through the traced network (engine.fast_tft), or why none can
        "traced": sum(net is not None for net in engine.forecaster.fast._traced.values()),
        "trace_error": engine.forecaster.fast.trace_error,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed ticks first (default 1). The CPU path traces a batch shape once 16 batches "
                         "have run (engine.fast_tft.TRACE_AFTER): a 1,000-server fleet at its second tick, "
                         "25 or 100 servers at their 17th or 9th; --warmup 20 measures them traced")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-stock", action="store_true")
    ap.add_argument("--stock-max", type=int, default=1000,
                    help="run the stock path only for fleets up to this size (default 1000; "
                         "on a GPU the 10,000 fleet's stock path runs once)")
    args = ap.parse_args()
    import torch

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    model_dir = args.model or find_latest_model(Path(__file__).resolve().parents[1] / "models")
    sizes = args.sizes or ([25, 100, 1000, 10000] if torch.cuda.is_available() else [25, 100, 1000])
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}; CPU cores: {os.cpu_count()}")
    print(f"model {model_dir}; torch {torch.__version__}; ours: {default_workers()} batch worker thread(s) "
          f"x {default_torch_threads() or torch.get_num_threads()} torch thread(s); stock: the faster of 1 "
          f"and {os.cpu_count()} torch thread(s)")
    print(f"{'servers':>8}{'stock s':>10}{'ours s':>10}{'ratio':>8}{'ingest':>9}{'forecast':>10}{'risk+':>8}{'RSS MB':>9}"
          "  device  traced  max abs diff · rel (|value| ≥ 1)")
    for n in sizes:
        r = bench(model_dir, n, args.runs, args.device, with_stock=not args.no_stock and n <= args.stock_max,
                  stock_runs=1 if n > 1000 else None, warmup=args.warmup)
        ran = r["stock"] == r["stock"]           # (NaN: the stock path was not run at this size)
        stock = f"{r['stock']:>10.3f}" if ran else f"{'-':>10}"
        ratio = f"{r['stock'] / r['ours']:>8.2f}" if ran else f"{'-':>8}"
        diff = "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e} · {r['max_rel_diff']:.1e}"
        print(f"{n:>8}{stock}{r['ours']:>10.3f}{ratio}{r['ingest']:>9.3f}{r['forecast']:>10.3f}"
              f"{r['risk_alerts_snapshot']:>8.3f}{r['rss_mb']:>9.0f}  {r['device']:<6}  {r['traced']:>6}  {diff}",
              flush=True)
        if r["trace_error"]:
            print(f"          not traced: {r['trace_error']}", flush=True)


if __name__ == "__main__":
    main()
