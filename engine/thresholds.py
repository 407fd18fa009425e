"""Alert thresholds: the one place that says when a metric is in trouble.

Percent metrics use fixed percentages. ``load_average`` is not a percentage: a
1-minute load equal to the number of cores means every core is busy with a queue
forming behind it, so its thresholds are multiples of the core count when the
core count is known, else the configured absolute fallback values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# (warning, critical) for the percentage metrics.
DEFAULT_PERCENT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "cpu_percent": (80.0, 95.0),
    "memory_percent": (85.0, 95.0),
    "disk_percent": (85.0, 95.0),
}
# load_average thresholds per core: warning at 1.0 x cores, critical at 2.0 x cores.
DEFAULT_LOAD_PER_CORE: tuple[float, float] = (1.0, 2.0)
# Used when a server's core count is unknown (a 4-core machine's values).
DEFAULT_LOAD_ABSOLUTE: tuple[float, float] = (4.0, 8.0)


@dataclass(frozen=True)
class Thresholds:
    """Warning/critical thresholds for the four metrics of one server."""

    percent: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_PERCENT_THRESHOLDS)
    )
    load_per_core: tuple[float, float] = DEFAULT_LOAD_PER_CORE
    load_absolute: tuple[float, float] = DEFAULT_LOAD_ABSOLUTE

    def for_metric(self, metric: str, cores: int | None = None) -> tuple[float, float]:
        """(warning, critical) for ``metric`` on a server with ``cores`` cores (None: unknown)."""
        if metric == "load_average":
            if cores:
                return (self.load_per_core[0] * cores, self.load_per_core[1] * cores)
            return self.load_absolute
        return self.percent[metric]

    def critical(self, metric: str, cores: int | None = None) -> float:
        return self.for_metric(metric, cores)[1]

    def warning(self, metric: str, cores: int | None = None) -> float:
        return self.for_metric(metric, cores)[0]


DEFAULT_THRESHOLDS = Thresholds()


# names accepted by parse_thresholds, and the metric (or load setting) each one sets
_SPEC_NAMES = {
    "cpu": "cpu_percent", "cpu_percent": "cpu_percent",
    "memory": "memory_percent", "mem": "memory_percent", "memory_percent": "memory_percent",
    "disk": "disk_percent", "disk_percent": "disk_percent",
    "load_per_core": "load_per_core",
    "load": "load_absolute", "load_average": "load_absolute",
}
THRESHOLDS_HELP = ("warning:critical pairs, e.g. 'cpu=85:97,memory=90:98,load_per_core=1.5:3,load=6:12' "
                   "(load_per_core: multiples of the core count; load: when the core count is unknown). "
                   "Defaults: cpu 80:95, memory 85:95, disk 85:95, load_per_core 1:2, load 4:8")


MIN_LEVEL = 0.01


def parse_thresholds(spec: str | None, base: Thresholds = DEFAULT_THRESHOLDS) -> Thresholds:
    """``base`` with the pairs in ``spec`` ("cpu=85:97,load_per_core=1.5:3") replaced.

    Raises ValueError with a one-line reason naming the bad part."""
    if spec is None or not spec.strip():
        return base
    percent = dict(base.percent)
    load = {"load_per_core": base.load_per_core, "load_absolute": base.load_absolute}
    seen: set[str] = set()
    for part in spec.split(","):
        part = part.strip()
        name, eq, pair = part.partition("=")
        key = _SPEC_NAMES.get(name.strip().lower())
        if not eq or key is None:
            raise ValueError(f"--thresholds {part!r}: give NAME=WARNING:CRITICAL with NAME one of cpu, memory, "
                             "disk, load_per_core, load")
        if key in seen:
            raise ValueError(f"--thresholds {part!r}: {name.strip()} is given twice")
        seen.add(key)
        try:
            if "_" in pair:         # float() reads 1_0 as 10
                raise ValueError
            warn, crit = (float(x) for x in pair.split(":"))
        except ValueError:
            raise ValueError(f"--thresholds {part!r}: give two numbers, WARNING:CRITICAL") from None
        if not (0 < warn < crit < float("inf")):
            raise ValueError(f"--thresholds {part!r}: need 0 < warning < critical")
        if warn < MIN_LEVEL:        # (shown to two decimals: 1e-300 read "critical 0")
            raise ValueError(f"--thresholds {part!r}: a level below {MIN_LEVEL} is not a threshold")
        if key in percent and crit > 100:
            raise ValueError(f"--thresholds {part!r}: a percentage's critical level is at most 100")
        if key in percent and crit <= 1:
            # (cpu=0.5:0.9 put every server at critical: health 0 %)
            raise ValueError(f"--thresholds {part!r}: levels are percentages (0–100), not fractions: "
                             f"{name.strip()}={warn * 100:g}:{crit * 100:g}?")
        if key in percent:
            percent[key] = (warn, crit)
        else:
            load[key] = (warn, crit)
    return Thresholds(percent=percent, load_per_core=load["load_per_core"], load_absolute=load["load_absolute"])


def describe_thresholds(t: Thresholds) -> str:
    """One line, in parse_thresholds' own syntax."""
    short = {"cpu_percent": "cpu", "memory_percent": "memory", "disk_percent": "disk"}
    parts = [f"{short[m]}={w:g}:{c:g}" for m, (w, c) in t.percent.items()]
    parts += [f"load_per_core={t.load_per_core[0]:g}:{t.load_per_core[1]:g}",
              f"load={t.load_absolute[0]:g}:{t.load_absolute[1]:g}"]
    return ",".join(parts)
