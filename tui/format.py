"""Pure formatting helpers: numbers, durations, colours by threshold, sparklines.

Nothing here computes a forecast; it only turns snapshot values into text.
"""
from __future__ import annotations

import calendar
import math
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from rich.text import Text


def iso_epoch(iso: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 UTC time as the snapshots write them (None if absent or bad)."""
    if not iso:
        return None
    try:
        return float(calendar.timegm(time.strptime(str(iso)[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None

METRIC_SHORT = {"cpu_percent": "cpu", "memory_percent": "mem", "disk_percent": "disk", "load_average": "load"}
METRIC_LABEL = {"cpu_percent": "CPU %", "memory_percent": "Memory %", "disk_percent": "Disk %",
                "load_average": "Load average"}
PERCENT = {"cpu_percent", "memory_percent", "disk_percent"}

CRIT = "bold red"
WARN = "yellow"
OK = ""
DIM = "dim"
BLOCKS = "▁▂▃▄▅▆▇█"


def level_style(value: float | None, warning: float, critical: float) -> str:
    if value is None or not math.isfinite(value):
        return DIM
    if value >= critical:
        return CRIT
    if value >= warning:
        return WARN
    return OK


def fmt_value(metric: str, value: float | None, below: float | None = None) -> str:
    """A metric's value as the table shows it; with ``below`` (the critical level), a value
    under it never rounds up to it (94.96 reads 94.9, not a critical-looking 95.0)."""
    if value is None or not math.isfinite(value):
        return "—"
    digits = 1 if metric in PERCENT else (2 if value < 100 else 0)
    if below is not None and value < below and round(value, digits) >= below:
        value = math.floor(value * 10 ** digits) / 10 ** digits
    return f"{value:.{digits}f}"


def fmt_prob(p: float | None) -> str:
    """engine.risk.format_probability: one wording for the app and `tft-top predict`."""
    from engine.risk import format_probability

    return format_probability(p)


def prob_style(p: float | None) -> str:
    if p is None:
        return DIM
    if p >= 0.5:
        return CRIT
    if p >= 0.2:
        return WARN
    return DIM if p < 0.01 else OK


def fmt_minutes(minutes: float | None) -> str:
    """35 -> '35m', 135 -> '2h15m', 0 -> 'now', None -> '—'."""
    if minutes is None or not math.isfinite(minutes):
        return "—"
    m = int(round(minutes))
    if m <= 0:
        return "now"
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if m else f"{h}h"


POSSIBLE = "?"   # marks a breach time that only the p90 forecast reaches: possible, not expected


def fmt_breach(minutes: float | None, basis: str | None) -> tuple[str, str]:
    """The time to breach and its style; a p90-only crossing carries '?' and is never red."""
    if minutes is None:
        return fmt_minutes(minutes), DIM
    if basis == "p90":
        return fmt_minutes(minutes) + POSSIBLE, WARN
    return fmt_minutes(minutes), CRIT if minutes <= 60 else WARN


def fmt_time(iso: str | None) -> str:
    """'2026-01-16T03:05:00Z' -> '01-16 03:05'."""
    if not iso:
        return "—"
    s = str(iso)
    if len(s) >= 16 and s[4] == "-" and s[10] in "T ":
        return f"{s[5:10]} {s[11:16]}"
    return s


_BLOCK_CHARS = np.array(list(BLOCKS))
_LEVEL_STYLE = {"o": "green", "w": WARN, "c": CRIT, " ": DIM}


def sparkline_spec(values, lo: float, hi: float, width: int, warning: float, critical: float) -> tuple[str, str]:
    """(chars, levels): each cell is the max of its slice of ``values``, scaled to the FIXED
    bounds [lo, hi] (not the series' own min/max); levels hold one code per cell:
    "o" ok, "w" warning, "c" critical (``spec_text`` colours them)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    if n == 0 or width <= 0:
        return ("", "")
    width = min(width, n)
    edges = (np.arange(width + 1) * n) // width
    cells = np.maximum.reduceat(v, edges[:-1])
    span = (hi - lo) or 1.0
    cells = np.where(cells == cells, cells, lo)   # NaN -> the floor
    frac = np.clip((cells - lo) / span, 0.0, 1.0)
    idx = np.minimum((frac * len(BLOCKS)).astype(np.int64), len(BLOCKS) - 1)
    chars = "".join(_BLOCK_CHARS[idx])
    levels = "".join(np.where(cells >= critical, "c", np.where(cells >= warning, "w", "o")))
    return (chars, levels)


class Spark(NamedTuple):
    """A sparkline cell: a dim prefix, block characters and one level code per character."""

    prefix: str
    chars: str
    levels: str


_LEVEL_RANK = {"o": 0, "w": 1, "c": 2}
_LEVEL_MAX = {a + b: max(a, b, key=_LEVEL_RANK.__getitem__) for a in _LEVEL_RANK for b in _LEVEL_RANK}


def halve_spark(spark: "Spark") -> "Spark":
    """The sparkline in half the cells: each the higher of two neighbours.  Exact, as a cell
    is the max of its slice of the forecast and the block and the level grow with it (the
    blocks are consecutive code points: the higher block is the larger character)."""
    chars, levels = spark.chars, spark.levels
    m = len(chars) // 2 * 2
    return Spark(spark.prefix, "".join(map(max, chars[0:m:2], chars[1:m:2])),
                 "".join(map(_LEVEL_MAX.__getitem__, map(str.__add__, levels[0:m:2], levels[1:m:2]))))


def spec_text(spec) -> Text:
    """Build a Text from a cell spec: a str, (plain, style[, justify]) or a Spark."""
    if isinstance(spec, str):
        return Text(spec, no_wrap=True)
    if not spec:
        return Text("")
    if isinstance(spec, Spark):
        t = Text(spec.prefix, style=DIM, no_wrap=True)
        chars, levels = spec.chars, spec.levels
        i = 0
        while i < len(chars):   # runs of one level share a span
            j = i
            while j < len(chars) and levels[j] == levels[i]:
                j += 1
            t.append(chars[i:j], _LEVEL_STYLE[levels[i]])
            i = j
        return t
    plain, style, *rest = spec
    return Text(plain, style=style, no_wrap=True, justify=rest[0] if rest else "right")


def metric_bounds(metric: str, critical: float, values: Sequence[float] = ()) -> tuple[float, float]:
    """Fixed chart / sparkline bounds: 0-100 for percentages, 0-1.25 x critical for load."""
    if metric in PERCENT:
        return 0.0, 100.0
    hi = critical * 1.25 if critical and math.isfinite(critical) and critical > 0 else 10.0
    return 0.0, hi


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells with eighth-block resolution."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = int(round(fraction * width * 8))
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
    return ("█" * full + partial).ljust(width)
