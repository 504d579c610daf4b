"""The dashboard driven by a ReplaySource through Textual's Pilot."""

from __future__ import annotations

import pytest
from tui_support import TRACE_B, document, sample_events, sample_segments, seen

from xray_trio.events import Lost
from xray_trio.tui.app import InspectApp
from xray_trio.tui.inprocess import LogBuffer
from xray_trio.tui.messages import Link
from xray_trio.tui.screens import DetailScreen, HelpScreen
from xray_trio.tui.source import ReplaySource
from xray_trio.tui.widgets import PipelinePanel, RejectedTable, SegmentTable

SIZE = (140, 40)


def names(app: InspectApp) -> list[str]:
    table = app.query_one(SegmentTable)
    return [str(table.get_row_at(i)[2]) for i in range(table.row_count)]


async def started(pilot) -> None:
    """Let the source worker run, then draw at once instead of waiting for the timer."""
    await pilot.pause()
    pilot.app.refresh_view(force=True)
    await pilot.pause()


@pytest.mark.asyncio
async def test_panels_show_the_session():
    app = InspectApp(ReplaySource(sample_events(), title="replay"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert names(app) == [
            "?",
            "node-in-progress",
            "node-rich",
            "orders-api",
            "db-query",
            "checkout",
        ]
        errors = str(app.query_one("#errors-text").content).splitlines()
        assert errors[0] == "✗ timeout · 12 docs · given up"
        assert errors[2] == "↻ http_5xx 503 · 50 docs"
        assert errors[3] == "  ServiceUnavailable: try again"
        rejected = app.query_one(RejectedTable)
        assert [str(rejected.get_row_at(i)[0]) for i in range(2)] == [
            "missing_header",
            "invalid_header",
        ]
        assert str(rejected.get_row_at(0)[1]) == "\\x00\\x01binary junk"
        assert "1200/s" in str(app.query_one("#rate-received").content)
        assert "1150/s" in str(app.query_one("#rate-sent").content)
        pipeline = str(app.query_one(PipelinePanel).content)
        assert "31%" in pipeline  # 5 MB of 16 MB
        assert "37 docs · 2 batches" in pipeline
        assert app.link is Link.RUNNING


@pytest.mark.asyncio
async def test_updates_are_coalesced_onto_the_timer():
    app = InspectApp(ReplaySource(), refresh_s=60)  # the timer never fires in this test
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        for doc in sample_segments():
            app.push(doc)
        await pilot.pause()
        assert app.query_one(SegmentTable).row_count == 0  # nothing drawn per event
        app.refresh_view()
        await pilot.pause()
        assert app.query_one(SegmentTable).row_count == 6


@pytest.mark.asyncio
async def test_filter_by_name_trace_and_annotation():
    app = InspectApp(ReplaySource(sample_events()))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter")
        await pilot.press(*"orders")
        assert names(app) == ["orders-api"]
        await pilot.press("enter")
        assert app.focused is app.query_one(SegmentTable)
        app.query_one("#filter").value = TRACE_B[:10]
        await pilot.pause()
        assert names(app) == ["orders-api"]
        app.query_one("#filter").value = "c-101"
        await pilot.pause()
        assert names(app) == ["checkout"]
        await pilot.press("escape")
        assert len(names(app)) == 6
        assert app.needle == ""


@pytest.mark.asyncio
async def test_pause_freezes_the_tables_but_keeps_counting():
    app = InspectApp(ReplaySource(sample_events()), refresh_s=60)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("p")
        assert app.paused
        app.push(seen(document("late-arrival"), 5))
        app.push(Lost(total=4))
        app.refresh_view()
        await pilot.pause()
        assert "late-arrival" not in names(app)
        assert app.board.segments_seen == 7
        assert "missed 4 events" in str(app.query_one(PipelinePanel).content)
        assert "paused" in str(app.query_one("#status").content)
        await pilot.press("p")
        assert names(app)[0] == "late-arrival"


@pytest.mark.asyncio
async def test_detail_view_shows_document_findings_and_trace():
    app = InspectApp(ReplaySource(sample_events()))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        table = app.query_one(SegmentTable)
        table.move_cursor(row=names(app).index("db-query"))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert screen.row.seen.name == "db-query"
        assert [row.seen.name for row in screen.trace] == ["checkout", "db-query"]
        assert "X-Ray would accept" in str(screen.query_one("#detail-findings").content)
        assert screen.query_one("#detail-trace")
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)
        table.move_cursor(row=names(app).index("node-rich"))
        await pilot.press("enter")
        findings = str(app.screen.query_one("#detail-findings").content)
        assert "bad-key!" in findings
        await pilot.press("q")  # q on the detail screen goes back, it does not quit
        assert not app.quitting


@pytest.mark.asyncio
async def test_group_by_trace_and_cursor_follows_the_document():
    app = InspectApp(ReplaySource(sample_events()))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        table = app.query_one(SegmentTable)
        table.move_cursor(row=names(app).index("orders-api"))
        await pilot.press("g")
        assert app.grouped
        assert names(app)[-2:] == ["checkout", "└ db-query"]
        assert table.selected().seen.name == "orders-api"


@pytest.mark.asyncio
async def test_help_screen_lists_the_keys():
    app = InspectApp(ReplaySource(sample_events()))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").content)
        for key in ("/", "pause", "enter", "quit"):
            assert key in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.asyncio
async def test_log_panel_toggles():
    app = InspectApp(ReplaySource(), log_buffer=LogBuffer())
    async with app.run_test(size=SIZE) as pilot:
        box = app.query_one("#log-box")
        assert box.display
        await pilot.press("l")
        assert not box.display
        await pilot.press("l")
        assert box.display


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
@pytest.mark.asyncio
async def test_quit_stops_the_source_first(key):
    source = ReplaySource(sample_events())
    app = InspectApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press(key)
        await pilot.pause()
    assert source.stopped
    assert app.return_code == 0


@pytest.mark.asyncio
async def test_a_failed_source_is_shown_and_exits_1():
    app = InspectApp(ReplaySource(link=Link.FAILED, detail="bind: address already in use"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        status = str(app.query_one("#status").content)
        assert "failed" in status
        assert "address already in use" in status
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 1


@pytest.mark.asyncio
async def test_dashboard_keys_are_off_over_the_detail_screen():
    app = InspectApp(ReplaySource(sample_events()))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("slash", "p", "g")
        assert not app.paused
        assert not app.grouped
        assert isinstance(app.screen, DetailScreen)


def test_trace_spans_include_embedded_subsegments():
    from tui_support import DATA_DIR

    from xray_trio.tui.screens import MAX_SPANS, trace_spans
    from xray_trio.tui.state import SeenRow

    row = SeenRow(1, seen((DATA_DIR / "py-rich.json").read_bytes(), 0))
    spans = trace_spans([row], selected=1)
    assert spans[0].name == "py-rich"
    assert spans[0].selected
    assert len(spans) > 1
    assert all(span.depth >= 1 for span in spans[1:])
    assert len(spans) <= MAX_SPANS + 1


@pytest.mark.asyncio
async def test_no_log_panel_without_a_daemon_log():
    app = InspectApp(ReplaySource())
    async with app.run_test(size=SIZE):
        assert not app.query_one("#log-box").display
