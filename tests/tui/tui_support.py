"""Fixed events for the dashboard tests: no wall-clock times, hostnames or random ids."""

from __future__ import annotations

import json
import types
from pathlib import Path

from xray_trio.errors import ErrorKind
from xray_trio.events import (
    DeliveryFailed,
    Dropped,
    Event,
    Rejected,
    SegmentSeen,
    SnapshotEvent,
    segment_seen,
)
from xray_trio.snapshot import Snapshot

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "events"
BASE = 1_795_701_400.0
"""A fixed wall-clock instant (2026-11-27T09:16:40Z) the sample documents are placed around."""

TRACE_A = "1-6b083a98-0123456789abcdef01234567"
TRACE_B = "1-6b083a99-89abcdef0123456789abcdef"


def document(
    name: str,
    *,
    trace_id: str = TRACE_A,
    id: str = "0123456789abcdef",
    start: float = 0.0,
    duration: float = 0.025,
    status: int | None = 200,
    fault: bool = False,
    error: bool = False,
    parent_id: str | None = None,
    annotations: dict[str, object] | None = None,
) -> bytes:
    doc: dict[str, object] = {
        "trace_id": trace_id,
        "id": id,
        "name": name,
        "start_time": BASE + start,
        "end_time": BASE + start + duration,
    }
    if parent_id is not None:
        doc["type"] = "subsegment"
        doc["parent_id"] = parent_id
        doc["namespace"] = "remote"
    if status is not None:
        doc["http"] = {
            "request": {"method": "GET", "url": f"http://example.test/{name}"},
            "response": {"status": status},
        }
    if fault:
        doc["fault"] = True
    if error:
        doc["error"] = True
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


def seen(body: bytes, at: float) -> SegmentSeen:
    return segment_seen(body, BASE + at)


def snap(seq: int, **fields: object) -> SnapshotEvent:
    errors = fields.pop("upload_errors", {})
    return SnapshotEvent(
        snapshot=Snapshot(
            seq=seq,
            uptime_s=float(seq),
            upload_errors=types.MappingProxyType(
                {kind: int(errors.get(kind, 0)) for kind in ErrorKind}  # type: ignore[attr-defined]
            ),
            **fields,  # type: ignore[arg-type]
        )
    )


def sample_segments() -> list[SegmentSeen]:
    """Two traces from three services, one fault, one in-progress, one bad document."""
    return [
        seen(document("checkout", annotations={"customer": "c-101"}), 0.10),
        seen(
            document(
                "db-query",
                id="1111111111111111",
                parent_id="0123456789abcdef",
                start=0.005,
                duration=0.012,
                status=None,
            ),
            0.12,
        ),
        seen(
            document(
                "orders-api",
                trace_id=TRACE_B,
                id="2222222222222222",
                start=0.2,
                duration=0.3,
                status=500,
                fault=True,
                annotations={"customer": "c-202"},
            ),
            0.55,
        ),
        seen((DATA_DIR / "node-rich.json").read_bytes(), 0.60),
        seen((DATA_DIR / "node-in-progress-segment.json").read_bytes(), 0.70),
        seen(b'{"name": "half', 0.80),
    ]


def sample_events() -> list[Event]:
    """A short, fixed session: snapshots at 1 Hz, segments, a rejection, failures, a drop."""
    events: list[Event] = [snap(1, budget_total_bytes=16 * 1024 * 1024)]
    events.extend(sample_segments())
    events.append(Rejected(reason="invalid_header", head=b'{"format":"xml"}\n{"name":"x"}'))
    events.append(Rejected(reason="missing_header", head=b"\x00\x01binary junk"))
    events.append(
        DeliveryFailed(
            sink="xray",
            kind=ErrorKind.HTTP_5XX,
            status=503,
            message="ServiceUnavailable: try again",
            segments=50,
            given_up=False,
        )
    )
    events.append(
        DeliveryFailed(
            sink="xray",
            kind=ErrorKind.TIMEOUT,
            status=None,
            message="no response within 2 s",
            segments=12,
            given_up=True,
        )
    )
    events.append(Dropped(reason="spillover", count=3))
    for seq in range(2, 8):
        events.append(
            snap(
                seq,
                received=seq * 1200,
                accepted=seq * 1190,
                bytes_received=seq * 1_200_000,
                rejected_invalid_header=seq * 3,
                spillover=seq * 2,
                sent=seq * 1150,
                batches_sent=seq * 23,
                budget_used_bytes=5 * 1024 * 1024,
                budget_total_bytes=16 * 1024 * 1024,
                segments_queued=37,
                batches_queued=2,
            )
        )
    return events
