"""Speed of the data path outside the tick: ``to_grid`` on a large gapped frame, and the simulator.

These used to be timed asserts in the tests; timings belong here (the tests keep the
behaviour).  Prints the median of ``--runs`` runs of each.

    .venv/bin/python benchmarks/bench_data.py                  # 100 servers x 4,000 steps; 1,000 servers x 1 day
    .venv/bin/python benchmarks/bench_data.py --runs 9 --json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract import METRICS, to_grid  # noqa: E402
from engine.simulator import FleetSimulator  # noqa: E402


def gapped_frame(servers: int, steps: int, seed: int = 0) -> pd.DataFrame:
    """``servers`` series of ``steps`` 5-minute samples with 10 % of samples dropped at random."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=steps, freq="5min", tz="UTC")
    frame = pd.DataFrame({
        "server_name": pd.Series(np.repeat([f"s{i:03d}" for i in range(servers)], steps), dtype="str"),
        "timestamp": np.tile(times, servers),
        **{m: rng.uniform(0, 100, servers * steps) for m in METRICS},
        "profile": pd.Series(["web"] * (servers * steps), dtype="str"),
    })
    return frame[rng.random(len(frame)) > 0.1].reset_index(drop=True)


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--grid-servers", type=int, default=100)
    ap.add_argument("--grid-steps", type=int, default=4000)
    ap.add_argument("--sim-servers", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    frame = gapped_frame(args.grid_servers, args.grid_steps)
    grid_t = timed(lambda: to_grid(frame), args.runs)
    sim_t = timed(lambda: FleetSimulator(args.sim_servers, seed=0).generate(1), args.runs)
    result = {
        "to_grid": {"rows_in": len(frame), "servers": args.grid_servers, "runs_s": grid_t,
                    "median_s": statistics.median(grid_t)},
        "simulator_1_day": {"servers": args.sim_servers, "rows_out": args.sim_servers * 288, "runs_s": sim_t,
                            "median_s": statistics.median(sim_t)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, r in result.items():
        runs = " ".join(f"{t:.3f}" for t in r["runs_s"])
        print(f"{name:<16} median {r['median_s']:.3f} s  (runs: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
