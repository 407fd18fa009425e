"""What the forecasts say before a slow, steady fill crosses critical: does the p50 keep rising?

For every labelled ``disk_fill`` / ``memory_leak`` incident of a data set (its
``incidents.csv``; with ``--heldout`` only those crossing in its held-out period) whose metric
rose slowly and steadily over the hours before its crossing (at most ``--max-rate`` points an
hour, never dropping more than 2 points), the script forecasts from 1, 2, 4 and 6 h before
the crossing with each model given, and prints per lead (for all of them, then per metric): how often the p50 reaches critical
within the horizon, its median error in minutes against the real crossing (a p50 that never
reaches it counts as the horizon's end), how often the p90 reaches it, and how often the p50
turns down (its value at +8 h below its first step's), and the median of that change.  ``--model none`` is the heuristic.

A model trained on the simulator alone learned that disks clean themselves up before they
are full (the simulator's disks do): an operator's review (2026-11-29) found a disk at 92 %,
filling at 0.46 points an hour for two days, forecast to fall to 84 %.

    python benchmarks/steady_fills.py --data DIR --model models/A --model none [--heldout]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.alert_eval import read_incidents  # noqa: E402
from engine.contract import METRICS, STEP_SECONDS, load_path  # noqa: E402
from engine.datasplit import read_split  # noqa: E402
from engine.forecaster import Forecaster  # noqa: E402
from engine.store import WindowStore  # noqa: E402

LEADS_H = (1, 2, 4, 6)
CRITICAL = 95.0


def slow_incidents(frame: pd.DataFrame, incidents: pd.DataFrame, max_rate: float, look_h: float = 6.0) -> pd.DataFrame:
    """The incidents whose metric rose at most ``max_rate`` points an hour, without a drop of
    more than 2 points, over the ``look_h`` hours before the crossing (and at least 1 point)."""
    keep = []
    by_server = {n: g for n, g in frame.groupby("server_name")}
    for row in incidents.itertuples():
        g = by_server.get(row.server_name)
        if g is None or row.kind not in ("disk_fill", "memory_leak"):
            continue
        crossing = pd.Timestamp(row.crossing)
        part = g[(g["timestamp"] > crossing - pd.Timedelta(hours=look_h)) & (g["timestamp"] <= crossing)][row.metric]
        if len(part) < look_h * 12 * 0.9:
            continue
        x = part.to_numpy(dtype=float)
        rise = x[-1] - x[0]
        if 1.0 <= rise <= max_rate * look_h and (np.maximum.accumulate(x) - x).max() <= 2.0:
            keep.append(row.Index)
    return incidents.loc[keep]


def forecasts(model: str, frame: pd.DataFrame, cases: list[tuple[str, pd.Timestamp]]) -> dict:
    """{case index: (H, 4, 3) quantiles} from the history up to each case's origin."""
    fc = Forecaster(None if model == "none" else model, device="cpu")
    fc.load()
    if model != "none" and not fc.loaded:
        raise SystemExit(f"{model}: {fc.model_reason}")
    store = WindowStore(capacity=max(fc.capacity, 576))
    by_server = {n: g for n, g in frame.groupby("server_name")}
    for k, (server, origin) in enumerate(cases):
        g = by_server[server]
        part = g[g["timestamp"] <= origin].copy()
        part["server_name"] = f"case-{k}"
        store.extend_frame(part)
    w = store.windows()
    out = fc.forecast(w)
    q = out.stacked()                                   # (n, 4, H, 3)
    return {int(name.split("-")[1]): q[i] for i, name in enumerate(w.names)}, out.source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", action="append", required=True, help="model directory, or none (repeatable)")
    ap.add_argument("--heldout", action="store_true", help="only incidents crossing in the held-out period")
    ap.add_argument("--max-rate", type=float, default=2.0, help="points an hour (default 2)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    result = load_path(args.data)
    result.raise_for_problems()
    frame = result.frame
    incidents = read_incidents(args.data)
    if incidents is None:
        raise SystemExit(f"{args.data}: no incidents.csv")
    incidents = incidents[pd.to_datetime(incidents["crossing"], utc=True) <= frame["timestamp"].max()]
    if args.heldout:
        start = read_split(Path(args.data)).heldout_from
        if start is not None:
            incidents = incidents[pd.to_datetime(incidents["crossing"], utc=True) >= start + pd.Timedelta(hours=max(LEADS_H))]
    slow = slow_incidents(frame, incidents, args.max_rate)
    print(f"{args.data}: {len(slow)} slow, steady fills (of {len(incidents)} incidents; "
          f"<= {args.max_rate:g} points/h over the 6 h before crossing {CRITICAL:g})")
    if slow.empty:
        return
    cases, meta = [], []
    for row in slow.itertuples():
        crossing = pd.Timestamp(row.crossing)
        for h in LEADS_H:
            cases.append((row.server_name, crossing - pd.Timedelta(hours=h)))
            meta.append((h, METRICS.index(row.metric)))
    print(f"{'model':<44}{'metric':<8}{'lead':>5}{'p50 reaches':>13}{'p50 error (median min)':>24}{'p90 reaches':>13}"
          f"{'p50 turns down':>16}{'p50 +8h - now (median)':>24}")
    groups = [("all", None)] + [(METRICS[j].split("_")[0], j) for j in sorted({j for _, j in meta})]
    for model in args.model:
        qs, sources = forecasts(model, frame, cases)
        for label, metric_j in groups:
            for h in LEADS_H:
                idx = [k for k, (lead, j) in enumerate(meta) if lead == h and (metric_j is None or j == metric_j)]
                reach50 = reach90 = down = 0
                errors, change = [], []
                for k in idx:
                    m = meta[k][1]
                    q = qs[k][m]                                       # (H, 3)
                    hit50 = np.flatnonzero(q[:, 1] >= CRITICAL)
                    hit90 = np.flatnonzero(q[:, 2] >= CRITICAL)
                    step_min = STEP_SECONDS / 60
                    predicted = (hit50[0] + 1) * step_min if len(hit50) else len(q) * step_min
                    errors.append(abs(predicted - h * 60))
                    reach50 += bool(len(hit50))
                    reach90 += bool(len(hit90))
                    down += bool(q[-1, 1] < q[0, 1] - 0.5)
                    change.append(q[-1, 1] - q[0, 1])
                n = len(idx)
                name = model if model == "none" else Path(model).name
                src = "" if model == "none" else f" ({sum(s == 'tft' for s in sources)}/{len(sources)} tft)"
                print(f"{(name + src)[:43]:<44}{label:<8}{h:>4}h{reach50:>8}/{n:<4}{np.median(errors):>20.0f}    "
                      f"{reach90:>8}/{n:<4}{down:>11}/{n:<4}{np.median(change):>+20.1f}")


if __name__ == "__main__":
    main()
