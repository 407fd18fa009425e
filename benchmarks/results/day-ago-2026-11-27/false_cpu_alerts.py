"""A model's CPU alerts on the fresh simulated fleet (alert_policies.py's, seed 101, the
shipped bars), each with whether a labelled incident explains it (REAL / FALSE) and the
server's CPU: now, over the hour before, over the 8 h after, and over the 8 h a day earlier
(what a day-ago input shows the model as yesterday's horizon).

    python benchmarks/results/day-ago-2026-11-27/false_cpu_alerts.py MODEL
"""
import sys
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")

from alert_policies import fleet_with_incidents, replay  # noqa: E402
from engine.alert_eval import score_alerts  # noqa: E402
from engine.alerts import WARN_PROBABILITY  # noqa: E402
from engine.contract import load_path, to_grid  # noqa: E402

setting = (2, 12, tuple(WARN_PROBABILITY.items()))
hour, day = pd.Timedelta(hours=1), pd.Timedelta(hours=24)
with fleet_with_incidents(None, 101, 6.0) as (data, incidents):
    grid = to_grid(load_path(data).frame)
    profile = grid.groupby("server_name")["profile"].last()
    cpu = {s: g.set_index("timestamp")["cpu_percent"] for s, g in grid.groupby("server_name")}
    records, start, _ = replay(data, Path(sys.argv[1]), [setting])
    alerts = [a for a in records[setting].values() if a.metric == "cpu_percent"]
    *_, real = score_alerts(alerts, incidents, start)
    print(f"{Path(sys.argv[1]).name}: {len(alerts)} CPU alerts, {sum(real)} real")
    for a, ok in zip(alerts, real):
        c, t = cpu[a.server_name], a.opened_at
        print(f"{'REAL ' if ok else 'FALSE'} {a.severity:8s} {a.server_name:11s} {profile[a.server_name]:9s} "
              f"{t:%m-%d %H:%M}  now {c.loc[:t].iloc[-1]:5.1f}  last hour max {c.loc[t - hour:t].max():5.1f}  "
              f"next 8 h max {c.loc[t:t + 8 * hour].max():5.1f}  yesterday's 8 h max {c.loc[t - day:t - day + 8 * hour].max():5.1f}")
