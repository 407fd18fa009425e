"""The drill-down: one server's four charts, forecast source, alerts and variable importance."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static

from tui.format import METRIC_SHORT, fmt_breach, fmt_value, fmt_prob, fmt_time, iso_epoch, prob_style
from tui.widgets.alert_log import AlertLog
from tui.widgets.charts import ImportanceBars, MetricChart, chart_key
from tui.widgets.header_bar import HeaderBar
from tui.widgets.footer import KeyFooter

METRICS = ("cpu_percent", "memory_percent", "disk_percent", "load_average")


class ServerScreen(Screen):
    """Pushed by Enter; Esc (the app's ``back`` action) pops it."""

    # Esc leaves, and the footer says so here (on the fleet screen it clears the filter, unlisted)
    BINDINGS = [Binding("escape", "app.back", "Back", key_display="Esc", tooltip="Back to the fleet")]

    DEFAULT_CSS = """
    ServerScreen #server-title { height: 2; padding: 0 1; background: $boost; text-wrap: nowrap;
                                 text-overflow: ellipsis; }
    ServerScreen #charts { grid-size: 2 2; grid-gutter: 0 1; width: 1fr; }
    ServerScreen #side { width: 36%; max-width: 56; }
    ServerScreen #importance { height: auto; max-height: 16; border: round $primary; padding: 0 1; }
    ServerScreen #server-alerts { height: 1fr; border: round $primary; }
    """

    def __init__(self, server_name: str) -> None:
        super().__init__()
        self.server_name = server_name
        self.snapshot = None
        self.history = None
        self.updates = 0

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="server-header")
        yield Static(id="server-title")
        with Horizontal():
            with Grid(id="charts"):
                for m in METRICS:
                    yield MetricChart(m, id=f"chart-{m}")
            with Vertical(id="side"):
                yield ImportanceBars(id="importance")
                yield AlertLog(with_server=False, cap=30, compact=True, id="server-alerts")
        yield KeyFooter()

    def on_mount(self) -> None:
        header = getattr(self.app, "header", None)
        if isinstance(header, HeaderBar):
            self._copy_header(header)
        self.redraw()

    def _copy_header(self, main: HeaderBar) -> None:
        h = self.query_one("#server-header", HeaderBar)
        h.snapshot, h.status, h.error, h.play = main.snapshot, main.status, main.error, main.play
        h.refresh()

    def set_server(self, name: str) -> None:
        if name != self.server_name:
            self.server_name = name
            self.history = None
            self.redraw()

    def apply(self, snapshot, history=None, header: HeaderBar | None = None) -> None:
        self.snapshot = snapshot
        if history is not None and history.server_name == self.server_name:
            self.history = history
        if header is not None and self.is_mounted:
            self._copy_header(header)
        self.redraw()

    def set_history(self, history) -> None:
        if history.server_name == self.server_name:
            self.history = history
            self.redraw()

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        self.updates += 1
        snap = self.snapshot
        server = None if snap is None else snap.server(self.server_name)
        title = self.query_one("#server-title", Static)
        title.update(self._title(server))
        now = None if snap is None else iso_epoch(server.last_seen if server else snap.data_time)
        h = self.history
        for m in METRICS:
            chart = self.query_one(f"#chart-{m}", MetricChart)
            fc = None if server is None else server.metrics.get(m)
            if h is not None and m in h.values:
                chart.show(fc, h.epochs, h.values[m], now)
            else:
                chart.show(fc, None, None, now)
        self.query_one(ImportanceBars).show(server)
        if snap is not None:
            self.query_one("#server-alerts", AlertLog).apply(a for a in snap.alerts if a.server_name == self.server_name)

    def on_resize(self) -> None:
        # the title line's key shows only where it fits whole: judged again at the new width
        if self.is_mounted:
            snap = self.snapshot
            self.query_one("#server-title", Static).update(
                self._title(None if snap is None else snap.server(self.server_name)))

    def _title(self, server) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{self.server_name}", "bold reverse")
        if server is None:
            t.append("  waiting for this server's forecast…" if self.snapshot is None else
                     "  not in the latest snapshot", "dim")
            return t
        t.append(f"  {server.profile}")
        if server.cores:
            t.append(f" · {server.cores} cores")
        n = server.history_len
        t.append(f"  last sample {fmt_time(server.last_seen)} · {n} sample{'' if n == 1 else 's'} in window")
        if not server.cores and "load_average" in server.metrics:
            # the load levels are the configured fallback, not the host's (README: Thresholds);
            # last on the line, which it cut at 80 columns before the sample time
            load = server.metrics["load_average"]
            t.append(f"  cores unknown: load levels {fmt_value('load_average', load.warning)}"
                     f" / {fmt_value('load_average', load.critical)} (fallback)", "yellow")
        line1 = t
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append("forecast: ")
        if server.source == "tft":
            t.append("TFT", "bold green")
        else:
            t.append("heuristic", "bold yellow")
        t.append("   risk 30 min ")
        t.append(fmt_prob(server.risk_30m), prob_style(server.risk_30m) or "bold")
        t.append(" · 8 h ")
        t.append(fmt_prob(server.risk_8h), prob_style(server.risk_8h) or "bold")
        t.append("   breach in ")
        t.append(*fmt_breach(server.minutes_to_breach, server.breach_basis))
        if server.breach_metric and server.minutes_to_breach is not None:
            metric = METRIC_SHORT.get(server.breach_metric, server.breach_metric)
            possible = ", p90 only: possible" if server.breach_basis == "p90" else ""
            width = self.query_one("#server-title").content_size.width or 1_000
            if len(t) + len(metric) + len(possible) + 3 > width:
                possible = ""        # (the "?" says it; "(cpu, p90 only: pos…" at 80 columns)
            t.append(f" ({metric}{possible})")
        if server.source != "tft" and server.reason:
            # last: a long reason cut the risks and the breach off the line ("risk 30 min 100…");
            # the importance panel has it whole
            t.append(f"   heuristic: {server.reason}", "yellow")
        # the charts' key at the end of the first line that holds it whole (the help has it too)
        width = self.query_one("#server-title").content_size.width or 1_000
        for line in (line1, t):
            key = chart_key(width - len(line) - 3)
            if key:
                line.append("   ")
                line.append_text(key)
                break
        return line1 + Text("\n") + t
