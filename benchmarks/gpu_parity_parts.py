"""Which of FastTFT's module swaps moves GPU forecasts away from the CPU's (needs CUDA).

gpu_check.py on an H200 (2026-11-28) found FastTFT on CUDA 2.4e-4 relative from FastTFT on
the CPU, while the library's own modules on CUDA were 3.8e-5 away.  This runs FastTFT on
the device with each swap alone and with all but one, and prints each variant's largest
difference from FastTFT on the CPU (all swaps) and from the library's modules on the CPU,
and where it is (metric, quantile, step, value).

    python benchmarks/gpu_parity_parts.py [--model DIR] [--servers 500] [--dry-run]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine.fast_tft as ft  # noqa: E402
from engine.fast_blocks import FastLSTM  # noqa: E402
from engine.tft_model import find_latest_model, load_model_dir  # noqa: E402
from gpu_check import arrays, fleet_windows  # noqa: E402

PARTS = ("swap", "fold", "attention", "grns", "lstms")
REAL = {"attention": ft.fuse_attention, "grns": ft.fuse_grns, "lstms": ft.wrap_lstms,
        "fold": ft.fold_variable_selection}


def build(loaded, device: str, parts: set[str]):
    ft.fuse_attention = REAL["attention"] if "attention" in parts else (lambda m: 0)
    ft.fuse_grns = REAL["grns"] if "grns" in parts else (lambda m: 0)
    ft.wrap_lstms = REAL["lstms"] if "lstms" in parts else (lambda m: 0)
    # "fold-noshared": the folded selection without its once-per-distinct-value time inputs
    ft.fold_variable_selection = (lambda m, shared=(): REAL["fold"](m)) if "fold-noshared" in parts \
        else REAL["fold"]
    FastLSTM.unpack_on_cuda = "unpack-cuda" in parts
    fuse = bool(parts & {"attention", "grns", "lstms"})
    return ft.FastTFT(loaded, device=device, swap_interpolation="swap" in parts, fold_vsn=bool(parts & {"fold", "fold-noshared"}),
                      fuse_blocks=fuse)


def worst(a: dict, b: dict, targets) -> str:
    best = (-1.0, "")
    for m in a:
        d = np.abs(a[m] - b[m]) / np.maximum(np.abs(b[m]), 1.0)
        if not np.isfinite(d).any():
            continue
        i = np.unravel_index(np.nanargmax(d), d.shape)
        if d[i] > best[0]:
            best = (float(d[i]), f"{m} at {i} ours {a[m][i]:.5f} ref {b[m][i]:.5f}")
    absd = max(float(np.nanmax(np.abs(a[m] - b[m]))) for m in a)
    return f"max abs {absd:.2e}, max rel {best[0]:.2e} ({best[1]})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--servers", type=int, default=500)
    ap.add_argument("--dry-run", action="store_true", help="the 'device' is the CPU (to try the script)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    dev = "cpu" if args.dry_run else "cuda"
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_parity_parts: no CUDA device")
    loaded = load_model_dir(args.model or find_latest_model(Path(__file__).resolve().parents[1] / "models"))
    L = loaded.config.history_length
    for short in (None, 7):
        w = fleet_windows(args.servers, seed=3)
        v, lens, ends, profiles = arrays(w, L, short_every=short)
        what = "full windows" if short is None else f"{int((lens < L).sum())} short windows"
        ref_fast = build(loaded, "cpu", set(PARTS)).predict(v, lens, ends, profiles).quantiles
        ref_lib = build(loaded, "cpu", set()).predict(v, lens, ends, profiles).quantiles
        print(f"== {args.servers} windows, {what}; cpu all swaps vs cpu library modules: "
              f"{worst(ref_fast, ref_lib, None)}", flush=True)
        variants = [("none", set())] + [(p, {p}) for p in PARTS] + \
            [(f"all but {p}", set(PARTS) - {p}) for p in PARTS] + [("all", set(PARTS)), ("fold-noshared", {"fold-noshared"}),
                     ("lstms unpacked", {"lstms", "unpack-cuda"}), ("all, lstms unpacked", set(PARTS) | {"unpack-cuda"})]
        for label, parts in variants:
            out = build(loaded, dev, parts).predict(v, lens, ends, profiles).quantiles
            print(f"{dev} {label:16s} vs cpu all: {worst(out, ref_fast, None)}", flush=True)
            print(f"{dev} {label:16s} vs cpu lib: {worst(out, ref_lib, None)}", flush=True)
    if dev == "cuda":
        print("tf32 flags: matmul", torch.backends.cuda.matmul.allow_tf32, "cudnn", torch.backends.cudnn.allow_tf32,
              "precision", torch.get_float32_matmul_precision())


if __name__ == "__main__":
    main()
