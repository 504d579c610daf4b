"""The dashboard's panels. Each takes the ``Dashboard`` in ``show(...)``; none keeps its own data.

The app calls ``show`` from its refresh timer, so a panel redraws at most a few times a second
however fast events arrive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Sparkline, Static

from xray_trio.tui import format as fmt
from xray_trio.tui.state import SERIES, Dashboard, SeenRow

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.binding import BindingType

    from xray_trio.events import SegmentSeen

_SERIES_LABELS = {
    "received": "received",
    "sent": "sent",
    "rejected": "rejected",
    "dropped": "dropped",
}


class RatesPanel(Vertical):
    """Received, sent, rejected and dropped per second, with a sparkline of each."""

    def compose(self) -> ComposeResult:
        for name in SERIES:
            with Horizontal(classes="rate-row"):
                yield Label("", id=f"rate-{name}", classes="rate-label")
                yield Sparkline([], id=f"spark-{name}", classes=f"spark spark-{name}")

    def show(self, board: Dashboard) -> None:
        for name in SERIES:
            value = board.current(name)
            label = f"{_SERIES_LABELS[name]:<9}{fmt.rate(value):>7}/s"
            self.query_one(f"#rate-{name}", Label).update(label)
            # Padded to the full history so the line fills from the right, like a strip chart.
            values = board.series[name]
            data = [0.0] * (board.history - len(values)) + list(values)
            self.query_one(f"#spark-{name}", Sparkline).data = data


class PipelinePanel(Static):
    """Budget use, queue depths, totals and upload latency from the latest snapshot."""

    def show(self, board: Dashboard) -> None:
        snap = board.snapshot
        if snap is None:
            self.update(Text("waiting for the first snapshot…", style="dim"))
            return
        used, total = snap.budget_used_bytes, snap.budget_total_bytes
        cells, fraction = fmt.bar(used, total, 16)
        style = "red" if fraction > 0.9 else "yellow" if fraction > 0.6 else "green"
        text = Text()
        text.append("budget   ")
        if total:
            text.append(cells, style=style)
            text.append(f" {fraction:4.0%}\n")
            text.append(f"         {fmt.size(used)} of {fmt.size(total)}\n", style="dim")
        else:
            text.append("not reported\n\n", style="dim")
        text.append(f"queued   {fmt.count(snap.segments_queued)} docs")
        text.append(f" · {fmt.count(snap.batches_queued)} batches\n")
        latency = board.rates.latency_avg_s or snap.latency.avg_s
        shown = f"{latency * 1000:.0f} ms avg" if snap.latency.count else "no calls"
        text.append(f"upload   {shown} · {fmt.count(snap.retries)} retries\n")
        text.append(f"in/out   {fmt.count(snap.received)} / ")
        text.append(f"{fmt.count(snap.sent + snap.stdout_written)}\n")
        text.append(f"dropped  {fmt.count(snap.spillover)} · given up {fmt.count(snap.given_up)}\n")
        text.append(f"rejected {fmt.count(snap.rejected)} · up {fmt.uptime(snap.uptime_s)}")
        if board.lost:
            text.append(f"\ninspector missed {fmt.count(board.lost)} events", style="yellow")
        self.update(text)


class ErrorsPanel(VerticalScroll):
    """Failed upload attempts, newest first: kind, status, documents, then the message."""

    def compose(self) -> ComposeResult:
        yield Static(Text("none", style="dim"), id="errors-text")

    def on_mount(self) -> None:
        self._shown = 0

    def show(self, board: Dashboard) -> None:
        if board.errors_seen == self._shown:
            return
        self._shown = board.errors_seen
        text = Text()
        for failed in board.errors:
            if text:
                text.append("\n")
            text.append(
                "✗ " if failed.given_up else "↻ ", style="red" if failed.given_up else "yellow"
            )
            text.append(failed.kind.value, style="bold")
            if failed.status is not None:
                text.append(f" {failed.status}", style="bold")
            text.append(f" · {failed.segments} docs")
            if failed.sink != "xray":
                text.append(f" · {failed.sink}")
            if failed.given_up:
                text.append(" · given up", style="bold red")
            text.append(f"\n  {failed.message}", style="dim")
        self.query_one("#errors-text", Static).update(text)


class RejectedTable(DataTable[str]):
    """Datagrams refused for their header, newest first."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_column("reason", width=22)
        self.add_column("first bytes")
        self._shown = 0

    def show(self, board: Dashboard) -> None:
        if board.rejected_seen == self._shown:
            return
        self._shown = board.rejected_seen
        self.clear()
        for rejected in board.rejected:
            self.add_row(rejected.reason, fmt.head(rejected.head))


class SegmentTable(DataTable[Text | str]):
    """Recent documents, newest first (or grouped by trace); Enter opens one."""

    BINDINGS: ClassVar[list[BindingType]] = [("enter", "select_cursor", "Open")]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_column("time", width=12)
        self.add_column("trace id", width=35)
        self.add_column("name", width=20)
        self.add_column("doc", width=3)
        self.add_column("duration", width=8)
        self.add_column("http", width=4)
        self.add_column("EFT", width=3)
        self.add_column("size", width=7)
        self.add_column("check", width=5)
        self._keys: list[str] = []
        self.rows_by_key: dict[str, SeenRow] = {}

    def show_rows(self, rows: list[tuple[int, SeenRow]]) -> None:
        """Replace the rows when they changed, keeping the cursor on the same document."""
        keys = [str(row.seq) for _, row in rows]
        if keys == self._keys:
            return
        selected = self._keys[self.cursor_row] if 0 < self.cursor_row < len(self._keys) else None
        self._keys = keys
        self.rows_by_key = {str(row.seq): row for _, row in rows}
        self.clear()
        for depth, row in rows:
            self.add_row(*_cells(row.seen, depth), key=str(row.seq))
        if selected is not None and selected in self.rows_by_key:
            self.move_cursor(row=keys.index(selected), animate=False)

    def selected(self) -> SeenRow | None:
        if not self._keys or not 0 <= self.cursor_row < len(self._keys):
            return None
        return self.rows_by_key.get(self._keys[self.cursor_row])


def _cells(seen: SegmentSeen, depth: int) -> list[Text | str]:
    name = seen.name if seen.name is not None else "?"
    if depth:
        name = "└ " + name
    kind = "seg" if seen.type == "segment" else "sub"
    status = "" if seen.http_status is None else str(seen.http_status)
    status_style = "red" if seen.http_status and seen.http_status >= 500 else ""
    if seen.http_status and 400 <= seen.http_status < 500:
        status_style = "yellow"
    flag_style = "bold red" if seen.fault else "yellow" if seen.error or seen.throttle else "dim"
    check = (
        Text(f"⚠ {len(seen.findings)}", style="bold yellow")
        if seen.findings
        else Text("ok", "green")
    )
    return [
        fmt.clock(seen.received_at),
        seen.trace_id or Text("—", style="dim"),
        name,
        kind,
        fmt.duration(seen),
        Text(status, style=status_style),
        Text(fmt.flags(seen), style=flag_style),
        fmt.size(seen.size),
        check,
    ]


class StatusLine(Static):
    """One line under the header: the link state, pause, grouping, filter and notice."""

    def show(
        self,
        *,
        link: str,
        detail: str,
        notice: str,
        paused: bool,
        needle: str,
        grouped: bool,
    ) -> None:
        text = Text()
        style = {
            "running": "bold green",
            "connected": "bold green",
            "flushing": "bold yellow",
            "connecting": "yellow",
            "starting": "yellow",
        }.get(link, "bold red")
        text.append(f" {link} ", style=f"reverse {style}")
        if detail:
            text.append(f" {detail}")
        if paused:
            text.append("  ⏸ paused", style="bold magenta")
        if grouped:
            text.append("  by trace", style="cyan")
        if needle:
            text.append(f"  filter: {needle}", style="cyan")
        if notice:
            text.append(f"  {notice}", style="yellow")
        self.update(text)
