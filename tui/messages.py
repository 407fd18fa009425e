"""Typed messages the engine worker posts to the app (dataclass messages, Posting style)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class History:
    """One server's last 24 h: epoch seconds and per-metric values, oldest first."""

    server_name: str
    epochs: Any                     # np.ndarray
    values: dict[str, Any]          # metric -> np.ndarray


@dataclass
class EngineStatus(Message):
    """The engine's phase before the first snapshot: "loading model…", "reading data…"."""

    text: str


@dataclass
class SnapshotReady(Message):
    """A new snapshot (and the watched server's history, when a drill-down is open)."""

    snapshot: Any                   # engine.snapshot.Snapshot
    seq: int
    history: History | None = None
    note: str | None = None         # e.g. "stepped back"


@dataclass
class HistoryReady(Message):
    history: History


@dataclass
class EngineFailed(Message):
    """The engine stopped: data it cannot read, a crash.  ``reason`` is one line.
    ``refused``: the input was refused before any forecast (a bad row in the replay data):
    the app leaves at once and prints the line, as predict and eval do."""

    reason: str
    refused: bool = False


@dataclass
class EngineNotice(Message):
    """Something the operator should know that does not stop the engine."""

    text: str
    severity: str = "information"
    extra: dict = field(default_factory=dict)
