"""How early could an alert tell a labelled incident from what healthy servers also do?

For each incident kind of a data set with ``incidents.csv`` (default: demo_data) this prints:

- **level**: the highest level of the metric on any healthy server (outside every labelled
  incident's span; load per core where servers.csv gives cores), and how many minutes
  before its crossing each incident first rose above it -- and above its own server's
  healthy maximum.  Below that the level alone is no evidence.
- **level and climb**: a rule that alerts when the metric's level and its rises over the
  15 min, 1 h and 2 h before are all high enough (one threshold each, fleet-wide), held for the engine's debounce (an alert opens on the
  OPEN_AFTER-th consecutive tick), stays open until the condition has been clear for
  RESOLVE_AFTER ticks.  To catch an incident early it must open at some tick from the
  incident's start to 30 min before its crossing; it then also opens wherever a healthy
  server was at least that high, having risen at least that much, for as long.  Per
  incident the script finds the tick in that span that healthy servers match least often
  and counts the healthy alerts such a rule would raise ("shadow").  Catching k of the n
  incidents costs at least the k-th smallest shadow in false alerts, so the precision of
  any such rule is at most about n / (n + that count) (at most one real alert per incident;
  "about": a looser rule can merge two alerts into one).

Forecasts may use more than the level and one hour's rise, so this bounds only rules of
this kind; it shows how much room the data leaves for early, precise alerts.

    python benchmarks/incident_separability.py [--data demo_data]
    python benchmarks/incident_separability.py --seed 101 --days 14   # a fresh simulated fleet
    python benchmarks/incident_separability.py --same-profile          # per-profile rules (below)

With ``--same-profile`` a rule is judged against healthy servers of the incident's own profile
only (servers.csv's ``profile``): a rule per profile, which could tell a web server's runaway from
an ML server's job start; each incident's shadow is printed by profile.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine.alerts import OPEN_AFTER, RESOLVE_AFTER  # noqa: E402
from engine.contract import METRICS, STEP_SECONDS, load_path, to_grid  # noqa: E402

LEAD = pd.Timedelta(minutes=30)
RISE_STEPS = (3, 12, 24)             # rises over the 15 min, 1 h and 2 h before


def alert_count(hit: np.ndarray, server: np.ndarray, step: np.ndarray) -> int:
    """Alerts a rule raises: runs of ticks where it holds (``hit``: the debounced condition
    at each tick) on one server, merged when fewer than RESOLVE_AFTER clear ticks apart."""
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return 0
    new = (server[idx[1:]] != server[idx[:-1]]) | (step[idx[1:]] - step[idx[:-1]] > RESOLVE_AFTER)
    return 1 + int(new.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "demo_data"))
    ap.add_argument("--seed", type=int, default=None,
                    help="instead of --data: a fresh simulated fleet of 48 servers (as benchmarks/alert_policies.py)")
    ap.add_argument("--days", type=float, default=14.0, help="with --seed: its length in days")
    ap.add_argument("--same-profile", action="store_true",
                    help="judge each rule against healthy servers of the incident's own profile only")
    args = ap.parse_args()
    from alert_policies import fleet_with_incidents

    fresh = args.seed is not None
    with fleet_with_incidents(None if fresh else Path(args.data), args.seed or 0, args.days) as (data, incidents):
        if fresh:
            print(f"simulated fleet, seed {args.seed}, {args.days:g} days:")
        report(data, incidents, args.same_profile)


def report(data: Path, incidents: pd.DataFrame, same_profile: bool = False) -> None:
    grid = to_grid(load_path(data).frame).sort_values(["server_name", "timestamp"]).reset_index(drop=True)
    servers_csv = Path(data) / "servers.csv"
    per_core = servers_csv.is_file()
    if per_core:
        cores = pd.read_csv(servers_csv).set_index("server_name")["cores"]
        grid["load_average"] = grid["load_average"] / grid["server_name"].map(cores)

    server = grid["server_name"].to_numpy()
    step = (grid["timestamp"].astype("int64") // (STEP_SECONDS * 10**9)).to_numpy()
    in_incident = np.zeros(len(grid), dtype=bool)
    for r in incidents.itertuples():
        in_incident |= ((grid["server_name"] == r.server_name) & (grid["timestamp"] >= r.start)
                        & (grid["timestamp"] <= r.end)).to_numpy()
    healthy = ~in_incident & ~grid["filled"].to_numpy()
    # the debounce: the condition on OPEN_AFTER consecutive ticks of one segment, all healthy
    # (for the healthy count) -- so a rule's corner is the minimum over those ticks
    keys = grid["server_name"] + "/" + grid["segment"].astype(str)
    same = np.ones(len(grid), dtype=bool)
    healthy_run = healthy.copy()
    for lag in range(1, OPEN_AFTER):
        same &= (keys == keys.shift(lag)).to_numpy()
        healthy_run &= np.roll(healthy, lag)
    healthy_run &= same

    print(f"{data}: {grid['server_name'].nunique()} servers, {len(incidents)} labelled incidents, "
          f"{grid['timestamp'].min():%Y-%m-%d} .. {grid['timestamp'].max():%Y-%m-%d}; healthy = outside every "
          f"incident's span (start..end) on its server; debounce {OPEN_AFTER} ticks, resolve after {RESOLVE_AFTER}")
    print(f"{'kind':12} {'metric':15} {'n':>3}  {'healthy max':>11}  {'rose above it: median min':>25} "
          f"{'>= 30 min ahead':>15} {'(own server)':>13}  {'shadow':>7}  {'best precision catching 50% / 90%':>34}")
    for (kind, metric), inc in incidents.groupby(["kind", "metric"]):
        values = grid[metric]
        v = values.to_numpy()
        # per tick, the rule's inputs: level and rises (NaN where the segment is too short),
        # each the minimum over the debounce's ticks
        feats = [v] + [(values - values.groupby(keys).shift(k)).to_numpy() for k in RISE_STEPS]
        lows = []
        for f in feats:
            lo = f.copy()
            for lag in range(1, OPEN_AFTER):
                lo = np.minimum(lo, np.roll(f, lag))
            lo[~same] = np.nan
            lows.append(lo)
        lows = np.stack(lows)                                    # (1 + len(RISE_STEPS), rows)
        ok = np.isfinite(lows).all(axis=0)
        h_ok = healthy_run & ok
        hf, hs, hst = lows[:, h_ok], server[h_ok], step[h_ok]
        healthy_max = float(values[healthy].max())
        own_max = values[healthy].groupby(grid["server_name"][healthy]).max()
        out_min, own_min, shadows = [], [], []
        profile = (pd.read_csv(Path(data) / "servers.csv").set_index("server_name")["profile"]
                   if same_profile else None)
        h_profile = None if profile is None else pd.Series(hs).map(profile).to_numpy()
        by_profile: dict[str, list[int]] = {}
        for r in inc.itertuples():
            sel = slice(None) if profile is None else h_profile == profile[r.server_name]
            rows = np.flatnonzero((server == r.server_name) & (grid["timestamp"] >= r.start).to_numpy()
                                  & (grid["timestamp"] <= r.crossing).to_numpy())
            last = (r.crossing - LEAD).value // (STEP_SECONDS * 10**9)     # the latest early tick
            for bar, out in ((healthy_max, out_min), (own_max.get(r.server_name, healthy_max), own_min)):
                above = rows[v[rows] > bar]
                out.append((r.crossing - grid["timestamp"][above[0]]).total_seconds() / 60 if len(above) else np.nan)
            best = None
            for i in rows[step[rows] <= last]:
                if not ok[i]:
                    continue
                n = alert_count((hf[:, sel] >= lows[:, i:i + 1]).all(axis=0), hs[sel], hst[sel])
                best = n if best is None else min(best, n)
                if best == 0:
                    break
            if best is not None:
                shadows.append(best)
                if profile is not None:
                    by_profile.setdefault(profile[r.server_name], []).append(best)
        out_min, own_min = np.array(out_min, dtype=float), np.array(own_min, dtype=float)
        s = np.sort(np.array(shadows))
        n_inc = len(inc)

        def bound(share: float) -> str:
            k = int(np.ceil(share * n_inc))
            if k == 0 or k > len(s):
                return "-"
            return f"{n_inc / (n_inc + s[k - 1]):.0%}"

        med = np.nanmedian(out_min) if np.isfinite(out_min).any() else float("nan")
        print(f"{kind:12} {metric:15} {n_inc:3d}  {healthy_max:11.2f}  {med:>25.0f} "
              f"{int((out_min >= 30).sum()):>9} of {n_inc:<3} {int((own_min >= 30).sum()):>6} of {n_inc:<3}  "
              f"{np.median(s) if len(s) else float('nan'):>7.0f}  {bound(0.5):>21} / {bound(0.9):<10}")
        if profile is not None:
            print("    shadow by profile (healthy servers of the same profile):",
                  "; ".join(f"{k} {sorted(v)}" for k, v in sorted(by_profile.items())))
    print("(load_average per core)" if per_core else "")
    unused = [m for m in METRICS if m not in set(incidents["metric"])]
    if unused:
        print(f"(no labelled incident on {', '.join(unused)})")


if __name__ == "__main__":
    main()
