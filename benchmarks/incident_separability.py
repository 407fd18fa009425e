"""How early could ANY alert tell a labelled incident from what healthy servers also do?

For each incident kind of a data set with ``incidents.csv`` (default: demo_data) this prints:

- **level**: the benign range of the metric (its maximum on every server outside every
  labelled incident's span, load per core), and how many minutes before its crossing each
  incident first left that range.  Before that moment the level alone is no evidence.
- **level and climb**: at 30 minutes before each crossing (the latest an early alert can
  open), the metric's level and its rise over the hour before.  Any alert rule that fires
  when level and rise are both high enough and catches the incident then also fires
  wherever a healthy server was at least that high and had risen at least that much.  The
  script counts such healthy episodes (ticks on one server less than an hour apart), and
  for the incidents ordered from the least to the most shadowed, the precision a rule of
  that kind could at best reach when it catches half of them, and 90 %.

Rules may look at more than level and one hour's rise (a forecast does), so this bounds only
rules of this kind; it shows whether the data leaves room for early, precise alerts.

    python benchmarks/incident_separability.py [--data demo_data]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.alert_eval import read_incidents  # noqa: E402
from engine.contract import load_path, to_grid  # noqa: E402

LEAD = pd.Timedelta(minutes=30)
EPISODE_GAP = pd.Timedelta(hours=1)


def episodes(ticks: pd.DataFrame) -> int:
    n = 0
    for _, g in ticks.groupby("server_name"):
        t = g["timestamp"].sort_values().to_numpy()
        n += 1 + int((np.diff(t) > EPISODE_GAP.to_timedelta64()).sum())
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "demo_data"))
    args = ap.parse_args()
    grid = to_grid(load_path(args.data).frame).sort_values(["server_name", "timestamp"]).reset_index(drop=True)
    incidents = read_incidents(Path(args.data))
    if incidents is None:
        raise SystemExit(f"{args.data}: no incidents.csv")
    servers_csv = Path(args.data) / "servers.csv"
    cores = pd.read_csv(servers_csv).set_index("server_name")["cores"] if servers_csv.is_file() else None
    if cores is not None:
        grid["load_average"] = grid["load_average"] / grid["server_name"].map(cores)
    in_any = np.zeros(len(grid), dtype=bool)
    for r in incidents.itertuples():
        in_any |= ((grid["server_name"] == r.server_name) & (grid["timestamp"] >= r.start)
                   & (grid["timestamp"] <= r.end)).to_numpy()
    healthy = grid[~in_any]
    unit = " per core" if cores is not None else ""
    print(f"{args.data}: {grid['server_name'].nunique()} servers, {len(incidents)} labelled incidents; "
          f"healthy = outside every incident's span (start..end) on its server")
    print(f"{'kind':12} {'metric':15} {'n':>3}  {'benign max':>10}  {'left range, min before crossing':>31}  "
          f"{'shadowing healthy episodes':>26}  {'best precision catching 50% / 90%':>33}")
    print(f"{'':12} {'':15} {'':>3}  {'':>10}  {'median':>12} {'>= 30 min':>18}  {'median per incident':>26}")
    for (kind, metric), inc in incidents.groupby(["kind", "metric"]):
        values = grid[metric]
        rise = values - grid.groupby("server_name")[metric].shift(12)
        benign_max = float(healthy[metric].max())
        out_leads, shadows = [], []
        for r in inc.itertuples():
            own = grid["server_name"] == r.server_name
            seg = grid[own & (grid["timestamp"] >= r.start) & (grid["timestamp"] <= r.crossing)]
            above = seg[seg[metric] > benign_max]
            out_leads.append((r.crossing - above["timestamp"].iloc[0]).total_seconds() / 60 if len(above) else np.nan)
            at = grid.index[own & (grid["timestamp"] == r.crossing - LEAD)]
            if len(at) == 0 or np.isnan(rise[at[0]]):
                continue
            v, d = float(values[at[0]]), float(rise[at[0]])
            mask = (~in_any) & (values >= v).to_numpy() & (rise >= d).to_numpy()
            shadows.append(episodes(grid[mask]))
        leads = np.array(out_leads, dtype=float)
        s = np.sort(np.array(shadows))
        # A rule that fires when level and rise are high enough fires on the whole quadrant
        # above each incident it catches; to catch k incidents it fires at least on the
        # quadrant of the most shadowed of them, which is at least the k-th smallest count
        # (episodes merged across quadrants make this approximate).
        def bound(share: float) -> str:
            k = int(np.ceil(share * len(s)))
            if k == 0 or k > len(s):
                return "-"
            false = s[k - 1]
            return f"{k / (k + false):.0%}"
        med = np.nanmedian(leads) if np.isfinite(leads).any() else float("nan")
        print(f"{kind:12} {metric:15} {len(inc):3d}  {benign_max:10.2f}  {med:>12.0f} "
              f"{int((leads >= 30).sum()):>12} of {len(inc):<3}  "
              f"{np.median(s) if len(s) else float('nan'):>26.0f}  {bound(0.5):>20} / {bound(0.9):<10}")
    print(f"(load_average{unit})")


if __name__ == "__main__":
    main()
