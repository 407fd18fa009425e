"""The alert log: newest first, severity coloured, ongoing vs resolved with durations."""
from __future__ import annotations

import math

from rich.text import Text
from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from tui.format import METRIC_SHORT, fmt_minutes, fmt_time, iso_epoch as _epoch

MAX_ALERTS = 100
MESSAGE_MIN = 20      # the message column never narrower (a narrower terminal scrolls sideways)
MESSAGE_MIN_COMPACT = 12   # the drill-down's side panel
MESSAGE_LINES = 2     # a message wraps onto at most this many lines (the log shows ~10 rows)
SEVERITY_STYLE = {"critical": "bold white on red", "warning": "bold black on yellow"}


def alert_duration(a) -> float:
    """The alert's duration; for an ongoing alert whose duration is not filled in, the span
    between its own opened_at and updated_at."""
    if a.duration_minutes or a.state != "ongoing":
        return a.duration_minutes
    t0, t1 = _epoch(a.opened_at), _epoch(a.updated_at)
    return max((t1 - t0) / 60.0, 0.0) if t0 is not None and t1 is not None else 0.0


def shown_message(a) -> str:
    """The alert's message without its metric's name, which the log's metric column gives:
    "cpu_percent at 98.9, at or above critical 95" reads "at 98.9, at or above critical 95"."""
    return a.message.replace(f"{a.metric} ", "", 1)


def alert_cells(a, with_server: bool = True, compact: bool = False) -> list[Text]:
    sev = Text(f" {a.severity[:4].upper()} ", style=SEVERITY_STYLE.get(a.severity, "bold"))
    dur = fmt_minutes(alert_duration(a))
    silent = a.state != "ongoing" and getattr(a, "resolution", None) == "silent"
    if compact:
        if silent:
            state = Text("? silent", style="yellow")
        elif a.state != "ongoing":
            state = Text(f"✓ {dur}", style="dim")
        elif getattr(a, "clear_minutes", 0.0) > 0:
            state = Text(f"◌ {dur}", style="")       # open, its condition absent for clear_minutes
        else:
            state = Text(f"● {dur}", style="bold")
        return [sev, state, Text(METRIC_SHORT.get(a.metric, a.metric)),
                Text(shown_message(a), style="" if a.state == "ongoing" else "dim")]
    if a.state == "ongoing":
        state = Text(f"● ongoing {dur}", style="bold")
    elif silent:           # the server stopped reporting: nothing says it recovered
        state = Text(f"? silent after {dur}", style="yellow")
    elif getattr(a, "resolution", None) == "threshold":   # re-judged against a moved threshold
        state = Text("✓ threshold moved", style="dim")
    else:
        # how long the condition held, not the hour of quiet an alert waits before it resolves
        held = max(a.duration_minutes - getattr(a, "clear_minutes", 0.0), 0.0)
        state = Text(f"✓ resolved, held {fmt_minutes(held) if held >= 5 else '<5m'}", style="dim")
    clearing = a.state == "ongoing" and getattr(a, "clear_minutes", 0.0) > 0
    if a.lead_minutes is None or a.state != "ongoing":
        lead = ""
    elif clearing:          # the lead of the last tick that had the condition is stale
        lead = f"clear {fmt_minutes(a.clear_minutes)}"
    else:
        lead = "now" if a.lead_minutes <= 0 else f"in {fmt_minutes(a.lead_minutes)}"
    cells = [Text(fmt_time(a.opened_at)), sev, state]
    if with_server:
        cells.append(Text(a.server_name, style="bold"))
    cells += [Text(METRIC_SHORT.get(a.metric, a.metric)),
              Text(lead, style="dim" if clearing else ("red" if lead else "")),
              Text(shown_message(a), style="" if a.state == "ongoing" and not clearing else "dim")]
    return cells


class AlertLog(DataTable):
    """Rebuilt only when the alerts change (they are few: capped at MAX_ALERTS)."""

    DEFAULT_CSS = """
    AlertLog { height: auto; max-height: 12; border-top: solid $primary-darken-2; }
    """

    def __init__(self, with_server: bool = True, cap: int = MAX_ALERTS, compact: bool = False, **kwargs) -> None:
        super().__init__(cursor_type="none", zebra_stripes=False, show_cursor=False, **kwargs)
        self.with_server = with_server
        self.compact = compact
        self.cap = cap
        self._signature: tuple | None = None
        self._cells: dict[str, list[Text]] = {}
        self._alerts: tuple = ()
        self._since: str | None = None

    def _fit_message_column(self) -> int:
        """Give the message column the width the others leave (at least MESSAGE_MIN); returns it."""
        column = self.columns.get(ColumnKey("message"))
        if column is None:
            return MESSAGE_MIN
        others = sum(c.width for k, c in self.columns.items() if k != ColumnKey("message"))
        # every column is padded by cell_padding each side; 2 columns kept for a scrollbar
        least = MESSAGE_MIN_COMPACT if self.compact else MESSAGE_MIN
        width = max(least, self.size.width - others - 2 * self.cell_padding * len(self.columns) - 2)
        if column.width != width or column.auto_width:
            column.width, column.auto_width = width, False
            self._require_update_dimensions = True
            self.refresh()
        return width

    def _lines(self, text: Text, width: int) -> int:
        """How many lines ``text`` takes wrapped at ``width`` (as the cell wraps it: by words)."""
        if text.cell_len <= width:
            return 1
        try:
            return len(text.wrap(self.app.console, width))
        except Exception:  # noqa: BLE001 - no app yet (a bare widget): an estimate
            return math.ceil(text.cell_len / width)

    def on_resize(self, event: events.Resize) -> None:
        if self._signature is not None:
            self.apply(self._alerts, self._since)

    def on_mount(self) -> None:
        if self.compact:
            cols = [("sev", 6), ("state", 9), ("metric", 6), ("message", None)]
        else:
            cols = [("opened", 11), ("sev", 6), ("state", 24)]          # "✓ resolved, held 11h50m"
            if self.with_server:
                cols.append(("server", 16))
            cols += [("metric", 6), ("lead", 12), ("message", None)]   # "clear 1h05m"
        for label, width in cols:
            self.add_column(label, key=label, width=width)
        self.border_title = "alerts"

    def apply(self, alerts, since: str | None = None) -> None:
        """Rows are keyed by alert id: the table is rebuilt only when alerts open, resolve or
        leave the log; otherwise only the cells that changed (durations, leads, messages)."""
        # ongoing first (newest first), then resolved: the log's few visible rows must never
        # hide an ongoing alert below resolved ones
        alerts = tuple(sorted(alerts, key=lambda a: (a.state != "ongoing", -a.id)))[: self.cap]
        ongoing = sum(1 for a in alerts if a.state == "ongoing")
        self.border_title = f"alerts: {ongoing} ongoing, {len(alerts) - ongoing} resolved" + (
            f" (log since {fmt_time(since)})" if since else "")     # e.g. restarted by a long step back
        if self.with_server and not self.compact:
            # as wide as the longest name in the log (16 to 44): names that differ late
            # (web-1a.example.com:9100, web-1b.…) must not read the same
            from tui.widgets.fleet_table import SERVER_WIDTH, SERVER_WIDTH_MAX

            want = max(SERVER_WIDTH, min(SERVER_WIDTH_MAX, max((len(a.server_name) for a in alerts), default=0)))
            column = self.columns.get(ColumnKey("server"))
            if column is not None and column.width != want:
                column.width = want
                self._require_update_dimensions = True
                self.refresh()
        width = self._fit_message_column()
        cells = {str(a.id): alert_cells(a, self.with_server, self.compact) for a in alerts}
        # a message wraps within the log's width rather than run off its edge ("critical until
        # it resolves: load_average may" was all an operator saw): a row is as tall as its
        # message needs, so a change of that height (or of the width) rebuilds the table
        most = MESSAGE_LINES + 1 if self.compact else MESSAGE_LINES     # (the side panel is narrow and tall)
        lines = {k: min(most, max(1, self._lines(row[-1], width))) for k, row in cells.items()}
        sig = (width, tuple((a.id, a.state, lines[str(a.id)]) for a in alerts))
        self._alerts, self._since = alerts, since
        if sig != self._signature:
            self._signature = sig
            self.clear()
            for a in alerts:
                self.add_row(*cells[str(a.id)], key=str(a.id), height=lines[str(a.id)])
            if not alerts:
                # the wide log: in the first column (a narrow terminal cuts the message column);
                # the compact one (drill-down) has a 6-wide first column: in its message column
                blank, note = [Text("")] * (len(self.columns) - 1), [Text("no alerts", style="dim")]
                self.add_row(*(blank + note if self.compact else note + blank))
        else:
            keys = list(self.columns)
            for key, row in cells.items():
                old = self._cells.get(key)
                for col, new, prev in zip(keys, row, old or [None] * len(row)):
                    if prev is None or new != prev:
                        self.update_cell(key, col, new)
        self._cells = cells
