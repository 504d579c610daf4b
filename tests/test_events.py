"""The event hub, snapshot pacing, SegmentSeen building and validation, and the NDJSON codec."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import trio
import trio.testing

from xray_trio.errors import ErrorKind
from xray_trio.events import (
    Check,
    DeliveryFailed,
    Dropped,
    Event,
    EventHub,
    Finding,
    Lost,
    Rejected,
    SegmentSeen,
    SnapshotEvent,
    decode_event,
    encode_event,
    run_snapshots,
    segment_seen,
)
from xray_trio.snapshot import Snapshot

DATA = Path(__file__).parent / "data" / "events"


def _snap(seq: int = 1) -> SnapshotEvent:
    return SnapshotEvent(snapshot=Snapshot(seq=seq, uptime_s=float(seq)))


def _mixed(n: int) -> list[Event]:
    kinds: list[Event] = [
        _snap(),
        Rejected(reason="invalid_header", head=b"{bad"),
        Dropped(reason="spillover", count=3),
        DeliveryFailed(
            sink="xray",
            kind=ErrorKind.HTTP_5XX,
            status=503,
            message="503",
            segments=50,
            given_up=False,
        ),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


# --- hub ---------------------------------------------------------------------------------------


async def test_every_subscriber_gets_every_event_in_order() -> None:
    hub = EventHub()
    events = _mixed(100)
    async with (
        hub.open_subscription(max_buffer=100) as a,
        hub.open_subscription(max_buffer=100) as b,
        hub.open_subscription(max_buffer=100) as c,
    ):
        for event in events:
            hub.publish(event)
        for sub in (a, b, c):
            assert [sub.events.receive_nowait() for _ in events] == events
            assert sub.lost == 0


async def test_a_subscriber_that_never_reads_loses_events_and_never_blocks_the_publisher() -> None:
    hub = EventHub()
    events = _mixed(10_000)
    async with (
        hub.open_subscription(max_buffer=16) as stuck,
        hub.open_subscription(max_buffer=10_000) as reader,
    ):
        with trio.testing.assert_no_checkpoints():
            for event in events:
                hub.publish(event)
        assert stuck.lost == 10_000 - 16
        assert [stuck.events.receive_nowait() for _ in range(16)] == events[:16]
        assert reader.lost == 0
        assert [reader.events.receive_nowait() for _ in events] == events


async def test_snapshots_only_subscribers_see_only_snapshots_and_do_not_want_segments() -> None:
    hub = EventHub()
    wanted = [hub.wants_segments]
    async with hub.open_subscription(snapshots_only=True) as snaps:
        wanted.append(hub.wants_segments)
        for event in _mixed(8):
            hub.publish(event)
        assert [snaps.events.receive_nowait() for _ in range(2)] == [_snap(), _snap()]
        with pytest.raises(trio.WouldBlock):
            snaps.events.receive_nowait()
        async with hub.open_subscription():
            wanted.append(hub.wants_segments)
        wanted.append(hub.wants_segments)
    wanted.append(hub.wants_segments)
    assert wanted == [False, False, True, False, False]


async def test_a_subscriber_that_closes_its_end_early_only_loses_events() -> None:
    hub = EventHub()
    async with hub.open_subscription() as sub:
        await sub.events.aclose()
        hub.publish(_snap())
        assert sub.lost == 1


async def test_leaving_a_subscription_stops_delivery_and_closes_the_channel() -> None:
    hub = EventHub()
    async with hub.open_subscription() as sub:
        pass
    hub.publish(_snap())
    assert sub.lost == 0
    with pytest.raises(trio.ClosedResourceError):
        sub.events.receive_nowait()


# --- run_snapshots -----------------------------------------------------------------------------


async def test_snapshots_are_paced_on_a_fixed_grid(autojump_clock: trio.testing.MockClock) -> None:
    hub = EventHub()
    seq = 0

    def take() -> Snapshot:
        nonlocal seq
        seq += 1
        return Snapshot(seq=seq, uptime_s=trio.current_time())

    async with trio.open_nursery() as nursery, hub.open_subscription() as sub:
        nursery.start_soon(run_snapshots, hub, take)
        times = []
        for _ in range(3):
            event = await sub.events.receive()
            assert isinstance(event, SnapshotEvent)
            times.append((event.snapshot.seq, event.snapshot.uptime_s, trio.current_time()))
        nursery.cancel_scope.cancel()
    assert times == [(1, 1.0, 1.0), (2, 2.0, 2.0), (3, 3.0, 3.0)]


async def test_snapshots_skip_ticks_missed_while_the_thread_was_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = EventHub()
    taken: list[float] = []

    def take() -> Snapshot:
        taken.append(trio.current_time())
        if len(taken) == 1:
            autojump_clock.jump(2.5)  # as if the first snapshot held the thread for 2.5 s
        return Snapshot(seq=len(taken), uptime_s=taken[-1])

    async with trio.open_nursery() as nursery, hub.open_subscription() as sub:
        nursery.start_soon(run_snapshots, hub, take)
        for _ in range(3):
            await sub.events.receive()
        nursery.cancel_scope.cancel()
    assert taken == [1.0, 4.0, 5.0]


# --- segment_seen ------------------------------------------------------------------------------


def _body(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_segment_seen_summarises_a_rich_python_segment() -> None:
    body = _body("py-rich.json")
    seen = segment_seen(body, 1234.5)
    assert seen == SegmentSeen(
        received_at=1234.5,
        size=len(body),
        raw=body.decode(),
        type="segment",
        trace_id="1-6b083ac7-1cd3973e2727911aafa5c2a4",
        id="f6a8fdff156bef48",
        name="py-rich",
        start_time=1795701447.2335446,
        end_time=1795701447.2340956,
        fault=True,
        http_status=500,
        annotations={"customer": "c-123", "items": 3, "ratio": 0.25, "vip": True},
    )


@pytest.mark.parametrize(
    ("name", "kind", "parent_id", "in_progress", "end_time"),
    [
        ("node-in-progress-segment.json", "segment", None, True, None),
        ("node-in-progress-subsegment.json", "subsegment", "009270b408c6c628", True, None),
        (
            "py-streaming-subsegment.json",
            "subsegment",
            "680d00320369ecf0",
            False,
            1795701451.7809398,
        ),
    ],
)
def test_segment_seen_on_real_documents_is_clean(
    name: str, kind: str, parent_id: str | None, in_progress: bool, end_time: float | None
) -> None:
    seen = segment_seen(_body(name), 0.0)
    assert (seen.type, seen.parent_id, seen.in_progress, seen.end_time) == (
        kind,
        parent_id,
        in_progress,
        end_time,
    )
    assert seen.findings == ()


def test_node_passes_annotation_keys_x_ray_rejects_and_that_is_a_finding() -> None:
    seen = segment_seen(_body("node-rich.json"), 0.0)
    assert seen.findings == (
        Finding(
            Check.ANNOTATION, "annotation key 'bad-key!': only letters, digits and _ are allowed"
        ),
    )
    assert seen.annotations["bad-key!"] == "sanitized?"


_VALID = {
    "trace_id": "1-6b083ac5-cf4e36a43b5d1e2903736e8f",
    "id": "c7e5ae2b70951cf8",
    "name": "svc",
    "start_time": 1795701445.76,
    "end_time": 1795701445.77,
}


def _doc(**changes: object) -> bytes:
    doc = {**_VALID, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not _DROP}).encode()


_DROP = object()


@pytest.mark.parametrize(
    ("body", "checks"),
    [
        pytest.param(_doc(), [], id="valid"),
        pytest.param(_doc(end_time=_DROP, in_progress=True), [], id="in-progress"),
        pytest.param(b"", [Check.NOT_JSON], id="empty"),
        pytest.param(b'{"id": ', [Check.NOT_JSON], id="truncated"),
        pytest.param(b'{"name": "\xff"}', [Check.NOT_JSON], id="invalid-utf8"),
        pytest.param(b"[" * 50_000, [Check.NOT_JSON], id="deeply-nested"),
        pytest.param(b"[1, 2]", [Check.NOT_OBJECT], id="array"),
        pytest.param(b'"segment"', [Check.NOT_OBJECT], id="string"),
        pytest.param(_doc(trace_id=_DROP), [Check.TRACE_ID], id="no-trace-id"),
        pytest.param(_doc(trace_id="1-6b083ac5-cf4e"), [Check.TRACE_ID], id="short-trace-id"),
        pytest.param(
            _doc(trace_id="2-6b083ac5-cf4e36a43b5d1e2903736e8f"), [Check.TRACE_ID], id="version"
        ),
        pytest.param(_doc(trace_id=17), [Check.TRACE_ID], id="numeric-trace-id"),
        pytest.param(_doc(id=_DROP), [Check.ID], id="no-id"),
        pytest.param(_doc(id="c7e5ae2b70951cfz"), [Check.ID], id="non-hex-id"),
        pytest.param(_doc(id="c7e5ae2b70951cf8a"), [Check.ID], id="long-id"),
        pytest.param(_doc(name=_DROP), [Check.NAME], id="no-name"),
        pytest.param(_doc(name=""), [Check.NAME], id="empty-name"),
        pytest.param(_doc(name="n" * 201), [Check.NAME], id="long-name"),
        pytest.param(_doc(start_time=_DROP), [Check.START_TIME], id="no-start"),
        pytest.param(_doc(start_time="now"), [Check.START_TIME], id="text-start"),
        pytest.param(_doc(start_time=True), [Check.START_TIME], id="bool-start"),
        pytest.param(_doc(end_time=_DROP), [Check.END_TIME], id="neither-end-nor-in-progress"),
        pytest.param(_doc(end_time=_DROP, in_progress=False), [Check.END_TIME], id="not-open"),
        pytest.param(_doc(end_time="later"), [Check.END_TIME], id="text-end"),
        pytest.param(
            _doc(type="subsegment", parent_id="009270b408c6c628"), [], id="lone-subsegment"
        ),
        pytest.param(_doc(type="subsegment"), [Check.SUBSEGMENT], id="lone-without-parent"),
        pytest.param(
            _doc(type="subsegment", parent_id="0092"), [Check.SUBSEGMENT], id="short-parent"
        ),
        pytest.param(_doc(type="segment"), [Check.SUBSEGMENT], id="type-segment"),
        pytest.param(
            _doc(parent_id="009270b408c6c628", namespace="remote"),
            [Check.SUBSEGMENT],
            id="lone-without-type",
        ),
        pytest.param(_doc(parent_id="009270b408c6c628"), [], id="segment-with-upstream-parent"),
        pytest.param(_doc(annotations={"ok_Key9": 1, "bad key": 2}), [Check.ANNOTATION], id="key"),
        pytest.param(_doc(annotations={"ünï": "x"}), [Check.ANNOTATION], id="non-ascii-key"),
        pytest.param(_doc(annotations={"k": [1]}), [Check.ANNOTATION], id="list-value"),
        pytest.param(_doc(annotations={"k": None}), [Check.ANNOTATION], id="null-value"),
        pytest.param(
            _doc(subsegments=[{"subsegments": [{"annotations": {"a.b": 1}}]}]),
            [Check.ANNOTATION],
            id="nested-annotation",
        ),
        pytest.param(_doc(metadata={"pad": "x" * (64 * 1024)}), [Check.TOO_LARGE], id="above-64kb"),
        pytest.param(b" " * (64 * 1024 + 1), [Check.TOO_LARGE, Check.NOT_JSON], id="large-junk"),
        pytest.param(
            b"{}", [Check.TRACE_ID, Check.ID, Check.NAME, Check.START_TIME, Check.END_TIME]
        ),
    ],
)
def test_validation_findings(body: bytes, checks: list[Check]) -> None:
    seen = segment_seen(body, 0.0)
    assert [finding.check for finding in seen.findings] == checks
    assert seen.size == len(body)


def test_segment_seen_keeps_only_usable_values() -> None:
    body = _doc(
        start_time=math.nan,
        end_time=math.inf,
        error="yes",
        http={"response": {"status": "500"}},
        annotations={"n": None, "f": 1.5, "b": False},
        type="weird",
    )
    seen = segment_seen(body, 0.0)
    assert (seen.start_time, seen.end_time) == (None, None)
    assert (seen.error, seen.http_status) == (False, None)
    assert seen.annotations == {"f": 1.5, "b": False}
    assert seen.type == "segment"


def test_segment_seen_keeps_the_raw_text_of_invalid_utf8() -> None:
    assert segment_seen(b"\xffabc", 0.0).raw == "\ufffdabc"


# --- NDJSON codec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        *_mixed(4),
        Rejected(reason="missing_header", head=bytes(range(64))),
        DeliveryFailed(
            sink="xray",
            kind=ErrorKind.TIMEOUT,
            status=None,
            message="timed out",
            segments=7,
            given_up=True,
        ),
        segment_seen(_body("node-rich.json"), 1795701464.93),
        segment_seen(_body("node-in-progress-subsegment.json"), 1.0),
        segment_seen(b"\x00not json", 2.0),
        Lost(total=976),
    ],
    ids=lambda event: type(event).__name__,
)
def test_events_round_trip_through_one_ndjson_line(event: Event | Lost) -> None:
    line = encode_event(event)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_event(line) == event
    assert decode_event(line.decode()) == event


def test_event_lines_name_their_type() -> None:
    types = [json.loads(encode_event(event))["type"] for event in _mixed(4)]
    assert types == ["snapshot", "rejected", "dropped", "delivery_failed"]
    line = json.loads(encode_event(segment_seen(_body("py-streaming-subsegment.json"), 0.0)))
    assert (line["type"], line["doc_type"]) == ("segment", "subsegment")


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'"snapshot"',
        b"{}",
        b'{"type": "telepathy"}',
        b'{"type": "dropped", "reason": "x"}',
        b'{"type": "dropped", "reason": "x", "count": 1, "extra": 2}',
        b'{"type": "delivery_failed", "sink": "x", "kind": "nope"}',
        b'{"type": "snapshot", "seq": 1}',
    ],
)
def test_decode_event_refuses_what_is_not_an_event(line: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the one documented failure mode
        decode_event(line)


def test_a_huge_integer_time_is_a_finding_not_a_crash() -> None:
    huge = b"1" + b"0" * 400
    body = (
        b'{"trace_id":"1-5759e988-bd862e3fe1be46a994272793","id":"70de5b6f19ff9a0a",'
        b'"name":"a","start_time":' + huge + b',"end_time":' + huge + b"}"
    )
    seen = segment_seen(body, 1.0)
    assert seen.start_time is None
    assert [finding.check.value for finding in seen.findings] == ["start_time", "end_time"]
