"""Alert thresholds: the one place that says when a metric is in trouble.

Percent metrics use fixed percentages. ``load_average`` is not a percentage: a
1-minute load equal to the number of cores means every core is busy with a queue
forming behind it, so its thresholds are multiples of the core count when the
core count is known, else the configured absolute fallback values.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field


def as_sample(x: float) -> float:
    """``x`` at the precision the window store keeps a sample (float32), as a float: a level
    compared with samples must be one of their values, or a sample typed as exactly the
    level (``--thresholds cpu=85:95.1``, a sample of 95.1) reads as below it (95.0999985 <
    95.1).  inf where float32 cannot hold it."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.inf if x > 0 else -math.inf

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

    def __post_init__(self) -> None:
        # every level at a sample's precision (as_sample), so that a sample equal to it is at it
        pair = lambda p: (as_sample(float(p[0])), as_sample(float(p[1])))        # noqa: E731
        object.__setattr__(self, "percent", {m: pair(p) for m, p in self.percent.items()})
        object.__setattr__(self, "load_absolute", pair(self.load_absolute))

    def for_metric(self, metric: str, cores: int | None = None) -> tuple[float, float]:
        """(warning, critical) for ``metric`` on a server with ``cores`` cores (None: unknown)."""
        if metric == "load_average":
            if cores:
                return (as_sample(self.load_per_core[0] * cores), as_sample(self.load_per_core[1] * cores))
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
MAX_CORES = 65_536          # the most cores servers.csv accepts (engine.sources.MAX_CORES; this module stays pandas-free)


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
        if not part and spec.strip().endswith(","):      # a trailing comma ("disk=85:95,") is no pair
            continue
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
        # at a sample's precision: levels it cannot hold or tell apart are refused (a multiple
        # of the cores is checked for the most cores a server may have, and kept unrounded:
        # it is rounded once multiplied)
        # (Thresholds itself rounds the levels it keeps)
        most = MAX_CORES if key == "load_per_core" else 1
        if not as_sample(crit * most) < float("inf"):
            raise ValueError(f"--thresholds {part!r}: {crit:g}{' x the cores' if most > 1 else ''} is beyond the "
                             "largest value a sample can hold")
        if not as_sample(warn) < as_sample(crit):
            raise ValueError(f"--thresholds {part!r}: warning and critical are the same level at the "
                             "precision samples are kept (7 significant digits)")
        if key in percent:
            percent[key] = (warn, crit)
        else:
            load[key] = (warn, crit)
    return Thresholds(percent=percent, load_per_core=load["load_per_core"], load_absolute=load["load_absolute"])


def _level(x: float, single: bool = True) -> str:
    """The shortest decimal that reads back as ``x`` (at a sample's precision when ``single``):
    95.1, not 95.0999984741211; 80.0000001, which samples cannot tell from 80, as 80."""
    text = repr(x)
    for digits in range(1, 18):
        value = float(f"{x:.{digits}g}")
        if (as_sample(value) == as_sample(x)) if single else value == x:
            text = repr(value)          # (not the g format's own text: 80 read "8e+01")
            break
    return text[:-2] if text.endswith(".0") else text


def describe_thresholds(t: Thresholds) -> str:
    """One line, in parse_thresholds' own syntax, naming each level in use exactly (a level
    rounded to six digits read as the default when it was not)."""
    short = {"cpu_percent": "cpu", "memory_percent": "memory", "disk_percent": "disk"}
    parts = [f"{short[m]}={_level(w)}:{_level(c)}" for m, (w, c) in t.percent.items()]
    parts += [f"load_per_core={_level(t.load_per_core[0], False)}:{_level(t.load_per_core[1], False)}",
              f"load={_level(t.load_absolute[0])}:{_level(t.load_absolute[1])}"]
    return ",".join(parts)
