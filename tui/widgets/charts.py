"""Per-metric charts for the drill-down: 24 h of history, the 8 h p50 forecast, its p10-p90 band
and the warning / critical thresholds (textual-plotext)."""
from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui.format import METRIC_LABEL, METRIC_SHORT, bar, fmt_prob, fmt_value, metric_bounds

STEP_MIN = 5
# each line's plotext colour, and the rich style its word in the key takes
COLOURS = {"history": "cyan", "band": "gray", "p50": "orange", "warning": "yellow", "critical": "red"}
STYLES = {"history": "cyan", "band": "grey62", "p50": "orange1", "warning": "yellow", "critical": "red"}


def chart_key(room: int = 1_000) -> Text:
    """What the charts' lines are, each word in its line's colour: "key: 24 h · p50 · p10–p90 ·
    warn · crit", whole, or nothing where ``room`` cells do not hold it (a key cut to
    "last 24 h · p50 …" left the band and the levels unexplained; the help has it)."""
    key = Text()
    words = (("24 h", "history"), ("p50", "p50"), ("p10–p90", "band"), ("warn", "warning"), ("crit", "critical"))
    if len("key: ") + sum(len(w) for w, _ in words) + 3 * (len(words) - 1) > room:
        return key
    key.append("key: ", "dim")
    for i, (text, line) in enumerate(words):
        key.append(" · " if i else "", "dim")
        key.append(text, STYLES[line])
    return key


def plot_row(value: float, lo: float, top: float, rows: int) -> int:
    """The canvas row plotext draws ``value`` on, for a y range lo..top over ``rows`` rows:
    its own mapping (``plotext._utility.get_matrix_data``: half-up rounding), which tick
    labels and level lines share.  Python's ``round`` (half to even) put a filler tick on a
    threshold's row in 1 case in 60, where plotext then drew the filler's label (a critical
    load of 8 labelled 7.19)."""
    return math.floor(round(0.5 + (rows - 1) * (value - lo) / ((top - lo) or 1.0), 8))


def y_ticks(lo: float, top: float, warning: float, critical: float, rows: int) -> list[float]:
    """Y-axis ticks for a plot ``rows`` rows tall: the critical and warning levels (labelled
    on the rows where their lines are drawn), the axis ends, and values between about every
    third row; at most one a row (as plotext assigns rows), in that order of precedence."""
    rows = max(rows, 2)
    span = (top - lo) or 1.0
    wanted = [critical, warning, lo, top]
    n = max(rows // 3, 1)
    wanted += [lo + span * i / n for i in range(1, n)]
    taken: dict[int, float] = {}
    for t in wanted:
        r = plot_row(t, lo, top, rows)
        if lo <= t <= top and r not in taken:
            taken[r] = t
    return sorted(taken.values())


class MetricChart(PlotextPlot):
    DEFAULT_CSS = """
    MetricChart { height: 1fr; width: 1fr; border: round $primary-darken-2; border-title-color: $text;
                  border-title-style: bold; }
    """

    def __init__(self, metric: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.has_data = False

    # plot rows below which plotext draws no curve and muddles its axis (50 above 100)
    MIN_PLOT_ROWS = 4
    # plot rows below which the warning and critical lines are not drawn: a row spans a fifth
    # of the axis or more, and a curve on a level's row reads as at that level
    LEVEL_ROWS = 6
    _last: tuple | None = None

    def show(self, forecast, history_epochs=None, history_values=None, now_epoch: float | None = None) -> None:
        """Redraw from one MetricForecast (and the server's history, when known)."""
        self._last = (forecast, history_epochs, history_values, now_epoch)
        plt = self.plt
        plt.clear_figure()
        m = self.metric
        if forecast is None:
            self.border_title = f"{METRIC_LABEL.get(m, m)}: no forecast"
            self.refresh()
            return
        rows = self.content_size.height
        if 0 < rows < self.MIN_PLOT_ROWS:
            # too short to draw: the border keeps the figures, the plot says why it is blank
            plt.frame(False)
            plt.xticks([])
            plt.yticks([])
            self.border_title = self._title(forecast)
            self.border_subtitle = "too short to draw: a taller terminal shows the chart"
            self.has_data = True
            self.refresh()
            return
        hist_x: list[float] = []
        hist_y: list[float] = []
        if history_epochs is not None and history_values is not None and len(history_epochs) and now_epoch:
            hist_x = [(float(e) - now_epoch) / 3600.0 for e in history_epochs]
            hist_y = [float(v) for v in history_values]
        h = len(forecast.p50)
        fx = [(i + 1) * STEP_MIN / 60.0 for i in range(h)]
        lo, hi = metric_bounds(m, forecast.critical)
        top = max([hi] + [float(v) for v in forecast.p90 if math.isfinite(v)] + [v for v in hist_y if math.isfinite(v)])
        ymax = top if m != "cpu_percent" and m != "memory_percent" and m != "disk_percent" else max(100.0, top)
        plt.ylim(lo, ymax)
        left = hist_x[0] if hist_x else -1.0
        right = fx[-1] if fx else 8
        plt.xlim(min(left, -0.5), right)
        # hour ticks with their unit ("now" at 0): the x unit is otherwise only in the subtitle
        step = 8 if left < -12 else (4 if left < -4 else 2)
        ticks = [float(t) for t in range(-24, int(right) + 1, step) if min(left, -0.5) <= t <= right]
        plt.xticks(ticks, ["now" if t == 0 else f"{t:+.0f}h" for t in ticks])
        # the y axis labelled where the threshold lines are drawn: plotext's own ticks and
        # its lines snap to rows apart (a critical load of 8 was drawn on the row labelled 6.5)
        levels = rows - 3 >= self.LEVEL_ROWS
        if levels:
            ticks = y_ticks(lo, ymax, forecast.warning, forecast.critical, rows - 3)
        else:
            # too few rows to tell a level from the curve: a memory at 87 % drawn on the row of
            # the 95 % line read as critical (80x24); the subtitle gives the levels
            ticks = [lo, ymax]
        plt.yticks(ticks, [fmt_value(m, t) for t in ticks])
        if hist_x:
            plt.plot(hist_x, hist_y, marker="braille", color=COLOURS["history"])
        # no plotext legend: it is drawn over the plot's top left, where it hid the history
        # (the drill-down's title line has the key, chart_key(), each word in its line's colour)
        plt.plot(fx, [float(v) for v in forecast.p10], marker="braille", color=COLOURS["band"])
        plt.plot(fx, [float(v) for v in forecast.p90], marker="braille", color=COLOURS["band"])
        plt.plot(fx, [float(v) for v in forecast.p50], marker="braille", color=COLOURS["p50"])
        if levels:
            plt.hline(forecast.warning, COLOURS["warning"])
            plt.hline(forecast.critical, COLOURS["critical"])
        plt.vline(0, "white")
        self.border_title = self._title(forecast)
        self.tooltip = (f"P(critical) within 30 min {fmt_prob(forecast.prob_30m)}, within 8 h "
                        f"{fmt_prob(forecast.prob_8h)}")
        self.border_subtitle = self._thresholds(forecast)
        self.has_data = True
        self.refresh()

    @property
    def _room(self) -> int:
        # (size is inside the border; "╭─ " and " ─╮" around a title take 2 more cells a side)
        return self.size.width - 4

    def _thresholds(self, forecast) -> Text:
        """'crit 95.0 · warn 80.0' in their lines' colours; the warning where it fits whole."""
        m = self.metric
        key = Text()
        key.append(f"crit {fmt_value(m, forecast.critical)}", STYLES["critical"])     # (not Text(..., style): all red)
        warn = f"warn {fmt_value(m, forecast.warning)}"
        for gap in (" · ", "·"):           # (the narrow gap: four charts at 80 columns lost the warning)
            if len(key) + len(gap) + len(warn) <= self._room:
                key.append(gap, "dim")
                key.append(warn, STYLES["warning"])
                break
        return key

    def _title(self, forecast) -> str:
        """Now and the p90 peak, in the words the chart's width holds: four charts share a
        100-column terminal, where "CPU % · now 99.2 · p90 p…" cut the peak off."""
        m = self.metric
        peak = max(float(v) for v in forecast.p90) if len(forecast.p90) else forecast.current
        now, top = fmt_value(m, forecast.current), fmt_value(m, peak)
        short = METRIC_SHORT.get(m, m)
        titles = (f"{METRIC_LABEL.get(m, m)} · now {now} · p90 peak {top}", f"{short} now {now} · p90 peak {top}",
                  f"{short} now {now} · p90 {top}", f"{short} {now} → p90 {top}", f"{short} {now}→p90 {top}",
                  f"{short} {now}")
        # (at 80 columns "cpu 99.1 → p90 100…" was cut: the last form was not checked; each
        # short form keeps the arrow: "disk 32.9 p90 33.1" beside "load 2.34 → p90 3.47" read
        # as two unrelated numbers)
        return next((t for t in titles if len(t) <= self._room), titles[-1])

    def on_resize(self) -> None:
        if self._last is not None:      # the axes and the too-short test follow the new size
            self.show(*self._last)


class ImportanceBars(Static):
    """The TFT's variable importance for one server: top variables as bars."""

    TOP = 10

    _server = None

    def show(self, server) -> None:
        """Redraw for ``server`` (a ServerForecast or None), title included (also on resize)."""
        self._server = server
        tft = server is not None and server.source == "tft"
        # whole words that fit: "TFT variable importan…" on an 80-column terminal
        # (the border and a padding cell each side: 2 cells beyond the content width)
        titles = ("TFT variable importance", "TFT importance") if tft else ("variable importance", "importance")
        self.border_title = next((t for t in titles if len(t) <= self.size.width - 2), titles[-1])
        if server is None:
            self.update(Text("server not in the latest snapshot", style="dim"))
            return
        if server.source != "tft" or not server.importance:
            why = server.reason or "no importance reported"
            if why.startswith("no model: "):
                why = why[len("no model: "):]
            self.update(Text.assemble(("Forecast from the heuristic", "bold yellow"), f" — {why}\n\n",
                                      ("Variable importance comes with TFT forecasts only.", "dim")))
            return
        items = sorted(server.importance.items(), key=lambda kv: -kv[1])[: self.TOP]
        top = max(w for _, w in items) or 1.0
        total = sum(server.importance.values()) or 1.0
        # one line per variable whatever the panel's width: the bar takes what the name
        # (up to 22 characters: memory_percent_day_ago) and the share leave
        width = self.content_size.width or 44
        name_w = max(10, min(22, width - 7 - 4))
        bar_w = max(3, min(14, width - name_w - 1 - 7))
        t = Text(no_wrap=True)
        for name, w in items:
            t.append(f"{short_name(name, name_w):<{name_w}} ", "bold")
            t.append(bar(w / top, bar_w), "green")
            t.append(f" {100 * w / total:4.1f}%\n")
        self.update(t)

    def on_resize(self) -> None:
        if self._server is not None:
            self.show(self._server)


_SHORTER = (("_percent", "%"), ("load_average", "load"), ("relative_time_idx", "rel_time"),
            ("encoder_length", "enc_length"))


def short_name(name: str, width: int) -> str:
    """A variable's name in ``width`` characters: whole when it fits, else with its long words
    shortened (memory_percent_level -> memory%_level: cut, it read as memory_percent's twin),
    else cut with an ellipsis."""
    if len(name) <= width:
        return name
    for long, short in _SHORTER:
        name = name.replace(long, short)
    return name if len(name) <= width else name[:width - 1] + "…"
