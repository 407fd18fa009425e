"""The Textual app: wiring only.  The engine computes; the app renders its snapshots.

No engine import at module level (pandas / torch are slow): the engine is built by a
factory inside a thread worker (``tui.runner``), so the first frame appears at once with
the badge "loading model…".
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from tui.actions import TYPED_ACTIONS, ActionsProvider, bindings
from tui.messages import EngineFailed, EngineNotice, EngineStatus, HistoryReady, SnapshotReady
from tui.runner import Controls, EngineFactory, EngineLoop, EngineThread, make_engine_factory, next_speed
from tui.screens.help import HELP_ACTIONS, HelpScreen
from tui.screens.server import ServerScreen
from tui.widgets.alert_log import AlertLog
from tui.widgets.fleet_table import SORTS, FleetTable
from tui.widgets.header_bar import HeaderBar, PlayState
from tui.widgets.footer import KeyFooter


class TftTopApp(App):
    TITLE = "tft-top"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings()
    COMMANDS = {ActionsProvider}
    COMMAND_PALETTE_BINDING = "ctrl+p"

    def __init__(self, engine_factory: EngineFactory, *, speed: float = 1.0, paused: bool = False,
                 live: bool = False, paced: bool = True) -> None:
        super().__init__()
        self.engine_factory = engine_factory
        self.controls = Controls(speed=speed, paused=paused)
        self.engine_thread: EngineThread | None = None
        self.snapshot = None
        self.engine_error: str | None = None
        self.input_refused = False          # the engine refused its input before any forecast
        self.snapshots_applied = 0
        self.applied_seq = 0          # the engine seq of the snapshot on screen
        self.live = live          # a source that cannot step back
        self.paced = paced        # ticks per second set the pace (replay, simulator); not a wall-clock source
        self._main_stale = False

    # -- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Input(placeholder="filter by name or profile (Enter keeps it, Esc clears)", id="filter",
                    classes="hidden")
        yield Static(id="nomatch", classes="hidden")     # a filter that hides every server says so
        yield FleetTable(id="fleet")
        yield AlertLog(id="alerts", selectable=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self._sync_play()
        self.table.focus()
        self.run_engine()

    # -- the engine worker ---------------------------------------------------------------
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def run_engine(self) -> None:
        worker = get_current_worker()
        self.engine_thread = EngineThread()
        loop = EngineLoop(self.engine_factory, self.controls, self.post_message, self.engine_thread,
                          lambda: worker.is_cancelled)
        try:
            loop.run()
        finally:
            self.engine_thread.close()

    @property
    def main(self):
        """The main screen (the fleet), whatever is pushed on top of it."""
        return self.screen_stack[0]

    @property
    def header(self) -> HeaderBar:
        return self.main.query_one("#header", HeaderBar)

    @property
    def table(self) -> FleetTable:
        return self.main.query_one(FleetTable)

    @property
    def alert_log(self) -> AlertLog:
        return self.main.query_one("#alerts", AlertLog)

    def _shutting_down(self) -> bool:
        """True once the app is shutting down: its widgets may already be gone.

        Textual's ``_shutdown`` clears ``is_running`` first and then removes the screens while
        this app still handles messages, so a snapshot arriving then must be dropped.
        """
        return self._exit or not self.is_running or not self.screen_stack

    def _server_screens(self) -> list[ServerScreen]:
        return [s for s in self.screen_stack if isinstance(s, ServerScreen)]

    def on_engine_status(self, message: EngineStatus) -> None:
        if self._shutting_down():
            return
        self.header.set_status(message.text)

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.engine_error = message.reason
        self.input_refused = message.refused
        if self._shutting_down():
            return
        if message.refused:     # nothing to show: leave, and run_app prints the line (exit 2)
            self.exit()
            return
        self.header.set_error(message.reason)
        self.notify(message.reason, title="engine stopped", severity="error", timeout=30)

    def on_engine_notice(self, message: EngineNotice) -> None:
        self.notify(message.text, severity=message.severity)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self._shutting_down():
            return   # shutting down
        if message.seq < self.controls.latest_seq:
            return   # a newer snapshot is already on its way: skip the stale one
        self.apply_snapshot(message.snapshot, message.history)
        self.applied_seq = message.seq

    def apply_snapshot(self, snapshot, history=None) -> None:
        finished = self.snapshot is not None and bool(self.snapshot.metadata.get("finished"))
        self.snapshot = snapshot
        if bool(snapshot.metadata.get("finished")) != finished:
            self.refresh_bindings()          # the footer and palette follow what the keys can do
        self.header.set_snapshot(snapshot)
        screens = self._server_screens()
        if screens:
            self._main_stale = True      # the fleet is hidden under the drill-down: catch up on return
        else:
            self._apply_main(snapshot)
        for screen in screens:
            screen.apply(snapshot, history, self.header)
        self.snapshots_applied += 1

    def _apply_main(self, snapshot) -> None:
        self._main_stale = False
        self.table.apply(snapshot)
        self.alert_log.apply(snapshot.alerts, snapshot.metadata.get("alerts_since"))
        self._sync_no_match()

    def _sync_no_match(self) -> None:
        """A line in place of an empty table when the filter leaves no server of a fleet
        (a blank table read as no data)."""
        note = self.main.query_one("#nomatch", Static)
        text = self.table.filter_text
        if text and self.table.servers and not self.table.row_count:
            # (a Text: the filter is what the operator typed, not markup: "[/" raised MarkupError)
            note.update(Text(f"no server's name or profile holds {text!r}: Esc clears the filter"))
            note.remove_class("hidden")
        else:
            note.add_class("hidden")

    def on_history_ready(self, message: HistoryReady) -> None:
        if self._shutting_down():
            return
        for screen in self._server_screens():
            screen.set_history(message.history)

    # -- actions (the registry in tui/actions.py binds keys and the palette to these) -------
    def _sync_play(self) -> None:
        c = self.controls
        play = PlayState(speed=c.speed, paused=c.paused, sort=self.table.sort_by,
                         filter=self.table.filter_text, live=self.live, paced=self.paced)
        self.header.set_play(play)
        for screen in self._server_screens():
            screen.query_one("#server-header", HeaderBar).set_play(play)

    def unavailable_actions(self) -> dict[str, str]:
        """Actions that would do nothing here, with why: hidden from the footer and the
        palette, marked in the help."""
        out = {}
        if not self.paced:        # a wall-clock source (this host, Prometheus, a daemon) sets its own pace
            out["speed_up"] = out["slow_down"] = "a live fleet keeps its own pace"
        if self.live:
            out["step_back"] = "a live fleet cannot step back"
        if self._server_screens():
            out["filter"] = "the fleet view only"
            out["open_server"] = "the fleet view only"
            out["top"] = "the fleet view only"
            out["focus_alerts"] = "the fleet view only"
            out["columns_right"] = out["columns_left"] = "the fleet view only"
        if self.snapshot is not None and self.snapshot.metadata.get("finished"):
            # nothing left to play: pause, speed and ] would change nothing shown
            for action in ("toggle_pause", "speed_up", "slow_down", "step_forward"):
                out[action] = "the replay has finished ([ steps back)"
        if self.engine_error:      # the engine has stopped: nothing to pace or step
            for action in ("toggle_pause", "speed_up", "slow_down", "step_back", "step_forward"):
                out[action] = "the engine has stopped"
        return out

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Keys that would do nothing here are hidden from the footer (and do nothing)."""
        if action == "filter" and len(self.screen_stack) > 1:
            return False          # (help, palette or drill-down on top: no table to filter)
        if isinstance(self.screen, HelpScreen) and action not in HELP_ACTIONS:
            return False          # (the help is modal: pause, sort, speed keys would not reach the app)
        if isinstance(self.focused, Input) and action in TYPED_ACTIONS:
            return False          # (typing in the filter box: "+" is a "+" there, not "Faster")
        if action == "focus_alerts" and self.screen is not self.main:
            return False          # (the help, the palette: their own Tab)
        return action not in self.unavailable_actions()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen(self.unavailable_actions()))

    def action_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
            if not self._server_screens():
                self.controls.watched = None
                if self._main_stale and self.snapshot is not None:
                    self._apply_main(self.snapshot)
                # re-sorted while hidden: bring the selected row into view once laid out again
                # (the view kept its old scroll, the selection and the critical servers out of it)
                self.set_timer(0.05, self._show_cursor)   # (after the main screen's layout)
            return
        if self.focused is self.alert_log:
            self.table.focus()
            return
        box = self.main.query_one("#filter", Input)
        if box.has_class("hidden") and not self.table.filter_text:
            return
        self._clear_filter()
        self.table.focus()

    def _clear_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        box.value = ""
        box.add_class("hidden")
        self.table.set_filter("")
        self._sync_play()
        self._sync_no_match()

    def action_filter(self) -> None:
        if len(self.screen_stack) > 1:
            return
        box = self.main.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value.strip())
        self._sync_play()
        self._sync_no_match()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.add_class("hidden")
        self.table.focus()

    def action_cycle_sort(self) -> None:
        i = SORTS.index(self.table.sort_by) if self.table.sort_by in SORTS else -1
        self.table.set_sort(SORTS[(i + 1) % len(SORTS)])
        self._sync_play()

    def action_toggle_pause(self) -> None:
        self.controls.paused = not self.controls.paused
        self._sync_play()

    def action_speed_up(self) -> None:
        self.controls.speed = next_speed(self.controls.speed, True)
        self._sync_play()

    def action_slow_down(self) -> None:
        self.controls.speed = next_speed(self.controls.speed, False)
        self._sync_play()

    def _step(self, command: str) -> None:
        if not self.controls.paused:
            self.controls.paused = True
            self._sync_play()
        self.controls.commands.put(command)

    def action_step_back(self) -> None:
        self._step("step_back")

    def action_step_forward(self) -> None:
        self._step("step_forward")

    def action_focus_alerts(self) -> None:
        log = self.alert_log
        (self.table if self.focused is log else log).focus()

    @on(DataTable.RowSelected, "#alerts")
    def _alert_selected(self, event: DataTable.RowSelected) -> None:
        alert = self.alert_log.selected_alert
        if alert is None:
            return
        if self.snapshot is None or self.snapshot.server(alert.server_name) is None:
            self.notify(f"{alert.server_name} is not in the fleet now", severity="warning")
            return
        # the fleet's cursor too, so that j / k in the drill-down go on from this server (a
        # filter that hides it goes: j / k went on from wherever the filtered table's cursor was)
        if alert.server_name not in self.table.specs:
            self._clear_filter()
        self.table.select_name(alert.server_name)
        self.action_open_server(alert.server_name)

    def action_open_server(self, name: str | None = None) -> None:
        if len(self.screen_stack) > 1:
            return
        name = name or self.table.selected_name
        if name is None:
            return
        self._watch(name)
        screen = ServerScreen(name)
        self.push_screen(screen)
        if self.snapshot is not None:
            screen.apply(self.snapshot, None, self.header)

    def _watch(self, name: str) -> None:
        self.controls.watched = name
        self.controls.commands.put(("history", name))

    @on(DataTable.RowSelected, "#fleet")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_server()

    def _show_cursor(self) -> None:
        table = self.table
        if not table.row_count:
            return
        if table.cursor_row < table.scrollable_content_region.height - 1:
            table.scroll_to(y=0, animate=False)      # the top of the fleet, the selection on it
        else:
            table.move_cursor(row=table.cursor_row, animate=False, scroll=True)

    def _move(self, delta: int) -> None:
        table = self.table
        if self.focused is self.alert_log and self.screen is self.main:
            self.alert_log.action_cursor_down() if delta > 0 else self.alert_log.action_cursor_up()
            return
        if isinstance(self.screen, ServerScreen):
            if self._main_stale and self.snapshot is not None:
                # the hidden table is not updated while a drill-down is open: next and previous
                # follow the fleet's order now, not the one when the drill-down opened
                self._apply_main(self.snapshot)
                if self.screen.server_name in table.specs:
                    table.select_name(self.screen.server_name)     # (from the server shown, wherever it went)
                elif delta > 0:
                    delta = 0       # it left the fleet: the row now at its place is the next one
            if not table.row_count:
                return
            table.move_cursor(row=max(0, min(table.cursor_row + delta, table.row_count - 1)), animate=False)
            name = table.selected_name
            if name:
                self._watch(name)
                self.screen.set_server(name)
        elif self.screen is self.screen_stack[0]:
            table.action_cursor_down() if delta > 0 else table.action_cursor_up()

    def action_columns_right(self) -> None:
        if self.screen is self.screen_stack[0]:
            self.table.shift_columns(1)

    def action_columns_left(self) -> None:
        if self.screen is self.screen_stack[0]:
            self.table.shift_columns(-1)

    def action_top(self) -> None:
        if self.screen is self.screen_stack[0]:
            self.table.follow_top()

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_cursor_up(self) -> None:
        self._move(-1)


def run_app(model: Path | None = None, replay: Path | None = None, device: str = "auto",
            simulate: int | None = None, speed: float = 1.0, seed: int = 0,
            models_root: Path = Path("models"), source_factory=None, engine_factory=None,
            live: bool | None = None, hard_exit: bool = True, thresholds=None) -> int:
    """Run the TUI.  Returns the exit status (2 when the input was refused before any
    forecast: the app leaves at once; 1 when the engine stopped on an error later).

    The fleet comes from ``simulate`` (a live synthetic fleet of N servers), else
    ``source_factory`` (a zero-argument callable returning an ``engine.sources.Source``,
    called in the worker thread: this host, Prometheus …), else the ``replay`` directory.
    ``engine_factory`` (zero-argument, returns an Engine-like object: ``start()``,
    ``tick(advance) -> Snapshot``, ``seek_back(steps)``, ``history(name)``, ``source.can_seek``)
    replaces all of that (a remote daemon, tests).

    With ``hard_exit`` (the default) the process ends with ``os._exit`` once the terminal
    is restored: tearing down torch / pandas at interpreter exit takes a second or more,
    and an abandoned engine call (a forecast in flight) must not hold up ``q``.
    """
    if not (speed > 0 and math.isfinite(speed)):
        print("tft-top: --speed must be a number > 0", file=sys.stderr)
        return 2
    from engine.sources import simulated_count_problem

    problem = None if simulate is None else simulated_count_problem(simulate)
    if problem:
        print(f"tft-top: {problem}", file=sys.stderr)
        return 2
    if not simulate and source_factory is None and engine_factory is None:
        replay = Path(replay) if replay is not None else Path("demo_data")
        if not replay.exists():
            print(f"tft-top: {replay}: no such file or directory", file=sys.stderr)
            return 2
    factory = engine_factory or make_engine_factory(model=model, replay=replay, simulate=simulate, device=device,
                                                    seed=seed, models_root=models_root,
                                                    source_factory=source_factory, thresholds=thresholds)
    if live is None:
        live = bool(simulate) or source_factory is not None
    app = TftTopApp(factory, speed=speed, live=live, paced=bool(simulate) or not live)
    app.run()
    code = 1 if app.return_code else 0        # (an exception in the app: Textual printed it; not success)
    if app.engine_error:
        print(f"tft-top: {app.engine_error}", file=sys.stderr)
        code = 2 if app.input_refused else 1      # (2: bad input, as every command exits on it)
    thread = app.engine_thread
    if hard_exit or (thread is not None and thread.busy):
        # the engine may still be inside a call (torch import, a forecast): do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
