"""Per-server window store: the last ``capacity`` 5-minute samples of every server.

Samples arrive one at a time (live sources) or as a frame (replay, backfill).  Each
server has a numpy ring buffer; ``windows()`` returns the whole fleet's windows as one
right-aligned array (newest sample last) without any pandas work, ready for a batched
forecast.  The cadence rules are the data contract's: samples are floored onto the
5-minute grid, several samples in one step are averaged, gaps of up to
``MAX_FILL_STEPS`` missing steps are filled linearly, and a longer gap breaks the
window (the server starts a fresh one).  A sample older than the server's newest one
is refused and reported, never silently merged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.contract import MAX_FILL_STEPS, METRICS, STEP_SECONDS, UNKNOWN_PROFILE

N_METRICS = len(METRICS)


@dataclass(frozen=True)
class FleetWindows:
    names: list[str]
    values: np.ndarray        # (n, capacity, 4) float32, right-aligned; left of the valid part is padding
    lengths: np.ndarray       # (n,) valid samples per window
    last_epoch: np.ndarray    # (n,) int64 epoch seconds of each newest sample
    profiles: list[str]
    cores: list[int | None]
    filled: np.ndarray        # (n,) how many of the window's samples were gap-filled
    gap_before: np.ndarray | None = None   # (n,) seconds of the long gap that started the window (0: none)


def right_aligned(values: np.ndarray, width: int) -> np.ndarray:
    """(n, w, M) right-aligned windows as (n, width, M): the newest ``width`` steps (a view),
    or, when the windows are narrower, NaN padding on the left (never read: it lies before
    each window's valid part)."""
    w = values.shape[1]
    if w >= width:
        return values[:, w - width:]
    pad = np.full((values.shape[0], width - w, *values.shape[2:]), np.nan, dtype=values.dtype)
    return np.concatenate([pad, values], axis=1)


def _iso(epoch: int) -> str:
    """As every other time tft-top writes: 2026-01-05T10:00:00Z."""
    return pd.Timestamp(epoch, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


class WindowStore:
    def __init__(self, capacity: int = 288, max_fill_steps: int = MAX_FILL_STEPS):
        self.capacity = capacity
        self.max_fill_steps = max_fill_steps
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._buf = np.zeros((0, capacity, N_METRICS), dtype=np.float32)
        self._head = np.zeros(0, dtype=np.int64)      # next write position
        self._len = np.zeros(0, dtype=np.int64)
        self._last = np.zeros(0, dtype=np.int64)      # epoch seconds of the newest step
        self._count = np.zeros(0, dtype=np.int64)     # samples averaged into the newest step
        self._exact = np.zeros(0, dtype=np.int64)     # epoch seconds of the newest sample itself
        self._gap = np.zeros(0, dtype=np.int64)       # seconds of the gap that broke the window (0: none)
        self._filled = np.zeros((0, capacity), dtype=bool)
        self._profiles: list[str] = []
        self._cores: list[int | None] = []
        self._forgotten_cores: dict[str, int] = {}    # known core counts of forgotten servers
        # bumped by every call that may change what windows() returns (the engine does not
        # forecast again a store that has not changed since its last forecast)
        self.version = 0

    # -- servers -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def _slot(self, name: str) -> int:
        slot = self._index.get(name)
        if slot is not None:
            return slot
        slot = len(self._names)
        self._index[name] = slot
        self._names.append(name)
        if slot == len(self._head):
            # every allocated row is in use: double them.  (Growing by one row per new server
            # copied the whole ring buffer each time: most of the 29 s that loading 10,000
            # servers took.)
            # Unused rows hold no samples (length 0), so every reader skips them.
            extra = max(16, slot)
            grow = lambda a, fill=0: np.concatenate([a, np.full((extra, *a.shape[1:]), fill, dtype=a.dtype)])  # noqa: E731
            self._buf, self._head, self._len = grow(self._buf), grow(self._head), grow(self._len)
            self._last, self._count, self._filled = grow(self._last, -1), grow(self._count), grow(self._filled)
            self._exact = grow(self._exact, -1)
            self._gap = grow(self._gap)
        self._profiles.append(UNKNOWN_PROFILE)
        self._cores.append(self._forgotten_cores.pop(name, None))
        return slot

    def forget(self, silent_before: int) -> list[str]:
        """Drop the servers whose newest sample is older than ``silent_before`` (epoch s), and
        their history; returns their names.  Without this a fleet whose host names churn
        (a POST-fed daemon, autoscaled instances) grows without bound.  Their known core
        counts are kept, should they report again."""
        n = len(self._names)
        gone = (self._len[:n] > 0) & (self._last[:n] < silent_before)
        if not gone.any():
            return []
        self.version += 1
        keep = np.flatnonzero(~gone)
        names = [self._names[i] for i in np.flatnonzero(gone).tolist()]
        for i in np.flatnonzero(gone).tolist():
            if self._cores[i] is not None:
                self._forgotten_cores[self._names[i]] = self._cores[i]
        self._buf, self._filled = self._buf[keep], self._filled[keep]
        self._head, self._len = self._head[keep], self._len[keep]
        self._last, self._count = self._last[keep], self._count[keep]
        self._exact = self._exact[keep]
        self._gap = self._gap[keep]
        self._names = [self._names[i] for i in keep.tolist()]
        self._profiles = [self._profiles[i] for i in keep.tolist()]
        self._cores = [self._cores[i] for i in keep.tolist()]
        self._index = {name: k for k, name in enumerate(self._names)}
        return names

    def set_cores(self, name: str, cores: int | None) -> None:
        self.version += 1
        self._cores[self._slot(name)] = cores

    def stale(self, fresh_after: int) -> list[tuple[str, int]]:
        """(name, epoch of its newest sample) of the servers that have samples, all older than
        ``fresh_after``; the most recently seen first.  (Servers only named, e.g. by servers.csv,
        have no samples and are not stale.)"""
        n = len(self._names)
        last = self._last[:n]
        idx = np.flatnonzero((self._len[:n] > 0) & (last < fresh_after))
        idx = idx[np.argsort(-last[idx], kind="stable")]
        return [(self._names[i], int(last[i])) for i in idx.tolist()]

    def newest_epoch(self) -> int | None:
        """Epoch seconds of the newest sample of any server (None when empty)."""
        filled = self._len > 0
        return int(self._last[filled].max()) if filled.any() else None

    def last_epoch(self, name: str) -> int | None:
        slot = self._index.get(name)
        return None if slot is None or self._len[slot] == 0 else int(self._last[slot])

    # -- writing -------------------------------------------------------------------
    def _push(self, slot: int, values: np.ndarray, filled: bool) -> None:
        h = self._head[slot]
        self._buf[slot, h] = values
        self._filled[slot, h] = filled
        self._head[slot] = (h + 1) % self.capacity
        self._len[slot] = min(self._len[slot] + 1, self.capacity)

    def append(self, name: str, epoch_seconds: int, values, profile: str | None = None) -> str | None:
        """Add one sample; returns None when accepted, else a one-line reason it was refused."""
        self.version += 1
        slot = self._slot(name)
        if profile and profile != UNKNOWN_PROFILE:      # a sample without a profile keeps the known one
            self._profiles[slot] = profile
        exact = int(epoch_seconds)
        step = (exact // STEP_SECONDS) * STEP_SECONDS
        vals = np.asarray(values, dtype=np.float32)
        if self._len[slot] == 0:
            self._push(slot, vals, False)
            self._last[slot], self._count[slot], self._exact[slot] = step, 1, exact
            return None
        last = int(self._last[slot])
        if step < last:
            return (f"{name}: sample at {_iso(step)} is older than "
                    f"the newest accepted ({_iso(last)}); refused")
        if (step == last and exact == int(self._exact[slot]) and self._count[slot] == 1
                and np.array_equal(self._buf[slot, (self._head[slot] - 1) % self.capacity], vals)):
            return None     # the very same sample again (a retried POST): nothing to add
        if step == last and exact <= int(self._exact[slot]):
            # the same sample again (a retried POST) or an older one inside the step: averaging
            # it in would count it twice
            return (f"{name}: sample at {_iso(exact)} is not newer than "
                    f"the newest accepted ({_iso(int(self._exact[slot]))});"
                    f" refused")
        self._exact[slot] = exact
        if step == last:  # several samples in one step: running mean
            c = self._count[slot]
            h = (self._head[slot] - 1) % self.capacity
            self._buf[slot, h] = (self._buf[slot, h] * c + vals) / (c + 1)
            self._count[slot] = c + 1
            return None
        missing = (step - last) // STEP_SECONDS - 1
        if missing > self.max_fill_steps:  # a long gap breaks the window
            self._len[slot] = 0
            self._head[slot] = 0
            self._gap[slot] = step - last
        elif missing > 0:
            prev = self._buf[slot, (self._head[slot] - 1) % self.capacity].copy()
            for k in range(1, missing + 1):
                self._push(slot, prev + (vals - prev) * (k / (missing + 1)), True)
        self._push(slot, vals, False)
        self._last[slot], self._count[slot] = step, 1
        return None

    def extend_frame(self, frame: pd.DataFrame) -> list[str]:
        """Add a canonical or grid frame; returns refusal reasons.  (Sorted by server and time
        here: the bulk load below writes whole runs, and an earlier row after a later one
        would be refused as older.)"""
        problems: list[str] = []
        if len(frame):
            self.version += 1
        if len(frame) > 1:
            order = np.lexsort((frame["timestamp"].to_numpy(), pd.factorize(frame["server_name"])[0]))
            if (order != np.arange(len(order))).any():
                frame = frame.take(order)
        epochs = frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy()
        vals = frame[list(METRICS)].to_numpy(dtype=np.float32)
        names = frame["server_name"].to_numpy()
        profiles = frame["profile"].to_numpy() if "profile" in frame else None
        # only the last `capacity` rows of each server can matter
        tail = frame.groupby("server_name", sort=False).cumcount(ascending=False).to_numpy() < self.capacity + self.max_fill_steps
        rows = np.flatnonzero(tail)
        rows = self._load_runs(rows, names, epochs, vals, profiles)
        for i in rows:
            reason = self.append(names[i], int(epochs[i]), vals[i], None if profiles is None else profiles[i])
            if reason:
                problems.append(reason)
        return problems

    def _load_runs(self, rows: np.ndarray, names, epochs, vals, profiles) -> np.ndarray:
        """Write, in one step per server, each run of ``rows`` that ``append`` would accept
        sample by sample without filling or averaging: a server with no samples yet and
        consecutive 5-minute steps (a backfill).  Returns the rows left for ``append``.
        (One by one, 10,000 servers x 288 samples took 5 s to load.)"""
        if len(rows) < 2:
            return rows
        run_names = names[rows]
        starts = np.flatnonzero(np.r_[True, run_names[1:] != run_names[:-1]])
        if len(starts) == len(rows):      # one sample per server (a tick): nothing to bulk-load
            return rows
        ends = np.r_[starts[1:], len(rows)]
        steps = (epochs[rows] // STEP_SECONDS) * STEP_SECONDS
        consecutive = np.r_[False, np.diff(steps) == STEP_SECONDS]          # row k follows row k-1
        left = []
        cap = self.capacity
        for a, b in zip(starts.tolist(), ends.tolist()):
            slot = self._slot(run_names[a])     # slots in order of first appearance, as append makes them
            if b - a < 2 or not consecutive[a + 1:b].all() or self._len[slot] > 0:
                left.append(rows[a:b])
                continue
            k = min(b - a, cap)
            self._buf[slot, :k] = vals[rows[b - k:b]]
            self._filled[slot, :k] = False
            self._head[slot], self._len[slot] = k % cap, k
            self._last[slot], self._count[slot] = int(steps[b - 1]), 1
            self._exact[slot] = int(epochs[rows[b - 1]])
            if profiles is not None:
                named = [p for p in profiles[rows[a:b]] if p and p != UNKNOWN_PROFILE]
                if named:
                    self._profiles[slot] = named[-1]
        return np.concatenate(left) if left else rows[:0]

    # -- reading -------------------------------------------------------------------
    def windows(self, names: list[str] | None = None, fresh_after: int | None = None) -> FleetWindows:
        """The fleet's windows (servers without samples are left out).

        ``fresh_after``: leave out servers whose newest sample is older than this epoch.
        """
        if names is None:
            keep = self._len > 0
            if fresh_after is not None:
                keep &= self._last >= fresh_after
            slots = np.flatnonzero(keep)
        else:
            slots = np.array([self._index[n] for n in names], dtype=np.int64)
        cap = self.capacity
        # position k (0 = oldest of a full window) of server s lives at (head + k) % cap: per
        # distinct head (servers reporting in step share one), two slice copies, not a gather
        heads = self._head[slots]
        values = np.empty((len(slots), cap, self._buf.shape[2]), dtype=self._buf.dtype)
        filled_mask = np.empty((len(slots), cap), dtype=bool)
        distinct = np.unique(heads)
        if len(distinct) > 32:       # scattered heads: one gather
            idx = (heads[:, None] + np.arange(cap)[None, :]) % cap
            values[:] = self._buf[slots[:, None], idx]
            filled_mask[:] = self._filled[slots[:, None], idx]
        else:
            every = len(slots) == len(self._buf) and bool((slots == np.arange(len(slots))).all())
            for h in distinct.tolist():
                rows = np.flatnonzero(heads == h)
                src = (slice(None) if every else slots) if len(rows) == len(slots) else slots[rows]
                dst = slice(None) if len(rows) == len(slots) else rows
                values[dst, :cap - h] = self._buf[src, h:]
                values[dst, cap - h:] = self._buf[src, :h]
                filled_mask[dst, :cap - h] = self._filled[src, h:]
                filled_mask[dst, cap - h:] = self._filled[src, :h]
        lengths = self._len[slots].copy()
        valid = np.arange(cap)[None, :] >= (cap - lengths)[:, None]
        return FleetWindows(
            names=[self._names[s] for s in slots],
            values=values,
            lengths=lengths,
            last_epoch=self._last[slots].copy(),
            profiles=[self._profiles[s] for s in slots],
            cores=[self._cores[s] for s in slots],
            filled=(filled_mask & valid).sum(axis=1),
            gap_before=self._gap[slots].copy(),
        )
