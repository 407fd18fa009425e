"""What the forecasts said before each labelled crossing: the evidence behind a missed alert.

Replays a fleet (default: a fresh simulated one, seed 101, as benchmarks/alert_policies.py)
through the engine and, for every labelled incident of one metric, prints the forecast made
30 / 45 / 60 / 90 minutes before its crossing: the current value, the rise over the hour
before, the p50 and p90 peaks over the next hour and over the whole horizon, the p50 change
over the next hour, and the crossing probabilities the alerts use (P30 = risk 30m, P8h =
risk 8h).  For contrast it prints the same figures' quantiles over every server-tick not
near an incident of that metric.

    python benchmarks/ramp_forecasts.py [--model DIR] [--data DIR] [--metric cpu_percent]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from alert_policies import fleet_with_incidents  # noqa: E402
from engine.alert_eval import MAX_EARLY  # noqa: E402
from engine.contract import METRICS  # noqa: E402
from engine.datasplit import read_split  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.sources import ReplaySource  # noqa: E402
from engine.tft_model import find_latest_model  # noqa: E402

LEADS = (30, 45, 60, 90)
COLUMNS = ["now", "rise_1h", "p50_1h", "p90_1h", "p50_8h", "p90_8h", "d50_1h", "P30", "P8h"]


def replay(data: Path, model: Path | None, metric: str) -> pd.DataFrame:
    source = ReplaySource(data)
    split = read_split(data)
    if split.heldout_from is None:
        source.seek(split.heldout_start(source.grid).min())
    engine = Engine(source, model, device="cpu")
    engine.start()
    rows = []
    history: dict[str, list[float]] = {}
    while not engine.finished:
        snap = engine.tick()
        t = pd.Timestamp(snap.data_time)
        for s in snap.servers:
            f = s.metrics[metric]
            past = history.setdefault(s.server_name, [])
            past.append(f.current)
            rise = f.current - past[-13] if len(past) > 12 else np.nan
            rows.append((s.server_name, t, f.critical, f.current, rise, float(np.max(f.p50[:12])),
                         float(np.max(f.p90[:12])), float(np.max(f.p50)), float(np.max(f.p90)),
                         float(f.p50[min(11, len(f.p50) - 1)] - f.current), f.prob_30m, f.prob_8h))
    return pd.DataFrame(rows, columns=["server", "t", "critical", *COLUMNS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="model directory (default: newest under models/)")
    ap.add_argument("--data", type=Path, default=None, help="a fleet with incidents.csv (default: a fresh simulated one)")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--days", type=float, default=6.0)
    ap.add_argument("--metric", default="cpu_percent", choices=METRICS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    model = args.model or find_latest_model(ROOT / "models")
    with fleet_with_incidents(args.data, args.seed, args.days) as (data, incidents):
        frame = replay(data, model, args.metric)
    incidents = incidents[incidents["metric"] == args.metric]
    frame["lead"] = np.nan
    near = np.zeros(len(frame), dtype=bool)
    for r in incidents.itertuples():
        same = frame["server"].to_numpy() == r.server_name
        near |= same & (frame["t"] >= r.start - MAX_EARLY).to_numpy() & (frame["t"] <= r.end).to_numpy()
        ramp = same & (frame["t"] >= r.start).to_numpy() & (frame["t"] <= r.crossing).to_numpy()
        frame.loc[ramp, "lead"] = (r.crossing - frame.loc[ramp, "t"]).dt.total_seconds() / 60.0
    print(f"{data if args.data else f'simulated fleet, seed {args.seed}, {args.days:g} days'}; model {model}; "
          f"{args.metric}: {len(incidents)} labelled incidents")
    for lead in LEADS:
        at = frame[(frame["lead"] >= lead) & (frame["lead"] < lead + 5)]
        print(f"\n{lead} min before the crossing ({len(at)} incidents); median: "
              + ", ".join(f"{c} {at[c].median():.2f}" for c in COLUMNS))
        print(at[["server", *COLUMNS]].round(2).to_string(index=False))
    quiet = frame[~near]
    print(f"\nserver-ticks not near an incident of {args.metric} ({len(quiet)}), quantiles:")
    print(quiet[COLUMNS].quantile([0.5, 0.9, 0.99]).round(2).to_string())


if __name__ == "__main__":
    main()
