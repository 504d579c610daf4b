"""What every pipeline stage counts.

Counters are plain ints bumped by the daemon's own tasks. Everything runs on the trio thread,
so there is nothing to lock; readers (telemetry, the admin endpoint, the inspector) take
snapshots rather than holding references.
"""

from __future__ import annotations

from xray_trio.errors import ErrorKind


class Counters:
    """Cumulative counts since start-up, owned by the daemon and passed to each task."""

    __slots__ = (
        "accepted",
        "batches_sent",
        "bytes_received",
        "given_up",
        "received",
        "rejected_invalid_header",
        "rejected_missing_header",
        "retries",
        "sent",
        "spillover",
        "stdout_written",
        "unprocessed",
        "upload_errors",
    )

    def __init__(self) -> None:
        self.received = 0
        """Datagrams of one byte or more read from the UDP socket (Go's SegmentsReceivedCount)."""
        self.bytes_received = 0
        self.accepted = 0
        """Datagrams with a valid header and a body, taken into the budget."""
        self.rejected_missing_header = 0
        """No newline, or nothing after it (Go: ``Missing header or segment``)."""
        self.rejected_invalid_header = 0
        """A header that is not ``{"format":"json","version":1}`` (Go: ``Invalid header``)."""
        self.spillover = 0
        """Valid documents dropped because the buffer budget was spent (newest dropped)."""
        self.sent = 0
        """Documents X-Ray (or another sink) accepted, including ones it reported unprocessed."""
        self.batches_sent = 0
        self.stdout_written = 0
        """Documents written by the ``stdout`` sink."""
        self.unprocessed = 0
        """Documents X-Ray returned as UnprocessedTraceSegments and never delivered."""
        self.retries = 0
        """Upload attempts repeated after a retriable failure."""
        self.given_up = 0
        """Documents dropped after retries ran out or on a non-retriable error."""
        self.upload_errors = dict.fromkeys(ErrorKind, 0)
        """Failed upload attempts by kind (telemetry's BackendConnectionErrors)."""

    @property
    def rejected(self) -> int:
        """Go's SegmentsRejectedCount: datagrams refused for their header, plus unprocessed."""
        return self.rejected_missing_header + self.rejected_invalid_header + self.unprocessed
