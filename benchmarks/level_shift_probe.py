"""What the shipped model forecasts for a server that moved to a new level: twenty hours at
10 % CPU, then four hours at 80 % (three noise draws).  The README quotes these figures
against an older, mean-centred model that forecast such a server at 41 % five minutes out.

    .venv/bin/python benchmarks/level_shift_probe.py [--model DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract import METRICS  # noqa: E402
from engine.forecaster import Forecaster  # noqa: E402
from engine.store import WindowStore  # noqa: E402
from engine.tft_model import find_latest_model  # noqa: E402

STEPS = 288


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args(argv)
    model_dir = args.model or find_latest_model(ROOT / "models")
    fc = Forecaster(model_dir, device="cpu")
    fc.load()
    print(f"model {model_dir}: web server, 20 h at 10 % CPU then 4 h at 80 %")
    t = pd.date_range("2026-01-06T00:00:00Z", periods=STEPS, freq="5min")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        cpu = 10 + rng.normal(0, 1.5, STEPS)
        cpu[-48:] = 80 + rng.normal(0, 1.5, 48)
        frame = pd.DataFrame({"server_name": "web-x", "timestamp": t, "cpu_percent": cpu, "memory_percent": 40.0,
                              "disk_percent": 30.0, "load_average": 0.3, "profile": "web"})
        store = WindowStore(capacity=STEPS)
        store.extend_frame(frame)
        windows = store.windows()
        out = fc.forecast(windows)
        q = out.quantiles["cpu_percent"][0]
        cur = float(windows.values[0, -1, METRICS.index("cpu_percent")])
        print(f"  draw {seed}: now {cur:.1f} %; 5 min ahead p50 {q[0, 1]:.0f} % (band {q[0, 0]:.0f}-{q[0, 2]:.0f} %), "
              f"1 h {q[11, 1]:.0f} %, 4 h {q[47, 1]:.0f} %  [{out.source[0]}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
