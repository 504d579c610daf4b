"""Telemetry under a virtual clock: exact tick times, exact counts, Go's queue and log lines.

X-Ray is faked at the httpx transport; the client, signing and error classification are real.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from botocore.credentials import Credentials

from xray_trio.config import Config
from xray_trio.errors import ErrorKind
from xray_trio.signing import CredentialSource
from xray_trio.stats import Counters
from xray_trio.telemetry import run_daemon_telemetry, run_telemetry
from xray_trio.transport import HttpxTransport
from xray_trio.xray_client import XRayClient

if TYPE_CHECKING:
    import logging

    from tests.logs import Lines

EPOCH = 1_700_000_000.0
ZERO_ERRORS = {
    "TimeoutCount": 0,
    "ConnectionRefusedCount": 0,
    "HTTPCode4XXCount": 0,
    "HTTPCode5XXCount": 0,
    "UnknownHostCount": 0,
    "OtherCount": 0,
}

Outcome = Callable[[httpx.Request], Any]


def status(code: int) -> Outcome:
    return lambda _: httpx.Response(code, json={"__type": "Injected", "message": "no"})


def raises(exc: Exception) -> Outcome:
    def outcome(request: httpx.Request) -> httpx.Response:
        raise exc

    return outcome


def transport_error(cls: type[httpx.TransportError], cause: BaseException) -> Outcome:
    def outcome(request: httpx.Request) -> httpx.Response:
        raise cls(str(cause), request=request) from cause

    return outcome


async def hang(_: httpx.Request) -> httpx.Response:
    await trio.sleep(3600)
    raise AssertionError("not reached")  # pragma: no cover


class FakeTelemetry:
    """PutTelemetryRecords at the transport: answers 200 unless an outcome is queued."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, Any]]] = []
        self.outcomes: list[Outcome] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/TelemetryRecords"
        self.calls.append((trio.current_time(), json.loads(request.content)))
        if self.outcomes:
            answer = self.outcomes.pop(0)(request)
            if not isinstance(answer, httpx.Response):
                answer = await answer
            return answer  # type: ignore[no-any-return]
        return httpx.Response(200, json={})

    def records(self, call: int) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.calls[call][1]["TelemetryRecords"]
        return records


@pytest.fixture
def fake() -> FakeTelemetry:
    return FakeTelemetry()


@pytest.fixture
async def client(fake: FakeTelemetry) -> XRayClient:
    credentials = CredentialSource(
        lambda: Credentials("AKID", "secret"), limiter=trio.CapacityLimiter(1)
    )
    # Resolve once now, while no deadline is pending: a worker thread under the autojump clock
    # would otherwise let virtual time run past a request deadline.
    await credentials.get()
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return XRayClient(
        HttpxTransport(http, "https://xray.us-west-2.amazonaws.com"),
        endpoint="https://xray.us-west-2.amazonaws.com",
        region="us-west-2",
        credentials=credentials,
    )


def record(**counts: Any) -> dict[str, Any]:
    errors = ZERO_ERRORS | counts.pop("errors", {})
    return {
        "SegmentsReceivedCount": 0,
        "SegmentsSentCount": 0,
        "SegmentsSpilloverCount": 0,
        "SegmentsRejectedCount": 0,
        "BackendConnectionErrors": errors,
    } | counts


def start(
    nursery: trio.Nursery,
    client: XRayClient,
    counters: Counters,
    logger: logging.Logger,
    shutdown: trio.Event,
) -> None:
    nursery.start_soon(
        functools.partial(
            run_telemetry,
            client,
            counters,
            hostname="ip-10-0-0-1.ec2.internal",
            instance_id="i-0123456789abcdef0",
            resource_arn="arn:aws:ec2:us-west-2:123456789012:instance/i-0123456789abcdef0",
            logger=logger,
            shutdown=shutdown,
            clock=lambda: EPOCH + trio.current_time(),
        )
    )


async def test_records_at_60_and_120_seconds_count_what_happened_in_between(
    autojump_clock: trio.abc.Clock,
    client: XRayClient,
    fake: FakeTelemetry,
    logger: logging.Logger,
    lines: Lines,
) -> None:
    counters, shutdown = Counters(), trio.Event()
    async with trio.open_nursery() as nursery:
        start(nursery, client, counters, logger, shutdown)
        await trio.sleep(10)
        counters.received += 12
        counters.rejected_invalid_header += 1
        counters.rejected_missing_header += 1
        counters.unprocessed += 1
        counters.spillover += 2
        counters.sent += 7
        for n, kind in enumerate(ErrorKind, start=1):
            counters.upload_errors[kind] += n
        await trio.sleep(60)  # t=70
        counters.received += 3
        counters.sent += 3
        counters.upload_errors[ErrorKind.HTTP_5XX] += 2
        fake.outcomes.append(status(500))  # the call at 120 s fails
        await trio.sleep(120)  # t=190
        shutdown.set()

    assert [t for t, _ in fake.calls] == [60.0, 120.0, 180.0, 190.0]
    assert fake.calls[0][1] | {"TelemetryRecords": None} == {
        "TelemetryRecords": None,
        "EC2InstanceId": "i-0123456789abcdef0",
        "Hostname": "ip-10-0-0-1.ec2.internal",
        "ResourceARN": "arn:aws:ec2:us-west-2:123456789012:instance/i-0123456789abcdef0",
    }
    first = record(
        Timestamp=EPOCH + 60,
        SegmentsReceivedCount=12,
        SegmentsSentCount=7,
        SegmentsSpilloverCount=2,
        SegmentsRejectedCount=3,
        errors={
            "TimeoutCount": 1,
            "ConnectionRefusedCount": 2,
            "HTTPCode4XXCount": 3,
            "HTTPCode5XXCount": 4,
            "UnknownHostCount": 5,
            "OtherCount": 6,
        },
    )
    second = record(
        Timestamp=EPOCH + 120,
        SegmentsReceivedCount=3,
        SegmentsSentCount=3,
        errors={"HTTPCode5XXCount": 2},
    )
    # The failed call at 120 s is counted in the next record; its record is sent again.
    third = record(Timestamp=EPOCH + 180, errors={"HTTPCode5XXCount": 1})
    final = record(Timestamp=EPOCH + 190)
    assert fake.records(0) == [first]
    assert fake.records(1) == [second]
    assert fake.records(2) == [second, third]
    assert fake.records(3) == [final]
    debug = [m for m in lines.messages() if "telemetry" in m.lower()]
    assert debug[0] == "Telemetry initiated"
    assert debug[1:4] == [
        "Send 1 telemetry record(s)",
        "Failed to send telemetry 1 record(s). Re-queue records. operation error XRay: "
        "PutTelemetryRecords, https response error StatusCode: 500, RequestID: , "
        "api error Injected: no",
        "Send 2 telemetry record(s)",
    ]
    assert debug[-2:] == ["Send 1 telemetry record(s)", "telemetry: done!"]


async def test_nothing_is_sent_before_the_first_datagram(
    autojump_clock: trio.abc.Clock,
    client: XRayClient,
    fake: FakeTelemetry,
    logger: logging.Logger,
    lines: Lines,
) -> None:
    counters, shutdown = Counters(), trio.Event()
    async with trio.open_nursery() as nursery:
        start(nursery, client, counters, logger, shutdown)
        await trio.sleep(150)
        shutdown.set()
    assert fake.calls == []
    assert lines.messages().count("Skipped telemetry data as no segments found") == 3


async def test_once_a_datagram_arrived_every_minute_reports_even_all_zero(
    autojump_clock: trio.abc.Clock,
    client: XRayClient,
    fake: FakeTelemetry,
    logger: logging.Logger,
) -> None:
    counters, shutdown = Counters(), trio.Event()
    async with trio.open_nursery() as nursery:
        start(nursery, client, counters, logger, shutdown)
        await trio.sleep(61)
        counters.received += 1
        await trio.sleep(120)  # t=181
        nursery.cancel_scope.cancel()  # the daemon's deadline: the final record still goes
    assert [t for t, _ in fake.calls] == [120.0, 180.0, 181.0]
    assert fake.records(0) == [record(Timestamp=EPOCH + 120, SegmentsReceivedCount=1)]
    assert fake.records(1) == [record(Timestamp=EPOCH + 180)]


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        (status(500), "HTTPCode5XXCount"),
        (status(503), "HTTPCode5XXCount"),
        (status(429), "HTTPCode4XXCount"),
        (status(403), "HTTPCode4XXCount"),
        (status(302), "OtherCount"),
        (hang, "TimeoutCount"),
        (raises(httpx.ConnectTimeout("timed out")), "TimeoutCount"),
        (raises(httpx.ReadTimeout("timed out")), "TimeoutCount"),
        (
            transport_error(httpx.ConnectError, ConnectionRefusedError(111, "Connection refused")),
            "ConnectionRefusedCount",
        ),
        (
            transport_error(httpx.ConnectError, socket.gaierror(-2, "Name or service not known")),
            "UnknownHostCount",
        ),
        (raises(httpx.RemoteProtocolError("Server disconnected")), "OtherCount"),
    ],
)
async def test_a_failed_send_is_classified_into_the_next_record(
    autojump_clock: trio.abc.Clock,
    client: XRayClient,
    fake: FakeTelemetry,
    logger: logging.Logger,
    outcome: Outcome,
    field: str,
) -> None:
    counters, shutdown = Counters(), trio.Event()
    counters.received = 1
    fake.outcomes.append(outcome)
    async with trio.open_nursery() as nursery:
        start(nursery, client, counters, logger, shutdown)
        await trio.sleep(121)
        shutdown.set()
    assert [t for t, _ in fake.calls][:2] == [60.0, 120.0]
    assert fake.records(1) == [
        record(Timestamp=EPOCH + 60, SegmentsReceivedCount=1),
        record(Timestamp=EPOCH + 120, errors={field: 1}),
    ]


async def test_the_queue_keeps_30_records_and_sends_them_10_per_call(
    autojump_clock: trio.abc.Clock,
    client: XRayClient,
    fake: FakeTelemetry,
    logger: logging.Logger,
    lines: Lines,
) -> None:
    counters, shutdown = Counters(), trio.Event()
    counters.received = 1
    fake.outcomes.extend([status(500)] * 31)
    async with trio.open_nursery() as nursery:
        start(nursery, client, counters, logger, shutdown)
        await trio.sleep(32 * 60 + 1)
        shutdown.set()
    failed, sent = fake.calls[:31], fake.calls[31:34]
    # A failing call is the first chunk; the records behind it are re-queued unsent.
    assert [len(body["TelemetryRecords"]) for _, body in failed] == [
        min(tick, 10) for tick in range(1, 32)
    ]
    assert [t for t, _ in sent] == [32 * 60.0] * 3
    batches = [body["TelemetryRecords"] for _, body in sent]
    assert [len(batch) for batch in batches] == [10, 10, 10]
    stamps = [r["Timestamp"] - EPOCH for batch in batches for r in batch]
    assert stamps == [60.0 * tick for tick in range(3, 33)]  # ticks 1 and 2 were dropped
    assert all(r["BackendConnectionErrors"]["HTTPCode5XXCount"] == 1 for r in batches[0])
    assert lines.messages().count("Telemetry Buffers truncated") == 2
    assert "Send 30 telemetry record(s)" in lines.messages()


async def test_the_daemon_entry_takes_host_identity_from_the_environment(
    client: XRayClient, fake: FakeTelemetry, logger: logging.Logger
) -> None:
    counters, shutdown = Counters(), trio.Event()
    counters.received = 4
    shutdown.set()
    with trio.fail_after(10):
        await run_daemon_telemetry(
            client,
            counters,
            config=Config(resource_arn="arn:aws:ecs:task/x", local_mode=True),
            env={"AWS_HOSTNAME": "web-1", "AWS_INSTANCE_ID": "i-42"},
            logger=logger,
            limiter=trio.CapacityLimiter(1),
            shutdown=shutdown,
        )
    [(_, body)] = fake.calls
    assert (body["Hostname"], body["EC2InstanceId"], body["ResourceARN"]) == (
        "web-1",
        "i-42",
        "arn:aws:ecs:task/x",
    )
    assert body["TelemetryRecords"][0]["SegmentsReceivedCount"] == 4
