"""Tick time of two models on the same 1,000-server simulated fleet, interleaved in one process.

    python benchmarks/results/day-ago-2026-11-27/speed_ab.py MODEL_A MODEL_B [ROUNDS]
"""
import statistics, sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
warnings.filterwarnings("ignore")
from engine.runtime import Engine
from engine.sources import SimulatorSource

models = [Path(p) for p in sys.argv[1:3]]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
engines = []
for m in models:
    e = Engine(SimulatorSource(1000, seed=0), m, device="cpu")
    e.start(); assert e.forecaster.loaded, e.forecaster.model_reason
    e.tick(); engines.append(e)
times = [[] for _ in engines]; fc_times = [[] for _ in engines]
for r in range(rounds):
    for i, e in enumerate(engines):
        tick = e.source.poll()
        t0 = time.perf_counter(); e.ingest(tick)
        w = e.store.windows(); t1 = time.perf_counter()
        fc = e.forecaster.forecast(w, with_importance=True); t2 = time.perf_counter()
        orig = e.forecaster.forecast
        e.forecaster.forecast = lambda w, with_importance=False, _fc=fc: _fc
        e.forecast(t2); e.forecaster.forecast = orig
        t3 = time.perf_counter()
        times[i].append(t3 - t0); fc_times[i].append(t2 - t1)
for m, t, f in zip(models, times, fc_times):
    print(f"{m.name}: tick median {statistics.median(t):.3f} s (forecast {statistics.median(f):.3f} s) over {rounds}")
print("ratio (second/first) tick:", round(statistics.median(times[1]) / statistics.median(times[0]), 3),
      "per-round median ratio:", round(statistics.median([b / a for a, b in zip(*times)]), 3))
