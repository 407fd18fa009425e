"""Help: every key, generated from the one action registry (tui.actions.ACTIONS)."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import ACTIONS, by_action
from tui.widgets.fleet_table import SORTS

ABOUT = ("tft-top forecasts every server's CPU, memory, disk and load over the next 8 hours "
         "(p10–p90 bands from a Temporal Fusion Transformer; a heuristic where the model cannot answer).")


ALERTS = ("Alerts: WARN — the p90 forecast reaches the critical threshold and that metric's chance "
          "of crossing within 8 h is high enough (possible; CPU never warns on p90 alone); "
          "CRIT — the p50 forecast reaches it, or the value is there now (expected). "
          "An alert keeps its highest severity until it resolves ('critical until it resolves: …'). "
          "'in 2h' in the lead column is when; 'clear 25m' means the condition has been absent "
          "for 25 minutes and the alert resolves after an hour clear. State: ● open, ◌ open but clearing, "
          "✓ resolved, ? the server went silent.")
BREACH = ("Breach in: when the p50 forecast reaches the critical threshold ('now': it is there); "
          "'2h?' when only the p90 forecast does — possible, not expected. "
          "src: TFT or heur(istic); '-25m' in its place: no sample from that server for 25 min (shown from 20) "
          "(its row repeats the last one; after 35 min it leaves the table as silent). "
          "risk 8h / risk 30m ('8h' / '30m' on a narrow terminal): the chance of reaching a critical "
          "threshold within that time. "
          "Drill-down charts: the last 24 h (cyan), the p50 forecast (orange) and its p10–p90 band (grey), "
          "the warning (yellow) and critical (red) levels; hours from now along the bottom.")


def help_renderable(unavailable: dict[str, str] | None = None) -> Table:
    """Every key; those that do nothing here (``unavailable``: action -> why) dimmed, with why."""
    unavailable = unavailable or {}
    table = Table(box=None, show_header=True, header_style="bold", padding=(0, 2), expand=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    for a in ACTIONS:
        why = unavailable.get(a.action)
        if why:
            table.add_row(Text(a.key_label, style="dim"), Text(f"{a.description} — not here: {why}", style="dim"))
        else:
            table.add_row(a.key_label, a.description)
    return table


def help_text() -> str:
    """The help screen's content as plain text (for tests and `--help`-like listings)."""
    lines = [f"{a.key_label:<12} {a.description}" for a in ACTIONS]
    lines.append("")
    lines.append("sort orders: " + ", ".join(SORTS))
    lines.append(BREACH)
    lines.append(ALERTS)
    return "\n".join(lines)


HELP_ACTIONS = ("quit", "help", "back", "command_palette")     # the keys that work while the help is open


class HelpScreen(ModalScreen):
    # a modal screen hides the app's bindings: re-bind the keys that close it, from the registry
    # (the app's check_action hides the others from the footer meanwhile)
    # and the next / previous server keys scroll the help (j did nothing; on 24 rows it is cut)
    BINDINGS = [Binding(a.keys, f"app.{a.action}", a.description, show=False)
                for a in ACTIONS if a.action in HELP_ACTIONS] + [
        Binding(by_action("cursor_down").keys, "scroll_help(1)", "Scroll down", show=False),
        Binding(by_action("cursor_up").keys, "scroll_help(-1)", "Scroll up", show=False)]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 96; max-width: 100%; height: auto; max-height: 90%; border: thick $primary;
                                  background: $surface; padding: 1 2; }
    """

    def __init__(self, unavailable: dict[str, str] | None = None) -> None:
        super().__init__()
        self.unavailable = unavailable or {}

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll()
        down, up = by_action("cursor_down").key_label, by_action("cursor_up").key_label
        scroll.border_subtitle = f"{down}, {up}, PgDn, PgUp scroll · Esc or ? closes"
        with scroll:
            yield Static(Text("tft-top — keys", style="bold"))
            yield Static(Text(ABOUT, style="dim"))
            yield Static(help_renderable(self.unavailable), id="help-keys")
            yield Static(Text.assemble(("sort orders (s): ", "bold"), ", ".join(SORTS)))
            yield Static(Text(BREACH), id="help-breach")
            yield Static(Text(ALERTS), id="help-alerts")
            yield Static(Text("The command palette (Ctrl+P) offers the same actions by name. "
                              "Esc or ? closes this help.", style="dim"))

    def action_scroll_help(self, lines: int) -> None:
        scroll = self.query_one(VerticalScroll)
        scroll.scroll_relative(y=lines, animate=False)
