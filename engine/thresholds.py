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
