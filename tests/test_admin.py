"""The admin endpoint over real loopback sockets, and the Health rules behind /healthz.

HTTP tests run on trio's real clock: autojump would jump past httpx's timeouts while the
sockets are busy. Health's timing is tested without sockets, under autojump_clock.
"""

from __future__ import annotations

import logging
from contextlib import aclosing, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from xray_trio.admin import serve_admin
from xray_trio.errors import ErrorKind, StartupError
from xray_trio.events import (
    DeliveryFailed,
    Event,
    EventHub,
    Lost,
    Rejected,
    SnapshotEvent,
    decode_event,
    segment_seen,
)
from xray_trio.health import Health
from xray_trio.snapshot import Gauges, ProxyCounters, Snapshot, Snapshotter, UploadLatency
from xray_trio.stats import Counters

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

LOGGER = logging.getLogger("tests.admin")

pytestmark = pytest.mark.filterwarnings(
    # httpx's response iterators are nested async generators, and leaving an endless /events
    # stream early lets the inner ones be finalised by trio, which warns (encode/httpx#3686).
    "ignore:Async generator 'http(x|core)\\..*' was garbage collected:ResourceWarning"
)


class Admin:
    """A running admin endpoint and the objects a test scripts it through."""

    def __init__(self, url: str, hub: EventHub, counters: Counters, health: Health) -> None:
        self.url = url
        self.hub = hub
        self.counters = counters
        self.health = health


@pytest.fixture
async def admin(nursery: trio.Nursery) -> Admin:
    hub = EventHub()
    counters = Counters()
    health = Health(["xray", "stdout"], max_failures=3)
    take = Snapshotter(
        counters,
        lambda: Gauges(budget_used_bytes=10, budget_total_bytes=100),
        latency=UploadLatency(),
        proxy=ProxyCounters(),
        started_at=trio.current_time(),
    )
    host, port = await nursery.start(
        partial(
            serve_admin, "127.0.0.1:0", hub=hub, take_snapshot=take, health=health, logger=LOGGER
        )
    )
    return Admin(f"http://{host}:{port}", hub, counters, health)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def test_an_address_without_host_binds_loopback(nursery: trio.Nursery) -> None:
    started = partial(
        serve_admin,
        ":0",
        hub=EventHub(),
        take_snapshot=Snapshotter(
            Counters(), Gauges, latency=UploadLatency(), proxy=ProxyCounters(), started_at=0.0
        ),
        health=Health([]),
        logger=LOGGER,
    )
    host, port = await nursery.start(started)
    assert host == "127.0.0.1"
    assert port > 0


async def test_a_busy_port_is_a_startup_error(nursery: trio.Nursery, admin: Admin) -> None:
    port = admin.url.rsplit(":", 1)[1]
    with pytest.raises(StartupError, match="bind"):
        await serve_admin(
            f"127.0.0.1:{port}",
            hub=admin.hub,
            take_snapshot=lambda: pytest.fail("not reached"),
            health=admin.health,
            logger=LOGGER,
        )


@pytest.mark.parametrize("address", ["2020", "127.0.0.1:http", "::1:0"])
async def test_a_malformed_address_is_a_startup_error(address: str) -> None:
    with pytest.raises(StartupError):
        await serve_admin(
            address,
            hub=EventHub(),
            take_snapshot=lambda: pytest.fail("not reached"),
            health=Health([]),
            logger=LOGGER,
        )


async def test_unknown_paths_are_404_and_other_methods_405(
    admin: Admin, client: httpx.AsyncClient
) -> None:
    assert (await client.get(f"{admin.url}/nope")).status_code == 404
    response = await client.post(f"{admin.url}/metrics")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


# --- /healthz ----------------------------------------------------------------------------------


async def test_healthz_follows_intake_and_sinks(admin: Admin, client: httpx.AsyncClient) -> None:
    url = f"{admin.url}/healthz"
    response = await client.get(url)
    assert response.status_code == 503
    assert response.json()["reason"] == "intake is down"

    admin.health.intake_up = True
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["status"], body["intake"]) == ("ok", "up")
    assert body["sinks"]["xray"] == {
        "healthy": True,
        "consecutive_failures": 0,
        "last_success_age_s": None,
        "last_error": "",
    }

    for _ in range(3):
        admin.health.upload_failed("xray", "HTTP 503 ServiceUnavailable")
    assert (await client.get(url)).status_code == 200  # stdout still delivers
    for _ in range(3):
        admin.health.upload_failed("stdout", "broken pipe")
    response = await client.get(url)
    assert response.status_code == 503
    assert response.json()["reason"] == (
        "no sink is delivering"
        "; sink xray: 3 failed uploads in a row: HTTP 503 ServiceUnavailable"
        "; sink stdout: 3 failed uploads in a row: broken pipe"
    )

    admin.health.upload_succeeded("xray")
    response = await client.get(url)
    assert response.status_code == 200
    sinks = response.json()["sinks"]
    assert sinks["xray"]["healthy"] is True
    assert sinks["xray"]["last_success_age_s"] >= 0
    assert sinks["stdout"]["healthy"] is False


async def test_a_sink_failing_for_too_long_is_unhealthy_even_with_few_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    health = Health(["xray"], max_failures=10, max_failing_s=30.0)
    health.intake_up = True
    health.upload_succeeded("xray")
    await trio.sleep(100)  # idle: silence is not failure
    assert health.check().healthy
    health.upload_failed("xray", "timeout")
    await trio.sleep(29)
    health.upload_failed("xray", "timeout")
    assert health.check().healthy
    await trio.sleep(1)
    report = health.check()
    assert not report.healthy
    assert report.body["reason"] == "no sink is delivering; sink xray: failing for 30 s: timeout"
    assert report.body["sinks"]["xray"]["last_success_age_s"] == 130.0
    health.upload_succeeded("xray")
    assert health.check().healthy


# --- /metrics ----------------------------------------------------------------------------------


async def test_metrics_serve_the_current_snapshot(admin: Admin, client: httpx.AsyncClient) -> None:
    admin.counters.received = 12
    admin.counters.upload_errors[ErrorKind.HTTP_5XX] = 2
    response = await client.get(f"{admin.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples["xray_trio_segments_received_total", ()] == 12
    assert samples["xray_trio_upload_errors_total", (("kind", "http_5xx"),)] == 2
    assert samples["xray_trio_buffer_bytes", (("state", "used"),)] == 10


# --- /events -----------------------------------------------------------------------------------


async def _settle(condition: Callable[[], bool]) -> None:
    """Let the server run until ``condition()`` holds (it reacts to socket events)."""
    with trio.fail_after(5):
        while not condition():
            await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def _events(
    client: httpx.AsyncClient, url: str
) -> AsyncIterator[tuple[httpx.Response, AsyncIterator[str]]]:
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        async with aclosing(lines):  # type: ignore[type-var]  # typed as a plain iterator
            yield response, lines


async def test_events_stream_ndjson_while_events_are_published(
    admin: Admin, client: httpx.AsyncClient
) -> None:
    published: list[Event] = [
        segment_seen(b'{"name": "a"}', 1.0),
        Rejected(reason="invalid_header", head=b'{"format":"xml"}'),
        DeliveryFailed(
            sink="xray",
            kind=ErrorKind.HTTP_5XX,
            status=500,
            message="boom",
            segments=2,
            given_up=True,
        ),
    ]
    async with _events(client, f"{admin.url}/events") as (response, lines):
        assert response.headers["content-type"] == "application/x-ndjson"
        first = decode_event(await anext(lines))
        assert isinstance(first, SnapshotEvent)
        assert first.snapshot.budget_total_bytes == 100
        assert admin.hub.wants_segments
        for event in published:
            admin.hub.publish(event)
            assert decode_event(await anext(lines)) == event
    await _settle(lambda: not admin.hub.wants_segments)


async def test_events_can_be_limited_to_snapshots(admin: Admin, client: httpx.AsyncClient) -> None:
    async with _events(client, f"{admin.url}/events?snapshots=1") as (_, lines):
        assert isinstance(decode_event(await anext(lines)), SnapshotEvent)
        assert not admin.hub.wants_segments
        admin.hub.publish(Rejected(reason="missing_header", head=b"x"))
        snapshot = SnapshotEvent(snapshot=Snapshot(seq=99, uptime_s=5.0, received=3))
        admin.hub.publish(snapshot)
        assert decode_event(await anext(lines)) == snapshot


async def test_a_client_that_falls_behind_is_told_how_many_events_it_lost(
    admin: Admin, client: httpx.AsyncClient
) -> None:
    async with _events(client, f"{admin.url}/events") as (_, lines):
        await anext(lines)
        # 2,000 events with no checkpoint in between overflow the stream's 1,024-event buffer
        # (one more fits when the server task is already parked in receive()).
        for n in range(2000):
            admin.hub.publish(Rejected(reason="invalid_header", head=str(n).encode()))
        heads: list[bytes] = []
        lost: list[Lost] = []
        while not lost or len(heads) < 2000 - lost[0].total:
            event = decode_event(await anext(lines))
            if isinstance(event, Lost):
                lost.append(event)
            else:
                assert isinstance(event, Rejected)
                heads.append(event.head)
    assert len(lost) == 1
    assert lost[0].total in (975, 976)
    assert heads == [str(n).encode() for n in range(2000 - lost[0].total)]


async def test_a_client_that_disconnects_ends_its_subscription(
    admin: Admin, client: httpx.AsyncClient
) -> None:
    for _ in range(2):
        async with _events(client, f"{admin.url}/events") as (_, lines):
            await anext(lines)
            assert admin.hub.wants_segments
        await _settle(lambda: not admin.hub.wants_segments)


async def test_with_no_sink_health_depends_on_intake_alone() -> None:
    # The inspector's local-only mode runs with no sink on purpose: nothing is failing.
    health = Health([])
    health.intake_up = True
    assert health.check().body == {"status": "ok", "intake": "up", "sinks": {}}
    health.intake_up = False
    assert health.check().body["reason"] == "intake is down"
