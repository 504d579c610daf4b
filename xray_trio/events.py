"""The daemon's one internal event stream: what happened, broadcast to whoever is watching.

Publishers (the receiver, the uploaders, ``run_snapshots``) call ``EventHub.publish``, which never
awaits and never fails: each subscriber has its own bounded memory channel fed with
``send_nowait``, and a subscriber whose channel is full loses the event (counted on its
``Subscription.lost``). A slow dashboard or ``/events`` client therefore costs the pipeline
nothing but the ``send_nowait`` calls.

``SegmentSeen`` parses the document, which the upload path never does; the receiver builds one
only while ``hub.wants_segments`` is true. ``segment_seen`` also validates the document the way
X-Ray will, so the inspector can show what is wrong with what an SDK sent.

Events travel to other processes as NDJSON (``encode_event`` / ``decode_event``), one object per
line with a ``"type"`` field.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import trio

from xray_trio import snapshot
from xray_trio.errors import ErrorKind

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from xray_trio.snapshot import Snapshot

MAX_DOCUMENT_BYTES = 64 * 1024
"""X-Ray refuses segment documents larger than 64 KB."""

AnnotationValue = str | int | float | bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotEvent:
    """A periodic frame of every counter and gauge."""

    snapshot: Snapshot


class Check(enum.Enum):
    """What a validation finding is about."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    TOO_LARGE = "too_large"
    TRACE_ID = "trace_id"
    ID = "id"
    NAME = "name"
    START_TIME = "start_time"
    END_TIME = "end_time"
    SUBSEGMENT = "subsegment"
    ANNOTATION = "annotation"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One reason X-Ray would refuse (part of) a document."""

    check: Check
    message: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SegmentSeen:
    """Summary of one received document; fields the document lacks (or garbles) are None."""

    received_at: float
    """Wall-clock seconds (``time.time()``), comparable with the document's own times."""
    size: int
    raw: str
    """The document text, for the inspector's detail view (invalid UTF-8 replaced)."""
    type: Literal["segment", "subsegment"] = "segment"
    trace_id: str | None = None
    id: str | None = None
    parent_id: str | None = None
    name: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    in_progress: bool = False
    error: bool = False
    fault: bool = False
    throttle: bool = False
    http_status: int | None = None
    annotations: Mapping[str, AnnotationValue] = dataclasses.field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """A datagram refused for its header."""

    reason: str
    head: bytes
    """The datagram's first 64 bytes."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """Accepted documents lost inside the daemon (e.g. ``reason="spillover"``)."""

    reason: str
    count: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFailed:
    """One failed upload attempt, or a batch given up for good."""

    sink: str
    kind: ErrorKind
    status: int | None
    message: str
    segments: int
    given_up: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Lost:
    """Only on NDJSON streams: the subscriber behind the stream has lost ``total`` events."""

    total: int


Event = SnapshotEvent | SegmentSeen | Rejected | Dropped | DeliveryFailed


@dataclasses.dataclass(slots=True, eq=False)
class Subscription:
    """One subscriber's view of the hub: its events, and how many it lost by reading too slowly."""

    events: trio.MemoryReceiveChannel[Event]
    snapshots_only: bool
    lost: int = 0


class EventHub:
    """In-process broadcast of ``Event`` values; inert, owns no task."""

    def __init__(self) -> None:
        # Rebuilt on (rare) subscribe/unsubscribe so that publish is a plain loop. The hub keeps
        # the send ends: a subscriber holds only what it reads from.
        self._subscriptions: tuple[tuple[Subscription, trio.MemorySendChannel[Event]], ...] = ()
        self._wants_segments = False

    @property
    def wants_segments(self) -> bool:
        """Whether anyone would receive a ``SegmentSeen``; checked per datagram, so cheap."""
        return self._wants_segments

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every interested subscriber without ever waiting."""
        is_snapshot = type(event) is SnapshotEvent
        for sub, send in self._subscriptions:
            if sub.snapshots_only and not is_snapshot:
                continue
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError):
                # Full, or the subscriber closed its end early: its loss, never the publisher's.
                sub.lost += 1

    @asynccontextmanager
    async def open_subscription(
        self, *, snapshots_only: bool = False, max_buffer: int = 1024
    ) -> AsyncIterator[Subscription]:
        """Receive events published while the block runs; at most ``max_buffer`` wait unread."""
        send, receive = trio.open_memory_channel[Event](max_buffer)
        sub = Subscription(receive, snapshots_only)
        self._update((*self._subscriptions, (sub, send)))
        try:
            yield sub
        finally:
            self._update(tuple(pair for pair in self._subscriptions if pair[0] is not sub))
            send.close()
            receive.close()

    def _update(
        self, subscriptions: tuple[tuple[Subscription, trio.MemorySendChannel[Event]], ...]
    ) -> None:
        self._subscriptions = subscriptions
        self._wants_segments = any(not sub.snapshots_only for sub, _ in subscriptions)


async def run_snapshots(
    hub: EventHub, take: Callable[[], Snapshot], *, period_s: float = 1.0
) -> NoReturn:
    """Publish ``take()`` every ``period_s`` on a fixed grid (no drift), until cancelled."""
    deadline = trio.current_time()
    while True:
        deadline += period_s
        behind = trio.current_time() - deadline
        if behind > 0:
            # The thread was busy past whole ticks: skip them instead of publishing a burst;
            # snapshots are cumulative, so nothing is lost.
            deadline += math.ceil(behind / period_s) * period_s
        await trio.sleep_until(deadline)
        hub.publish(SnapshotEvent(snapshot=take()))


_TRACE_ID = re.compile(r"1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}")
_ID = re.compile(r"[0-9a-fA-F]{16}")
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9_]+")
_MAX_NAME = 200


def segment_seen(body: bytes, received_at: float) -> SegmentSeen:
    """Summarise and validate one document; never raises, whatever the bytes."""
    raw = body.decode("utf-8", "replace")
    size = len(body)
    findings: list[Finding] = []
    if size > MAX_DOCUMENT_BYTES:
        findings.append(Finding(Check.TOO_LARGE, f"{size} bytes, above X-Ray's 64 KB limit"))
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        findings.append(Finding(Check.NOT_JSON, f"not valid JSON: {exc}"))
        return SegmentSeen(received_at=received_at, size=size, raw=raw, findings=tuple(findings))
    if not isinstance(doc, dict):
        findings.append(Finding(Check.NOT_OBJECT, f"a JSON {type(doc).__name__}, not an object"))
        return SegmentSeen(received_at=received_at, size=size, raw=raw, findings=tuple(findings))
    http = doc.get("http")
    response = http.get("response") if isinstance(http, dict) else None
    status = response.get("status") if isinstance(response, dict) else None
    annotations = doc.get("annotations")
    return SegmentSeen(
        received_at=received_at,
        size=size,
        raw=raw,
        type="subsegment" if doc.get("type") == "subsegment" else "segment",
        trace_id=_str(doc.get("trace_id")),
        id=_str(doc.get("id")),
        parent_id=_str(doc.get("parent_id")),
        name=_str(doc.get("name")),
        start_time=_time(doc.get("start_time")),
        end_time=_time(doc.get("end_time")),
        in_progress=doc.get("in_progress") is True,
        error=doc.get("error") is True,
        fault=doc.get("fault") is True,
        throttle=doc.get("throttle") is True,
        http_status=status if type(status) is int else None,
        annotations={k: v for k, v in annotations.items() if _annotation_value(v)}
        if isinstance(annotations, dict)
        else {},
        findings=(*findings, *validate_document(doc)),
    )


def validate_document(doc: Mapping[str, Any]) -> list[Finding]:
    """What X-Ray would refuse in a parsed top-level document (segment or lone subsegment)."""
    findings: list[Finding] = []
    trace_id = doc.get("trace_id")
    if trace_id is None:
        findings.append(Finding(Check.TRACE_ID, "missing trace_id"))
    elif not _matches(_TRACE_ID, trace_id):
        findings.append(Finding(Check.TRACE_ID, f"trace_id {trace_id!r} is not 1-<8 hex>-<24 hex>"))
    findings.extend(_id_findings(doc, "id"))
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        findings.append(Finding(Check.NAME, "missing or empty name"))
    elif len(name) > _MAX_NAME:
        findings.append(Finding(Check.NAME, f"name longer than {_MAX_NAME} characters"))
    if _time(doc.get("start_time")) is None:
        findings.append(Finding(Check.START_TIME, "missing or non-numeric start_time"))
    if "end_time" in doc and _time(doc["end_time"]) is None:
        findings.append(Finding(Check.END_TIME, "end_time is not a number"))
    elif "end_time" not in doc and doc.get("in_progress") is not True:
        findings.append(Finding(Check.END_TIME, "neither end_time nor in_progress: true"))
    kind = doc.get("type")
    if kind == "subsegment":
        findings.extend(_id_findings(doc, "parent_id", Check.SUBSEGMENT))
    elif kind is not None:
        findings.append(Finding(Check.SUBSEGMENT, f"type {kind!r}: only 'subsegment' is allowed"))
    elif "namespace" in doc and "parent_id" in doc:
        # Only subsegments carry a namespace: this one was sent alone without its type.
        findings.append(Finding(Check.SUBSEGMENT, 'subsegment sent alone without "type"'))
    findings.extend(_annotation_findings(doc))
    return findings


def _id_findings(doc: Mapping[str, Any], key: str, check: Check = Check.ID) -> list[Finding]:
    value = doc.get(key)
    if value is None:
        return [Finding(check, f"missing {key}")]
    if not _matches(_ID, value):
        return [Finding(check, f"{key} {value!r} is not 16 hex digits")]
    return []


def _annotation_findings(doc: Mapping[str, Any]) -> list[Finding]:
    # Walk embedded subsegments with an explicit stack: nesting depth is the sender's choice.
    findings: list[Finding] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        annotations = node.get("annotations")
        if isinstance(annotations, dict):
            for key, value in annotations.items():
                if not _ANNOTATION_KEY.fullmatch(key):
                    msg = f"annotation key {key!r}: only letters, digits and _ are allowed"
                    findings.append(Finding(Check.ANNOTATION, msg))
                if not _annotation_value(value):
                    msg = f"annotation {key!r}: value must be a string, number or boolean"
                    findings.append(Finding(Check.ANNOTATION, msg))
        subsegments = node.get("subsegments")
        if isinstance(subsegments, list):
            stack.extend(reversed(subsegments))
    return findings


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        # float() of a 400-digit int overflows; JSON allows any number of digits.
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _annotation_value(value: object) -> bool:
    return isinstance(value, (str, int)) or (isinstance(value, float) and math.isfinite(value))


def encode_event(event: Event | Lost) -> bytes:
    """One NDJSON line (with its newline) for ``event``."""
    return json.dumps(_to_json(event), separators=(",", ":")).encode() + b"\n"


def _to_json(event: Event | Lost) -> dict[str, Any]:
    if isinstance(event, SnapshotEvent):
        return {"type": "snapshot", **snapshot.to_json(event.snapshot)}
    out = {name: getattr(event, name) for name in _FIELD_NAMES[type(event)]}
    match event:
        case SegmentSeen():
            out["findings"] = [
                {"check": f.check.value, "message": f.message} for f in out["findings"]
            ]
            out["annotations"] = dict(event.annotations)
            # "type" names the event; the document's own type moves to "doc_type".
            out["doc_type"] = out.pop("type")
        case Rejected():
            # latin-1 maps each byte to one code point: exact round trip, readable when ASCII.
            out["head"] = event.head.decode("latin-1")
        case DeliveryFailed():
            out["kind"] = event.kind.value
    return {"type": _TYPE_NAMES[type(event)], **out}


_TYPE_NAMES: dict[type[Event | Lost], str] = {
    SegmentSeen: "segment",
    Rejected: "rejected",
    Dropped: "dropped",
    DeliveryFailed: "delivery_failed",
    Lost: "lost",
}
_TYPES_BY_NAME = {name: cls for cls, name in _TYPE_NAMES.items()}
_FIELD_NAMES = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _TYPE_NAMES}


def decode_event(line: str | bytes) -> Event | Lost:
    """Parse one NDJSON line from ``encode_event``; raises ``ValueError`` if it is not one.

    Unknown ``"type"`` values raise too, so a reader can skip lines from a newer daemon.
    """
    try:
        obj = json.loads(line)
        name = obj.pop("type")
        if name == "snapshot":
            return SnapshotEvent(snapshot=snapshot.from_json(obj))
        if name == "segment":
            obj["type"] = obj.pop("doc_type")
            obj["findings"] = tuple(
                Finding(Check(f["check"]), f["message"]) for f in obj["findings"]
            )
        elif name == "rejected":
            obj["head"] = obj["head"].encode("latin-1")
        elif name == "delivery_failed":
            obj["kind"] = ErrorKind(obj["kind"])
        return _TYPES_BY_NAME[name](**obj)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an event line: {exc!r}") from exc
