"""Screens pushed over the dashboard: one document in detail, and the key help."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Static

from xray_trio.tui import format as fmt

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.binding import BindingType

    from xray_trio.events import SegmentSeen
    from xray_trio.tui.state import SeenRow

WATERFALL_WIDTH = 40
MAX_SPANS = 12
"""Waterfall rows shown; the document itself is below for the rest."""


class DetailScreen(Screen[None]):
    """A received document: summary, validation findings, its trace, and the JSON itself."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ("escape", "app.pop_screen", "Back"),
        ("q", "app.pop_screen", "Back"),
    ]

    def __init__(self, row: SeenRow, trace: list[SeenRow]) -> None:
        super().__init__()
        self.row = row
        self.trace = trace

    def compose(self) -> ComposeResult:
        seen = self.row.seen
        yield Header()
        with Vertical(id="detail-top"):
            yield Static(_summary(seen), id="detail-summary")
            yield Static(_findings(seen), id="detail-findings")
            spans = trace_spans(self.trace, self.row.seq)
            if len(spans) > 1:
                waterfall = _waterfall(spans, seen.trace_id, len(self.trace))
                yield Static(waterfall, id="detail-trace")
        with VerticalScroll(id="detail-json"):
            text, ok = fmt.pretty_json(seen.raw)
            yield Static(
                Syntax(text, "json", theme="ansi_dark", word_wrap=True) if ok else Text(text),
                id="detail-document",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.row.seen.type} {self.row.seen.name or '?'}"
        self.query_one("#detail-top").border_title = "summary"
        self.query_one("#detail-json").border_title = "document"
        self.query_one("#detail-json").focus()


def _summary(seen: SegmentSeen) -> Table | Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    flags = ", ".join(
        name
        for name, on in (("error", seen.error), ("fault", seen.fault), ("throttle", seen.throttle))
        if on
    )
    table.add_row("name", seen.name or "?", "type", seen.type)
    table.add_row("trace id", seen.trace_id or "—", "id", seen.id or "—")
    table.add_row("parent", seen.parent_id or "—", "received", fmt.clock(seen.received_at))
    table.add_row(
        "duration",
        fmt.duration(seen) or "—",
        "http status",
        "—" if seen.http_status is None else str(seen.http_status),
    )
    table.add_row("flags", flags or "none", "size", fmt.size(seen.size))
    if seen.annotations:
        annotations = "  ".join(f"{k}={v!r}" for k, v in seen.annotations.items())
        return Group(table, Text.assemble(("annotations", "bold cyan"), "  ", annotations))
    return table


def _findings(seen: SegmentSeen) -> Text:
    if not seen.findings:
        return Text("✓ X-Ray would accept this document", style="green")
    text = Text(
        f"⚠ {len(seen.findings)} finding(s): X-Ray would refuse this document\n", "bold yellow"
    )
    for finding in seen.findings:
        text.append(f"  {finding.check.value:<12}", style="yellow")
        text.append(f" {finding.message}\n")
    text.rstrip()
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """One bar of the waterfall: a document of the trace, or a subsegment embedded in one."""

    name: str
    depth: int
    start: float | None
    end: float | None
    fault: bool = False
    error: bool = False
    selected: bool = False


def trace_spans(trace: list[SeenRow], selected: int) -> list[Span]:
    """The trace's documents in order, each followed by the subsegments embedded in it."""
    spans: list[Span] = []
    for row in trace:
        seen = row.seen
        depth = 1 if seen.type == "subsegment" else 0
        end = seen.end_time if seen.end_time is not None else seen.start_time
        spans.append(
            Span(
                seen.name or "?",
                depth,
                seen.start_time,
                end,
                seen.fault,
                seen.error,
                row.seq == selected,
            )
        )
        try:
            doc = json.loads(seen.raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(doc, dict):
            _embedded(doc.get("subsegments"), depth + 1, spans)
    return spans


def _embedded(subsegments: object, depth: int, out: list[Span]) -> None:
    if not isinstance(subsegments, list) or len(out) >= MAX_SPANS:
        return
    for sub in subsegments:
        if len(out) >= MAX_SPANS:
            return
        if not isinstance(sub, dict):
            continue
        start, end = _number(sub.get("start_time")), _number(sub.get("end_time"))
        name = sub.get("name") if isinstance(sub.get("name"), str) else "?"
        out.append(
            Span(
                str(name),
                depth,
                start,
                end if end is not None else start,
                sub.get("fault") is True,
                sub.get("error") is True,
            )
        )
        _embedded(sub.get("subsegments"), depth + 1, out)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _waterfall(spans: list[Span], trace_id: str | None, documents: int) -> Group:
    """Spans as bars on the trace's shared time axis."""
    starts = [span.start for span in spans if span.start is not None]
    ends = [span.end for span in spans if span.end is not None]
    start = min(starts, default=0.0)
    span_s = max(max(ends, default=start) - start, 1e-9)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, width=28)
    table.add_column(no_wrap=True, width=WATERFALL_WIDTH)
    table.add_column(no_wrap=True, justify="right")
    for span in spans[:MAX_SPANS]:
        name = Text("  " * span.depth + span.name, "bold reverse" if span.selected else "")
        if span.start is None:
            table.add_row(name, Text("(no start time)", "dim"), "")
            continue
        end = span.end if span.end is not None else span.start
        left = min(int((span.start - start) / span_s * WATERFALL_WIDTH), WATERFALL_WIDTH - 1)
        width = max(1, round((end - span.start) / span_s * WATERFALL_WIDTH))
        width = min(width, WATERFALL_WIDTH - left)
        colour = "red" if span.fault else "yellow" if span.error else "green"
        bar = Text(" " * left) + Text("█" * width, style=colour)
        table.add_row(name, bar, f"{(end - span.start) * 1000:.1f} ms")
    title = Text(f"trace {trace_id or '?'}: {documents} document(s) seen", "bold")
    return Group(title, table)


HELP = """\
[b]xray-trio inspect[/b]: the daemon's live view

[b cyan]Dashboard[/]
  [b]/[/]          filter recent segments (name, trace id, id, annotation)
  [b]escape[/]     clear the filter
  [b]p[/] / [b]space[/]  pause or resume the live view (counting goes on)
  [b]g[/]          group segments by trace
  [b]enter[/]      open the selected segment
  [b]↑ ↓ pgup pgdn home end[/]  move in a table
  [b]tab[/]        next panel
  [b]l[/]          show or hide the daemon log
  [b]?[/]          this help
  [b]q[/] / [b]ctrl+c[/]  quit (the daemon flushes first; press again to stop at once)

[b cyan]Segment detail[/]
  [b]escape[/] / [b]q[/]  back to the dashboard
  [b]↑ ↓[/]        scroll the document

[dim]Columns: EFT = error, fault, throttle; check = validation findings.[/]
"""


class HelpScreen(ModalScreen[None]):
    """The keys, over the dashboard."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ("escape", "app.pop_screen", "Close"),
        ("q", "app.pop_screen", "Close"),
        ("question_mark", "app.pop_screen", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(HELP, id="help-text")
        yield Footer()
