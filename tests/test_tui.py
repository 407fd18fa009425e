"""The Textual app, driven with Pilot.

Most tests use ``tui.testing.FakeEngine`` (synthetic snapshots, instant); one uses a
real ``Engine`` on a 6-server simulator with no model (the heuristic), and one a small
replay directory written to tmp_path.
"""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from textual.command import CommandList, CommandPalette

from tui.actions import ACTIONS, ActionsProvider, bindings
from tui.app import TftTopApp
from tui.format import fmt_minutes, fmt_value, sparkline_spec
from tui.runner import make_engine_factory
from tui.screens.help import HelpScreen, help_renderable, help_text
from tui.screens.server import ServerScreen
from tui.testing import FakeEngine
from tui.widgets.charts import ImportanceBars, MetricChart
from tui.widgets.fleet_table import SORTS

SIZE = (160, 48)


async def wait_for(pilot, cond, timeout: float = 10.0, what: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            if what is None:
                import inspect

                what = inspect.getsource(cond).strip()
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


# After ``pilot.press`` a check of what the key did waits for it (``await until(...)``):
# press returns when Textual guesses the process is idle, which a starved CI machine can
# fool before the key has gone through the app's handlers.
until = wait_for


async def ready(pilot, app, n: int = 1) -> None:
    await wait_for(pilot, lambda: app.snapshots_applied >= n, what=f"{n} snapshot(s)")


async def step(pilot, app) -> None:
    """Step the (paused) replay one tick with ']' and wait for its snapshot."""
    n0 = app.snapshots_applied
    await pilot.press("right_square_bracket")
    await ready(pilot, app, n0 + 1)


def fake_app(n: int = 12, **kwargs) -> TftTopApp:
    engine_kw = {k: kwargs.pop(k) for k in ("start_delay", "tick_delay", "block", "model_type") if k in kwargs}
    return TftTopApp(lambda: FakeEngine(n, **engine_kw), **kwargs)


# -- first frame, quitting ------------------------------------------------------------
async def test_first_frame_appears_before_the_engine_has_started():
    release = threading.Event()
    built = []

    def slow_factory():
        release.wait(20)          # torch / the model "still loading"
        e = FakeEngine(6)
        built.append(e)
        return e

    app = TftTopApp(slow_factory)
    try:
        t0 = time.monotonic()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert time.monotonic() - t0 < 5
            assert app.header.badge == "loading model…"
            assert not built and app.snapshot is None
            release.set()
            await ready(pilot, app)
            assert app.header.badge == "TFT on cpu"
    finally:
        release.set()


@pytest.mark.parametrize("where", ["start", "tick"])
async def test_q_quits_at_once_in_the_middle_of_a_forecast(where):
    block = threading.Event()
    engines: list[FakeEngine] = []

    def factory():
        e = FakeEngine(6, start_delay=60 if where == "start" else 0, block=block)
        engines.append(e)
        return e

    app = TftTopApp(factory, speed=64)
    try:
        async with app.run_test(size=SIZE) as pilot:
            if where == "tick":
                await ready(pilot, app)            # the first forecast came; the next one never ends
            await wait_for(pilot, lambda: app.engine_thread is not None and app.engine_thread.busy,
                           what="an engine call in flight")
            t0 = time.monotonic()
            await pilot.press("q")
            await wait_for(pilot, lambda: app._exit, timeout=5, what="exit")  # noqa: SLF001
        elapsed = time.monotonic() - t0
        # the blocked call never ends by itself: waiting for it would hang here for good
        assert elapsed < 5.0, f"quitting took {elapsed:.2f}s"
        assert app.engine_thread.busy             # the blocked call was abandoned, not awaited
    finally:
        block.set()


# -- a real engine, no model -------------------------------------------------------------
async def test_without_a_model_the_badge_says_heuristic_and_why(tmp_path):
    factory = make_engine_factory(model=tmp_path / "no-such-model", simulate=6, seed=3)
    app = TftTopApp(factory, speed=4)
    async with app.run_test(size=SIZE) as pilot:
        assert app.header.badge == "loading model…"
        await wait_for(pilot, lambda: app.snapshots_applied >= 1, timeout=30, what="first snapshot")
        badge = app.header.badge
        assert badge.startswith("HEURISTIC (") and len(badge) > len("HEURISTIC ()") + 3, badge
        assert app.snapshot.metadata["model_type"] == "heuristic"
        assert app.table.row_count == 6
        assert all(s.source == "heuristic" for s in app.snapshot.servers)
        # drill into a real server: history arrives from the engine, charts draw
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ServerScreen))
        await wait_for(pilot, lambda: app.screen.history is not None, timeout=10, what="history")
        assert len(app.screen.history.epochs) > 100
        assert "heuristic" in str(app.screen.query_one("#server-title").render())
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ServerScreen))
    assert app.engine_error is None


async def test_replay_dir_without_a_model_steps_back_and_forward(tmp_path):
    from fleet_fixtures import make_grid, write_fleet

    data = tmp_path / "fleet"
    grid = make_grid(n_servers=4, days=1.5)
    # srv-01 at critical for the hour before the replay starts: its alert is on the first frame
    # (the replay plays the tick before its start too; alerts open after two ticks)
    hot = (grid["server_name"] == "srv-01") & (grid["timestamp"] >= "2026-01-05T23:00:00Z")
    grid.loc[hot, "cpu_percent"] = 99.0
    write_fleet(data, grid, heldout_from="2026-01-06T00:00:00Z")
    app = TftTopApp(make_engine_factory(model=tmp_path / "no-such-model", replay=data), paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshots_applied >= 1, timeout=30, what="first snapshot")
        assert app.header.badge.startswith("HEURISTIC (")
        assert "replay" in app.snapshot.metadata["source"] and app.table.row_count == 4
        assert [(a.server_name, a.metric) for a in app.snapshot.alerts] == [("srv-01", "cpu_percent")]
        t0 = app.snapshot.data_time
        await pilot.press("right_square_bracket")
        await ready(pilot, app, 2)
        assert app.snapshot.data_time > t0
        await pilot.press("left_square_bracket")
        await ready(pilot, app, 3)
        assert app.snapshot.data_time == t0
        assert [(a.server_name, a.metric) for a in app.snapshot.alerts] == [("srv-01", "cpu_percent")]
    assert app.engine_error is None


async def test_a_bad_replay_directory_is_refused_the_app_leaves_with_one_line(tmp_path):
    # the app opened on "ENGINE STOPPED" and printed the line only after q, exit 1, while
    # predict and eval refuse the same data at once, exit 2 (review 2026-11-29)
    bad = tmp_path / "fleet"
    bad.mkdir()
    (bad / "fleet.csv").write_text("server_name,timestamp,cpu_percent\nweb-01,notatime,5\n")
    app = TftTopApp(make_engine_factory(model=tmp_path / "none", replay=bad))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.engine_error is not None, timeout=30, what="engine error")
        assert "\n" not in app.engine_error and "fleet.csv" in app.engine_error
        assert app.input_refused
        await wait_for(pilot, lambda: not app.is_running or app._exit, timeout=10, what="the app to leave")


async def test_a_failure_that_is_not_the_input_keeps_the_app_open_and_says_engine_stopped():
    def factory():
        raise RuntimeError("something broke\nin two lines")

    app = TftTopApp(factory)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.engine_error is not None, timeout=30, what="engine error")
        await pilot.pause()
        assert not app.input_refused and app.is_running
        assert "\n" not in app.engine_error
        assert "ENGINE STOPPED" in str(app.header.render())


# -- drill-down ------------------------------------------------------------------------
async def test_drill_down_shows_charts_importance_and_alerts_then_esc_goes_back():
    app = fake_app(12, speed=4)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("j")
        name = app.table.selected_name
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ServerScreen) and screen.server_name == name
        assert app.controls.watched == name
        await wait_for(pilot, lambda: screen.history is not None, what="history")
        charts = list(screen.query(MetricChart))
        assert len(charts) == 4 and all(c.has_data for c in charts)
        assert "cpu_percent" in str(screen.query_one(ImportanceBars).render())   # TFT: importance bars
        before = screen.updates
        await wait_for(pilot, lambda: screen.updates > before + 1, what="drill-down updates")  # follows snapshots
        await pilot.press("j")                                  # next server, still drilled down
        await until(pilot, lambda: screen.server_name != name and app.controls.watched == screen.server_name)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        assert app.controls.watched is None
        # the fleet table, not updated while hidden, caught up with the newest snapshot on return
        from tui.widgets.fleet_table import row_spec
        assert not app._main_stale  # noqa: SLF001
        assert all(app.table.specs[s.server_name] == row_spec(s, app.table.data_epoch) for s in app.snapshot.servers)


async def test_drill_down_chart_titles_keep_the_p90_peak_on_a_100_column_terminal():
    # four charts share the width: "CPU % · now 99.2 · p90 p…" cut the peak off
    for size, full in (((100, 30), False), (SIZE, True)):
        app = fake_app(6, paused=True)
        async with app.run_test(size=size) as pilot:
            await ready(pilot, app)
            await pilot.press("enter")
            screen = app.screen
            await wait_for(pilot, lambda: screen.history is not None, what="history")
            await pilot.pause()
            server = next(s for s in app.snapshot.servers if s.server_name == screen.server_name)
            for chart in screen.query(MetricChart):
                title, f = chart.border_title, server.metrics[chart.metric]
                peak = fmt_value(chart.metric, max(float(v) for v in f.p90))
                assert title.endswith(f"p90{' peak' if full else ''} {peak}"), title
                assert len(title) <= chart.size.width - 4, (title, chart.size.width)
                assert title.startswith("CPU % · now" if chart.metric == "cpu_percent" and full else "")
            # the side panel's alert log folds state and metric into the message when narrow
            # (on 100 columns it left the message 3 cells)
            keys = [k.value for k in screen.query_one("#server-alerts").columns]
            assert keys == (["sev", "state_short", "metric", "message_compact"] if full else ["sev", "message_full"]), keys
            await pilot.press("escape")


async def test_next_in_the_drill_down_and_back_follow_the_fleet_order_of_now():
    # the fleet table is not updated under a drill-down: j stepped through the order of when it
    # opened (web-46, long since quiet, came "next"), and back showed the old scroll, the
    # selection and the newly critical server out of view
    from dataclasses import replace

    app = fake_app(40, paused=True)
    async with app.run_test(size=(120, 20)) as pilot:
        await ready(pilot, app)
        await pilot.press("j")                    # (a chosen server: the table follows it, not the top)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ServerScreen), what="drill-down")
        first = app.screen.server_name
        # the order turns over: the least at risk become the most
        servers = app.snapshot.servers
        ranked = sorted(servers, key=lambda s: -s.risk_8h)
        flipped = tuple(replace(s, risk_8h=ranked[-1 - i].risk_8h, risk_30m=ranked[-1 - i].risk_30m)
                        for i, s in enumerate(ranked))
        app.apply_snapshot(replace(app.snapshot, servers=flipped))
        await pilot.pause()
        from tui.widgets.fleet_table import sort_key

        order = [s.server_name for s in sorted(flipped, key=sort_key("risk"))]
        await pilot.press("j")
        await pilot.pause()
        assert app.screen.server_name == order[order.index(first) + 1], (first, app.screen.server_name)
        # and the server shown falls to the bottom while the drill-down is open
        shown = app.screen.server_name
        app.apply_snapshot(replace(app.snapshot, servers=tuple(
            replace(s, risk_8h=0.0, risk_30m=0.0, minutes_to_breach=None) if s.server_name == shown else s
            for s in flipped)))
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main, what="back")
        await pilot.pause()
        table = app.table
        top, height = table.scroll_offset.y, table.scrollable_content_region.height
        assert table.selected_name == shown and table.cursor_row > height
        assert top <= table.cursor_row < top + height - 1, (top, table.cursor_row, height)
        # a selection in the first page: back shows the top of the fleet (the most at risk),
        # not the scroll the table had (web-31 at 100 % sat above the view)
        table.move_cursor(row=0, animate=False)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ServerScreen), what="drill-down")
        table.scroll_to(y=20, animate=False)
        app.apply_snapshot(app.snapshot)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main, what="back")
        await wait_for(pilot, lambda: table.scroll_offset.y == 0, what="the top of the table")
        assert table.cursor_row < height


async def test_next_in_the_drill_down_of_a_server_that_left_the_fleet_skips_none():
    from dataclasses import replace

    from tui.widgets.fleet_table import sort_key

    app = fake_app(12, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("j", "j", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ServerScreen), what="drill-down")
        order = [s.server_name for s in sorted(app.snapshot.servers, key=sort_key("risk"))]
        shown = app.screen.server_name
        assert shown == order[2]
        # it goes silent (leaves the snapshot) while shown: j opens the one after it, not the one after that
        app.apply_snapshot(replace(app.snapshot, servers=tuple(s for s in app.snapshot.servers
                                                               if s.server_name != shown)))
        await pilot.pause()
        await pilot.press("j")
        await pilot.pause()
        assert app.screen.server_name == order[3], (order, app.screen.server_name)


async def test_a_finished_replay_offers_only_the_keys_that_still_do_something():
    from dataclasses import replace

    app = fake_app(6, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.check_action("toggle_pause", ()) is True
        app.apply_snapshot(replace(app.snapshot, metadata={**app.snapshot.metadata, "finished": True}))
        await pilot.pause()
        for action in ("toggle_pause", "speed_up", "slow_down", "step_forward"):
            assert app.check_action(action, ()) is False, action
        assert app.check_action("step_back", ()) is True
        assert "the replay has finished" in app.unavailable_actions()["toggle_pause"]


async def test_drill_down_of_a_heuristic_server_names_the_reason_instead_of_importance():
    app = fake_app(6, model_type="heuristic", paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.header.badge == "HEURISTIC (test)"
        await pilot.press("enter")
        text = str(app.screen.query_one(ImportanceBars).render())
        assert "heuristic" in text and "test reason" in text


async def test_drill_down_title_keeps_the_risks_and_breach_before_a_long_heuristic_reason():
    # "forecast: heuristic (history 2.2 h < 3.0 h the model needs)   risk 30 min 100…" at 80 columns
    import dataclasses

    app = fake_app(6, model_type="heuristic", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ServerScreen))
        screen = app.screen
        server = app.snapshot.server(screen.server_name)
        cpu = dataclasses.replace(server.metrics["cpu_percent"], breach_basis="p50", minutes_to_breach=15.0)
        server = dataclasses.replace(server, reason="history 2.2 h < 3.0 h the model needs", minutes_to_breach=15.0,
                                     breach_metric="cpu_percent", metrics={**server.metrics, "cpu_percent": cpu})
        line2 = screen._title(server).plain.split("\n")[1]
        width = screen.query_one("#server-title").content_size.width
        shown = line2[:width]
        assert "risk 30 min" in shown and " · 8 h " in shown and "breach in 15m (cpu)" in shown, shown
        assert shown.startswith("forecast: heuristic")
        # a host whose core count is unknown: its load levels are the fallback, and the title says so
        load = server.metrics["load_average"]
        line1 = screen._title(dataclasses.replace(server, cores=None)).plain.split("\n")[0]
        assert f"cores unknown: load levels {fmt_value('load_average', load.warning)} / " \
               f"{fmt_value('load_average', load.critical)} (fallback)" in line1, line1
        assert line1.index("last sample") < line1.index("cores unknown")     # (it cut the sample time at 80)
        assert "unknown" not in screen._title(server).plain.split("\n")[0]


async def test_mixed_badge_counts_servers_on_the_heuristic():
    app = fake_app(10, model_type="mixed", paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        n = app.snapshot.metadata["servers_on_heuristic"]
        assert app.header.badge == f"MIXED ({n} servers on heuristic)"
        app.snapshot.metadata["heuristic_why"] = "short history"
        app.header.set_snapshot(app.snapshot)
        assert app.header.badge == f"MIXED ({n} servers on heuristic: short history)"


# -- filter and sort ----------------------------------------------------------------------
async def test_filter_by_name_or_profile_and_esc_clears():
    app = fake_app(12, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("slash", "d", "a", "t", "a")
        await wait_for(pilot, lambda: app.table.row_count == 2, what="filtered rows")   # profile "database"
        assert all(n.startswith("database-") for n in app.table.specs)
        assert "filter: data (2 of 12)" in app.header.render().plain
        await pilot.press("enter")                   # keeps the filter, back to the table
        await until(pilot, lambda: app.focused is app.table and app.table.filter_text == "data")
        await wait_for(pilot, lambda: app.snapshots_applied >= 1)
        await pilot.press("escape")
        await until(pilot, lambda: app.table.row_count == 12 and app.table.filter_text == "")
        from textual.widgets import Static

        note = app.main.query_one("#nomatch", Static)
        assert not note.display
        await pilot.press("slash", "z", "z", "z")        # nothing matches: the header says so
        await wait_for(pilot, lambda: app.table.row_count == 0, what="no rows")
        assert "filter: zzz (0 of 12)" in app.header.render().plain
        # and so does the table's place, not a blank table (review 2026-11-29)
        assert note.display and "'zzz'" in str(note.render()) and "Esc clears the filter" in str(note.render())
        await pilot.press("escape")
        await until(pilot, lambda: app.table.row_count == 12)
        assert not note.display
        # the filter is what was typed, not markup: "[/" raised MarkupError and killed the app
        await pilot.press("slash", "left_square_bracket", "/", "b", "]")
        await wait_for(pilot, lambda: app.table.row_count == 0, what="no rows")
        assert note.display and "'[/b]'" in str(note.render()), str(note.render())


async def test_sort_keeps_the_cursor_on_the_same_server():
    app = fake_app(30, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        for _ in range(7):
            await pilot.press("j")
        name = app.table.selected_name
        row_before = app.table.cursor_row
        moved = False
        for sort in SORTS[1:] + SORTS[:1]:
            await pilot.press("s")
            await until(pilot, lambda: app.table.sort_by == sort)
            assert app.table.selected_name == name, sort
            moved |= app.table.cursor_row != row_before
        assert moved, "no sort moved the server: the test proves nothing"
        # new snapshots reorder the rows (risk sort, drifting values): the cursor follows the server
        orders = set()
        for _ in range(6):
            await step(pilot, app)
            assert app.table.selected_name == name
            orders.add(tuple(app.table.order))
        assert len(orders) > 1, "the order never changed: the test proves nothing"


async def test_cursor_stays_on_the_top_row_until_the_operator_moves_it():
    app = fake_app(30, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        first_top = app.table.order[0]
        tops = set()
        for _ in range(8):
            await step(pilot, app)
            assert app.table.cursor_row == 0 and app.table.selected_name == app.table.order[0]
            tops.add(app.table.order[0])
        assert app.table.order.index(first_top) > 0, "the first top server never moved down: the test proves nothing"
        assert not app.table.user_moved
        for _ in range(6):
            await pilot.press("j")
        await until(pilot, lambda: app.table.user_moved and app.table.cursor_row == 6)
        name = app.table.selected_name       # chosen: from now on the cursor follows it
        rows = set()
        for _ in range(8):
            await step(pilot, app)
            assert app.table.selected_name == name
            rows.add(app.table.cursor_row)
        assert rows != {6}, "the chosen server never moved: the test proves nothing"


async def test_rows_update_cells_not_the_whole_table():
    app = fake_app(20, speed=16)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, 3)
        table = app.table
        assert table.row_count == 20 and table.cells_updated > 0
        assert set(table.specs) == {s.server_name for s in app.snapshot.servers}



async def test_a_snapshot_arriving_while_the_app_shuts_down_is_dropped():
    """CI once failed here: Textual's shutdown removes the screens while the app still takes
    messages, and a snapshot landing then looked for a header that was gone (NoMatches)."""
    from tui.messages import SnapshotReady

    app = fake_app(4, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        applied = app.snapshots_applied
        app._running = False                               # noqa: SLF001  what _shutdown does first
        await app.main.query_one("#header").remove()       # then it prunes the screens
        app.post_message(SnapshotReady(app.snapshot, seq=app.controls.latest_seq + 1))
        await asyncio.sleep(0.1)                           # the app still handles messages meanwhile
        assert app.snapshots_applied == applied
        app._running = True                                # noqa: SLF001  let run_test shut it down


# -- pause, step, speed ---------------------------------------------------------------------
async def test_pause_and_step_forward_and_back():
    app = fake_app(6, speed=8)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app, 2)
        await pilot.press("p")
        await until(pilot, lambda: app.controls.paused)
        await pilot.pause(0.6)              # a tick already in flight lands now ...
        await wait_for(pilot, lambda: not app.engine_thread.busy and app.applied_seq == app.controls.latest_seq,
                       what="the last tick on screen")   # ... even on a slow machine
        t_paused = app.snapshot.data_time
        n = app.snapshots_applied
        await pilot.pause(0.3)
        assert app.snapshots_applied == n and app.snapshot.data_time == t_paused    # paused: no ticks
        await pilot.press("right_square_bracket")
        await ready(pilot, app, n + 1)
        t_fwd = app.snapshot.data_time
        assert t_fwd > t_paused
        await pilot.press("left_square_bracket")
        await ready(pilot, app, n + 2)
        assert app.snapshot.data_time == t_paused
        await pilot.press("p")
        await until(pilot, lambda: not app.controls.paused)
        await ready(pilot, app, n + 4)


async def test_speed_keys_change_the_pace_and_stepping_pauses():
    app = fake_app(6, paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("plus", "plus")
        await until(pilot, lambda: app.controls.speed == 4.0)
        await pilot.press("minus")
        await until(pilot, lambda: app.controls.speed == 2.0)
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: app.controls.paused)
        assert "paused" in str(app.header.render())
        await pilot.press("plus")                     # paused: the header still says the new speed
        await pilot.pause()
        assert "❚❚ paused (4× on resume)" in app.header.render().plain


# -- help and the one registry -------------------------------------------------------------
async def test_help_lists_every_binding_from_the_one_registry():
    app_bindings = {b.action for b in bindings()}
    assert app_bindings == {a.action for a in ACTIONS}
    for a in ACTIONS:
        assert hasattr(TftTopApp, f"action_{a.action}"), a.action
    text = help_text()
    for a in ACTIONS:
        assert a.key_label in text and a.description in text
    table = help_renderable()
    keys = list(table.columns[0].cells)
    descriptions = list(table.columns[1].cells)
    assert keys == [a.key_label for a in ACTIONS] and descriptions == [a.description for a in ACTIONS]

    app = fake_app(6, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        legend = str(app.screen.query_one("#help-alerts").render())
        assert "WARN" in legend and "CRIT" in legend and "clear 25m" in legend
        await pilot.press("question_mark")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("question_mark")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)


async def test_command_palette_offers_the_same_actions():
    assert ActionsProvider in TftTopApp.COMMANDS
    app = fake_app(6, speed=2)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        provider = ActionsProvider(app.screen)
        found = [hit async for hit in provider.discover()]
        assert [h.text for h in found] == [a.description for a in ACTIONS if a.palette]
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"resume")
        await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count == 1, what="one hit")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.controls.paused, what="pause from the palette")


# -- formatting ------------------------------------------------------------------------------
def test_sparkline_uses_fixed_bounds_not_the_series_range():
    chars, levels = sparkline_spec([40.0, 42.0] * 48, 0, 100, 16, 80, 95)
    assert len(chars) == 16 and set(chars) <= {"▄", "▃"} and set(levels) == {"o"}   # no big swings
    chars, levels = sparkline_spec([96.0] * 96, 0, 100, 16, 80, 95)
    assert chars == "█" * 16 and levels == "c" * 16
    chars, levels = sparkline_spec([0.0] * 90 + [90.0] * 6, 0, 100, 16, 80, 95)
    assert chars[-1] == "█" and levels[-1] == "w" and chars[0] == "▁"


async def test_alert_log_lists_every_ongoing_alert_before_resolved_ones():
    from tui.widgets.alert_log import AlertLog

    app = fake_app(60, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        log = app.query_one(AlertLog)
        by_id = {str(a.id): a for a in app.snapshot.alerts}
        states = [by_id[k.value].state for k in log.rows]
        assert "resolved" in states and "ongoing" in states
        assert states == sorted(states, key=lambda st: st != "ongoing")      # ongoing, then resolved
        ongoing_ids = [int(k.value) for k in log.rows if by_id[k.value].state == "ongoing"]
        assert ongoing_ids == sorted(ongoing_ids, reverse=True)              # newest first


def test_alert_log_marks_a_stale_lead_of_an_alert_whose_condition_cleared():
    from engine.snapshot import Alert
    from tui.widgets.alert_log import alert_cells

    base = dict(id=1, severity="warning", server_name="db-1", metric="cpu_percent",
                message="cpu_percent may reach 95 in 5 min (p90)", opened_at="2024-03-01T12:00:00Z",
                updated_at="2024-03-01T12:10:00Z", predicted_crossing="2024-03-01T12:15:00Z",
                lead_minutes=5.0, state="ongoing")
    holding = [c.plain for c in alert_cells(Alert(**base, duration_minutes=10.0))]
    cleared = [c.plain for c in alert_cells(Alert(**base, duration_minutes=40.0, clear_minutes=30.0))]
    assert holding[2] == "● ongoing 10m" and holding[5] == "in 5m"
    # (the wide state said "● ongoing" beside "clear 30m": the short one already had ◌)
    assert cleared[2] == "◌ clearing, open 40m" and cleared[5] == "clear 30m"
    assert [c.plain for c in alert_cells(Alert(**base, clear_minutes=30.0), compact=True)][1] == "◌ 10m"
    # resolved: how long the condition held (not the hour it waited clear), or that the server went silent
    done = dict(base, state="resolved", resolved_at="2024-03-01T13:10:00Z")
    cleared = alert_cells(Alert(**done, duration_minutes=70.0, clear_minutes=60.0, resolution="cleared"))
    silent = alert_cells(Alert(**done, duration_minutes=45.0, clear_minutes=35.0, resolution="silent"))
    assert cleared[2].plain == "✓ resolved, held 10m" and silent[2].plain == "? silent after 45m"
    assert alert_cells(Alert(**done, duration_minutes=45.0, resolution="silent"), compact=True)[1].plain == "? silent"
    moved = alert_cells(Alert(**done, duration_minutes=15.0, resolution="threshold"))
    assert moved[2].plain == "✓ threshold moved"


def test_minutes_format():
    assert fmt_minutes(None) == "—" and fmt_minutes(0) == "now" and fmt_minutes(35) == "35m"
    assert fmt_minutes(135) == "2h15m" and fmt_minutes(120) == "2h"


def test_importing_the_app_loads_neither_the_engine_nor_torch_nor_pandas():
    import subprocess
    import sys

    # (engine.model_dir, which finds the default model directory, is the one engine module
    # allowed: names and a directory listing, no pandas or torch)
    code = ("import sys, tui.app, tui.cli\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('engine', 'torch', 'pandas')\n"
            "             and m not in ('engine', 'engine.model_dir'))\n"
            "print(bad); sys.exit(1 if bad else 0)\n")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _breaching_server(p50_peak: float, p90_peak: float):
    """One server whose CPU forecast ramps linearly to the given p50 / p90 peaks over 8 h."""
    import numpy as np

    from engine.risk import build_metric_forecast, server_from_metrics

    ramp = np.linspace(0.0, 1.0, 96)
    q = np.stack([50 + (p50_peak - 60) * ramp, 50 + (p50_peak - 50) * ramp, 50 + (p90_peak - 50) * ramp], axis=1)
    return server_from_metrics("db-1", {"cpu_percent": build_metric_forecast("cpu_percent", 50.0, q)})


def test_breach_time_says_when_only_the_p90_forecast_crosses():
    from engine.summary import format_summary
    from engine.snapshot import Environment, Snapshot
    from tui.format import CRIT, DIM, WARN, fmt_breach
    from tui.widgets.fleet_table import COLUMN_KEYS, row_spec

    assert fmt_breach(None, None) == ("—", DIM) and fmt_breach(0, "now") == ("now", CRIT)
    assert fmt_breach(30, "p50") == ("30m", CRIT) and fmt_breach(30, "p90") == ("30m?", WARN)
    assert fmt_breach(125, "p50") == ("2h05m", WARN) and fmt_breach(125, "p90") == ("2h05m?", WARN)

    expected, possible = _breaching_server(99.0, 110.0), _breaching_server(80.0, 99.0)
    assert (expected.breach_basis, possible.breach_basis) == ("p50", "p90")
    breach = COLUMN_KEYS.index("breach")
    assert row_spec(expected)[breach][0].endswith("m cpu") and "?" not in row_spec(expected)[breach][0]
    assert row_spec(possible)[breach][0].endswith("? cpu")
    # the time-to-breach sort puts an expected breach before a possible one, whatever the minutes
    from tui.widgets.fleet_table import sort_key

    sooner = _breaching_server(80.0, 130.0)                    # p90 only, hours before the other's p50
    assert sooner.breach_basis == "p90" and sooner.minutes_to_breach < expected.minutes_to_breach
    ranked = sorted([sooner, expected], key=sort_key("time to breach"))
    assert [s.breach_basis for s in ranked] == ["p50", "p90"]
    # a server that stopped reporting shows how long ago, in place of its source
    from dataclasses import replace as _replace

    src = COLUMN_KEYS.index("src")
    quiet = _replace(expected, last_seen="2024-03-01T11:35:00Z")
    now = 1709294400.0                                    # 2024-03-01T12:00:00Z
    assert row_spec(quiet, now)[src][0] == "-25m"
    assert row_spec(_replace(expected, last_seen="2024-03-01T11:45:00Z"), now)[src][0] in ("TFT", "heur")
    snap = Snapshot(data_time="2024-03-01T12:00:00Z", servers=(possible,), alerts=(),
                    environment=Environment(0.0, possible.risk_8h, 0, 1, 100.0), metadata={"model_type": "TFT"})
    text = format_summary(snap)
    assert "(p90)" in text and "only the p90 does (possible)" in text
    snap = Snapshot(data_time="2024-03-01T12:00:00Z", servers=(expected,), alerts=(),
                    environment=Environment(0.0, expected.risk_8h, 0, 1, 100.0), metadata={"model_type": "TFT"})
    assert "(p90)" not in format_summary(snap)


def test_badge_names_the_file_not_its_directories():
    from tui.widgets.header_bar import model_badge

    why = "no model: /tmp/x/bad/model.safetensors: corrupt weights file (invalid header length)"
    assert model_badge({"model_type": "heuristic", "model_reason": why})[0] == \
        "HEURISTIC (model.safetensors: corrupt weights file (invalid header length))"
    # a ratio is not a path
    why = "models/m/config.json: does not match the weights (1/2 tensors)"
    assert model_badge({"model_type": "heuristic", "model_reason": why})[0] == \
        "HEURISTIC (config.json: does not match the weights (1/2 tensors))"


async def test_keys_that_would_do_nothing_are_hidden():
    # a wall-clock source (this host, Prometheus): no speed, no stepping back
    app = fake_app(4, live=True, paced=False, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        assert app.check_action("speed_up", ()) is False and app.check_action("step_back", ()) is False
        assert app.check_action("step_forward", ()) is True
        from tui.widgets.header_bar import PlayState

        app.header.set_play(PlayState(paused=False, live=True, paced=False))
        assert "▶ live" in app.header.render().plain and "1×" not in app.header.render().plain
        app._sync_play()  # noqa: SLF001 - back to the app's own state
        await pilot.press("plus")
        await until(pilot, lambda: app.controls.speed == 1.0)
        # the drill-down has no filter
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not app.main, what="drill-down")
        assert app.check_action("filter", ()) is False
        # the help marks them and the palette leaves them out (both listed them as working)
        from tui.actions import ActionsProvider
        from tui.screens.help import help_renderable

        assert set(app.unavailable_actions()) == {"speed_up", "slow_down", "step_back", "filter", "open_server", "top", "columns_right", "columns_left",
                                                "focus_alerts"}
        offered = {a.action for a in ActionsProvider._entries(type("P", (), {"app": app})())}
        assert not offered & {"speed_up", "slow_down", "step_back", "filter", "open_server", "top", "columns_right", "columns_left"}
        assert "toggle_pause" in offered
        from rich.console import Console

        console = Console(width=200, record=True)
        console.print(help_renderable(app.unavailable_actions()))
        text = console.export_text()
        assert "Faster replay (more ticks per second) — not here: a live fleet keeps its own pace" in text
        assert "Pause / resume the forecast loop" in text and "forecast loop — not here" not in text
    # a replay keeps every key
    app = fake_app(4, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        assert all(app.check_action(a, ()) for a in ("speed_up", "slow_down", "step_back", "filter"))


async def test_header_keeps_its_second_line_on_a_narrow_terminal_with_a_long_reason():
    why = "no model: /a/very/long/path/to/models/tft_model_x/model.safetensors: " + "corrupt weights file " * 5
    app = fake_app(4, model_type="heuristic", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        app.snapshot.metadata["model_reason"] = why
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        lines = [s.text for s in app.header.render_lines(app.header.region.reset_offset)]
        assert lines[0].startswith(" tft-top  HEURISTIC (model.safetens") and "…)" in lines[0]
        assert "data " in lines[0] and lines[1].strip().startswith("health")


async def test_header_says_how_many_silent_servers_the_table_leaves_out_before_it_can_be_cut():
    app = fake_app(4, paused=True)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot, app)
        app.snapshot.metadata["stale_servers"] = 3
        app.snapshot.metadata["stale_after_minutes"] = 35.0
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1]
        # on 100 columns: the silent count and the alerts come before the incident probabilities
        assert "3 silent" in line and "alerts " in line
        # alerts whose condition cleared (they resolve after an hour) are counted apart
        from dataclasses import replace

        snap = app.snapshot
        ongoing = [a for a in snap.alerts if a.state == "ongoing"]
        assert len(ongoing) >= 2
        cleared = replace(ongoing[0], clear_minutes=20.0)
        app.header.set_snapshot(replace(snap, alerts=(cleared, *[a for a in snap.alerts if a.id != cleared.id])))
        await pilot.pause()
        text = app.header.render().plain
        # the cleared one is not counted as critical, whatever its severity
        crit = sum(1 for a in ongoing if a.severity == "critical" and a.id != cleared.id)
        assert crit >= 1
        # (100 columns with 3 silent: the clearing count gives way to whole probabilities)
        assert f"alerts {len(ongoing)} ({crit} crit)" in text and "8h 100%" in text, text
        app.header.styles.width = 120
        await pilot.pause()
        want = f"({crit} crit, 1 clearing)"                      # (the short labels)
        assert f"alerts {len(ongoing)} {want}" in app.header.render().plain
        app.header.styles.width = 160
        await pilot.pause()
        assert f"alerts {len(ongoing)} ongoing ({crit} critical, 1 clearing)" in app.header.render().plain


async def test_header_says_when_the_asked_speed_is_not_reached():
    from tui.widgets.header_bar import PlayState

    app = fake_app(4, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.snapshot.metadata["tick_latency_ms"] = 110.0
        app.header.set_snapshot(app.snapshot)
        app.header.set_play(PlayState(speed=64.0))
        assert "▶ 64× (≈9× reached)" in app.header.render().plain
        app.header.set_play(PlayState(speed=4.0))
        assert "reached" not in app.header.render().plain
        # a fleet too big for 1×: 0.67 ticks a second is not "≈1× reached"
        app.snapshot.metadata["tick_latency_ms"] = 1500.0
        app.header.set_snapshot(app.snapshot)
        app.header.set_play(PlayState(speed=1.0))
        assert "▶ 1× (≈0.7× reached)" in app.header.render().plain
        app.snapshot.metadata["tick_latency_ms"] = 25_000.0
        app.header.set_snapshot(app.snapshot)
        assert "▶ 1× (<0.1× reached)" in app.header.render().plain       # not "≈0.0×"
        app.snapshot.metadata["tick_latency_ms"] = 110.0
        app.header.set_snapshot(app.snapshot)
        # thresholds changed with --thresholds are on the screen
        assert "thresholds" not in app.header.render().plain
        app.snapshot.metadata["thresholds_changed"] = "cpu=60:90"
        app.header.set_snapshot(app.snapshot)
        assert "thresholds cpu=60:90" in app.header.render().plain


def test_readme_names_every_key_of_the_registry():
    from pathlib import Path

    from tui.actions import ACTIONS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    screen = readme.split("## The screen", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{a.key_label}`" in screen for a in ACTIONS), \
        [a.key_label for a in ACTIONS if f"`{a.key_label}`" not in screen]


async def test_an_empty_fleet_is_not_shown_as_healthy():
    from dataclasses import replace

    from engine.snapshot import Environment

    app = fake_app(3, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        empty = replace(app.snapshot, servers=(), alerts=(),
                        environment=Environment(0.0, 0.0, 0, 0, 100.0))
        app.header.set_snapshot(empty)
        await pilot.pause()
        text = app.header.render().plain
        assert "no servers reporting yet" in text and "100.0%" not in text
        # a source that cannot be reached says it as a fleet does: counted and timed, not raw
        empty.metadata.update(last_problem="prometheus http://x: connection refused; next try at 04:01:20 UTC",
                              last_problem_at="2026-01-16T04:01:00Z")
        app.header.set_snapshot(empty)
        await pilot.pause()
        text = app.header.render().plain
        assert "no servers reporting yet   ⚠ 1 problem, newest 01-16 04:01 UTC: prometheus http://x" in text, text


async def test_health_is_never_shown_as_100_beside_a_high_risk_server():
    from dataclasses import replace

    from engine.snapshot import Environment
    from engine.summary import format_summary

    app = fake_app(3, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        # one high-risk server among 2,000: 99.95 %, which rounding showed as 100.0 and 100
        snap = replace(app.snapshot, environment=Environment(0.0, 0.5, 1, 2000, 100.0 * (1 - 1 / 2000)))
        app.header.set_snapshot(snap)
        await pilot.pause()
        text = app.header.render().plain
        assert "99.9%" in text and "100.0%" not in text, text
        assert "health 99.9 %, 1 high-risk" in format_summary(snap)      # (as the header: 97.9 read "97")
        assert snap.environment.to_json()["fleet_health"] == 99.9


async def test_a_paused_app_waiting_for_a_daemon_says_it_is_paused():
    """--connect: ']' or 'p' before the first snapshot paused the app, which then read no
    snapshot and looked stuck on "CONNECTING … connection refused" with nothing saying why."""
    from dataclasses import replace

    from engine.snapshot import Environment

    app = fake_app(3, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        waiting = replace(app.snapshot, servers=(), alerts=(), environment=Environment(0.0, 0.0, 0, 0, 100.0),
                          metadata={"model_type": "unknown", "model_reason": "waiting for http://x: refused"})
        app.header.set_snapshot(waiting)
        await pilot.pause()
        text = app.header.render().plain
        assert "CONNECTING" in text and "❚❚ paused" in text
        app.header.set_play(replace(app.header.play, paused=False))
        await pilot.pause()
        text = app.header.render().plain
        assert "waiting for the daemon's first snapshot" in text and "paused" not in text
        # a refusal: its reason on the second line, whole, not cut off after the badge's URL,
        # and no "no servers reporting yet" (the daemon had a fleet; the key was wrong)
        why = ("missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY' "
               "(the daemon refused the request: HTTP 401)")
        app.header.set_snapshot(replace(waiting, metadata={**waiting.metadata, "remote_error": why,
                                                           "remote_url": "http://127.0.0.1:8765"}))
        await pilot.pause()
        line1, line2 = app.header.render().plain.split("\n")
        assert "CONNECTING" in line1 and "http://127.0.0.1:8765" in line1 and "API key" not in line1
        assert line2 == f"{why} · retrying"
        assert "no servers reporting" not in line1 + line2
        # paused: said first, and the reason still after it (the pause took the whole line)
        app.header.set_play(replace(app.header.play, paused=True))
        await pilot.pause()
        line2 = app.header.render().plain.split("\n")[1]
        assert line2.startswith("❚❚ paused") and "missing or wrong API key" in line2, line2


def test_a_refusal_from_something_else_is_one_line():
    from engine.remote import _detail

    class Answer:
        headers = {"content-type": "text/html"}
        text = "<!DOCTYPE HTML>\n<html lang=\"en\">\n<body>404</body>"

        def json(self):
            raise ValueError

    assert _detail(Answer()) == "an HTML page: this URL is not a tft-top daemon"


async def test_the_alert_log_start_gives_way_to_whole_incident_probabilities():
    # at 100 columns " since 01-15 23:50" left "incident 30m 10…" of "100%" and no 8 h figure
    app = fake_app(4, paused=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot, app)
        # (two silent servers: the fake fleet's line is otherwise shorter than the demo's)
        app.snapshot.metadata.update(alerts_since="2026-01-15T23:50:00Z", stale_servers=2)
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1].rstrip()
        env = app.snapshot.environment
        from tui.format import fmt_prob

        assert line.endswith(f"8h {fmt_prob(env.incident_probability_8h)}"), line
    app = fake_app(4, paused=True)
    async with app.run_test(size=(160, 30)) as pilot:      # where it fits, it is said
        await ready(pilot, app)
        app.snapshot.metadata["alerts_since"] = "2026-01-15T23:50:00Z"
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        assert " since 01-15 23:50" in app.header.render().plain


async def test_header_on_120_columns_shows_a_dead_feed_as_stale_names_silent_servers_and_keeps_8h():
    app = fake_app(4)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        md = app.snapshot.metadata
        md.update(source_status="remote STALE: cannot connect to http://127.0.0.1:8765: connection refused",
                  stale_servers=2, stale_after_minutes=35.0,
                  stale_examples=[{"server": "batch-03", "last_seen": "2026-01-16T00:25:00Z"},
                                  {"server": "web-09", "last_seen": "2026-01-16T00:20:00Z"}])
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        lines = [s.text for s in app.header.render_lines(app.header.region.reset_offset)]
        assert "✖ STALE" in lines[0] and "▶" not in lines[0]
        assert "· 2 silent" in lines[1] and "silent: batch-03 since" in lines[1]
        # the figures come before the names, which are cut first (a long EC2 name, a restarted log)
        md["stale_examples"][0]["server"] = "ip-10-20-30-40.eu-west-1.compute.internal"
        md["alerts_since"] = "2026-01-15T21:50:00Z"
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1]
        assert "· 8h " in line, line
        # ... and the names are left out rather than cut to a letter or two when the first does not fit
        assert "silent: " not in line and not line.rstrip().endswith(("s", "si", "sil")), line
        # every server silent: said as such, not "no servers reporting yet"
        from dataclasses import replace

        from engine.snapshot import Environment

        app.header.set_snapshot(replace(app.snapshot, servers=(), alerts=(),
                                        environment=Environment(0.0, 0.0, 0, 0, 100.0)))
        await pilot.pause()
        lines = [s.text for s in app.header.render_lines(app.header.region.reset_offset)]
        assert "✖ STALE" in lines[0] and lines[1].strip().startswith("all 2 servers silent: "), lines
        # ... and nothing after it claims a healthy fleet of none (it read "fleet health 100.0%")
        assert "health" not in lines[1] and "incident" not in lines[1] and lines[1].count("silent") == 1, lines


def test_importance_names_stay_distinct_when_narrow():
    """At 80 columns memory_percent and memory_percent_level both read 'memory_percen'."""
    from tui.widgets.charts import short_name

    names = ["memory_percent", "memory_percent_level", "cpu_percent", "cpu_percent_level", "load_average",
             "load_average_level", "relative_time_idx", "encoder_length"]
    short = [short_name(n, 13) for n in names]
    assert len(set(short)) == len(names) and all(len(n) <= 13 for n in short)
    assert short_name("hour_sin", 13) == "hour_sin" and short_name("x" * 20, 10) == "x" * 9 + "…"


async def test_j_and_k_scroll_a_help_taller_than_the_terminal():
    # on 24 rows the help is cut; j did nothing there, and nothing said how to scroll
    from textual.containers import VerticalScroll

    app = fake_app(4, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        scroll = app.screen.query_one(VerticalScroll)
        assert scroll.max_scroll_y > 0 and scroll.scroll_y == 0
        assert "j / ↓, k / ↑, PgDn, PgUp scroll" in str(scroll.border_subtitle)
        await pilot.press("j", "j", "j")
        await pilot.pause()
        assert scroll.scroll_y == 3
        await pilot.press("k")
        await pilot.pause()
        assert scroll.scroll_y == 2 and isinstance(app.screen, HelpScreen)


async def test_the_help_shows_in_its_footer_only_the_keys_that_work_under_it():
    # (the help is modal: p, s, + listed in the footer did nothing while it was open)
    app = fake_app(4)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        assert app.check_action("toggle_pause", ()) is True
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen is not app.main, what="help")
        for action in ("toggle_pause", "cycle_sort", "speed_up", "step_back", "filter"):
            assert app.check_action(action, ()) is False, action
        assert app.check_action("quit", ()) is not False and app.check_action("back", ()) is not False
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main, what="help closed")
        assert app.check_action("toggle_pause", ()) is True


async def test_long_server_names_are_told_apart_in_the_table_and_the_log():
    app = fake_app(3)
    async with app.run_test(size=(150, 40)) as pilot:
        await ready(pilot, app)
        snap = app.snapshot
        from dataclasses import replace as dc_replace

        names = [f"frontend-prod-eu-west-1{c}.example.com:9100" for c in "abc"]
        servers = tuple(dc_replace(s, server_name=n) for s, n in zip(snap.servers, names))
        app._apply_main(dc_replace(snap, servers=servers))      # noqa: SLF001
        await pilot.pause()
        from textual.widgets.data_table import ColumnKey

        assert app.table.columns[ColumnKey("server")].width == len(names[0])
        shown = {str(app.table.get_cell(n, "server")) for n in names}
        assert shown == set(names)


def test_a_value_just_under_critical_never_reads_as_critical():
    from tui.format import fmt_value

    # (94.96 showed as "95.0", the critical level, in a row with no breach and no red)
    assert fmt_value("cpu_percent", 94.96, 95.0) == "94.9"
    assert fmt_value("cpu_percent", 95.0, 95.0) == "95.0" and fmt_value("cpu_percent", 94.96) == "95.0"
    assert fmt_value("load_average", 7.999, 8.0) == "7.99" and fmt_value("cpu_percent", 12.34, 95.0) == "12.3"


async def test_a_long_alert_message_wraps_in_the_log_instead_of_running_off_its_edge():
    # at 110 columns a sticky load alert showed "critical until it resolves: load_average may"
    from dataclasses import replace

    from textual.app import App

    from engine.snapshot import Alert
    from tui.widgets.alert_log import AlertLog

    long = Alert(id=2, severity="critical", server_name="web-46", metric="load_average",
                 message="critical until it resolves: load_average may reach 8 in 5 min (p90)",
                 opened_at="2024-03-01T12:00:00Z", updated_at="2024-03-01T12:10:00Z",
                 predicted_crossing="2024-03-01T12:15:00Z", lead_minutes=5.0, state="ongoing")
    short = replace(long, id=1, server_name="web-33", metric="cpu_percent",
                    message="cpu_percent at 98.9, at or above critical 95")

    class Host(App):
        def compose(self):
            yield AlertLog()

    for width, tall in ((160, 1), (125, 2)):
        app = Host()
        async with app.run_test(size=(width, 20)) as pilot:
            log = app.query_one(AlertLog)
            log.apply([long, short])
            await pilot.pause()
            assert log.rows[next(iter(log.rows))].height == tall
            text = "\n".join("".join(seg.text for seg in log.render_line(y)) for y in range(1, 1 + tall + 1))
            words = " ".join(text.split())
            # every word of the message is on screen; the metric's name, in its own column, is not repeated
            assert "critical until it resolves: may reach 8 in 5 min (p90)" in words, text
            assert "at 98.9, at or above critical 95" in words
            assert log.size.width == width

    # narrower: the log gives up the long state, then the opening time, before the message;
    # every row stays one or two lines and the message is on screen (at 100 columns it kept 9
    # cells of a 20-wide column, at 80 none, and blank second lines pushed alerts out)
    for width, gone in ((100, {"state"}), (80, {"state", "opened"})):
        app = Host()
        async with app.run_test(size=(width, 20)) as pilot:
            log = app.query_one(AlertLog)
            log.apply([long, short])
            await pilot.pause()
            keys = {k.value for k in log.columns}
            assert not keys & gone and {"state_short", "message"} <= keys, keys
            text = "\n".join("".join(seg.text for seg in log.render_line(y)) for y in range(1, 6))
            assert max(len(line) for line in text.splitlines()) <= width
            words = " ".join(text.split())
            assert "web-33" in words and "web-46" in words and "at 98.9, at or above critical 95" in words, text


def test_fleet_layout_leaves_out_whole_columns_never_half_of_one():
    from tui.widgets.fleet_table import COLUMN_KEYS, fleet_layout

    def used(layout):
        return sum(width + 2 for _, _, width in layout)

    for room in range(40, 200):
        layout = fleet_layout(room)
        keys = [k for k, _, _ in layout]
        assert keys == list(COLUMN_KEYS[:len(keys)])          # a run from the left, in order
        assert used(layout) <= room, room
    # 80 columns less the scrollbar: the compact columns show all four metrics
    assert [k for k, _, _ in fleet_layout(78)][-4:] == ["cpu_percent", "memory_percent", "disk_percent", "load_average"]
    assert dict((k, lab) for k, lab, _ in fleet_layout(78))["risk_8h"] == "8h"
    # where the full ones show them, they are kept; wide, everything
    assert dict((k, lab) for k, lab, _ in fleet_layout(98))["risk_8h"] == "risk 8h"
    assert [k for k, _, _ in fleet_layout(200)] == list(COLUMN_KEYS)
    # a long server name takes room from the right-hand columns first
    assert len(fleet_layout(120, server_width=44)) < len(fleet_layout(120))


async def test_no_fleet_table_cell_is_cut_on_an_80_column_terminal():
    from rich.cells import cell_len

    for width in (80, 100, 130, 160):
        app = fake_app(12, paused=True)       # (an app runs once)
        async with app.run_test(size=(width, 24)) as pilot:
            await ready(pilot, app)
            table = app.table
            room = table.content_region.width - table.styles.scrollbar_size_vertical
            columns = list(table.columns.values())
            assert sum(c.get_render_width(table) for c in columns) <= room, width
            keys = [c.key.value for c in columns]
            assert "load_average" in keys, width
            for row in table.ordered_rows:
                for column, cell in zip(columns, table.get_row(row.key)):
                    assert cell_len(str(cell)) <= column.width, (width, column.key.value, str(cell))


async def test_the_filter_box_leaves_the_table_its_width():
    # (the box's side margins narrowed the table to 78 cells: load left the 80-column table)
    app = fake_app(12, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("slash", "w")
        await pilot.pause()
        assert app.table.region.width == 80 and "load_average" in app.table.shown_keys


async def test_the_table_keeps_the_selected_server_when_its_columns_change():
    app = fake_app(12, paused=True)
    async with app.run_test(size=(160, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("j", "j", "j")
        chosen = app.table.selected_name
        n = len(app.table.columns)
        await pilot.resize_terminal(80, 30)
        await wait_for(pilot, lambda: len(app.table.columns) < n, what="narrower columns")
        assert app.table.selected_name == chosen and app.table.row_count == 12
        await pilot.resize_terminal(160, 30)
        await wait_for(pilot, lambda: len(app.table.columns) == n, what="all columns again")
        assert app.table.selected_name == chosen


async def test_header_keeps_both_incident_probabilities_whole_on_80_columns():
    from tui.format import fmt_prob

    app = fake_app(12, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        from dataclasses import replace

        # the demo fleet's figures at its start: "… · 8h 10…" on 80 columns
        env = replace(app.snapshot.environment, incident_probability_30m=1.0, total_servers=48, fleet_health=95.8)
        app.header.set_snapshot(replace(app.snapshot, environment=env))
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1]
        assert f"8h {fmt_prob(env.incident_probability_8h)}" in line and "…" not in line, line
        # an alert whose condition has cleared: its count gives way before the probabilities
        ongoing = [a for a in app.snapshot.alerts if a.state == "ongoing"]
        cleared = replace(ongoing[0], clear_minutes=20.0)
        alerts = (cleared, *[a for a in app.snapshot.alerts if a.id != cleared.id])
        app.header.set_snapshot(replace(app.snapshot, environment=env, alerts=alerts))
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1]
        assert f"8h {fmt_prob(env.incident_probability_8h)}" in line and "…" not in line, line
        # a 300-server fleet with 10 alerts, 8 critical: "… alerts 10 (8 crit)  incident 30m 100% · 8h 10…"
        env = replace(env, incident_probability_8h=1.0, total_servers=300, high_risk_servers=8, fleet_health=97.3)
        many = tuple(replace(ongoing[0], id=100 + k, severity="critical" if k < 8 else "warning",
                             server_name=f"srv-{k:03d}") for k in range(10))
        app.header.set_snapshot(replace(app.snapshot, environment=env, alerts=many))
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1]
        assert "8h 100%" in line and "…" not in line and "alerts 10" in line, line
    app = fake_app(12, paused=True)
    async with app.run_test(size=(160, 24)) as pilot:       # where it fits, it is said
        await ready(pilot, app)
        ongoing = [a for a in app.snapshot.alerts if a.state == "ongoing"]
        cleared = replace(ongoing[0], clear_minutes=20.0)
        alerts = (cleared, *[a for a in app.snapshot.alerts if a.id != cleared.id])
        app.header.set_snapshot(replace(app.snapshot, environment=env, alerts=alerts))
        await pilot.pause()
        assert "1 clearing" in [s.text for s in app.header.render_lines(app.header.region.reset_offset)][1]


async def test_g_brings_the_cursor_back_to_the_top_and_keeps_it_there():
    app = fake_app(30, paused=True)
    async with app.run_test(size=(120, 20)) as pilot:
        await ready(pilot, app)
        for _ in range(25):
            await pilot.press("j")
        table = app.table
        assert table.cursor_row == 25 and table.user_moved and table.scroll_y > 0
        await pilot.press("g")
        await pilot.pause()
        assert table.cursor_row == 0 and not table.user_moved and table.scroll_y == 0
        # kept on the top row through a re-sort: another server put first is selected
        from dataclasses import replace

        snap = app.snapshot
        last = snap.servers[-1]
        top = replace(last, risk_8h=1.0, risk_30m=1.0)
        app._apply_main(replace(snap, servers=(*snap.servers[:-1], top)))      # noqa: SLF001
        await pilot.pause()
        assert table.selected_name == top.server_name and table.cursor_row == 0
        # the drill-down has no table to go to the top of
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not app.main, what="drill-down")
        assert app.check_action("top", ()) is False


def test_y_ticks_label_the_threshold_rows_one_label_a_row():
    """Rows as plotext itself assigns them (its get_matrix_data): with Python's rounding a
    filler tick took the critical line's row on a 4-core load chart 0..14.37 over 18 rows,
    and the critical line read 7.19."""
    from plotext._utility import get_matrix_data

    from tui.widgets.charts import y_ticks

    cases = [(0.0, 100.0, 80.0, 95.0), (0.0, 10.0, 4.0, 8.0), (0.0, 50.0, 16.0, 32.0), (0.0, 14.37, 4.0, 8.0)]
    cases += [(0.0, 2.0 * c * f, 1.0 * c, 2.0 * c) for c in range(1, 33) for f in (1.0, 1.07, 1.3, 1.8, 2.5)]
    for rows in (2, 4, 7, 12, 18, 30, 39):
        for lo, top, warn, crit in cases:
            ticks = y_ticks(lo, top, warn, crit, rows)
            assert ticks == sorted(ticks) and all(lo <= t <= top for t in ticks)
            bins = max(rows, 2)
            row = get_matrix_data(ticks, [lo, top], bins)
            assert len(set(row)) == len(row), (rows, top, ticks)     # never two labels on one row
            assert crit in ticks                                      # the critical level always
            crit_row, warn_row = get_matrix_data([crit, warn], [lo, top], bins)
            assert (warn in ticks) == (warn_row != crit_row)          # the warning wherever it has a row


async def test_drill_down_charts_keep_the_plot_clear_and_their_titles_whole():
    from rich.text import Text as RichText
    from tui.format import fmt_value
    from tui.widgets.charts import MetricChart

    for size in ((80, 24), (100, 30), (120, 40)):
        app = fake_app(12, paused=True)
        async with app.run_test(size=size) as pilot:
            await ready(pilot, app)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is not app.main, what="drill-down")
            await pilot.pause()
            title = str(app.screen.query_one("#server-title").render())
            for chart in app.screen.query(MetricChart):
                room = chart.size.width - 4
                assert len(chart.border_title) <= room and not chart.border_title.endswith("…"), (size, chart.border_title)
                # a short form keeps its arrow or its words: never two bare numbers side by side
                assert "p90" not in chart.border_title or "→" in chart.border_title or "·" in chart.border_title
                sub = chart._border_subtitle.plain      # noqa: SLF001
                assert len(sub) <= room and sub.startswith("crit "), (size, sub)
                assert "warn " in sub, (size, sub)      # (at 80x24 only crit was given: review 2026-11-29)
                plot = RichText.from_ansi(chart.plt.build()).plain
                # no legend drawn over the plot (it hid the top left of the history)
                assert "p10–p90" not in plot and "last 24 h" not in plot, plot
                # the critical level is labelled on the row its line is drawn on
                fc = app.snapshot.server(app.screen.server_name).metrics[chart.metric]
                label = fmt_value(chart.metric, fc.critical)
                rows = [line for line in plot.splitlines() if line.strip().startswith(label + "├")]
                if chart.content_size.height - 3 >= chart.LEVEL_ROWS:
                    assert rows and "──" in rows[0], (size, chart.metric, plot)
                else:       # too few rows to tell a level from the curve (80x24): not drawn, not labelled
                    assert not rows and "──" not in "".join(plot.splitlines()[1:-2]), (size, chart.metric, plot)
                    assert size == (80, 24)
            if size[0] >= 120:
                assert "key: 24 h · p50 · p10–p90 · warn · crit" in title
            # the side panel's titles: whole words that fit ("TFT variable importan…" at 80)
            bars, log = app.screen.query_one("#importance"), app.screen.query_one("#server-alerts")
            assert len(bars.border_title) <= bars.size.width - 2 and bars.border_title.endswith("importance")
            assert len(log.border_title) <= log.size.width - 4 and "ongoing" in log.border_title


async def test_header_first_line_ends_on_a_whole_item():
    # at 80 columns, paused, it ended "sort: r…"
    app = fake_app(12, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][0].rstrip()
        # the paused speed gives way first: the sort stays in sight (`s` seemed to do nothing)
        assert "…" not in line and "❚❚ paused" in line and "sort: risk" in line and "on resume" not in line, line
    app = fake_app(12, paused=True)
    async with app.run_test(size=(160, 24)) as pilot:       # where it fits, all of it
        await ready(pilot, app)
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][0]
        assert "sort: risk" in line and "tick " in line


async def test_the_footer_shows_every_key_whole_on_80_columns():
    from textual.widgets._footer import FooterKey

    from tui.widgets.footer import KeyFooter

    app = fake_app(12, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        for screen_name in ("fleet", "drill-down"):
            if screen_name == "drill-down":
                await pilot.press("enter")
                await wait_for(pilot, lambda: app.screen is not app.main, what="drill-down")
            await pilot.pause()
            footer = app.screen.query_one(KeyFooter)
            keys = [k for k in footer.query(FooterKey) if k.display]
            assert keys and all(k.region.right <= 80 and k.region.width > 0 for k in keys), \
                [(k.key_display, k.description, k.region) for k in keys]
            assert any(k.description == "Tick+" for k in keys)


async def test_header_says_a_connected_daemons_replay_has_finished():
    # (--connect: the header read "▶ live" over the daemon's frozen last frame)
    app = fake_app(4, live=True, paced=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot, app)
        app.snapshot.metadata.update(daemon_finished=True, finished=False,
                                     source_status="remote http://127.0.0.1:8765: replay finished")
        app.header.set_snapshot(app.snapshot)
        await pilot.pause()
        line = [s.text for s in app.header.render_lines(app.header.region.reset_offset)][0]
        assert "■ daemon's replay finished" in line and "▶" not in line, line


async def test_drill_down_titles_follow_a_resize_and_the_key_is_whole_or_absent():
    from tui.widgets.charts import ImportanceBars

    app = fake_app(12, paused=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not app.main, what="drill-down")
        await pilot.pause()
        bars = app.screen.query_one(ImportanceBars)
        assert bars.border_title == "TFT variable importance"
        await pilot.resize_terminal(80, 24)
        # paused: no snapshot comes to redraw it (it stayed "TFT variable importan…")
        await wait_for(pilot, lambda: bars.border_title == "TFT importance", what="short title")
        title = str(app.screen.query_one("#server-title").render())
        assert "key:" not in title and "p10–p90" not in title          # no key cut partway
        await pilot.resize_terminal(160, 40)
        await wait_for(pilot, lambda: bars.border_title == "TFT variable importance", what="long title")
        await wait_for(pilot, lambda: "key: 24 h · p50 · p10–p90 · warn · crit"
                       in str(app.screen.query_one("#server-title").render()), what="the key back")


def test_the_problem_count_of_an_older_daemon_is_read_under_its_old_name():
    from tui.widgets.header_bar import _problem

    md = {"refused_records": 57, "last_problem": "x", "last_problem_at": "2026-11-29T10:00:00Z"}
    assert "57 problems" in _problem(md).plain
    assert "3 problems" in _problem({**md, "problems_total": 3}).plain


def test_left_out_columns_stay_within_reach_with_the_arrow_keys():
    from tui.widgets.fleet_table import COLUMN_KEYS, fleet_layout

    # (leaving whole columns out at 80 columns made the peak, sparkline and profile unreachable)
    first = fleet_layout(78)
    assert first[0][1] == "server  → more"
    seen = set()
    for skip in range(len(COLUMN_KEYS)):
        layout = fleet_layout(78, skip=skip)
        keys = [k for k, _, _ in layout]
        assert keys[:2] == ["server", "src"] and sum(w + 2 for _, _, w in layout) <= 78
        seen.update(keys)
    assert seen == set(COLUMN_KEYS)
    assert fleet_layout(78, skip=len(COLUMN_KEYS))[0][1] == "server  ← more"
    assert fleet_layout(300)[0][1] == "server"               # nothing left out: no arrows


async def test_arrow_keys_move_the_fleet_tables_columns_on_a_narrow_terminal():
    app = fake_app(12, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("j", "j")
        chosen = app.table.selected_name
        for _ in range(12):
            await pilot.press("right")
        await pilot.pause()
        assert "profile" in app.table.shown_keys and "risk_8h" not in app.table.shown_keys
        assert app.table.selected_name == chosen
        for _ in range(12):
            await pilot.press("left")
        await pilot.pause()
        assert "risk_8h" in app.table.shown_keys and app.table.skip == 0
    app = fake_app(12, paused=True)
    async with app.run_test(size=(200, 24)) as pilot:      # every column shown: nothing to move
        await ready(pilot, app)
        await pilot.press("right")
        await pilot.pause()
        assert app.table.skip == 0 and app.table.shown_keys[-1] == "profile"


async def test_keys_the_filter_box_types_leave_the_footer_while_it_has_the_focus():
    # (the footer offered "+ Faster" while "+" went into the box as text)
    app = fake_app(12, paused=True)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("slash", "w")
        await pilot.pause()
        assert app.check_action("speed_up", ()) is False and app.check_action("cycle_sort", ()) is False
        assert app.check_action("back", ()) is True               # Esc still clears it
        await pilot.press("enter")
        await pilot.pause()
        assert app.check_action("speed_up", ()) is True


async def test_a_wider_terminal_brings_back_the_columns_moved_out():
    app = fake_app(12, paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("right")
        await pilot.pause()
        # one step right brings a new column in (at 80 the first step only dropped "8h")
        assert app.table.skip > 0 and app.table.shown_keys[-1] != "load_average"
        for _ in range(10):
            await pilot.press("right")                       # to the last column
        await pilot.pause()
        assert app.table.shown_keys[-1] == "profile" and "risk_30m" not in app.table.shown_keys
        await pilot.resize_terminal(130, 24)
        # the fewest moved out that still reach as far right: at 130 only "risk 8h" stays out
        await wait_for(pilot, lambda: "risk_30m" in app.table.shown_keys, what="the risks back")
        assert app.table.skip == 1 and app.table.shown_keys[-1] == "profile"
        await pilot.resize_terminal(160, 24)
        await wait_for(pilot, lambda: app.table.skip == 0 and "risk_8h" in app.table.shown_keys, what="all")


async def test_tab_selects_the_alert_log_to_reach_every_alert_and_open_its_server():
    """More alerts than the log shows were reachable by the mouse wheel only: Tab selects the
    log, j / ↓ move through it (scrolling), Enter opens the alert's server, Esc goes back."""
    import dataclasses

    from tui.widgets.alert_log import AlertLog

    app = fake_app(200, paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        log = app.query_one("#alerts", AlertLog)
        await until(pilot, lambda: "more below" in str(log.border_title))     # it says alerts are out of sight
        assert log.selected_alert is None
        await pilot.press("tab")
        await until(pilot, lambda: app.focused is log)
        assert "Enter" in str(log.border_title)
        for _ in range(9):
            await pilot.press("j")
        await until(pilot, lambda: log.cursor_row == 9)
        assert log.scroll_y > 0                       # the log scrolled to keep its cursor in sight
        chosen = log.selected_alert
        assert chosen is not None and chosen.id == [a for a in log._alerts][9].id
        # a new alert rebuilds the log: the cursor stays on the alert it was on
        newer = dataclasses.replace(chosen, id=999, server_name="web-0001")
        log.apply((newer,) + tuple(app.snapshot.alerts))
        assert log.selected_alert.id == chosen.id and log.cursor_row == 10
        # ... and through a new column layout (a longer server name widens its column)
        longer = dataclasses.replace(chosen, id=998, server_name="a-much-longer-host-name.example.com")
        log.apply((longer, newer) + tuple(app.snapshot.alerts))
        assert log.selected_alert.id == chosen.id and log.cursor_row == 11
        # its alert gone from the log: the cursor keeps its place, not the top
        log.apply((longer, newer) + tuple(a for a in app.snapshot.alerts if a.id != chosen.id))
        assert log.cursor_row == 11 and log.selected_alert.id != chosen.id
        log.apply((newer,) + tuple(app.snapshot.alerts))
        log.move_cursor(row=10, animate=False)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ServerScreen))
        assert app.screen.server_name == chosen.server_name
        assert app.table.selected_name == chosen.server_name      # j / k go on from it
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main and app.focused is log)
        await pilot.press("escape")
        await until(pilot, lambda: app.focused is app.table)
        assert log.selected_alert is None and "Enter" not in str(log.border_title)
        # left, the log shows its top again: the newest ongoing alerts (it stayed scrolled down)
        await until(pilot, lambda: log.scroll_y == 0)
        await pilot.press("tab", "tab")
        await until(pilot, lambda: app.focused is app.table)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("tab")                      # the help keeps its own Tab
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)


async def test_the_drill_downs_alert_panel_says_clearing_and_keeps_messages_whole_where_it_has_room():
    """The side panel has no lead column: a clearing alert read 'at 98.4, at or above critical 95'
    beside a chart now at 28; and its 3-line cap cut '…above critical' with rows free below."""
    from textual.app import App

    from engine.snapshot import Alert
    from tui.widgets.alert_log import AlertLog

    base = dict(severity="critical", server_name="web-20", metric="cpu_percent",
                message="cpu_percent at 98.66, at or above critical 95", opened_at="2024-03-01T12:00:00Z",
                updated_at="2024-03-01T12:25:00Z", predicted_crossing=None, lead_minutes=0.0, state="ongoing")
    clearing = Alert(id=2, **base, duration_minutes=25.0, clear_minutes=15.0)
    holding = Alert(id=1, **{**base, "server_name": "web-20"}, duration_minutes=75.0)

    class Host(App):
        CSS = "AlertLog { height: 1fr; max-height: 100; }"      # (as the drill-down's panel)

        def compose(self):
            yield AlertLog(with_server=False, compact=True, cap=30)

    for width, height in ((30, 12), (30, 5), (60, 12)):
        app = Host()
        async with app.run_test(size=(width, height)) as pilot:
            log = app.query_one(AlertLog)
            log.apply([clearing, holding])
            await pilot.pause()
            text = "\n".join("".join(seg.text for seg in log.render_line(y)) for y in range(0, height))
            words = " ".join(text.split())
            assert "clear 15m:" in words, text
            if height == 12:        # room for both whole: nothing cut
                assert words.count("critical 95") == 2, text
            else:                   # too short: rows are capped so that both stay in view
                assert all(row.height <= 3 for row in log.rows.values())
                # and a message cut by its cap says so (its last words, "critical 95", went
                # without a sign: review 2026-11-29)
                assert "…" in text and words.count("critical 95") < 2, text


async def test_long_host_names_leave_the_alert_log_its_message_on_80_columns():
    # 37-character host:port names took the log's room: the message column was 1 cell wide
    from textual.app import App

    from engine.snapshot import Alert
    from tui.widgets.alert_log import AlertLog, short_names

    names = ["newcomer-web-1a.prod.example.com:9100", "newcomer-web-1b.prod.example.com:9100"]
    alerts = [Alert(id=i + 1, severity="critical", server_name=n, metric="cpu_percent",
                    message="cpu_percent at 98.66, at or above critical 95", opened_at="2024-03-01T12:00:00Z",
                    updated_at="2024-03-01T12:25:00Z", predicted_crossing=None, lead_minutes=0.0, state="ongoing")
              for i, n in enumerate(names)]

    class Host(App):
        def compose(self):
            yield AlertLog()

    app = Host()
    async with app.run_test(size=(80, 20)) as pilot:
        log = app.query_one(AlertLog)
        log.apply(alerts)
        await pilot.pause()
        text = "\n".join("".join(seg.text for seg in log.render_line(y)) for y in range(0, 8))
        words = " ".join(text.split())
        assert "at 98.66, at or above critical 95" in words, text
        assert "newcomer-web-1a…" in words and "newcomer-web-1b…" in words, text     # still told apart
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    # names that differ only at the end keep their end
    assert set(short_names(["node.prod.example.com:9100", "node.prod.example.com:9101"], 16).values()) == \
        {"node.pro…om:9100", "node.pro…om:9101"}


async def test_a_120_column_table_shows_the_sparkline_at_half_width_exactly():
    # at 120 columns the sparkline was left out beside 16 blank columns
    import numpy as np

    from tui.format import Spark, halve_spark, sparkline_spec
    from tui.widgets.fleet_table import COLUMN_KEYS, SPARK_NARROW_LABEL, SPARK_WIDTH, fleet_layout, row_spec

    assert fleet_layout(118)[-1] == ("spark", SPARK_NARROW_LABEL, SPARK_WIDTH // 2 + 5)
    assert fleet_layout(130)[-1][2] == SPARK_WIDTH + 5 and fleet_layout(98)[-1][0] != "spark"
    rng = np.random.default_rng(3)
    for _ in range(50):        # half the cells, each the max of its slice: as drawn at that width
        v = rng.uniform(0, 110, 96)
        full = Spark("cpu  ", *sparkline_spec(v, 0, 100, SPARK_WIDTH, 80, 95))
        assert halve_spark(full) == Spark("cpu  ", *sparkline_spec(v, 0, 100, SPARK_WIDTH // 2, 80, 95))
    app = fake_app(12, paused=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot, app)
        table = app.table
        assert table.shown_keys[-1] == "spark"
        name = table.selected_name
        spark = row_spec(app.snapshot.server(name), table.data_epoch)[COLUMN_KEYS.index("spark")]
        half = halve_spark(spark)
        assert table.get_cell(name, "spark").plain == half.prefix + half.chars
        assert len(half.chars) == SPARK_WIDTH // 2


async def test_header_leaves_out_a_healthy_source_status_it_cannot_show_whole_and_keeps_a_mixed_reason():
    # at 120 columns --local read "tick 513 ms  l…"; at 80 "MIXED (2 servers on heuris…)"
    app = fake_app(10, model_type="mixed", paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        md = app.snapshot.metadata
        md["heuristic_why"] = "short history"
        md["source_status"] = "local this-host.example.com ok, every 300 s"
        app.header.set_snapshot(app.snapshot)
        line1 = app.header.render().plain.splitlines()[0]
        assert "short history)" in line1, line1
        assert "this-host" not in line1 and not line1.rstrip().endswith("…"), line1
        md["source_status"] = "local STALE: no sample for 12 min"
        app.header.set_snapshot(app.snapshot)
        assert "STALE" in app.header.render().plain.splitlines()[0]      # a stale one stays, cut if need be


async def test_opening_an_alerts_server_that_the_filter_hides_clears_the_filter():
    # j / k in the drill-down went on from the filtered table's cursor, not from the server opened
    from tui.widgets.alert_log import AlertLog

    app = fake_app(200, paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        log = app.query_one("#alerts", AlertLog)
        hidden = next(a for a in log._alerts if not a.server_name.startswith("web"))
        await pilot.press("slash", "w", "e", "b", "enter")
        await until(pilot, lambda: app.table.filter_text == "web" and app.focused is app.table)
        assert hidden.server_name not in app.table.specs
        await pilot.press("tab")
        await until(pilot, lambda: app.focused is log)
        log.move_cursor(row=log.get_row_index(str(hidden.id)), animate=False)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ServerScreen))
        assert app.table.filter_text == "" and app.table.selected_name == hidden.server_name
