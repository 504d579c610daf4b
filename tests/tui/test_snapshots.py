"""Screenshots of the dashboard with fixed data (review the SVGs before ``--snapshot-update``)."""

from __future__ import annotations

from tui_support import sample_events

from xray_trio.tui.app import InspectApp
from xray_trio.tui.inprocess import LOCAL_ONLY_NOTICE, LogBuffer
from xray_trio.tui.source import ReplaySource
from xray_trio.tui.widgets import SegmentTable

SIZE = (120, 36)


def make_app() -> InspectApp:
    source = ReplaySource(
        sample_events(),
        title="daemon on udp 127.0.0.1:2000",
        notice=LOCAL_ONLY_NOTICE,
        detail="udp 127.0.0.1:2000",
    )
    # Drawn only when run_before says so; the log panel is shown, empty.
    return InspectApp(source, log_buffer=LogBuffer(), refresh_s=3600)


async def draw(pilot) -> None:
    await pilot.pause()
    pilot.app.refresh_view(force=True)
    await pilot.pause()


async def open_row(pilot, name: str) -> None:
    await draw(pilot)
    table = pilot.app.query_one(SegmentTable)
    rows = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
    table.move_cursor(row=rows.index(name))
    await pilot.press("enter")
    await pilot.pause()


def test_main_screen(snap_compare):
    assert snap_compare(make_app(), run_before=draw, terminal_size=SIZE)


def test_filtered_and_grouped(snap_compare):
    async def run_before(pilot) -> None:
        await draw(pilot)
        await pilot.press("slash")
        pilot.app.query_one("#filter").cursor_blink = False
        await pilot.press(*"customer", "enter", "g", "p")
        await pilot.pause()

    assert snap_compare(make_app(), run_before=run_before, terminal_size=SIZE)


def test_detail_with_trace(snap_compare):
    async def run_before(pilot) -> None:
        await open_row(pilot, "db-query")

    assert snap_compare(make_app(), run_before=run_before, terminal_size=SIZE)


def test_detail_with_findings(snap_compare):
    async def run_before(pilot) -> None:
        await open_row(pilot, "node-rich")

    assert snap_compare(make_app(), run_before=run_before, terminal_size=SIZE)


def test_help(snap_compare):
    async def run_before(pilot) -> None:
        await draw(pilot)
        await pilot.press("question_mark")

    assert snap_compare(make_app(), run_before=run_before, terminal_size=SIZE)
