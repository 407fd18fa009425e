"""How well the risk probabilities match what happened: a reliability table of risk 8h.

For forecast origins over a data set's held-out period (as ``tft-top eval`` makes them),
the shipped model's calibrated quantiles give, per server and metric, the probability of
reaching the critical threshold within 8 h (engine.risk: each step a split normal through
p10/p50/p90, the steps counted together with the errors' correlation in time); the event is
that the actual values reach it within those 8 h.  Origins where the value is already critical are left out (their
probability is 1 by definition).  Printed per probability bin: windows, mean predicted,
observed frequency; the Brier score against the base rate's (a forecaster that always says
the observed frequency: a risk that does no better carries no information on its own), and
the AUC (how well risk ranks the windows that crossed above those that did not).

A second table scores the reading used until 2026-11-28, the largest per-step probability
(engine.risk.peak_probability_batch, the lower bound of the engine's figure); a third a
variant for thresholds above p90: the tail beyond p90 with the band's pooled scale
(p90 - p10) / (2 z90) instead of the upper half's (p90 - p50) / z90, which gets thinner as
p50 nears p90 (a review's suggestion, measured here, not adopted).

    .venv/bin/python benchmarks/risk_reliability.py [--model DIR] [--data demo_data] [--every 12]
    .venv/bin/python benchmarks/risk_reliability.py --data ../shared/data/real/bitbrains_rnd.csv.gz   # ~8 min, 7 GB
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract import METRICS  # noqa: E402
from engine.datasplit import extract_windows, origins_for, read_split  # noqa: E402
from engine.evaluation import HISTORY, calibrated_tft, load_grid  # noqa: E402
from engine.risk import (Z90, crossing_probability_batch, peak_probability_batch, standard_scores,  # noqa: E402
                         upper_tail)
from engine.sources import read_cores  # noqa: E402
from engine.tft_model import find_latest_model, load_model_dir, prepare_frame  # noqa: E402
from engine.thresholds import DEFAULT_THRESHOLDS  # noqa: E402

BINS = [0.0, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 0.9, 1.0001]


def pooled_tail(q: np.ndarray, crit: np.ndarray, current: np.ndarray) -> np.ndarray:
    z = standard_scores(q, crit)                       # (n, H) as the engine computes them
    p10, p90 = q[..., 0], q[..., 2]
    s = np.maximum((p90 - p10) / (2 * Z90), 1e-9)
    above = crit[:, None] > p90
    z_alt = np.where(above, Z90 + (crit[:, None] - p90) / s, z)
    p = upper_tail(z_alt.min(axis=1))
    return np.where(current >= crit, 1.0, p)


def auc(pred: np.ndarray, event: np.ndarray) -> float:
    """Ranking skill: the chance that a window which crossed got a higher risk than one that
    did not (ties count half); 0.5 is none, nan without both kinds."""
    from scipy.stats import rankdata

    n1 = int(event.sum())
    n0 = len(event) - n1
    if not n1 or not n0:
        return float("nan")
    r = rankdata(pred)
    return float((r[event > 0].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def skill(pred: np.ndarray, event: np.ndarray) -> str:
    """Brier against the base rate's (always saying the observed frequency), and AUC."""
    if not len(event) or not event.any():
        return f"  skill: no crossings in {len(event)} windows: nothing to score"
    base = np.mean((event.mean() - event) ** 2) if len(event) else float("nan")
    brier = np.mean((pred - event) ** 2) if len(event) else float("nan")
    return (f"  skill: Brier {brier:.4f} vs {base:.4f} for the base rate alone "
            f"({'better' if brier < base else 'not better'}); AUC {auc(pred, event):.3f} (0.5: no ranking skill); "
            f"mean risk {pred.mean() if len(pred) else float('nan'):.3f}, observed {event.mean() if len(event) else float('nan'):.3f}")


def table(pred: np.ndarray, event: np.ndarray) -> list[str]:
    out = []
    idx = np.digitize(pred, BINS) - 1
    for b in range(len(BINS) - 1):
        sel = idx == b
        if sel.any():
            out.append(f"  [{BINS[b]:>4.2f}, {min(BINS[b + 1], 1):.2f})  {int(sel.sum()):>6}  "
                       f"{pred[sel].mean():>8.3f}  {event[sel].mean():>8.3f}")
    out.append(f"  Brier {np.mean((pred - event) ** 2):.4f}  ({len(pred)} windows, {int(event.sum())} events)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=ROOT / "demo_data")
    ap.add_argument("--every", type=int, default=12, help="origins every N steps (default 12 = 1 h)")
    args = ap.parse_args(argv)
    model_dir = args.model or find_latest_model(ROOT / "models")
    loaded = load_model_dir(model_dir)
    config = loaded.config
    grid = load_grid(args.data)
    prepared = prepare_frame(grid)
    origins = origins_for(prepared, read_split(args.data).heldout_start(grid), horizon=config.max_prediction_length,
                          min_history=max(config.history_length, HISTORY), every=args.every)
    windows = extract_windows(prepared, origins, horizon=config.max_prediction_length, history=HISTORY)
    q = calibrated_tft(loaded, prepared, origins, windows)
    cores = read_cores(args.data)
    print(f"model {model_dir}; data {args.data}; {len(windows)} origins every {args.every} steps")
    allp, allk, alla, alle = [], [], [], []
    for m in METRICS:
        crit = np.array([DEFAULT_THRESHOLDS.for_metric(m, cores.get(str(s)))[1] for s in windows.server])
        current = np.array([h[-1] for h in windows.history[m]])
        moving = np.array([np.ptp(h) > 0 for h in windows.history[m]])    # flat columns are not forecast
        keep = (current < crit) & moving
        pred = crossing_probability_batch(q[m], crit, q[m].shape[1], current)[keep]
        alt = pooled_tail(q[m], crit, current)[keep]
        top = peak_probability_batch(q[m], crit, q[m].shape[1], current)[keep]
        event = (windows.actual[m] >= crit[:, None]).any(axis=1)[keep].astype(float)
        print(f"{m}: bin  windows  predicted  observed   (engine)")
        print("\n".join(table(pred, event)))
        print(skill(pred, event))
        print(f"{m}: the largest per-step probability (until 2026-11-28)")
        print("\n".join(table(top, event)))
        print(skill(top, event))
        print(f"{m}: the pooled-tail variant")
        print("\n".join(table(alt, event)))
        allp.append(pred), allk.append(top), alla.append(alt), alle.append(event)
    p, k, a, e = (np.concatenate(x) for x in (allp, allk, alla, alle))
    print("all metrics (engine):")
    print("\n".join(table(p, e)))
    print(skill(p, e))
    print("all metrics (largest per-step probability):")
    print("\n".join(table(k, e)))
    print(skill(k, e))
    print("all metrics (pooled-tail variant):")
    print("\n".join(table(a, e)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
