"""Where samples come from: one interface, several sources.

A source gives a history to start from (``backfill``) and then one tick of records at a
time (``poll``).  Records from sources that did not come through the file loader are
validated by the data contract; a bad record is skipped and reported, never silently
merged.  Replay and the simulator are here; live sources (this host, Prometheus)
implement the same interface.
"""
from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.contract import MAX_FILL_STEPS, STEP, DataError, LoadResult, load_path, to_grid, validate_records
from engine.datasplit import read_split

DEFAULT_BACKFILL = pd.Timedelta(hours=24)


@dataclass
class Tick:
    """One poll: the valid records (canonical frame) and what was refused."""

    frame: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    finished: bool = False


class Source:
    name = "source"
    cores: dict[str, int]
    can_seek = False

    def backfill(self) -> pd.DataFrame:
        raise NotImplementedError

    def poll(self) -> Tick:
        raise NotImplementedError

    def wall_time(self) -> float | None:
        """Now, in epoch seconds, for a live fleet (this host, Prometheus, POSTs): the engine
        judges silence against it, so a feed that stops altogether shows its servers as
        silent rather than its last snapshot as current.  None (replays, the simulator): the
        data's own newest sample is the fleet's time."""
        return None

    def want_history(self, steps: int) -> None:
        """Make ``backfill`` reach at least ``steps`` 5-minute steps back, where the source
        has history to give (a model that reads the same time yesterday needs two days)."""

    def data_clock(self) -> float | None:
        """A replay's or the simulator's own time, epoch s: the step it has given last (None:
        the wall clock's sources, or none yet).  The daemon judges POSTed times against it:
        against the store's newest sample, each accepted POST moved the limit on by 10 min."""
        return None

    def feeds(self, name: str) -> bool:
        """Whether this source sends samples for server ``name`` (a POST for it would come
        before the source's own samples and make the store refuse them)."""
        return False


MAX_CORES = 65_536     # beyond any machine's: a larger count is a broken file


def read_cores(path: Path) -> dict[str, int]:
    """Core counts from a ``servers.csv`` beside the data (server_name, cores), if any."""
    servers = (path if path.is_dir() else path.parent) / "servers.csv"
    if not servers.is_file():
        return {}
    try:
        # all text, no row wider than the header (pandas read a first row with one field too
        # many as an index column and shifted the others silently); a shorter row's missing
        # trailing fields are empty, and blank or whitespace-only lines are skipped
        with open(servers, newline="", encoding="utf-8-sig") as fh:
            lines = [r for r in csv.reader(fh) if any(f.strip() for f in r)]
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{servers}: not a readable CSV table ({' '.join(str(exc).split())[:120]})") from None
    header = [c.strip() for c in lines[0]] if lines else []
    for c in ("server_name", "cores"):
        if c not in header:
            raise DataError(f"{servers}: column '{c}' is missing")
        if header.count(c) > 1:
            raise DataError(f"{servers}: column '{c}' appears more than once")
    for row, fields in enumerate(lines[1:], start=1):
        if len(fields) > len(header):
            raise DataError(f"{servers}: row {row}: {len(fields)} fields, the header has {len(header)}")
        fields.extend([""] * (len(header) - len(fields)))
    table = {c: [f[header.index(c)] for f in lines[1:]] for c in ("server_name", "cores")}
    cores: dict[str, int] = {}
    rows: dict[str, int] = {}
    for row, (name, value) in enumerate(zip(table["server_name"], table["cores"]), start=1):
        name, value = str(name).strip(), str(value).strip()      # as the metrics' names are read
        if not name:
            raise DataError(f"{servers}: row {row}, column server_name: missing value")
        if name in rows:
            raise DataError(f"{servers}: row {row}, column server_name: {name!r} is listed again "
                            f"(first on row {rows[name]})")
        rows[name] = row
        if value == "" or value.lower() in ("nan", "na", "null", "none"):
            continue                    # unknown: the load thresholds use the configured default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and 1 <= number <= MAX_CORES and number == int(number)):
            # (a wrong core count silently moves the load thresholds: 2.5 cores would read as 2)
            raise DataError(f"{servers}: row {row}, column cores: {value!r} is not a whole number of cores "
                            f"from 1 to {MAX_CORES}")
        cores[name] = int(number)
    return cores


class ReplaySource(Source):
    """Replays a recorded fleet tick by tick, from its held-out period when it has one.

    ``start`` is the first replayed step; the history before it is the backfill.  A
    start past the data's end means "forecast from the last sample".  Raises DataError
    (one line) when the data cannot be loaded.
    """

    can_seek = True

    def __init__(self, path: Path | str, start: pd.Timestamp | str | None = None,
                 backfill: pd.Timedelta = DEFAULT_BACKFILL, until: pd.Timestamp | None = None):
        self.path = Path(path)
        self.name = f"replay {self.path}"
        result: LoadResult = load_path(self.path)
        result.raise_for_problems()
        self.notes = result.notes
        frame = result.frame
        # the whole recording's span, whatever ``until`` cuts off
        self.data_first, self.data_last = frame["timestamp"].min(), frame["timestamp"].max()
        if until is not None:       # `predict --at`: nothing recorded after that instant exists
            frame = frame[frame["timestamp"] <= until].reset_index(drop=True)
            if frame.empty:
                raise DataError(f"{until:%Y-%m-%dT%H:%M:%SZ} is outside the data "
                                f"({self.data_first:%Y-%m-%dT%H:%MZ} .. {self.data_last:%Y-%m-%dT%H:%MZ})")
        self.newest_sample = frame["timestamp"].max()     # the newest sample's own time (not its step)
        self.grid = to_grid(frame)
        # Replayed and backfilled: the samples only.  The grid's filled rows are interpolated
        # towards the sample after the gap, which a live source has not sent yet; the window
        # store fills a gap when that sample arrives, as it does live.
        real = self.grid[~self.grid["filled"]]
        self.cores = read_cores(self.path)
        self.first, self.last = self.grid["timestamp"].min(), self.grid["timestamp"].max()
        if start is None:
            split = read_split(self.path)
            start = split.heldout_from if split.heldout_from is not None else self.first + backfill
        start = pd.Timestamp(start)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        self.backfill_span = backfill
        self._real = real.reset_index(drop=True)
        self._by_time = {t: g.reset_index(drop=True) for t, g in self._real.groupby("timestamp", sort=True)}
        self._times = sorted(self._by_time)
        self._epochs = np.array([t.value for t in self._times])
        self.position = 0
        self._names = frozenset(self._real["server_name"].astype(str))
        self.seek(start)

    def data_clock(self) -> float | None:
        if self.position == 0:
            return None
        return self._times[self.position - 1].value / 1e9

    def feeds(self, name: str) -> bool:
        return name in self._names

    def seek(self, start: pd.Timestamp) -> None:
        """Make ``start`` (clamped to the data) the next replayed step."""
        start = min(max(start, self.first + STEP), self.last + STEP)
        self.position = int(np.searchsorted(self._epochs, start.value, side="left"))

    @property
    def next_time(self) -> pd.Timestamp | None:
        """The timestamp the next poll returns; None at the end."""
        return self._times[self.position] if self.position < len(self._times) else None

    def _cursor_time(self) -> pd.Timestamp:
        return self._times[self.position] if self.position < len(self._times) else self.last + STEP

    def want_history(self, steps: int) -> None:
        # + the longest silence a server may be in and still be shown (35 min): stepped back
        # into that silence, its window must reach as far back as it did played forward
        self.backfill_span = max(self.backfill_span, (int(steps) + MAX_FILL_STEPS + 1) * STEP)

    def backfill(self) -> pd.DataFrame:
        t = self._cursor_time()
        real = self._real
        part = real[(real["timestamp"] < t) & (real["timestamp"] >= t - self.backfill_span)]
        return part.reset_index(drop=True)

    def poll(self) -> Tick:
        if self.position >= len(self._times):
            return Tick(self._real.iloc[0:0], finished=True)
        frame = self._by_time[self._times[self.position]]
        self.position += 1
        return Tick(frame, finished=self.position >= len(self._times))


MAX_SIMULATED = 20_000     # servers: twice the largest fleet measured (10,000); 100 million grew past 1 GB silently


def simulated_count_problem(n) -> str | None:
    """Why ``--simulate n`` cannot run, or None."""
    if not 1 <= n <= MAX_SIMULATED:
        return f"--simulate needs a number of servers from 1 to {MAX_SIMULATED:,}, not {n:,}"
    return None


class SimulatorSource(Source):
    """A live synthetic fleet (engine.simulator), one tick per poll."""

    def __init__(self, n_servers: int, seed: int = 0, backfill: pd.Timedelta = DEFAULT_BACKFILL):
        from engine.simulator import FleetSimulator

        self.name = f"simulator ({n_servers} servers, seed {seed})"
        self.sim = FleetSimulator(n_servers, seed=seed)
        self.cores = {r.server_name: int(r.cores) for r in self.sim.servers().itertuples()}
        self._backfill_steps = int(backfill / STEP)
        self._stream = self.sim.stream()

    def want_history(self, steps: int) -> None:
        self._backfill_steps = max(self._backfill_steps, int(steps))

    def backfill(self) -> pd.DataFrame:
        ticks = list(itertools.islice(self._stream, self._backfill_steps))
        return self._clocked(validate_records([r for tick in ticks for r in tick], self.name).frame)

    def poll(self) -> Tick:
        result = validate_records(next(self._stream), self.name)
        return Tick(self._clocked(result.frame), [str(p) for p in result.problems])

    _clock: float | None = None

    def _clocked(self, frame: pd.DataFrame) -> pd.DataFrame:
        if len(frame):
            self._clock = frame["timestamp"].max().value / 1e9
        return frame

    def data_clock(self) -> float | None:
        return self._clock

    def feeds(self, name: str) -> bool:
        return name in self.cores
