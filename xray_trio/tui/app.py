"""``InspectApp``: the dashboard over any ``Source``; ``run_inspect``: ``xray-trio inspect``.

Events go straight into a bounded ``Dashboard``; the screen is redrawn from it on a timer
(``refresh_s``, 4 frames a second by default), so the cost of drawing does not grow with the
event rate.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, RichLog
from textual.worker import Worker, WorkerState

from xray_trio.tui.messages import Link, SourceStateChanged
from xray_trio.tui.screens import DetailScreen, HelpScreen
from xray_trio.tui.state import Dashboard, grouped_rows, newest_rows
from xray_trio.tui.widgets import (
    ErrorsPanel,
    PipelinePanel,
    RatesPanel,
    RejectedTable,
    SegmentTable,
    StatusLine,
)

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.binding import BindingType

    from xray_trio.events import Event, Lost
    from xray_trio.tui.inprocess import LogBuffer
    from xray_trio.tui.source import Source

MAX_TABLE_ROWS = 100
"""Rows in the segment table; the dashboard keeps more for filtering and trace grouping."""
BUSY_ROWS = 25
"""More new segments than this since the last draw: the table is redrawn once a second only.

At such rates it is unreadable at any frame rate, and rebuilding it is the dashboard's main
cost (Textual measures every cell of every new row)."""


class InspectApp(App[int]):
    """The live dashboard; the exit code is 1 when the source failed, else 0."""

    CSS_PATH = "inspect.tcss"
    TITLE = "xray-trio inspect"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("p", "toggle_pause", "Pause"),
        Binding("space", "toggle_pause", "Pause", show=False),
        Binding("g", "toggle_group", "By trace"),
        Binding("l", "toggle_log", "Log"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        source: Source,
        *,
        log_buffer: LogBuffer | None = None,
        log_note: str = "",
        refresh_s: float = 0.25,
        board: Dashboard | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.board = Dashboard() if board is None else board
        self.log_buffer = log_buffer
        self.log_note = log_note
        self.refresh_s = refresh_s
        self.link = Link.STARTING
        self.link_detail = ""
        self.paused = False
        self.grouped = False
        self.needle = ""
        self.quitting = False
        self.failed = False
        self._drawn = -1
        self._table_seen = 0
        self._table_drawn_at = 0.0
        self._source_worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusLine(id="status")
        with Horizontal(id="top"):
            yield RatesPanel(id="rates")
            yield PipelinePanel(id="pipeline")
            yield ErrorsPanel(id="errors")
        yield Input(placeholder="filter: name, trace id, id or annotation", id="filter")
        yield SegmentTable(id="segments")
        with Horizontal(id="bottom"):
            yield RejectedTable(id="rejected")
            with Vertical(id="log-box"):
                yield RichLog(id="log", max_lines=500, wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.source.title
        self._titles()
        if self.log_note:
            self.query_one("#log", RichLog).write(self.log_note)
        elif self.log_buffer is None:
            # Attached: the daemon's log is not part of its event stream.
            self.query_one("#log-box").add_class("hidden")
        self.query_one("#segments").focus()
        self._source_worker = self.run_worker(
            self.source.run(self), name="source", group="source", exit_on_error=False
        )
        self.set_interval(self.refresh_s, self.refresh_view)
        self.refresh_view()

    def _titles(self) -> None:
        self.query_one("#rates").border_title = "rates /s"
        self.query_one("#pipeline").border_title = "budget & queues"
        self.query_one("#errors").border_title = "upload errors"
        self.query_one("#segments").border_title = "recent segments"
        self.query_one("#rejected").border_title = "rejected datagrams"
        self.query_one("#log-box").border_title = "daemon log"

    # --- Feed: what sources call (on this loop, never blocking) ---

    def push(self, event: Event | Lost) -> None:
        self.board.ingest(event)

    def set_state(self, link: Link, detail: str = "") -> None:
        self.post_message(SourceStateChanged(link, detail))

    # --- drawing ---

    def on_source_state_changed(self, message: SourceStateChanged) -> None:
        self.link = message.link
        self.link_detail = message.detail
        self.failed = self.failed or message.link is Link.FAILED
        self._status()

    def _status(self) -> None:
        self.query_one(StatusLine).show(
            link=self.link.value,
            detail=self.link_detail,
            notice=self.source.notice,
            paused=self.paused,
            needle=self.needle,
            grouped=self.grouped,
        )

    def refresh_view(self, *, force: bool = False) -> None:
        """Redraw from the dashboard; called on the timer, and at once after a key."""
        self._drain_log()
        if self.board.version == self._drawn and not force:
            return
        self._drawn = self.board.version
        self.query_one(RatesPanel).show(self.board)
        self.query_one(PipelinePanel).show(self.board)
        if self.paused and not force:
            return
        self.query_one(ErrorsPanel).show(self.board)
        self.query_one(RejectedTable).show(self.board)
        now = time.monotonic()
        busy = self.board.segments_seen - self._table_seen > BUSY_ROWS
        if busy and now - self._table_drawn_at < 1.0 and not force:
            return
        self._table_seen = self.board.segments_seen
        self._table_drawn_at = now
        table = self.query_one(SegmentTable)
        if self.grouped:
            table.show_rows(grouped_rows(self.board.segments, self.needle, MAX_TABLE_ROWS))
        else:
            rows = newest_rows(self.board.segments, self.needle, MAX_TABLE_ROWS)
            table.show_rows([(0, row) for row in rows])
        shown = len(table.rows)
        table.border_subtitle = f"{shown} shown · {self.board.segments_seen:,} seen"

    def _drain_log(self) -> None:
        if self.log_buffer is None:
            return
        lines = self.log_buffer.drain()
        if lines:
            self.query_one("#log", RichLog).write("\n".join(line for _, line in lines))

    # --- actions ---

    _DASHBOARD_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {"filter", "clear_filter", "toggle_pause", "toggle_group", "toggle_log"}
    )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dashboard keys do nothing (and are not shown) over the detail and help screens."""
        return not (action in self._DASHBOARD_ACTIONS and len(self.screen_stack) > 1)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        # A widget that is not displayed yet cannot take focus: wait for the layout.
        self.call_after_refresh(box.focus)

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.query_one("#segments").focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._status()
        self.refresh_view(force=True)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#segments").focus()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._status()
        self.refresh_view(force=True)

    def action_toggle_group(self) -> None:
        self.grouped = not self.grouped
        self._status()
        self.refresh_view(force=True)

    def action_toggle_log(self) -> None:
        self.query_one("#log-box").toggle_class("hidden")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @on(DataTable.RowSelected, "#segments")
    def _open_segment(self) -> None:
        self.open_selected()

    def open_selected(self) -> None:
        row = self.query_one(SegmentTable).selected()
        if row is None:
            return
        trace = self.board.trace(row.seen.trace_id) if row.seen.trace_id else [row]
        if row not in trace:
            trace = [row]
        self.push_screen(DetailScreen(row, trace))

    async def action_quit(self) -> None:
        """Stop the source gracefully (a daemon flushes), then exit; twice: at once."""
        if self.quitting:
            force = getattr(self.source, "force", None)
            if callable(force):
                force()
            else:
                self.exit(self._exit_code(), return_code=self._exit_code())
            return
        self.quitting = True
        if self.link not in (Link.FAILED, Link.STOPPED):
            self.set_state(Link.FLUSHING, "flushing…")
        self.run_worker(self._stop_and_exit(), name="shutdown", group="shutdown")

    async def _stop_and_exit(self) -> None:
        await self.source.stop()
        if self._source_worker is not None:
            self._source_worker.cancel()
        self.exit(self._exit_code(), return_code=self._exit_code())

    def _exit_code(self) -> int:
        return 1 if self.failed else 0

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._source_worker or event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        self.set_state(Link.FAILED, f"{type(error).__name__}: {error}")


def run_inspect(argv: list[str]) -> int:
    """``xray-trio inspect [daemon flags] [--attach HOST:PORT]``; returns the exit code."""
    from xray_trio.tui.launch import launch

    return launch(argv, stdout=sys.stdout, stderr=sys.stderr)
