"""The fleet table: one row per server, keyed by server name.

Each snapshot changes only the cells whose text changed (``update_cell``); rows are added
or removed only when servers appear, disappear or the filter changes; the table is
re-sorted only when the order changes.  Once the operator has moved the cursor it stays on
the same server through re-sorts; until then, and again after ``g`` (``follow_top``), it
stays on the top row (under the default sort, the server most at risk now, not the one
that was on top at the first tick).
"""
from __future__ import annotations

import math

import numpy as np

from textual.widgets import DataTable

from tui.format import (DIM, Spark, METRIC_SHORT, PERCENT, fmt_breach, fmt_prob, fmt_value, iso_epoch,
                        halve_spark, level_style, metric_bounds, prob_style, sparkline_spec, spec_text)

SPARK_WIDTH = 16
SPARK_NARROW_LABEL = "8h (p50)"     # the sparkline column at half width (SPARK_WIDTH // 2 cells)
# (key, label, width).  What an operator scans for first comes first: a terminal too narrow
# for the whole table leaves out whole columns from the right (``fleet_layout``), never
# half a column: at 80 columns the table cut "24.6" to "24." under "disk %".
SERVER_WIDTH, SERVER_WIDTH_MAX = 16, 44
COLUMNS = (
    ("server", "server", SERVER_WIDTH),
    ("src", "src", 4),
    ("risk_8h", "risk 8h", 7),
    ("risk_30m", "risk 30m", 8),
    ("breach", "breach in", 11),
    ("cpu_percent", "cpu %", 6),
    ("memory_percent", "mem %", 6),
    ("disk_percent", "disk %", 6),
    ("load_average", "load", 7),
    ("peak", "p90 peak 8h", 11),
    ("spark", "8h forecast (p50)", SPARK_WIDTH + 5),
    ("profile", "profile", 9),
)
COLUMN_KEYS = tuple(c[0] for c in COLUMNS)
# Narrower forms of the columns, for a terminal where the full ones cannot show the four
# metrics (at 80 columns the full ones reach "mem %"): every value still fits its cell
# ("100%", "100.0", "99.99"); the risks keep their horizons, the header bar names them.
COMPACT = {"risk_8h": ("8h", 4), "risk_30m": ("30m", 4), "cpu_percent": ("cpu%", 5),
           "memory_percent": ("mem%", 5), "disk_percent": ("disk%", 5), "load_average": ("load", 5)}
CORE = COLUMN_KEYS.index("load_average") + 1     # the columns up to the four metrics
# "load/crit": load as a share of its critical level (2x the cores): a 4-core server at load 6
# is in more trouble than a 32-core one at 10
SORTS = ("risk", "name", "cpu", "memory", "disk", "load/crit", "time to breach")
_INF = float("inf")


FIXED = 2      # server and src stay at the left; → / ← move the columns after them


def fleet_layout(room: int, server_width: int = SERVER_WIDTH, padding: int = 1, skip: int = 0) -> tuple:
    """The columns (key, label, width) that fit whole in ``room`` cells, each drawn with
    ``padding`` cells either side: server and src, then COLUMNS from the ``skip``-th after
    them (→ and ← move it: the columns a narrow terminal leaves out stay within reach).
    Full widths while they show at least the four metrics (or, skipped past some, as many
    columns as the compact ones), else compact; in both, the longest run that fits.  The
    server column's label says which way more columns lie ("server  → more").  A terminal
    too narrow even for the compact server, source and one more column gets those, cut."""
    def fitting(columns):
        used, n = 0, 0
        for key, _, width in columns:
            used += width + 2 * padding
            if used > room:
                # the sparkline at half its width where the whole one does not fit (at 120
                # columns it was left out beside 16 blank ones)
                narrow = SPARK_WIDTH // 2 + 5
                if key == "spark" and used - width + narrow <= room:
                    return (*columns[:n], (key, SPARK_NARROW_LABEL, narrow))
                break
            n += 1
        return columns[:n]

    skip = max(0, min(skip, len(COLUMNS) - FIXED - 1))
    full = tuple((k, label, server_width if k == "server" else w) for k, label, w in COLUMNS)
    full = full[:FIXED] + full[FIXED + skip:]
    compact = tuple((k, *COMPACT.get(k, (label, w))) for k, label, w in full)
    shown = fitting(full)
    if (len(shown) < CORE) if skip == 0 else (len(shown) < len(fitting(compact))):
        shown = fitting(compact)
    if len(shown) < FIXED + 1:
        shown = compact[:FIXED + 1]
    more = len(shown) < len(full)
    arrows = ("←" if skip else "") + ("→" if more else "")
    if arrows:
        label = f"server  {arrows} more" if len(arrows) == 1 and shown[0][2] >= 14 else f"server {arrows}"
        shown = ((shown[0][0], label, shown[0][2]), *shown[1:])
    return shown


def columns_left_out(layout: tuple) -> bool:
    """Whether ``layout`` leaves columns out on the right (→ shows them)."""
    return bool(layout) and layout[-1][0] != COLUMN_KEYS[-1]


def worst_metric(server) -> str | None:
    """The metric the row's peak and sparkline show: the breach metric, else the riskiest."""
    if not server.metrics:
        return None
    if server.breach_metric in server.metrics:
        return server.breach_metric

    def key(m):
        f = server.metrics[m]
        peak = float(f.p90.max()) if len(f.p90) else f.current
        return (f.prob_8h, peak / f.critical if f.critical else 0.0)

    return max(server.metrics, key=key)


LAG_SHOWN_S = 1200    # a server this far behind the fleet's data time shows its lag in src
# (20 min: past a 15-minute sampling cadence, which would otherwise flicker one tick in three)


def row_spec(server, now: float | None = None) -> tuple:
    """Hashable cell specs for one server, in COLUMNS order; ``now``: the snapshot's data time
    (epoch s), against which a server that has stopped reporting shows how long ago its last
    sample was, in place of its source, until it is left out as silent (35 min)."""
    cells: dict = {"server": server.server_name, "profile": (server.profile, "", "left"),
                   "src": ("TFT", "green", "left") if server.source == "tft" else ("heur", "yellow", "left")}
    seen = iso_epoch(getattr(server, "last_seen", None))
    if now is not None and seen is not None and now - seen >= LAG_SHOWN_S:
        # its row repeats its last values: say so (the drill-down names its source)
        cells["src"] = (f"-{int((now - seen) // 60)}m", "bold yellow", "left")
    for m in ("cpu_percent", "memory_percent", "disk_percent", "load_average"):
        f = server.metrics.get(m)
        cells[m] = ("—", DIM) if f is None else (fmt_value(m, f.current, f.critical), level_style(f.current, f.warning, f.critical))
    wm = worst_metric(server)
    if wm is None:
        cells["peak"] = ("—", DIM)
        cells["spark"] = Spark("", "", "")
    else:
        f = server.metrics[wm]
        peak = float(np.max(f.p90)) if len(f.p90) else f.current
        unit = "%" if wm in PERCENT else ""
        cells["peak"] = (f"{METRIC_SHORT[wm]} {fmt_value(wm, peak, f.critical)}{unit}", level_style(peak, f.warning, f.critical))
        lo, hi = metric_bounds(wm, f.critical)
        cells["spark"] = Spark(f"{METRIC_SHORT[wm]:<5}", *sparkline_spec(f.p50, lo, hi, SPARK_WIDTH, f.warning, f.critical))
    mtb = server.minutes_to_breach
    label, style = fmt_breach(mtb, server.breach_basis)
    if mtb is not None and server.breach_metric:
        label = f"{label} {METRIC_SHORT.get(server.breach_metric, '')}"
    cells["breach"] = (label, style)
    cells["risk_30m"] = (fmt_prob(server.risk_30m), prob_style(server.risk_30m))
    cells["risk_8h"] = (fmt_prob(server.risk_8h), prob_style(server.risk_8h))
    return tuple(cells[k] for k in COLUMN_KEYS)


def _ratio(server, metric: str) -> float:
    f = server.metrics.get(metric)
    if f is None or not math.isfinite(f.current):
        return -_INF
    return f.current / f.critical if (metric == "load_average" and f.critical) else f.current


def sort_key(sort: str):
    if sort == "name":
        return lambda s: s.server_name
    if sort in ("cpu", "memory", "disk", "load/crit"):
        metric = {"cpu": "cpu_percent", "memory": "memory_percent", "disk": "disk_percent",
                  "load/crit": "load_average"}[sort]
        return lambda s: (-_ratio(s, metric), s.server_name)
    if sort == "time to breach":
        # expected breaches (now, p50) before possible ones (p90 only), as engine.risk ranks them
        return lambda s: (s.minutes_to_breach is None, s.breach_basis == "p90", s.minutes_to_breach or 0.0,
                          -s.risk_8h, s.server_name)
    return lambda s: (-s.risk_8h, -s.risk_30m,
                      _INF if s.minutes_to_breach is None else s.minutes_to_breach, s.server_name)


def matches(server, needle: str) -> bool:
    if not needle:
        return True
    n = needle.lower()
    return n in server.server_name.lower() or n in (server.profile or "").lower()


class FleetTable(DataTable):
    DEFAULT_CSS = """
    FleetTable { height: 1fr; width: 100%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.servers: dict[str, object] = {}
        self.specs: dict[str, tuple] = {}     # what each visible row shows now
        self.order: list[str] = []            # visible rows, in display order
        self.sort_by = "risk"
        self.filter_text = ""
        self.cells_updated = 0                # for tests / the benchmark

    _batching = False
    data_epoch: float | None = None      # the snapshot's data time
    user_moved = False     # the operator has moved the cursor: from then on it follows that server

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if old != new and not self._batching and self.row_count:
            self.user_moved = True

    def refresh(self, *regions, **kwargs):
        # update_cell() refreshes the whole table on every call; while a snapshot is being
        # applied (thousands of cells), collapse those into one refresh at the end.
        if self._batching:
            return self
        return super().refresh(*regions, **kwargs)

    layout: tuple = ()      # the columns shown now: fleet_layout's answer for this width
    shown_keys: tuple = ()

    skip = 0                # columns after server and src moved out on the left (→ / ←)

    def on_mount(self) -> None:
        self._set_columns(fleet_layout(self._room()))

    def shift_columns(self, delta: int) -> bool:
        """→ (+1) / ← (-1): the next / previous columns after server and src, where a narrow
        terminal leaves some out; False when there is nothing that way."""
        if delta > 0 and not columns_left_out(self.layout):
            return False
        if delta < 0 and not self.skip:
            return False
        if delta > 0:
            # as far as it takes to bring one more column in on the right (at 80 columns the
            # first step only traded "8h" for nothing: the narrowed columns stayed as they were)
            reach = self._reach(self.skip)
            self.skip = next((s for s in range(self.skip + 1, len(COLUMNS)) if self._reach(s) > reach),
                             self.skip + 1)
        else:
            self.skip -= 1
        self._sync()
        return True

    def _reach(self, skip: int, names=None) -> int:
        """How far right (an index into COLUMNS) the layout with ``skip`` reaches at this width,
        with the server column fitted to ``names`` (default: the rows shown)."""
        width = self._server_width(self.order if names is None else names)
        return COLUMN_KEYS.index(fleet_layout(self._room(), width, self.cell_padding, skip)[-1][0])

    def action_cursor_right(self) -> None:      # (DataTable's: the table is focused)
        self.shift_columns(1)

    def action_cursor_left(self) -> None:
        self.shift_columns(-1)

    def on_resize(self) -> None:
        self._sync()

    def _room(self) -> int:
        # the width the columns may take; the vertical scrollbar's is kept whether or not
        # it shows, so that one more server does not change the columns
        width = self.content_region.width
        return width - self.styles.scrollbar_size_vertical if width else 10_000

    def _set_columns(self, layout: tuple) -> None:
        """Show ``layout``'s columns: the rows are built again on the next sync."""
        self.clear(columns=True)
        for key, label, width in layout:
            self.add_column(label, key=key, width=width)
        self.layout, self.shown_keys = layout, tuple(k for k, _, _ in layout)
        self.specs.clear()
        self.order = []

    @staticmethod
    def _server_width(names: list[str]) -> int:
        """The server column as wide as the longest name shown, from 16 to SERVER_WIDTH_MAX
        characters: host names such as web-1a.example.com:9100 and web-1b.example.com:9100
        differ past the 16th character, and two rows reading the same name hide which server
        is in trouble.  (Narrow terminals leave out the right-hand columns first, as ever.)"""
        return max(SERVER_WIDTH, min(SERVER_WIDTH_MAX, max((len(n) for n in names), default=0)))

    # -- the selected server --------------------------------------------------------
    @property
    def selected_name(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001
            return None

    def select_name(self, name: str | None) -> None:
        if name is None or name not in self.specs:
            return
        idx = self.get_row_index(name)
        if idx != self.cursor_row:
            self.move_cursor(row=idx, animate=False)

    def follow_top(self) -> None:
        """The cursor back on the top row and kept there, as before the operator moved it: a
        server that turns critical while the cursor follows one further down sorts above the
        view (the header and the alert log name it; this brings the table to it)."""
        self.user_moved = False
        self._batching = True
        try:
            if self.row_count:
                self.move_cursor(row=0, animate=False)
        finally:
            self._batching = False
        self.scroll_to(y=0, animate=False)
        self.refresh()

    # -- applying snapshots ---------------------------------------------------------
    def apply(self, snapshot) -> None:
        self.servers = {s.server_name: s for s in snapshot.servers}
        self.data_epoch = iso_epoch(snapshot.data_time)
        self._sync()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._sync()

    def set_sort(self, sort: str) -> None:
        self.sort_by = sort
        self._sync()

    def _sync(self) -> None:
        self._batching = True
        try:
            self._sync_rows()
        finally:
            self._batching = False
        self.refresh()

    def _sync_rows(self) -> None:
        keep = self.selected_name
        visible = [s for s in self.servers.values() if matches(s, self.filter_text)]
        visible.sort(key=sort_key(self.sort_by))
        names = [s.server_name for s in visible]
        wanted = set(names)
        # the fewest columns moved out that reach as far right: after a resize wider, or a
        # shorter server name, the risks come back rather than leave blank room on the right
        while self.skip and self._reach(self.skip - 1, names) >= self._reach(self.skip, names):
            self.skip -= 1
        layout = fleet_layout(self._room(), self._server_width(names), self.cell_padding, self.skip)
        if layout != self.layout:
            self._set_columns(layout)
        for name in [n for n in self.specs if n not in wanted]:
            self.remove_row(name)
            del self.specs[name]
        shown = [i for i, key in enumerate(COLUMN_KEYS) if key in self.shown_keys]
        narrow = any(k == "spark" and label == SPARK_NARROW_LABEL for k, label, _ in self.layout)
        spark = COLUMN_KEYS.index("spark")
        added = False
        for s in visible:
            spec = row_spec(s, self.data_epoch)
            if narrow and isinstance(spec[spark], Spark):
                # the half-width sparkline, as shown: a change only in the detail it leaves out
                # updates no cell
                spec = (*spec[:spark], halve_spark(spec[spark]), *spec[spark + 1:])
            old = self.specs.get(s.server_name)
            if old is None:
                self.add_row(*(spec_text(spec[i]) for i in shown), key=s.server_name)
                added = True
            elif old != spec:
                for key, a, b in zip(COLUMN_KEYS, old, spec):
                    if a != b and key in self.shown_keys:
                        self.update_cell(s.server_name, key, spec_text(b))
                        self.cells_updated += 1
            self.specs[s.server_name] = spec
        if names != self.order or added:
            rank = {n: i for i, n in enumerate(names)}
            if names != self._table_order():
                self.sort("server", key=lambda cell: rank[str(cell)])
            self.order = names
        if not self.user_moved:
            if self.row_count and self.cursor_row != 0:
                self.move_cursor(row=0, animate=False)
        elif keep is not None and keep in self.specs:
            self.select_name(keep)
        elif keep is not None and self.row_count:
            self.move_cursor(row=min(self.cursor_row, self.row_count - 1), animate=False)

    def _table_order(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows]
