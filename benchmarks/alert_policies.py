"""Alert debounce settings compared on one replay: how many incidents each catches early, and
how many of its alerts are real.

The engine replays a fleet's held-out period once (store -> TFT -> risk); every tick's
forecasts go to several ``engine.alerts.AlertManager`` instances that differ only in
``open_after`` / ``resolve_after`` / ``warn_probability``, and each one's alerts are scored against the labelled
incidents exactly as ``tft-top eval`` scores the engine's own (``engine.alert_eval``).

Without ``--data`` it first writes a fresh simulated fleet (another seed than the demo
fleet's, so nothing in it was trained on): the defaults in engine/alerts.py were chosen
there, then measured on the demo fleet's held-out period.

    python benchmarks/alert_policies.py                      # fresh fleet, seed 101, 6 days
    python benchmarks/alert_policies.py --data demo_data     # the demo fleet's held-out period
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.alert_eval import AlertRecord, read_incidents, score_alerts  # noqa: E402
from engine.alerts import AlertManager  # noqa: E402
from engine.datasplit import read_split  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from engine.sources import ReplaySource  # noqa: E402
from engine.tft_model import find_latest_model  # noqa: E402

# (open_after, resolve_after, warn_probability)
SETTINGS = [(2, 3, 0.0), (2, 6, 0.0), (2, 12, 0.0), (2, 24, 0.0), (3, 12, 0.0),
            (2, 12, 0.15), (2, 12, 0.2), (2, 12, 0.25), (2, 12, 0.3), (2, 12, 0.4)]


def write_fleet(out: Path, seed: int, days: float, servers: int = 48) -> None:
    """A simulated fleet with its incident labels; the first day is history only."""
    from engine.simulator import FleetSimulator

    sim = FleetSimulator(servers, seed=seed, start="2025-06-02T00:00:00Z", incident_rate=0.15)
    metrics, labels = sim.generate(days)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    metrics["timestamp"] = metrics["timestamp"].dt.strftime(iso)
    metrics.to_csv(out / "fleet.csv.gz", index=False)
    for col in ("start", "crossing", "end"):
        labels[col] = labels[col].dt.strftime(iso)
    labels.to_csv(out / "incidents.csv", index=False)
    sim.servers().to_csv(out / "servers.csv", index=False)
    split = {"heldout_from": (sim.start + pd.Timedelta(days=1)).strftime(iso), "heldout_days": days - 1,
             "heldout_servers": []}
    (out / "split.json").write_text(json.dumps(split) + "\n")


@contextmanager
def fleet_with_incidents(data: Path | None, seed: int, days: float):
    """(data, incidents): ``data`` itself, or a fresh simulated fleet written to a temporary
    directory that lives as long as the ``with`` block; exits when there are no labels."""
    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            data = Path(tmp)
            write_fleet(data, seed, days)
        incidents = read_incidents(data)
        if incidents is None:
            raise SystemExit(f"{data}: no incidents.csv to score against")
        yield data, incidents


def replay(data: Path, model: Path | None, settings=SETTINGS) -> tuple[dict, pd.Timestamp, int]:
    source = ReplaySource(data)
    split = read_split(data)
    if split.heldout_from is None:
        source.seek(split.heldout_start(source.grid).min())
    start = source.next_time
    engine = Engine(source, model, device="cpu")
    engine.start()
    managers = {s: AlertManager(open_after=s[0], resolve_after=s[1],
                                warn_probability=dict(s[2]) if isinstance(s[2], tuple) else s[2]) for s in settings}
    records: dict = {s: {} for s in settings}
    ticks = 0
    while not engine.finished:
        snap = engine.tick()
        ticks += 1
        for s, am in managers.items():
            for a in am.update(snap.servers, pd.Timestamp(snap.data_time)):
                rec = records[s].get(a.id)
                if rec is None:
                    rec = records[s][a.id] = AlertRecord(a.id, a.severity, a.server_name, a.metric,
                                                         pd.Timestamp(a.opened_at))
                if a.severity == "critical":
                    rec.severity = "critical"
                if a.resolved_at is not None:
                    rec.resolved_at = pd.Timestamp(a.resolved_at)
    return records, start, ticks


def _probability(text: str) -> float | tuple:
    """"0.3" -> 0.3; "default" -> WARN_PROBABILITY; "cpu=0.5/memory=0.3/..." -> per metric
    (a hashable tuple of (metric, bar); the metric's first word is enough)."""
    from engine.alerts import WARN_PROBABILITY
    from engine.contract import METRICS

    if text == "default":
        return tuple(WARN_PROBABILITY.items())
    if "=" not in text:
        return float(text)
    bars = {}
    for part in text.split("/"):
        name, value = part.split("=")
        metric = next((m for m in METRICS if m == name or m.split("_")[0] == name), name)
        bars[metric] = float(value)
    return tuple(bars.items())


def _label(wp) -> str:
    if isinstance(wp, tuple):
        return "/".join(f"{m.split('_')[0][:3]}{v:g}" for m, v in wp)
    return f"{wp:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="a fleet with incidents.csv (default: a fresh simulated one)")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--days", type=float, default=6.0)
    ap.add_argument("--model", type=Path, default=None,
                    help="model directory (default: newest under models/); 'none': the heuristic alone")
    ap.add_argument("--settings", default=None, metavar="OPEN:RESOLVE[:PROB],...",
                    help="the AlertManager settings to compare: open_after, resolve_after and optionally "
                         "warn_probability, one for all metrics or per metric, e.g. "
                         "2:12,4:12,2:12:0.3,2:12:cpu=0.5/memory=0.3/disk=0.1/load=0.3, or 2:12:default "
                         "(engine.alerts.WARN_PROBABILITY) (default: %s)"
                         % ",".join(f"{a}:{b}:{c:g}" for a, b, c in SETTINGS))
    ap.add_argument("--by-metric", action="store_true",
                    help="also score each metric's alerts alone (a metric's alerts depend only on its own "
                         "forecasts, so per-metric settings can be read off one run)")
    args = ap.parse_args()
    # pandas 3 hands pytorch-forecasting read-only arrays; torch warns once per run
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    settings = SETTINGS
    if args.settings:
        bad = SystemExit(f"--settings: expected OPEN:RESOLVE[:PROB] items like 2:12,2:12:0.3 "
                         f"(whole numbers >= 1, a probability in [0, 1]), got {args.settings!r}")
        settings = []
        for item in args.settings.split(","):
            parts = item.split(":")
            try:
                oa, ra = int(parts[0]), int(parts[1])
                prob = _probability(parts[2]) if len(parts) == 3 else 0.0
                AlertManager(warn_probability=dict(prob) if isinstance(prob, tuple) else prob)
            except (ValueError, IndexError):
                raise bad from None
            if len(parts) > 3 or min(oa, ra) < 1:
                raise bad
            settings.append((oa, ra, prob))
    model = None if str(args.model) == "none" else args.model or find_latest_model(ROOT / "models")
    with fleet_with_incidents(args.data, args.seed, args.days) as (data, incidents):
        records, start, ticks = replay(data, model, settings)
    print(f"{data if args.data else f'simulated fleet, seed {args.seed}, {args.days:g} days'}; model {model or 'none (the heuristic alone)'}; "
          f"{ticks} ticks from {start}")
    print(f"{'open_after':>10}{'resolve_after':>14}{'warn prob':>10}{'ahead':>10}{'share':>8}{'alerts':>8}"
          f"{'precision':>11}{'critical':>10}{'crit. prec.':>12}{'median lead':>13}")
    for (oa, ra, wp), recs in records.items():
        alerts = list(recs.values())
        n, early, _, leads, _, flags = score_alerts(alerts, incidents, start, open_after=oa)
        crit = [f for a, f in zip(alerts, flags) if a.severity == "critical"]
        lead = f"{np.median(leads):.0f} min" if leads else "—"
        print(f"{oa:>10}{ra:>14} {_label(wp):>9}{early:>6} /{n:<3}{early / max(n, 1):>7.0%}{len(alerts):>8}"
              f"{np.mean(flags) if flags else float('nan'):>11.1%}{len(crit):>10}"
              f"{np.mean(crit) if crit else float('nan'):>12.1%}{lead:>13}")
    if args.by_metric:
        print("per metric (ahead / incidents, alerts, precision):")
        for (oa, ra, wp), recs in records.items():
            cells = []
            for metric in sorted(set(incidents["metric"])):
                alerts = [a for a in recs.values() if a.metric == metric]
                n, early, _, _, _, flags = score_alerts(alerts, incidents[incidents["metric"] == metric], start,
                                                         open_after=oa)
                cells.append(f"{metric.split('_')[0]} {early}/{n} {len(alerts)} "
                             f"{np.mean(flags) if flags else float('nan'):.0%}")
            print(f"  {oa}:{ra}:{_label(wp)}  " + " · ".join(cells))


if __name__ == "__main__":
    main()
