"""Write an extra synthetic fleet rich in incidents, for training only.

The demo fleet has about one incident per server per week, so a model trained on it
(and on real traces, which have none labelled) sees few ramps towards exhaustion and
learns to expect every excursion to revert. This fleet uses another seed, another
start date, other server names (``trn-`` prefix) and ~0.5 incidents per server per day.
It is never used for evaluation.

``--daily-templates S`` gives a share S of the servers a daily routine of their own: a
few CPU bumps (15 min to 3 h wide, 8 to 45 points high) at fixed, randomly drawn times of
day, repeated every day with jitter, with load following.  The simulator's daily shapes
are smooth business-hours curves that the time-of-day inputs alone predict, so a model
never needs to look back a day; real machines (SMD) repeat irregular daily shapes that
"the same time yesterday" forecasts better than our model did.

    python benchmarks/make_training_fleet.py [OUT_DIR]     # default /tmp/tft_training_fleet
    python benchmarks/make_training_fleet.py OUT --seed 2028 --prefix trd- --daily-templates 0.6

``--steady-growth S`` gives a share S of the servers long, steady fills in place of their
disk (or, for a third of them, memory) series: a level that rises at a constant rate
(0.05-1.5 points an hour, drawn per fill) for days until it is full (96-100 % disk, 94-99 %
memory), stays there a while, and drops when someone cleans up or restarts (back to 25-75
%), then fills again at another rate; some fills pause on the way.  The simulator's disks
clean themselves up before they get full (at a "comfort" level, with a soft cap at 88-92
%), so a model trained on it alone learned that a disk filling steadily at 92 % turns down,
and forecast a real steady fill to fall (an operator's review, 2026-11-29).  Each fill that
crosses 95 is labelled in incidents.csv (``disk_fill`` / ``memory_leak``, from 8 h before
the crossing), and the simulator's labels on a replaced series are dropped.

    python benchmarks/make_training_fleet.py OUT --seed 2029 --prefix trg- --steady-growth 0.6

``--selection`` writes a fleet for choosing between trained models instead: every server
is held out for the last 3 days (``tft-top eval --model DIR --data OUT --no-alerts``
scores them all as never seen), so models are compared on servers none of them trained
on, and the held-out sets behind the README's figures are scored only once a model is
chosen.  Session 12's selection fleet:

    python benchmarks/make_training_fleet.py OUT --selection --seed 5151 --servers 32 --prefix sel- --daily-templates 0.3
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.simulator import FleetSimulator  # noqa: E402

SEED, N_SERVERS, DAYS, RATE = 2027, 64, 21, 0.5
START = "2025-03-03T00:00:00Z"


def add_daily_templates(metrics: pd.DataFrame, share: float, seed: int) -> list[str]:
    """Add a per-server daily routine to CPU and load of a share of the servers (in place);
    returns the names of the servers changed."""
    rng = np.random.default_rng(seed)
    changed = []
    sec = ((metrics["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    for name, idx in sorted(metrics.groupby("server_name").indices.items()):
        if rng.random() >= share:
            continue
        hour = (sec[idx] % 86400) / 3600.0
        day = sec[idx] // 86400
        n_days = int(day.max() - day.min() + 1)
        bump = np.zeros(len(idx))
        for _ in range(int(rng.integers(2, 6))):
            centre, width, amp = rng.uniform(0, 24), rng.uniform(0.25, 3.0), rng.uniform(8, 45)
            edge = rng.uniform(0.05, 0.5) * width          # soft edges: hours
            shift = rng.normal(0, 0.1, n_days)[day - day.min()]          # per-day jitter, hours
            scale = rng.uniform(0.8, 1.2, n_days)[day - day.min()]
            skip = (rng.random(n_days) < 0.1)[day - day.min()]
            d = np.abs(((hour - centre - shift + 12) % 24) - 12)        # hours from the bump's centre
            shape = np.clip((width / 2 + edge - d) / edge, 0, 1)
            bump += np.where(skip, 0, amp * scale * shape)
        cores = rng.uniform(1, 8)
        cpu = metrics["cpu_percent"].to_numpy()[idx]
        new_cpu = np.clip(cpu + bump, 0, 92)
        metrics.loc[metrics.index[idx], "cpu_percent"] = np.round(new_cpu, 2)
        load = metrics["load_average"].to_numpy()[idx]
        metrics.loc[metrics.index[idx], "load_average"] = np.round(load + (new_cpu - cpu) / 100 * cores, 3)
        changed.append(name)
    return changed


def add_steady_growth(metrics: pd.DataFrame, labels: pd.DataFrame, share: float, seed: int
                      ) -> tuple[pd.DataFrame, list[str]]:
    """Replace the disk (or memory) series of a share of the servers by steady fills (in
    place; see the module doc); returns the labels (the replaced series' dropped, the new
    crossings added) and the names of the servers changed."""
    rng = np.random.default_rng(seed + 17)
    changed, new_labels, drop = [], [], set()
    ts = metrics["timestamp"]
    for name, idx in sorted(metrics.groupby("server_name").indices.items()):
        if rng.random() >= share:
            continue
        metric = "memory_percent" if rng.random() < 1 / 3 else "disk_percent"
        kind = "memory_leak" if metric == "memory_percent" else "disk_fill"
        x = metrics[metric].to_numpy()[idx].astype(float)
        n = len(idx)
        # the original memory's short-term wiggle stays, within +-2 points (its daily job jumps
        # of 25-36 points would cross 95 every day on a steady level, unlabelled)
        smooth = np.convolve(np.pad(x, 6, mode="edge"), np.full(13, 1 / 13), mode="valid")
        texture = np.clip(x - smooth, -2.0, 2.0) if metric == "memory_percent" else np.zeros(n)
        level, k = float(rng.uniform(25, 75)), 0
        out = np.empty(n)
        episodes = []
        while k < n:
            rate = float(np.exp(rng.uniform(np.log(0.05), np.log(1.5)))) / 12.0    # points per 5-min step
            top = float(rng.uniform(96, 100) if metric == "disk_percent" else rng.uniform(94, 99))
            start = k
            pause_at = float(rng.uniform(level, top)) if rng.random() < 0.3 else None
            while k < n and level < top:
                if pause_at is not None and level >= pause_at:        # growth stops for a while
                    stop = min(n, k + int(rng.uniform(2, 36) * 12))
                    out[k:stop] = level
                    k, pause_at = stop, None
                    continue
                level = min(top, level + rate)
                out[k] = level
                k += 1
            hold = int(rng.uniform(0, 12 if metric == "disk_percent" else 1) * 12) + 1
            stop = min(n, k + hold)
            out[k:stop] = level
            k = stop
            episodes.append((start, k))
            level = float(rng.uniform(25, 75))                       # cleaned up / restarted
        final = np.round(np.clip(out + texture + rng.normal(0, 0.03, n), 0, 100), 2)
        metrics.loc[metrics.index[idx], metric] = final
        # each fill's first crossing of 95 in the series as written (one that runs to the end of
        # the data too), from 8 h before it
        for start, stop in episodes:
            over = np.flatnonzero(final[start:stop] >= 95.0)
            if len(over):
                crossing = start + int(over[0])
                new_labels.append({"server_name": name, "kind": kind, "metric": metric,
                                   "start": ts.iloc[idx[max(start, crossing - 96)]], "crossing": ts.iloc[idx[crossing]],
                                   "end": ts.iloc[idx[stop - 1]], "threshold": 95.0})
        drop.add((name, metric))
        changed.append(name)
    keep = [(n, m) not in drop for n, m in zip(labels["server_name"], labels["metric"], strict=True)]
    labels = pd.concat([labels[keep], pd.DataFrame(new_labels, columns=labels.columns)], ignore_index=True)
    return labels.sort_values(["crossing", "server_name"], ignore_index=True), changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default="/tmp/tft_training_fleet")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--servers", type=int, default=N_SERVERS)
    ap.add_argument("--prefix", default="trn-")
    ap.add_argument("--daily-templates", type=float, default=0.0, metavar="S")
    ap.add_argument("--steady-growth", type=float, default=0.0, metavar="S")
    ap.add_argument("--selection", action="store_true",
                    help="hold every server out for the last 3 days (a fleet for choosing between models)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics, labels = FleetSimulator(args.servers, seed=args.seed, start=START, incident_rate=RATE).generate(DAYS)
    changed = add_daily_templates(metrics, args.daily_templates, args.seed) if args.daily_templates else []
    grown = []
    if args.steady_growth:
        labels, grown = add_steady_growth(metrics, labels, args.steady_growth, args.seed)
    metrics["server_name"] = args.prefix + metrics["server_name"]
    labels["server_name"] = args.prefix + labels["server_name"]
    metrics["timestamp"] = metrics["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    metrics.to_csv(out / "fleet.csv.gz", index=False, compression="gzip")
    labels.to_csv(out / "incidents.csv", index=False)
    if args.selection:     # every server held out for the last 3 days
        heldout_from = (pd.Timestamp(START) + pd.Timedelta(days=DAYS - 3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        split = {"heldout_from": heldout_from, "heldout_days": 3,
                 "heldout_servers": sorted(metrics["server_name"].unique())}
    else:                  # everything is for training: an empty held-out set at the very end
        split = {"heldout_from": "2030-01-01T00:00:00Z", "heldout_servers": []}
    (out / "split.json").write_text(json.dumps(split, indent=1))
    extra = f", {len(changed)} with a daily routine" if changed else ""
    extra += f", {len(grown)} with steady fills" if grown else ""
    print(f"wrote {out}: {metrics['server_name'].nunique()} servers x {DAYS} days, {len(labels)} incidents{extra}")


if __name__ == "__main__":
    main()
