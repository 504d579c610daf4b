"""The daemon's counters, health and event feed seen from outside, while the pipeline runs.

The daemon runs in-process against the threaded fake X-Ray on loopback, with the admin
endpoint on; everything is read the way an operator would, over HTTP.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import socket
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_xray import FakeXRay
from xray_trio.config import Config, SocketConfig, Tuning
from xray_trio.daemon import Observers, run_daemon
from xray_trio.events import EventHub, SegmentSeen, decode_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

HEADER = b'{"format":"json","version":1}\n'
FAST_RETRIES = Tuning(retry_base_s=0.01, retry_max_s=0.02, idle_timeout_s=0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _doc(i: int, pad: int = 0) -> bytes:
    return json.dumps(
        {
            "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
            "id": f"{i:016x}",
            "name": "svc",
            "start_time": 1.0,
            "end_time": 2.0,
            "pad": "x" * pad,
        }
    ).encode()


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    # The fake answers from its own thread; poll it without blocking the trio thread.
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.01)


class Running:
    def __init__(self, udp: tuple[str, int], admin: str, stop: trio.Event) -> None:
        self.udp = udp
        self.admin = admin
        self.stop = stop
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, datagram: bytes) -> None:
        self.sender.sendto(datagram, self.udp)

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{self.admin}/metrics")).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture
def fake() -> Iterator[FakeXRay]:
    with FakeXRay() as server:
        yield server


@pytest.fixture
async def daemon(
    fake: FakeXRay, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., object]]:
    """Starts daemons against ``fake``; torn down (and flushed) before the fake goes away."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    running: list[Running] = []

    async def start(*, hub: EventHub | None = None, **changes: object) -> Running:
        admin_port = _free_port()
        config = Config(
            endpoint=fake.url,
            region="us-east-1",
            local_mode=True,
            total_buffer_size_mb=16,
            admin_address=f"127.0.0.1:{admin_port}",
            socket=SocketConfig(udp_address="127.0.0.1:0", tcp_address="127.0.0.1:0"),
            tuning=FAST_RETRIES,
        )
        config = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
        stop = trio.Event()

        async def trigger() -> str:
            await stop.wait()
            return "terminated"

        udp = await nursery.start(
            functools.partial(
                run_daemon,
                config,
                logging.Logger("test", level=logging.CRITICAL),
                shutdown_trigger=trigger,
                observers=Observers(hub=hub or EventHub()),
            )
        )
        handle = Running(udp, f"http://127.0.0.1:{admin_port}", stop)
        running.append(handle)
        return handle

    # The daemons get their own nursery so that teardown waits for their shutdown to finish.
    async with trio.open_nursery() as nursery:
        yield start
        for handle in running:
            handle.stop.set()
            handle.sender.close()


async def test_counters_are_exact_for_a_scripted_run(
    fake: FakeXRay, daemon: Callable[..., object]
) -> None:
    fake.fail_next(1000)  # X-Ray is down: every batch is retried and keeps its budget
    run: Running = await daemon(total_buffer_size_mb=3)  # type: ignore[assignment]
    doc_size = 60_000
    fits = (3 * 1024 * 1024) // (doc_size + 128)  # what the byte budget can hold: 52
    for i in range(fits + 8):
        run.send(HEADER + _doc(i, pad=doc_size - len(_doc(i))))
    for junk in (b"no newline", b'{"format":"xml","version":1}\n{}', HEADER):
        run.send(junk)
    await _until(lambda: len(fake.requests) >= 3, "failed uploads")
    fake.recover()
    with trio.fail_after(10):
        # The fake records a delivery before the daemon has read the answer: wait for both.
        while (metrics := await run.metrics())[("xray_trio_segments_sent_total", ())] < fits:
            await trio.sleep(0.01)
    failures = sum(1 for r in fake.requests if r.reply.status == 500)
    assert metrics[("xray_trio_segments_received_total", ())] == fits + 8 + 3
    assert metrics[("xray_trio_segments_accepted_total", ())] == fits
    assert metrics[("xray_trio_segments_spillover_total", ())] == 8
    assert metrics[("xray_trio_segments_rejected_total", (("reason", "missing_header"),))] == 2
    assert metrics[("xray_trio_segments_rejected_total", (("reason", "invalid_header"),))] == 1
    assert metrics[("xray_trio_segments_sent_total", ())] == fits
    assert metrics[("xray_trio_upload_errors_total", (("kind", "http_5xx"),))] == failures
    assert metrics[("xray_trio_upload_retries_total", ())] == failures
    assert metrics[("xray_trio_segments_given_up_total", ())] == 0
    assert metrics[("xray_trio_buffer_bytes", (("state", "used"),))] == 0


async def test_a_subscriber_that_never_reads_changes_nothing(
    fake: FakeXRay, daemon: Callable[..., object]
) -> None:
    hub = EventHub()
    run: Running = await daemon(hub=hub)  # type: ignore[assignment]
    async with hub.open_subscription(max_buffer=10) as idle_reader:
        for i in range(3000):
            run.send(HEADER + _doc(i))
            if i % 500 == 499:
                await trio.sleep(0.01)  # let the kernel queue drain
        await _until(lambda: len(fake.delivered_documents()) >= 3000, "delivery")
        assert idle_reader.lost > 0  # it fell behind...
    assert len(fake.delivered_documents()) == 3000  # ...and cost the pipeline nothing
    assert (await run.metrics())[("xray_trio_segments_spillover_total", ())] == 0


async def test_healthz_follows_the_xray_sink(fake: FakeXRay, daemon: Callable[..., object]) -> None:
    fake.fail_next(10_000)
    run: Running = await daemon()  # type: ignore[assignment]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{run.admin}/healthz")).status_code == 200
        run.send(HEADER + _doc(1))
        with trio.fail_after(10):
            while (unhealthy := await client.get(f"{run.admin}/healthz")).status_code == 200:
                await trio.sleep(0.01)
        assert unhealthy.status_code == 503
        assert len(fake.requests) >= 10  # ten failures in a row made it unhealthy
        assert "sink xray: " in unhealthy.json()["reason"]
        fake.recover()
        with trio.fail_after(10):
            while (healthy := await client.get(f"{run.admin}/healthz")).status_code == 503:
                await trio.sleep(0.01)
        assert len(fake.delivered_documents()) == 1
    assert healthy.status_code == 200
    assert healthy.json()["status"] == "ok"


@pytest.mark.filterwarnings(
    # Leaving an endless /events stream early lets trio finalise httpx's nested response
    # iterators, which warns (encode/httpx#3686); the same filter as in test_admin.py.
    "ignore:Async generator 'http(x|core)\\..*' was garbage collected:ResourceWarning"
)
async def test_events_stream_decodes_while_segments_flow(
    fake: FakeXRay, daemon: Callable[..., object]
) -> None:
    run: Running = await daemon()  # type: ignore[assignment]
    seen: list[SegmentSeen] = []
    kinds: set[str] = set()
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", f"{run.admin}/events") as stream,
    ):
        lines = stream.aiter_lines()
        with trio.fail_after(10):
            i = 0
            while len(seen) < 5:
                run.send(HEADER + _doc(i))
                i += 1
                line = await anext(lines)
                kinds.add(json.loads(line)["type"])
                event = decode_event(line)
                if isinstance(event, SegmentSeen):
                    seen.append(event)
    assert {event.name for event in seen} == {"svc"}
    assert all(event.findings == () for event in seen)
    assert "snapshot" in kinds
