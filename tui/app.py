"""The Textual app (first cut): the replayed fleet's latest values in a table.

Forecast panels arrive with the inference engine; until then the header says plainly
that no forecast is shown.  Data loading runs in a thread worker so the first frame
appears at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

COLUMNS = ("server", "profile", "cpu %", "mem %", "disk %", "load")


@dataclass
class FleetLoaded(Message):
    rows: list[tuple]
    data_time: str


@dataclass
class LoadFailed(Message):
    reason: str


class TftTopApp(App):
    TITLE = "tft-top"
    BINDINGS = [Binding("q", "quit", "Quit")]
    CSS = "#status { height: 1; padding: 0 1; background: $boost; }"

    def __init__(self, replay: Path, model: Path | None = None, device: str = "auto"):
        super().__init__()
        self.replay = Path(replay)
        self.model_path = model
        self.device = device

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"loading {self.replay} … (forecasts: not available in this build)", id="status")
        yield DataTable(id="fleet", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.load_fleet()

    @work(thread=True, exclusive=True)
    def load_fleet(self) -> None:
        from engine.contract import load_path

        result = load_path(self.replay)
        if result.problems:
            self.post_message(LoadFailed(str(result.problems[0])))
            return
        latest = result.frame.groupby("server_name").tail(1)
        rows = [(r.server_name, r.profile, f"{r.cpu_percent:.1f}", f"{r.memory_percent:.1f}",
                 f"{r.disk_percent:.1f}", f"{r.load_average:.2f}") for r in latest.itertuples()]
        self.post_message(FleetLoaded(rows, str(result.frame["timestamp"].max())))

    def on_fleet_loaded(self, message: FleetLoaded) -> None:
        table = self.query_one(DataTable)
        for row in message.rows:
            table.add_row(*row, key=row[0])
        self.query_one("#status", Static).update(
            f"{len(message.rows)} servers · data time {message.data_time} · NO FORECAST (inference engine not built yet)"
        )

    def on_load_failed(self, message: LoadFailed) -> None:
        self.query_one("#status", Static).update(f"cannot load data: {message.reason}")


def run_app(model: Path | None, replay: Path, device: str = "auto") -> int:
    TftTopApp(replay=replay, model=model, device=device).run()
    return 0
