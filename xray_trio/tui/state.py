"""What the dashboard knows: bounded history of the event stream, free of any UI.

``Dashboard.ingest`` is O(1) per event (a deque append or a rate computation), so a source can
feed it at the daemon's full rate; the app renders from it a few times a second. Every history
is a ``deque(maxlen=...)``, so memory stays flat however long the inspector runs.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from typing import TYPE_CHECKING

from xray_trio.events import (
    DeliveryFailed,
    Dropped,
    Lost,
    Rejected,
    SegmentSeen,
    SnapshotEvent,
)
from xray_trio.snapshot import Rates, Snapshot, rates

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from xray_trio.events import Event

SERIES = ("received", "sent", "rejected", "dropped")
"""The per-second rates drawn as sparklines, in display order."""


@dataclasses.dataclass(frozen=True, slots=True)
class SeenRow:
    """A received document with the sequence number the dashboard gave it (its row key)."""

    seq: int
    seen: SegmentSeen


@dataclasses.dataclass(slots=True)
class Dashboard:
    """Bounded bookkeeping of everything a source reported."""

    history: int = 180
    """Rate samples kept per series (one per snapshot, so about three minutes)."""
    max_segments: int = 2000
    max_errors: int = 100
    max_rejected: int = 100
    snapshot: Snapshot | None = None
    rates: Rates = dataclasses.field(default_factory=Rates)
    series: dict[str, deque[float]] = dataclasses.field(default_factory=dict)
    segments: deque[SeenRow] = dataclasses.field(init=False)
    errors: deque[DeliveryFailed] = dataclasses.field(init=False)
    """Newest first."""
    rejected: deque[Rejected] = dataclasses.field(init=False)
    """Newest first."""
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    """Documents lost inside the daemon, by reason (from ``Dropped`` events)."""
    lost: int = 0
    """Events the daemon could not hand to this inspector because it read too slowly."""
    segments_seen: int = 0
    errors_seen: int = 0
    rejected_seen: int = 0
    version: int = 0
    """Bumped on every change, so a renderer can skip frames where nothing happened."""
    _seq: Iterator[int] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.segments = deque(maxlen=self.max_segments)
        self.errors = deque(maxlen=self.max_errors)
        self.rejected = deque(maxlen=self.max_rejected)
        self.series = {name: deque(maxlen=self.history) for name in SERIES}
        self._seq = itertools.count(1)

    def ingest(self, event: Event | Lost) -> None:
        """Take one event into the bounded history."""
        self.version += 1
        match event:
            case SegmentSeen():
                self.segments.append(SeenRow(next(self._seq), event))
                self.segments_seen += 1
            case SnapshotEvent(snapshot=snap):
                self._take_snapshot(snap)
            case DeliveryFailed():
                self.errors.appendleft(event)
                self.errors_seen += 1
            case Rejected():
                self.rejected.appendleft(event)
                self.rejected_seen += 1
            case Dropped(reason=reason, count=count):
                self.dropped[reason] = self.dropped.get(reason, 0) + count
            case Lost(total=total):
                self.lost = total

    def ingest_all(self, events: Iterable[Event | Lost]) -> None:
        for event in events:
            self.ingest(event)

    def _take_snapshot(self, snap: Snapshot) -> None:
        prev = self.snapshot
        self.snapshot = snap
        if prev is None or snap.uptime_s <= prev.uptime_s:
            # First frame, or the attached daemon restarted: no interval to take rates over.
            self.rates = Rates()
            return
        self.rates = rates(prev, snap)
        self.series["received"].append(self.rates.received_per_s)
        self.series["sent"].append(self.rates.delivered_per_s)
        self.series["rejected"].append(self.rates.rejected_per_s)
        self.series["dropped"].append(self.rates.dropped_per_s)

    def current(self, name: str) -> float:
        """The latest per-second value of one of ``SERIES`` (0 before two snapshots)."""
        values = self.series[name]
        return values[-1] if values else 0.0

    def trace(self, trace_id: str) -> list[SeenRow]:
        """Every kept document of one trace, oldest first."""
        return [row for row in self.segments if row.seen.trace_id == trace_id]


def matches(seen: SegmentSeen, needle: str) -> bool:
    """Case-insensitive filter on name, trace id, id and annotation keys or values."""
    if not needle:
        return True
    needle = needle.lower()
    fields = [seen.name, seen.trace_id, seen.id]
    for key, value in seen.annotations.items():
        fields.append(key)
        fields.append(str(value))
    return any(needle in field.lower() for field in fields if field)


def newest_rows(rows: Iterable[SeenRow], needle: str, limit: int) -> list[SeenRow]:
    """Up to ``limit`` rows passing the filter, newest first (``rows`` is oldest first)."""
    out: list[SeenRow] = []
    for row in reversed(list(rows)):
        if matches(row.seen, needle):
            out.append(row)
            if len(out) >= limit:
                break
    return out


def grouped_rows(rows: Iterable[SeenRow], needle: str, limit: int) -> list[tuple[int, SeenRow]]:
    """Rows grouped by trace: traces by latest activity, each trace's documents by start time.

    Returns ``(depth, row)`` pairs: depth 0 for the first document of a trace, 1 for the rest.
    A filter match on any document of a trace keeps the whole trace.
    """
    traces: dict[str, list[SeenRow]] = {}
    for row in rows:
        key = row.seen.trace_id or f"?{row.seq}"
        traces.setdefault(key, []).append(row)
    out: list[tuple[int, SeenRow]] = []
    # dicts keep insertion order; re-rank by the newest row each trace holds.
    for members in sorted(traces.values(), key=lambda m: m[-1].seq, reverse=True):
        if needle and not any(matches(row.seen, needle) for row in members):
            continue
        members = sorted(members, key=_start_key)
        for depth, row in enumerate(members):
            out.append((min(depth, 1), row))
            if len(out) >= limit:
                return out
    return out


def _start_key(row: SeenRow) -> tuple[int, float, int]:
    # Segments before subsegments, then by start time; undated documents last.
    seen = row.seen
    start = seen.start_time if seen.start_time is not None else float("inf")
    return (0 if seen.type == "segment" else 1, start, row.seq)
