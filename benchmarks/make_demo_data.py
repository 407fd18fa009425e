"""Generate the committed demo data set in ``demo_data/`` from :mod:`engine.simulator`.

    python benchmarks/make_demo_data.py            # writes demo_data/
    python benchmarks/make_demo_data.py --out DIR  # somewhere else

Writes ``fleet.csv.gz`` (48 servers x 14 days at 5 minutes), ``incidents.csv`` (the
labels), ``servers.csv`` (with the train / held-out split) and ``README.md``; prints
the split boundary and the incident counts. Output is byte-for-byte reproducible
(the gzip header carries no timestamp).
"""
from __future__ import annotations

import argparse
import json
import gzip
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.simulator import INCIDENT_KINDS, METRICS, PROFILES, FleetSimulator  # noqa: E402
from engine.thresholds import DEFAULT_THRESHOLDS  # noqa: E402

SEED = 6
INCIDENT_RATE = 0.15  # incidents per server per day (the simulator's default is 0.1)
N_SERVERS = 48
DAYS = 14
TRAIN_DAYS = 11  # days 1-11 train, days 12-14 held out
N_HELDOUT_SERVERS = 8
START = "2026-01-05T00:00:00Z"  # a Monday
ISO = "%Y-%m-%dT%H:%M:%SZ"


def pick_heldout_servers(servers: pd.DataFrame, labels: pd.DataFrame, boundary: pd.Timestamp) -> list[str]:
    """8 servers: per profile the one with the most incidents (held-out days count 10x),
    then the best remaining server; ties go to the first name. Picking servers with
    incidents makes the unseen-server evaluation (and the demo) meaningful."""
    score = {n: 0 for n in servers["server_name"]}
    for row in labels.itertuples():
        score[row.server_name] += 10 if row.crossing >= boundary else 1
    chosen: list[str] = []
    for profile in PROFILES:
        names = servers.loc[servers["profile"] == profile, "server_name"].tolist()
        if names and len(chosen) < N_HELDOUT_SERVERS:
            chosen.append(max(names, key=lambda n: (score[n], [-ord(ch) for ch in n])))
    rest = [n for n in servers["server_name"] if n not in chosen]
    while len(chosen) < N_HELDOUT_SERVERS:
        best = max(rest, key=lambda n: (score[n], [-ord(ch) for ch in n]))
        chosen.append(best)
        rest.remove(best)
    return sorted(chosen)


def _iso(col: pd.Series) -> pd.Series:
    return col.dt.strftime(ISO)


def write_gzip_csv(frame: pd.DataFrame, path: Path) -> None:
    text = frame.to_csv(index=False, lineterminator="\n")
    with path.open("wb") as raw, gzip.GzipFile(
        filename=path.name.removesuffix(".gz"), mode="wb", fileobj=raw, compresslevel=9, mtime=0
    ) as gz, io.TextIOWrapper(gz, encoding="utf-8", newline="") as text_out:
        text_out.write(text)


def counts_by_kind(labels: pd.DataFrame) -> dict[str, int]:
    return {k: int((labels["kind"] == k).sum()) for k in INCIDENT_KINDS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "demo_data")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    sim = FleetSimulator(N_SERVERS, seed=SEED, start=START, incident_rate=INCIDENT_RATE)
    metrics, labels = sim.generate(DAYS)
    servers = sim.servers()
    boundary = sim.start + pd.Timedelta(days=TRAIN_DAYS)
    heldout = pick_heldout_servers(servers, labels, boundary)
    servers["split"] = np.where(servers["server_name"].isin(heldout), "heldout", "train")
    end = sim.start + pd.Timedelta(days=DAYS)

    fleet = metrics.copy()
    fleet["timestamp"] = _iso(fleet["timestamp"])
    write_gzip_csv(fleet, out / "fleet.csv.gz")
    inc = labels.copy()
    for col in ("start", "crossing", "end"):
        inc[col] = _iso(inc[col])
    inc.to_csv(out / "incidents.csv", index=False, lineterminator="\n")
    servers.to_csv(out / "servers.csv", index=False, lineterminator="\n")
    # The same split, machine-readable, for `tft-top train` / `tft-top eval` (engine.datasplit).
    split = {"heldout_from": boundary.strftime("%Y-%m-%dT%H:%M:%SZ"), "heldout_days": DAYS - TRAIN_DAYS,
             "heldout_servers": sorted(heldout)}
    (out / "split.json").write_text(json.dumps(split, indent=2) + "\n")

    in_train_period = labels["crossing"] < boundary
    on_heldout = labels["server_name"].isin(heldout)
    groups = {
        "train period (days 1-11), train servers": labels[in_train_period & ~on_heldout],
        "train period (days 1-11), held-out servers": labels[in_train_period & on_heldout],
        "held-out period (days 12-14), all servers": labels[~in_train_period],
        "held-out period (days 12-14), held-out servers": labels[~in_train_period & on_heldout],
    }
    size_mb = (out / "fleet.csv.gz").stat().st_size / 1e6
    (out / "README.md").write_text(_readme(sim, servers, heldout, boundary, end, groups, len(metrics)))

    print(f"wrote {out}/fleet.csv.gz ({len(metrics):,} rows, {size_mb:.2f} MB), incidents.csv, servers.csv, README.md")
    print(f"seed={SEED} incident_rate={INCIDENT_RATE} start={sim.start.strftime(ISO)} end={end.strftime(ISO)}")
    print(f"held-out period starts at {boundary.strftime(ISO)} (timestamps >= this are held out)")
    print(f"held-out servers: {', '.join(heldout)}")
    print(f"incidents: {len(labels)} total")
    for name, frame in groups.items():
        print(f"  {name}: {len(frame)} {counts_by_kind(frame)}")
    if size_mb >= 10:
        print("ERROR: fleet.csv.gz is over 10 MB", file=sys.stderr)
        return 1
    return 0


def _readme(sim, servers, heldout, boundary, end, groups, n_rows) -> str:
    th = DEFAULT_THRESHOLDS
    profiles = servers.groupby("profile")["server_name"].count().to_dict()
    prof_txt = ", ".join(f"{k} {v}" for k, v in sorted(profiles.items()))
    table = "\n".join(
        f"| {name} | {len(f)} | " + " | ".join(str(v) for v in counts_by_kind(f).values()) + " |"
        for name, f in groups.items()
    )
    held = ", ".join(
        f"`{n}` ({servers.loc[servers.server_name == n, 'profile'].item()})" for n in heldout
    )
    return f"""# Demo data: a synthetic 48-server fleet, 14 days at 5 minutes

Generated by `engine/simulator.py` (`FleetSimulator`) with

```
python benchmarks/make_demo_data.py
```

(seed `{SEED}`, `incident_rate={INCIDENT_RATE}` incidents per server per day, start
`{sim.start.strftime(ISO)}`, a Monday). Regenerating gives byte-identical files; do it
whenever the simulator changes (`tests/test_simulator.py` checks the files against it).

## Files

| file | what |
|---|---|
| `fleet.csv.gz` | the metrics: {N_SERVERS} servers x {DAYS} days x 288 samples/day = {n_rows:,} rows, gzip level 9 |
| `incidents.csv` | the labelled incidents (one row each) |
| `servers.csv` | one row per server: `server_name,profile,cores,split` |
| `split.json` | the same split for the tools (`heldout_from`, `heldout_servers`), read by `tft-top train/eval` and the replay |

### `fleet.csv.gz` columns (this is also the input format tft-top reads)

| column | meaning |
|---|---|
| `server_name` | server id, e.g. `web-01`, `db-02` |
| `timestamp` | ISO 8601, UTC, `Z` suffix, on the 5-minute grid (`2026-01-05T00:05:00Z`) |
| `cpu_percent` | 0-100 |
| `memory_percent` | 0-100 |
| `disk_percent` | 0-100 (the fullest / main filesystem) |
| `load_average` | 1-minute load average, >= 0 (not a percentage; compare with `cores`) |
| `profile` | optional server role: {', '.join(PROFILES)} |

Rows are sorted by `server_name`, `timestamp`; no gaps. Percentages have 2 decimals,
load 3. Fleet mix: {prof_txt};
cores per server in `servers.csv`.

### `incidents.csv` columns

| column | meaning |
|---|---|
| `server_name` | the server |
| `kind` | `memory_leak`, `disk_fill`, `cpu_runaway` or `load_storm` |
| `metric` | the metric that crosses: `memory_percent`, `disk_percent`, `cpu_percent`, `load_average` |
| `start` | when the anomaly begins (the ramp starts; at least 1 h before `crossing`) |
| `crossing` | the FIRST 5-minute timestamp at which `metric` in `fleet.csv.gz` is >= `threshold` (the sample before is below it) |
| `end` | the first timestamp at which the server is back to normal (may be after the data's end) |
| `threshold` | the critical threshold used |

Thresholds are the critical ones from `engine/thresholds.py`:
cpu {th.critical('cpu_percent'):g} %, memory {th.critical('memory_percent'):g} %, disk {th.critical('disk_percent'):g} %,
load average {th.load_per_core[1]:g} x the server's `cores`. Outside labelled incidents no metric ever reaches its critical threshold
(benign bursts peak below it), so every critical crossing in the data is labelled.

## Split

* **Time**: days 1-11 (`{sim.start.strftime(ISO)}` up to, not including,
  `{boundary.strftime(ISO)}`) are for training; days 12-14 (timestamps >=
  **`{boundary.strftime(ISO)}`** until `{end.strftime(ISO)}`) are held out. An incident
  belongs to the period its `crossing` falls in.
* **Servers**: {len(heldout)} servers have `split=heldout` in `servers.csv` and must never be
  used for training (all 14 days of them are evaluation data for unseen servers):
  {held}.
  They were picked per profile as the server with the most incidents
  (held-out-period incidents weighted 10x), so the unseen-server evaluation has
  incidents to find.

Incident counts (by `crossing`):

| group | total | {' | '.join(INCIDENT_KINDS)} |
|---|---|{'---|' * len(INCIDENT_KINDS)}
{table}

## What the data looks like

Daily and weekly seasonality (business-hours peaks in each server's own time zone,
quiet weekends), nightly batch jobs / database backups / storage ingest windows,
ML training runs lasting hours, AR(1) noise with heavy-ish tails, slowly growing
disks with cleanups, creeping memory reset by restarts, deploys (level shifts),
benign CPU / load bursts, near-idle servers (CPU ~2 %), flat-lined and mostly-zero
series. Incidents ramp up for at least an hour (memory leaks over 2-10 h, disk fills
over 3-12 h, CPU runaways over 1-3 h, load storms over 1-2.5 h), stay over the
threshold for a while, and recover (restart, cleanup, kill, subside).
Metric columns: {', '.join(METRICS)}.
"""


if __name__ == "__main__":
    raise SystemExit(main())
