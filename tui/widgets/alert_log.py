"""The alert log: newest first, severity coloured, ongoing vs resolved with durations."""
from __future__ import annotations

import math

from rich.text import Text
from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from tui.format import METRIC_SHORT, fmt_minutes, fmt_time, iso_epoch as _epoch

MAX_ALERTS = 100
MESSAGE_MIN = 20      # below this the wide log gives up columns (the long state, then the opening time)
MESSAGE_MIN_COMPACT = 16   # the side panel's, below which it folds state and metric into the message
MESSAGE_FLOOR = 8     # narrower than this the message is not wrapped (it would be a letter a line)
MESSAGE_LINES = 2     # a message wraps onto at most this many lines (the log shows ~10 rows)
SEVERITY_STYLE = {"critical": "bold white on red", "warning": "bold black on yellow"}

# The log's layouts, widest first: (column key, header, width; None: fitted).  The wide log
# takes the first whose message column is at least MESSAGE_MIN wide, else the last: on 100
# columns the full one left the message 9 visible cells, on 80 none (it ran off the edge
# while its blank second lines pushed alerts out of the log).  The short state ("● 1h05m")
# gives the duration the opening time and the long state say.
WIDE_LAYOUTS = (
    (("opened", "opened", 11), ("sev", "sev", 6), ("state", "state", 24),     # "✓ resolved, held 11h50m"
     ("server", "server", None), ("metric", "metric", 6), ("lead", "lead", 12),   # "clear 1h05m"
     ("message", "message", None)),
    (("opened", "opened", 11), ("sev", "sev", 6), ("state_short", "state", 9),
     ("server", "server", None), ("metric", "metric", 6), ("lead", "lead", 12), ("message", "message", None)),
    (("sev", "sev", 6), ("state_short", "state", 9), ("server", "server", None), ("metric", "metric", 6),
     ("lead", "lead", 12), ("message", "message", None)),
)
# The drill-down's side panel; narrow (about 34 columns on a 100-column terminal, where
# the message had 3 cells), it puts the state and the metric in the message's lines.
COMPACT_LAYOUTS = (
    (("sev", "sev", 6), ("state_short", "state", 9), ("metric", "metric", 6), ("message_compact", "message", None)),
    (("sev", "sev", 6), ("message_full", "alert", None)),
)


def short_names(names, width: int) -> dict[str, str]:
    """Every name in ``width`` cells, told apart: names longer than that lose their end
    (web-1a.prod.exam…), else their middle, else their start (…example.com:9101), whichever
    first keeps the names shown distinct (host names differ at the start or the end)."""
    names = sorted(set(names))
    long = [n for n in names if len(n) > width]
    if not long or width < 2:
        return {n: n[:max(width, 0)] if len(n) > width else n for n in names}
    head = (width - 1 + 1) // 2
    forms = (lambda n: n[:width - 1] + "…",
             lambda n: n[:head] + "…" + n[len(n) - (width - 1 - head):] if width - 1 - head > 0 else n[:width - 1] + "…",
             lambda n: "…" + n[len(n) - (width - 1):])
    for form in forms:
        out = {n: form(n) if len(n) > width else n for n in names}
        if len(set(out.values())) == len(out):
            return out
    return {n: forms[1](n) if len(n) > width else n for n in names}


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
    """The cells of the full wide layout (``compact``: the side panel's)."""
    texts = alert_texts(a)
    layout = COMPACT_LAYOUTS[0] if compact else WIDE_LAYOUTS[0]
    return [texts[key] for key, _, _ in layout if with_server or key != "server"]


def alert_texts(a) -> dict[str, Text]:
    """Every column's text for one alert, by column key."""
    sev = Text(f" {a.severity[:4].upper()} ", style=SEVERITY_STYLE.get(a.severity, "bold"))
    dur = fmt_minutes(alert_duration(a))
    silent = a.state != "ongoing" and getattr(a, "resolution", None) == "silent"
    if silent:
        short = Text("? silent", style="yellow")
    elif a.state != "ongoing":
        short = Text(f"✓ {dur}", style="dim")
    elif getattr(a, "clear_minutes", 0.0) > 0:
        short = Text(f"◌ {dur}", style="")       # open, its condition absent for clear_minutes
    else:
        short = Text(f"● {dur}", style="bold")
    clearing = a.state == "ongoing" and getattr(a, "clear_minutes", 0.0) > 0
    if clearing:        # still open, its condition gone (the wide log read "● ongoing" beside "clear 25m")
        state = Text(f"◌ clearing, open {dur}", style="")
    elif a.state == "ongoing":
        state = Text(f"● ongoing {dur}", style="bold")
    elif silent:           # the server stopped reporting: nothing says it recovered
        state = Text(f"? silent after {dur}", style="yellow")
    elif getattr(a, "resolution", None) == "threshold":   # re-judged against a moved threshold
        state = Text("✓ threshold moved", style="dim")
    else:
        # how long the condition held, not the hour of quiet an alert waits before it resolves
        held = max(a.duration_minutes - getattr(a, "clear_minutes", 0.0), 0.0)
        state = Text(f"✓ resolved, held {fmt_minutes(held) if held >= 5 else '<5m'}", style="dim")
    if a.lead_minutes is None or a.state != "ongoing":
        lead = ""
    elif clearing:          # the lead of the last tick that had the condition is stale
        lead = f"clear {fmt_minutes(a.clear_minutes)}"
    else:
        lead = "now" if a.lead_minutes <= 0 else f"in {fmt_minutes(a.lead_minutes)}"
    metric = METRIC_SHORT.get(a.metric, a.metric)
    message = Text(shown_message(a), style="" if a.state == "ongoing" and not clearing else "dim")
    # the side panel has no lead column: a clearing alert's message (the last tick with its
    # condition: "at 98.4, at or above critical 95") beside a chart now at 28 read as current
    compact = Text.assemble((f"clear {fmt_minutes(a.clear_minutes)}: ", "bold"), message) if clearing else message
    return {"opened": Text(fmt_time(a.opened_at)), "sev": sev, "state": state, "state_short": short,
            "server": Text(a.server_name, style="bold"), "metric": Text(metric),
            "lead": Text(lead, style="dim" if clearing else ("red" if lead else "")), "message": message,
            "message_compact": compact, "message_full": Text.assemble(short, f" {metric} ", compact)}


class AlertLog(DataTable):
    """Rebuilt only when the alerts change (they are few: capped at MAX_ALERTS).

    ``selectable`` (the fleet view's log): with the focus (Tab) it shows a row cursor that
    stays on its alert through rebuilds, and its subtitle says which keys work; without it,
    a subtitle says when alerts run past its bottom edge (the mouse was the only way to them).
    """

    DEFAULT_CSS = """
    AlertLog { height: auto; max-height: 12; border-top: solid $primary-darken-2; }
    AlertLog:focus { border-top: solid $accent; }
    """

    def __init__(self, with_server: bool = True, cap: int = MAX_ALERTS, compact: bool = False,
                 selectable: bool = False, **kwargs) -> None:
        super().__init__(cursor_type="none", zebra_stripes=False, show_cursor=False, **kwargs)
        self.with_server = with_server
        self.compact = compact
        self.cap = cap
        self.selectable = selectable
        self._signature: tuple | None = None
        self._cells: dict[str, list[Text]] = {}
        self._alerts: tuple = ()
        self._since: str | None = None
        self._layout: tuple = ()
        self._titles = ["alerts"]

    def _message_width(self, layout, server_width: int) -> int:
        """What the message column gets in ``layout``: the width the others leave (every
        column is padded by cell_padding each side; 2 cells kept for a scrollbar)."""
        widths = [server_width if key == "server" else (w or 0) for key, _, w in self._keep(layout)]
        return self.size.width - sum(widths) - 2 * self.cell_padding * len(widths) - 2

    def _keep(self, layout):
        return tuple(c for c in layout if self.with_server or c[0] != "server")

    def _choose_layout(self, server_width: int):
        layouts = COMPACT_LAYOUTS if self.compact else WIDE_LAYOUTS
        if not self.size.width:             # not laid out yet: on_resize applies again
            return self._keep(layouts[0])
        for layout in layouts:
            if self._message_width(layout, server_width) >= (MESSAGE_MIN_COMPACT if self.compact else MESSAGE_MIN):
                return self._keep(layout)
        return self._keep(layouts[-1])

    def _set_layout(self, server_width: int) -> int:
        """Columns for the log's width (rebuilt when the layout changes); returns the
        message column's width."""
        layout = self._choose_layout(server_width)
        widths = tuple((key, server_width if key == "server" else w) for key, _, w in layout)
        if widths != self._layout:
            self._layout, self._signature = widths, None
            self.clear(columns=True)
            for key, label, width in layout:
                self.add_column(label, key=key, width=server_width if key == "server" else width)
        width = max(self._message_width(layout, server_width), 1)
        column = self.columns[ColumnKey(layout[-1][0])]
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

    def _clip(self, text: Text, width: int, lines: int) -> Text:
        """``text`` cut to the ``lines`` lines it is given at ``width``, ending in "…": a row
        shorter than its message dropped the rest without a sign ("above critical", its 95 lost)."""
        try:
            wrapped = text.wrap(self.app.console, width)
        except Exception:  # noqa: BLE001 - no app yet (a bare widget): as it is
            return text
        if len(wrapped) <= lines:
            return text
        kept = wrapped[:lines]
        last = kept[-1].copy()
        last.rstrip()
        if last.cell_len >= width:
            last.truncate(width - 1)
        last.append("…")
        out = Text()
        for line in kept[:-1]:
            out.append_text(line)
            out.append(" ")
        out.append_text(last)
        return out

    def on_resize(self, event: events.Resize) -> None:
        if self._signature is not None:
            self.apply(self._alerts, self._since)
        self._hint()

    # -- selecting an alert (the fleet view's log) ------------------------------------------
    def on_focus(self) -> None:
        if self.selectable:
            self.cursor_type, self.show_cursor = "row", True
        self._hint(focused=True)

    def on_blur(self) -> None:
        if self.selectable:
            self.cursor_type, self.show_cursor = "none", False
            # back at the top, where the newest ongoing alerts are: left scrolled down, the log
            # hid them with nothing in its title to say so
            self.scroll_to(y=0, animate=False)
        self._hint(focused=False)

    @property
    def selected_alert(self):
        """The alert under the cursor (None without the focus, or on "no alerts")."""
        if not self.show_cursor or not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return next((a for a in self._alerts if str(a.id) == key), None)

    def hidden_rows(self) -> int:
        """How many lines of alerts lie below the visible part of the log."""
        return max(0, self.virtual_size.height - self.scrollable_content_region.height - round(self.scroll_y))

    def _hint(self, focused: bool | None = None) -> None:
        """The title: the longest count that fits, then, in the fleet view's log, the keys
        that work while it has the focus, else whether alerts run past its bottom edge (the
        log has no bottom border for a subtitle).  ``focused``: the state being entered,
        from the focus events (``has_focus`` is not yet set then)."""
        room = self.size.width - 4 if self.size.width else 200      # (inside the border, less "─ " a side)
        title = next((t for t in self._titles if len(t) <= room), self._titles[-1])
        hints: list[str] = []
        if self.selectable and (self.has_focus if focused is None else focused):
            hints = ["↑↓ move · Enter: open its server · Tab: back to the fleet", "↑↓ · Enter: open its server · Tab: back",
                     "↑↓ Enter: open · Tab: back", "↑↓ Enter Tab"]
        elif self.selectable and self.hidden_rows() > 0:
            hints = ["more below: Tab selects the log", "more: Tab", "Tab"]
        hint = next((h for h in hints if len(title) + 3 + len(h) <= room), "")
        full = f"{title} · {hint}" if hint else title
        if full != self.border_title:       # (every tick calls this: no repaint for the same title)
            self.border_title = full

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._hint()

    def on_mount(self) -> None:
        self._hint()

    def apply(self, alerts, since: str | None = None) -> None:
        """Rows are keyed by alert id: the table is rebuilt only when alerts open, resolve or
        leave the log; otherwise only the cells that changed (durations, leads, messages)."""
        # ongoing first (newest first), then resolved: the log's few visible rows must never
        # hide an ongoing alert below resolved ones
        alerts = tuple(sorted(alerts, key=lambda a: (a.state != "ongoing", -a.id)))[: self.cap]
        # where the cursor is, read before anything here clears the rows (a new column layout
        # does, on a resize or a longer server name: the cursor went back to the top)
        kept, kept_row = self.selected_alert, (self.cursor_row if self.show_cursor else None)
        ongoing = sum(1 for a in alerts if a.state == "ongoing")
        # the longest that fits (the drill-down's side panel cut "alerts: 0 ongoing, 0 …");
        # "since": the log restarted, e.g. by a long step back
        titles = [f"alerts: {ongoing} ongoing, {len(alerts) - ongoing} resolved", f"alerts: {ongoing} ongoing",
                  f"alerts {ongoing}"]
        if since:
            titles.insert(0, f"{titles[0]} (log since {fmt_time(since)})")
        self._titles = titles
        server_width = 0
        if self.with_server and not self.compact:
            # as wide as the longest name in the log (16 to 44): names that differ late
            # (web-1a.example.com:9100, web-1b.…) must not read the same
            from tui.widgets.fleet_table import SERVER_WIDTH, SERVER_WIDTH_MAX

            server_width = max(SERVER_WIDTH, min(SERVER_WIDTH_MAX, max((len(a.server_name) for a in alerts), default=0)))
            # but not at the message's cost: with 37-character host:port names an 80-column log
            # left the message 1 cell (the narrowest layout's); the names then lose their middle
            short = self._message_width(self._keep(WIDE_LAYOUTS[-1]), server_width)
            if self.size.width and short < MESSAGE_MIN:
                server_width = max(SERVER_WIDTH, server_width - (MESSAGE_MIN - short))
        width = self._set_layout(server_width)
        keys = [key.value for key in self.columns]
        texts = {str(a.id): alert_texts(a) for a in alerts}
        if server_width:
            shown = short_names((a.server_name for a in alerts), server_width)
            for a in alerts:
                if shown[a.server_name] != a.server_name:
                    texts[str(a.id)]["server"] = Text(shown[a.server_name], style="bold")
        cells = {k: [t[key] for key in keys] for k, t in texts.items()}
        # a message wraps within the log's width rather than run off its edge ("critical until
        # it resolves: load_average may" was all an operator saw): a row is as tall as its
        # message needs, so a change of that height (or of the width) rebuilds the table
        most = MESSAGE_LINES + 1 if self.compact else MESSAGE_LINES     # (the side panel is narrow and tall)
        if width < MESSAGE_FLOOR:       # (a letter or two a line reads as nothing; one line keeps rows in view)
            most = 1
        full = {k: max(1, self._lines(row[-1], width)) for k, row in cells.items()}
        if self.compact and sum(full.values()) <= self.scrollable_content_region.height - 1:
            most = max(full.values(), default=1)    # (the panel holds them whole: "…above critical" lost its 95)
        lines = {k: min(most, n) for k, n in full.items()}
        for k, n in lines.items():
            if n < full[k]:
                cells[k][-1] = self._clip(cells[k][-1], width, n)
        sig = (width, tuple((a.id, a.state, lines[str(a.id)]) for a in alerts))
        self._alerts, self._since = alerts, since
        rebuilt = sig != self._signature
        if rebuilt:
            self._signature = sig
            self.clear()
            for a in alerts:
                self.add_row(*cells[str(a.id)], key=str(a.id), height=lines[str(a.id)])
            if kept is not None and str(kept.id) in cells:      # the cursor stays on its alert
                self.move_cursor(row=self.get_row_index(str(kept.id)), animate=False)
            elif kept_row is not None and alerts:               # its alert left: the row at its place
                self.move_cursor(row=min(kept_row, len(alerts) - 1), animate=False)
            if not alerts:
                # the wide log: in its first column, the opening time's; the layouts without it
                # (narrow, the drill-down's) have a 6-wide first column: in the message column
                blank, note = [Text("")] * (len(self.columns) - 1), [Text("no alerts", style="dim")]
                self.add_row(*(note + blank if keys[0] == "opened" else blank + note))
        else:
            keys = list(self.columns)       # (ColumnKeys)
            for key, row in cells.items():
                old = self._cells.get(key)
                for col, new, prev in zip(keys, row, old or [None] * len(row)):
                    if prev is None or new != prev:
                        self.update_cell(key, col, new)
        self._cells = cells
        self._hint()
        if rebuilt:
            self.call_after_refresh(self._hint)    # (whether rows run past the edge: once laid out)
