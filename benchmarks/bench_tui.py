"""How long the TUI takes to apply one snapshot to the screen, at 1,000 servers.

    .venv/bin/python benchmarks/bench_tui.py [--servers 1000] [--repeats 15]

Runs the real app headless (``App.run_test``) with an engine that never ticks, then posts
synthetic snapshots (``tui.testing.synthetic_snapshot``; values drift between ticks, so
most cells change and rows re-sort) as ``SnapshotReady`` messages, and measures

* apply: the handler's time (header, fleet table cells / sort, alert log),
* post -> painted: from posting the message until the fleet table has rendered its lines
  again (the handler ran and the screen repainted the table; with --drill-down: until the
  first chart rendered again),

reporting the median (and max) over the repeats.  The first snapshot (1,000 ``add_row``s)
is reported separately.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui.app import TftTopApp  # noqa: E402
from tui.messages import SnapshotReady  # noqa: E402
from tui.testing import synthetic_snapshot  # noqa: E402


def engine_snapshots(n: int, count: int, model: str | None) -> list:
    """Real snapshots: the engine on a simulated fleet (the heuristic unless ``model``)."""
    from engine.runtime import Engine
    from engine.sources import SimulatorSource

    engine = Engine(SimulatorSource(n, seed=1), model)
    engine.start()
    return [engine.tick(advance=i > 0) for i in range(count)]


async def bench(n: int, repeats: int, drill: bool, source: str = "synthetic", model: str | None = None) -> dict:
    never = threading.Event()
    if source == "engine":
        snaps = engine_snapshots(n, repeats + 1, model)
    else:
        snaps = [synthetic_snapshot(n, t=t, seed=1) for t in range(repeats + 1)]
    app = TftTopApp(lambda: never.wait(600))
    timings: dict[str, list[float]] = {"apply": [], "painted": []}
    original = app.apply_snapshot

    def timed_apply(snapshot, history=None):
        t0 = time.perf_counter()
        original(snapshot, history)
        timings["apply"].append(time.perf_counter() - t0)

    app.apply_snapshot = timed_apply
    painted: list[float] = []
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            table = app.table
            render_lines = table.render_lines

            def timed_render_lines(crop):
                out = render_lines(crop)
                painted.append(time.perf_counter())
                return out

            table.render_lines = timed_render_lines
            first = None
            for seq, snap in enumerate(snaps, start=1):
                app.controls.latest_seq = seq
                t0 = time.perf_counter()
                app.post_message(SnapshotReady(snap, seq))
                deadline = time.monotonic() + 60
                painted.clear()
                while app.snapshots_applied < seq or not painted:
                    if time.monotonic() > deadline or not app.is_running:
                        raise RuntimeError("the snapshot was never applied (did the app crash?)")
                    await asyncio.sleep(0.0005)
                dt = painted[0] - t0
                await pilot.pause()
                if first is None:
                    first = (dt, timings["apply"][0])
                    if drill:
                        # the table is hidden under the drill-down: time the first chart's render instead
                        await pilot.press("enter")
                        await pilot.pause()
                        chart = app.screen.query("MetricChart").first()
                        chart_render = chart.render

                        def timed_chart_render(chart_render=chart_render):
                            out = chart_render()
                            painted.append(time.perf_counter())
                            return out

                        chart.render = timed_chart_render
                else:
                    timings["painted"].append(dt)
            rows = app.table.row_count
    finally:
        never.set()
    apply = timings["apply"][1:]
    return {"servers": n, "rows": rows, "first_painted_ms": first[0] * 1e3, "first_apply_ms": first[1] * 1e3,
            "apply_median_ms": statistics.median(apply) * 1e3, "apply_max_ms": max(apply) * 1e3,
            "painted_median_ms": statistics.median(timings["painted"]) * 1e3,
            "painted_max_ms": max(timings["painted"]) * 1e3, "repeats": len(apply), "drill_down": drill,
            "source": source, "model_type": snaps[-1].metadata.get("model_type"),
            "alerts": len(snaps[-1].alerts)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--drill-down", action="store_true", help="measure with the drill-down screen open")
    ap.add_argument("--engine", action="store_true",
                    help="real snapshots from the engine on a simulated fleet instead of synthetic ones")
    ap.add_argument("--model", default=None, help="with --engine: a model directory (default: heuristic)")
    args = ap.parse_args()
    r = asyncio.run(bench(args.servers, args.repeats, args.drill_down, "engine" if args.engine else "synthetic",
                          args.model))
    print(f"{r['servers']} servers ({r['rows']} rows, {r['source']} snapshots, {r['model_type']}, "
          f"{r['alerts']} alerts){' + drill-down' if r['drill_down'] else ''}: "
          f"first snapshot {r['first_painted_ms']:.0f} ms (apply {r['first_apply_ms']:.0f} ms); "
          f"then apply median {r['apply_median_ms']:.1f} ms (max {r['apply_max_ms']:.1f}), "
          f"post -> painted median {r['painted_median_ms']:.1f} ms (max {r['painted_max_ms']:.1f}) "
          f"over {r['repeats']} snapshots")


if __name__ == "__main__":
    main()
