"""Load-test `tft-top serve` on loopback: N concurrent clients for a few seconds, then stop.

Starts the daemon in a child process (a simulated fleet, heuristic by default; ``--model``
uses the newest model under models/, or the directory given), waits for its first
forecast, runs ``--clients`` asyncio + httpx clients against GET /predictions/current and
GET /status for ``--duration`` seconds, prints requests/s and p50/p99 latency per route,
then stops the daemon.  Everything stays on 127.0.0.1.

    .venv/bin/python benchmarks/bench_serve.py                     # 100 servers, 50 clients, 10 s
    .venv/bin/python benchmarks/bench_serve.py --model --clients 20 --duration 5 --json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = ("/predictions/current", "/status")


def _child(args) -> int:
    """The daemon side: serve until stdin closes (the parent is gone) or it is told to stop."""
    import logging

    from engine.daemon import Daemon, RunningServer
    from engine.forecaster import default_torch_threads
    from engine.runtime import Engine
    from engine.sources import SimulatorSource

    logging.disable(logging.WARNING)
    model = args.model_dir or None
    daemon = Daemon(Engine(SimulatorSource(args.servers, seed=0), model, device=args.device),
                    interval=args.interval, torch_threads=default_torch_threads())
    with RunningServer(daemon, port=0) as srv:
        if not daemon.wait_ready(120):
            print(json.dumps({"error": daemon.error or "no first forecast in 120 s"}), flush=True)
            return 1
        print(json.dumps({"port": srv.port}), flush=True)
        sys.stdin.read()          # returns when the parent closes our stdin
    return 0


async def _load(base: str, clients: int, duration: float, gzip: bool) -> dict:
    import httpx

    lat: dict[str, list[float]] = {p: [] for p in PATHS}
    errors: dict[str, int] = {p: 0 for p in PATHS}
    headers = {} if gzip else {"Accept-Encoding": "identity"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    def new_client() -> httpx.AsyncClient:  # one keep-alive connection per client, as 50 real clients would have
        return httpx.AsyncClient(base_url=base, limits=limits, timeout=30, trust_env=False, headers=headers)

    deadline = time.perf_counter() + duration

    async def worker(k: int) -> None:
        i = k
        async with new_client() as client:
            while time.perf_counter() < deadline:
                path = PATHS[i % len(PATHS)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await client.get(path)
                    await r.aread()
                    ok = r.status_code == 200
                except Exception:  # noqa: BLE001 - counted
                    ok = False
                if ok:
                    lat[path].append(time.perf_counter() - t0)
                else:
                    errors[path] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    async with new_client() as client:
        status = (await client.get("/status")).json()
    out = {"wall_s": round(wall, 2), "routes": {}, "status": status}
    total = 0
    for p in PATHS:
        xs = sorted(lat[p])
        total += len(xs)
        pct = (lambda q: round(1000 * xs[min(int(q * len(xs)), len(xs) - 1)], 1)) if xs else (lambda q: None)
        out["routes"][p] = {"requests": len(xs), "errors": errors[p], "rps": round(len(xs) / wall, 1),
                            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}
    out["total_rps"] = round(total / wall, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=100, help="simulated fleet size (default 100)")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10)")
    ap.add_argument("--interval", type=float, default=1.0, help="daemon tick interval, s (default 1)")
    ap.add_argument("--model", nargs="?", const="latest", default=None,
                    help="serve a model: the newest under models/ (no value) or this directory")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--no-gzip", action="store_true", help="ask for uncompressed snapshots")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_model-dir", dest="model_dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        return _child(args)

    model_dir = None
    if args.model == "latest":
        from engine.tft_model import find_latest_model

        model_dir = find_latest_model(ROOT / "models")
        if model_dir is None:
            print("bench_serve: no model under models/; serving the heuristic", file=sys.stderr)
    elif args.model:
        model_dir = Path(args.model)
    cmd = [sys.executable, __file__, "--_child", "--servers", str(args.servers), "--interval", str(args.interval),
           "--device", args.device] + (["--_model-dir", str(model_dir)] if model_dir else [])
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = child.stdout.readline()
        hello = json.loads(line) if line.strip() else {"error": "the daemon exited"}
        if "port" not in hello:
            print(f"bench_serve: {hello.get('error')}", file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{hello['port']}"
        res = asyncio.run(_load(base, args.clients, args.duration, gzip=not args.no_gzip))
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu_s"] = {"clients": round(me.ru_utime + me.ru_stime, 1), "daemon": round(kids.ru_utime + kids.ru_stime, 1)}
    st = res.pop("status")
    res["daemon"] = {"servers": st["servers"], "model_type": st["model_type"], "device": st["device"],
                     "tick_latency_ms": st["tick_latency_ms"], "ticks": st["ticks"]}
    res["config"] = {"clients": args.clients, "duration_s": args.duration, "gzip": not args.no_gzip,
                     "model": None if model_dir is None else str(model_dir), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    d = res["daemon"]
    print(f"tft-top serve: {d['servers']} servers, {d['model_type']} on {d['device']}, "
          f"tick {d['tick_latency_ms']} ms, {d['ticks']} ticks; {args.clients} clients for {res['wall_s']} s "
          f"(gzip {'on' if not args.no_gzip else 'off'}, {os.cpu_count()} CPUs shared by client and daemon)")
    for p, r in res["routes"].items():
        print(f"  GET {p:22s} {r['rps']:8.1f} req/s   p50 {r['p50_ms']} ms   p99 {r['p99_ms']} ms"
              f"   ({r['requests']} ok, {r['errors']} errors)")
    print(f"  total {res['total_rps']} req/s; CPU time: clients {res['cpu_s']['clients']} s, "
          f"daemon {res['cpu_s']['daemon']} s (including its start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
