"""Delivery, retries and give-up of the X-Ray sink, against a fake X-Ray at the HTTP boundary."""

from __future__ import annotations

import json
import logging
import random
import re

import httpx
import pytest
import trio
import trio.testing
from botocore.credentials import Credentials

from xray_trio.batch import Batch
from xray_trio.budget import ByteBudget, document_cost
from xray_trio.config import Tuning
from xray_trio.errors import ErrorKind
from xray_trio.log import TRACE
from xray_trio.signing import CredentialSource
from xray_trio.stats import Counters
from xray_trio.transport import HttpxTransport
from xray_trio.uploader import Uploader, backoff_s, run_uploaders
from xray_trio.xray_client import XRayClient, encode_trace_segments

SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-east-1/xray/aws4_request, "
    r"SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*x-amz-date[a-z0-9;-]*, Signature=[0-9a-f]{64}"
)


class FakeXRay:
    """Scripted answers, one per request; records what arrived and when."""

    def __init__(self, script: list[object] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []
        self.delivered: list[str] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        step = self.script.pop(0) if self.script else 200
        if step == "hang":
            await trio.sleep(3600)
        if isinstance(step, Exception):
            raise step
        docs = json.loads(request.content)["TraceSegmentDocuments"]
        if isinstance(step, dict):  # unprocessed ids
            unprocessed = [{"Id": i, "ErrorCode": "X", "Message": "m"} for i in step["ids"]]
            self.delivered += [d for d in docs if json.loads(d)["id"] not in step["ids"]]
            return httpx.Response(200, json={"UnprocessedTraceSegments": unprocessed})
        assert isinstance(step, int)
        if step == 200:
            self.delivered += docs
            return httpx.Response(200, json={"UnprocessedTraceSegments": []})
        body = {"__type": "ThrottlingException" if step == 429 else "Boom", "message": "no"}
        return httpx.Response(step, json=body)


def _uploader(
    fake: FakeXRay, counters: Counters, logger: logging.Logger, **tuning: float
) -> tuple[Uploader, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    creds = Credentials("AKIDEXAMPLE", "secret")
    client = XRayClient(
        HttpxTransport(http, "https://xray.us-east-1.amazonaws.com"),
        endpoint="https://xray.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=CredentialSource.static(creds),
    )
    uploader = Uploader(
        client, counters=counters, tuning=Tuning(**tuning), logger=logger, rng=random.Random(7)
    )
    return uploader, http


def _docs(n: int) -> list[bytes]:
    return [b'{"id": "%016x", "trace_id": "1-00000000-%024x"}' % (i, i) for i in range(n)]


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logger() -> logging.Logger:
    logger = logging.Logger("test", level=logging.DEBUG)
    logger.addHandler(Recorder())
    return logger


async def test_a_batch_is_sent_signed_and_byte_exact(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    fake, counters = FakeXRay(), Counters()
    uploader, http = _uploader(fake, counters, logger)
    docs = [*_docs(3), b'{"id":"00000000000000ff","name":"\xc3\xbc"}']
    async with http:
        await uploader.deliver(docs)
    (request,) = fake.requests
    assert request.url.path == "/TraceSegments"
    assert SIGV4.fullmatch(request.headers["authorization"])
    assert "x-amz-date" in request.headers
    assert re.fullmatch(r"\d+\.\d{9}", request.headers["x-amzn-xray-timestamp"])
    assert "xray-agent/xray-daemon/" in request.headers["user-agent"]
    assert [d.encode() for d in fake.delivered] == docs
    assert (counters.sent, counters.batches_sent, counters.given_up) == (4, 1, 0)


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (500, ErrorKind.HTTP_5XX),
        (503, ErrorKind.HTTP_5XX),
        (429, ErrorKind.HTTP_4XX),
        ("hang", ErrorKind.TIMEOUT),
        (httpx.ConnectError("refused", request=None), ErrorKind.OTHER),
        (httpx.ReadTimeout("slow", request=None), ErrorKind.TIMEOUT),
    ],
)
async def test_retriable_failures_are_retried_until_delivered(
    autojump_clock: trio.testing.MockClock,
    logger: logging.Logger,
    failure: object,
    kind: ErrorKind,
) -> None:
    fake, counters = FakeXRay([failure, failure, failure, 200]), Counters()
    uploader, http = _uploader(fake, counters, logger)
    async with http:
        await uploader.deliver(_docs(50))
    assert len(fake.requests) == 4
    assert len(fake.delivered) == 50
    assert counters.upload_errors[kind] == 3
    assert (counters.retries, counters.sent, counters.given_up) == (3, 50, 0)
    # Back-off grows: each gap is at least the attempt's timeout (if any) and at most the
    # attempt's timeout plus its jitter ceiling.
    gaps = [b - a for a, b in zip(fake.times, fake.times[1:], strict=False)]
    timeout = 2.0 if failure == "hang" else 0.0
    assert all(timeout - 1e-9 <= gap <= timeout + 0.1 * 2**i + 1e-9 for i, gap in enumerate(gaps))


async def test_a_rejected_request_is_not_retried(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    fake, counters = FakeXRay([400]), Counters()
    uploader, http = _uploader(fake, counters, logger)
    async with http:
        await uploader.deliver(_docs(5))
    assert len(fake.requests) == 1
    assert (counters.given_up, counters.sent) == (5, 0)
    assert counters.upload_errors[ErrorKind.HTTP_4XX] == 1


async def test_a_failing_endpoint_is_given_up_after_the_retry_deadline(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    fake, counters = FakeXRay([500] * 1000), Counters()
    uploader, http = _uploader(fake, counters, logger, retry_deadline_s=30.0)
    async with http:
        await uploader.deliver(_docs(10))
    assert trio.current_time() <= 30.0
    assert counters.given_up == 10
    assert counters.sent == 0
    assert counters.upload_errors[ErrorKind.HTTP_5XX] == len(fake.requests) > 5


async def test_unprocessed_segments_are_retried_once_then_counted(
    autojump_clock: trio.testing.MockClock,
    logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    docs = _docs(4)
    ids = [f"{1:016x}", f"{2:016x}"]
    fake, counters = FakeXRay([{"ids": ids}, {"ids": ids[:1]}]), Counters()
    uploader, http = _uploader(fake, counters, logger)
    logger.addHandler(caplog.handler)
    async with http:
        await uploader.deliver(docs)
    assert len(fake.requests) == 2
    assert sorted(fake.delivered) == sorted(d.decode() for d in docs if d != docs[1])
    assert (counters.sent, counters.unprocessed) == (3, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert "Sent batch of 4 segments but had 2 Unprocessed segments" in messages[0]
    assert any(m.startswith(f"Unprocessed trace 1-00000000-{1:024x}, segment:") for m in messages)


async def test_unprocessed_documents_sharing_an_id_are_each_retried(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    # An SDK sends a segment in progress, then complete, with the same id.
    in_progress = b'{"id": "00000000000000aa", "in_progress": true}'
    complete = b'{"id": "00000000000000aa", "end_time": 2}'
    ids = ["00000000000000aa", "00000000000000aa"]
    fake, counters = FakeXRay([{"ids": ids}, 200]), Counters()
    uploader, http = _uploader(fake, counters, logger)
    async with http:
        await uploader.deliver([in_progress, complete])
    retried = json.loads(fake.requests[1].content)["TraceSegmentDocuments"]
    assert sorted(retried) == sorted([in_progress.decode(), complete.decode()])
    assert (counters.sent, counters.unprocessed) == (2, 0)


def test_backoff_is_jittered_and_capped() -> None:
    tuning, rng = Tuning(retry_base_s=0.5, retry_max_s=4.0), random.Random(1)
    samples = [[backoff_s(attempt, tuning, rng) for _ in range(200)] for attempt in (1, 2, 3, 9)]
    assert all(max(s) <= c for s, c in zip(samples, (0.5, 1.0, 2.0, 4.0), strict=True))
    assert all(max(s) > 0.8 * c for s, c in zip(samples, (0.5, 1.0, 2.0, 4.0), strict=True))
    assert len({round(x, 6) for x in samples[0]}) > 100


def test_body_is_built_from_raw_bytes_without_reparsing() -> None:
    docs = [b'{"b": 1,   "a":2}', b"not json", b"\xff"]
    body = json.loads(encode_trace_segments(docs))
    assert body == {"TraceSegmentDocuments": ['{"b": 1,   "a":2}', "not json", "\ufffd"]}


class SlowXRay(FakeXRay):
    """Answers every call after ``delay`` seconds, tracking how many are in flight at once."""

    def __init__(self, delay: float, script: list[object] | None = None) -> None:
        super().__init__(script)
        self.delay = delay
        self.in_flight = 0
        self.peak = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.delay)
            return await super().handler(request)
        finally:
            self.in_flight -= 1


async def _run_pool(
    fake: FakeXRay, logger: logging.Logger, batches: int, *, concurrency: int, maximum: int
) -> tuple[Counters, ByteBudget]:
    counters = Counters()
    uploader, http = _uploader(fake, counters, logger)
    budget = ByteBudget(100_000_000)
    send, receive = trio.open_memory_channel[Batch](batches)
    for _i in range(batches):
        docs = _docs(50)
        for doc in docs:
            assert budget.try_take(document_cost(doc))
        send.send_nowait(Batch(docs, budget, holders=1))
    send.close()
    async with http:
        await run_uploaders(
            receive, uploader, concurrency=concurrency, max_concurrency=maximum, logger=logger
        )
    return counters, budget


async def test_a_slow_endpoint_gets_more_calls_in_flight(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    fake = SlowXRay(0.2)
    counters, budget = await _run_pool(fake, logger, 80, concurrency=2, maximum=16)
    assert counters.sent == 80 * 50
    assert fake.peak == 16  # grew from 2 to the cap while batches waited
    assert budget.used == 0
    # Go's fixed 2 uploaders would need 80 / 2 * 0.2 = 8 s.
    assert trio.current_time() < 3.0


async def test_throttling_halves_the_concurrency(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    fake = SlowXRay(0.2, [200] * 30 + [429] * 16 + [200] * 1000)
    counters, _ = await _run_pool(fake, logger, 120, concurrency=2, maximum=16)
    assert counters.sent == 120 * 50
    assert counters.upload_errors[ErrorKind.HTTP_4XX] == 16
    messages = [r.getMessage() for r in logger.handlers[0].records]  # type: ignore[attr-defined]
    assert any(m.startswith("Upload concurrency lowered to ") for m in messages)


async def test_a_fast_endpoint_stays_at_the_configured_concurrency(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    fake = SlowXRay(0.0)
    logger.setLevel(TRACE)
    counters, _ = await _run_pool(fake, logger, 40, concurrency=8, maximum=64)
    assert counters.sent == 40 * 50
    assert fake.peak <= 8
    messages = [r.getMessage() for r in logger.handlers[0].records]  # type: ignore[attr-defined]
    assert messages[-1] == "Segment batch: done!"  # Go's Trace line as the uploaders finish


async def test_failures_are_published_and_flip_health_until_a_success(
    autojump_clock: trio.testing.MockClock, logger: logging.Logger
) -> None:
    from xray_trio.events import DeliveryFailed, EventHub
    from xray_trio.health import Health
    from xray_trio.snapshot import UploadLatency

    fake, counters = FakeXRay([500] * 10 + [200]), Counters()
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))
    client = XRayClient(
        HttpxTransport(http, "https://x"),
        endpoint="https://x",
        region="us-east-1",
        credentials=CredentialSource.static(Credentials("AKIDEXAMPLE", "secret")),
    )
    hub, health, latency = EventHub(), Health(["xray"], max_failures=10), UploadLatency()
    uploader = Uploader(
        client,
        counters=counters,
        tuning=Tuning(),
        logger=logger,
        rng=random.Random(1),
        hub=hub,
        health=health,
        latency=latency,
    )
    health.intake_up = True
    unhealthy_seen = []

    async def watch() -> None:
        while True:
            unhealthy_seen.append(not health.check().healthy)
            await trio.sleep(0.05)

    async with http, hub.open_subscription(max_buffer=100) as sub:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await uploader.deliver(_docs(3))
            nursery.cancel_scope.cancel()
        failures = [sub.events.receive_nowait() for _ in range(10)]
    assert all(isinstance(f, DeliveryFailed) and f.status == 500 for f in failures)
    assert not any(f.given_up for f in failures)  # type: ignore[union-attr]
    assert any(unhealthy_seen)  # 10 failures in a row made the sink unhealthy...
    assert health.check().healthy  # ...and the success made it healthy again
    assert latency.count == 11
