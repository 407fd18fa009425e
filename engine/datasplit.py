"""Which data is for training and which is held out, and forecast windows over it.

A data directory may hold ``split.json``::

    {"heldout_from": "2026-01-16T00:00:00Z",   # or null: each server's last heldout_days
     "heldout_days": 3,
     "heldout_servers": ["web-07", ...]}       # never used for training

Without one, each server's last ``DEFAULT_HELDOUT_DAYS`` days are held out and a
deterministic fifth of the servers (by CRC32 of the name) is held out entirely.
Training uses only data before the held-out period of servers that are not held out;
evaluation scores the held-out period of every server, split into servers the model
saw in training and servers it never saw.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.contract import METRICS, STEP_SECONDS, DataError

SPLIT_FILE = "split.json"
DEFAULT_HELDOUT_DAYS = 7.0
DEFAULT_HELDOUT_EVERY = 5  # one server in five (by CRC32) is held out entirely


@dataclass
class SplitSpec:
    heldout_from: pd.Timestamp | None = None   # None: per server, its last heldout_days
    heldout_days: float = DEFAULT_HELDOUT_DAYS
    heldout_servers: set[str] | None = None    # None: deterministic one in DEFAULT_HELDOUT_EVERY
    origin: str = "default"                    # where the spec came from

    def to_json(self) -> dict:
        return {
            "heldout_from": None if self.heldout_from is None else self.heldout_from.isoformat(),
            "heldout_days": self.heldout_days,
            "heldout_servers": None if self.heldout_servers is None else sorted(self.heldout_servers),
            "origin": self.origin,
        }

    def is_heldout_server(self, name: str) -> bool:
        if self.heldout_servers is not None:
            return name in self.heldout_servers
        return zlib.crc32(name.encode()) % DEFAULT_HELDOUT_EVERY == 0

    def heldout_start(self, frame: pd.DataFrame) -> pd.Series:
        """Per server: the first held-out timestamp."""
        if self.heldout_from is not None:
            names = frame["server_name"].unique()
            return pd.Series(self.heldout_from, index=pd.Index(names, name="server_name"))
        last = frame.groupby("server_name")["timestamp"].max()
        return (last - pd.Timedelta(days=self.heldout_days)).dt.floor(f"{STEP_SECONDS}s")


def data_key(path) -> str:
    """One key for a data path however it is written ("d", "d/", "./d", its absolute path)."""
    return str(Path(str(path)).resolve())


def recorded_entry(meta: dict, path) -> dict | None:
    """training_metadata.json's ``data[]`` entry for data set ``path``, or None."""
    for entry in meta.get("data") or []:
        if isinstance(entry, dict) and data_key(entry.get("path")) == data_key(path):
            return entry
    return None


def _recorded_time(value) -> pd.Timestamp | None:
    """A recorded ISO time, in UTC; None for anything else (null, NaN or "" would be NaT,
    no check at all, and "now" the time of reading, an overlap invented)."""
    if not (isinstance(value, str) and value[:1].isdigit()):
        return None
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(t):
        return None
    return t.tz_localize("UTC") if t.tzinfo is None else t


def recorded_training_end(meta: dict, path) -> pd.Timestamp | None:
    """The last timestamp of data set ``path``'s training part, as a model's
    training_metadata.json records it (``data[].training_span``); None where not recorded."""
    span = (recorded_entry(meta, path) or {}).get("training_span")
    return _recorded_time(span[1]) if isinstance(span, list) and len(span) == 2 else None


def recorded_training_ends(meta: dict, path) -> dict[str, pd.Timestamp]:
    """Each server's last training timestamp in data set ``path``, as training_metadata.json
    records it (``data[].training_ends``, from 2026-11-29); {} where not recorded."""
    ends = (recorded_entry(meta, path) or {}).get("training_ends")
    if not isinstance(ends, dict):
        return {}
    times = {str(name): _recorded_time(when) for name, when in ends.items()}
    return {name: t for name, t in times.items() if t is not None}


def training_end_now(spec: SplitSpec, frame: pd.DataFrame, servers) -> pd.Timestamp | None:
    """Where the training part of ``frame`` ends under ``spec``, counted as training records
    it (the latest over the servers in ``servers``: the step before their held-out start)."""
    starts = spec.heldout_start(frame)
    starts = starts[starts.index.isin(set(servers))]
    return None if starts.empty else starts.max() - pd.Timedelta(seconds=STEP_SECONDS)


def read_split(path: Path | str) -> SplitSpec:
    """The split for a data path: its split.json when present, else the defaults."""
    path = Path(path)
    split_file = (path if path.is_dir() else path.parent) / SPLIT_FILE
    if not split_file.is_file():
        return SplitSpec()
    try:
        data = json.loads(split_file.read_text())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        unknown = sorted(set(data) - {"heldout_from", "heldout_days", "heldout_servers"})
        if unknown:     # a misspelt key would silently fall back to the default
            raise ValueError(f"unknown key {unknown[0]!r} (the keys are heldout_from, heldout_days, heldout_servers)")
        start = data.get("heldout_from")
        servers = data.get("heldout_servers")
        days = data.get("heldout_days", DEFAULT_HELDOUT_DAYS)
        if servers is not None and (not isinstance(servers, list) or not all(
                isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool)) for x in servers)):
            raise ValueError("heldout_servers must be a list of server names")
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days < 1e6:
            raise ValueError(f"heldout_days must be a number of days > 0, not {days!r}")
        when = None
        if start is not None:
            if not isinstance(start, str):
                raise ValueError(f"heldout_from must be an ISO 8601 time, not {start!r}")
            if not start.strip()[:1].isdigit():     # pd.Timestamp reads "now" and "today" as the clock's
                raise ValueError(f"heldout_from {start!r} is not an ISO 8601 time")
            when = pd.Timestamp(start)
            if pd.isna(when):
                raise ValueError(f"heldout_from {start!r} is not a time")
            when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        return SplitSpec(
            heldout_from=when,
            heldout_days=float(days),
            heldout_servers=None if servers is None else {str(x) for x in servers},   # (101: server "101")
            origin=str(split_file),
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{split_file}: not a valid split file ({str(exc).splitlines()[0]})") from None


def check_heldout_names(sets) -> None:
    """Refuse a split.json naming held-out servers that none of the data it governs holds
    (every metrics file of its directory): a misspelt name would train on the server meant
    to be held out, and score it as trained on.  Judged only where the command reads all of
    that data (the directory, or each of its files): a name held by a file not given is not
    a misspelling.  ``sets``: (SplitSpec, path, grid) for each data set a command reads."""
    from engine.contract import data_files

    by_split: dict[str, tuple[set, set, list, set]] = {}
    for spec, path, grid in sets:
        if spec.heldout_servers:
            key = str(Path(spec.origin).resolve())       # (one split.json, however its files were named)
            wanted, have, paths, read = by_split.setdefault(key, (set(spec.heldout_servers), set(), [], set()))
            have.update(grid["server_name"].unique())
            paths.append(str(path))
            path = Path(path)
            read.update(p.resolve() for p in (data_files(path) if path.is_dir() else [path]))
    for origin, (wanted, have, paths, read) in by_split.items():
        absent = sorted(wanted - have)
        if absent and {p.resolve() for p in data_files(Path(origin).parent)} <= read:
            raise DataError(f"{origin}: heldout_servers names {len(absent)} server(s) not in {', '.join(paths)}: "
                            f"{', '.join(absent[:5])}{' …' if len(absent) > 5 else ''}")


def training_part(grid: pd.DataFrame, spec: SplitSpec) -> pd.DataFrame:
    """Rows a model may train on: servers not held out, before the held-out period."""
    start = grid["server_name"].map(spec.heldout_start(grid))
    keep = (grid["timestamp"] < start) & ~grid["server_name"].map(spec.is_heldout_server)
    return grid[keep.to_numpy()].reset_index(drop=True)


def informative_columns(grid: pd.DataFrame) -> pd.DataFrame:
    """Per server and metric: does the column carry information (not constant)?

    Traces without a real disk column hold it constant; such a target must be neither
    learned nor scored.
    """
    spread = grid.groupby("server_name")[list(METRICS)].agg(lambda s: float(s.max() - s.min()))
    return spread > 0.0


@dataclass
class Windows:
    """Forecast windows: for each (series, origin) the history before and the truth after."""

    series: np.ndarray            # series key (server#segment) per window
    server: np.ndarray            # server name per window
    origin_idx: np.ndarray        # time_idx of the first forecast step
    history: dict[str, list[np.ndarray]] = field(default_factory=dict)  # metric -> per-window history (oldest first)
    actual: dict[str, np.ndarray] = field(default_factory=dict)         # metric -> (n, horizon)
    history_start_idx: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.origin_idx)


def origins_for(prepared: pd.DataFrame, start: pd.Series, *, horizon: int, min_history: int,
                every: int) -> pd.DataFrame:
    """Forecast origins on each series: held out, full horizon ahead, enough history.

    Origins sit on multiples of ``every`` steps of absolute time, so runs are comparable.
    An origin whose last history step the grid filled is skipped: that row is interpolated
    towards the first sample after the gap, at or after the origin (the truth it would score).
    """
    rows = []
    start_idx = (start.dt.as_unit("s").astype("int64") // STEP_SECONDS)
    for key, part in prepared.groupby("series", sort=True):
        t = part["time_idx"].to_numpy()
        filled = part["filled"].to_numpy(dtype=bool) if "filled" in part else np.zeros(len(t), bool)
        server = part["server_name"].iloc[0]
        first = max(int(t[0]) + min_history, int(start_idx[server]))
        last = int(t[-1]) - horizon + 1
        first = -(-first // every) * every
        for o in range(first, last + 1, every):
            if filled[o - 1 - int(t[0])]:         # (a series' time_idx has no holes)
                continue
            rows.append((key, server, o))
    return pd.DataFrame(rows, columns=["series", "server_name", "origin_idx"])


def extract_windows(prepared: pd.DataFrame, origins: pd.DataFrame, *, horizon: int,
                    history: int) -> Windows:
    """History (up to ``history`` steps) and actuals (``horizon`` steps) per origin."""
    by_series = {k: g for k, g in prepared.groupby("series", sort=False)}
    hist: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    act: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    hstart = []
    for key, o in zip(origins["series"], origins["origin_idx"]):
        g = by_series[key]
        t0 = int(g["time_idx"].iloc[0])
        pos = o - t0
        lo = max(0, pos - history)
        hstart.append(t0 + lo)
        for m in METRICS:
            values = g[m].to_numpy()
            hist[m].append(values[lo:pos].astype(np.float64))
            act[m].append(values[pos:pos + horizon].astype(np.float64))
    return Windows(
        series=origins["series"].to_numpy(),
        server=origins["server_name"].to_numpy(),
        origin_idx=origins["origin_idx"].to_numpy(),
        history=hist,
        actual={m: np.stack(v) if v else np.zeros((0, horizon)) for m, v in act.items()},
        history_start_idx=np.asarray(hstart),
    )
