"""Write an extra synthetic fleet rich in incidents, for training only.

The demo fleet has about one incident per server per week, so a model trained on it
(and on real traces, which have none labelled) sees few ramps towards exhaustion and
learns to expect every excursion to revert. This fleet uses another seed, another
start date, other server names (``trn-`` prefix) and ~0.5 incidents per server per day.
It is never used for evaluation.

    python benchmarks/make_training_fleet.py [OUT_DIR]     # default /tmp/tft_training_fleet
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.simulator import FleetSimulator  # noqa: E402

SEED, N_SERVERS, DAYS, RATE = 2027, 64, 21, 0.5
START = "2025-03-03T00:00:00Z"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tft_training_fleet")
    out.mkdir(parents=True, exist_ok=True)
    metrics, labels = FleetSimulator(N_SERVERS, seed=SEED, start=START, incident_rate=RATE).generate(DAYS)
    metrics["server_name"] = "trn-" + metrics["server_name"]
    labels["server_name"] = "trn-" + labels["server_name"]
    metrics["timestamp"] = metrics["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    metrics.to_csv(out / "fleet.csv.gz", index=False, compression="gzip")
    labels.to_csv(out / "incidents.csv", index=False)
    # everything is for training: an empty held-out set at the very end
    (out / "split.json").write_text(json.dumps({"heldout_from": "2030-01-01T00:00:00Z", "heldout_servers": []}))
    print(f"wrote {out}: {metrics['server_name'].nunique()} servers x {DAYS} days, {len(labels)} incidents")


if __name__ == "__main__":
    main()
