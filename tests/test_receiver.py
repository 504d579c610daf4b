"""The UDP edge on real loopback sockets."""

from __future__ import annotations

import functools
import logging
import socket
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from xray_trio.budget import ByteBudget, document_cost
from xray_trio.errors import StartupError
from xray_trio.receiver import bind_udp, serve_udp, split_host_port
from xray_trio.stats import Counters

if TYPE_CHECKING:
    from collections.abc import Iterator

HEADER = b'{"format":"json","version":1}\n'


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        yield sock


class Harness:
    def __init__(self, budget_bytes: int = 10_000_000) -> None:
        self.budget = ByteBudget(budget_bytes)
        self.counters = Counters()
        self.logger = logging.Logger("test", level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = self.records.append  # type: ignore[method-assign]
        self.logger.addHandler(handler)
        self.send, self.receive = trio.open_memory_channel[list[bytes]](self.budget.max_documents)

    async def start(self, nursery: trio.Nursery, **options: object) -> tuple[str, int]:
        """Serve on a fresh loopback port; ``options`` go to ``serve_udp`` (hub, events)."""
        sock = await bind_udp("127.0.0.1:0", receive_buffer_bytes=1 << 22)
        address: tuple[str, int] = await nursery.start(
            functools.partial(
                serve_udp,
                sock,
                self.send,
                budget=self.budget,
                counters=self.counters,
                logger=self.logger,
                **options,
            )
        )
        return address

    def documents(self) -> list[bytes]:
        got: list[bytes] = []
        while True:
            try:
                got += self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return got

    def messages(self) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in self.records]


async def _settle(harness: Harness, expected_received: int) -> None:
    # The counters are plain ints with no change event; poll them briefly in real time.
    with trio.fail_after(5):
        while harness.counters.received < expected_received:
            await trio.sleep(0.001)


async def test_valid_datagrams_arrive_as_documents_and_bad_ones_are_counted(
    sender: socket.socket,
) -> None:
    harness = Harness()
    async with trio.open_nursery() as nursery:
        address = await harness.start(nursery)
        datagrams = [
            HEADER + b'{"id":"1"}',
            b"garbage without newline",
            b'{"format":"xml","version":1}\n{}',
            HEADER,
            b"",  # Go ignores empty datagrams entirely
            HEADER + b"\xff\xfe not utf-8",
            HEADER + b"x" * (65507 - len(HEADER)),
        ]
        for datagram in datagrams:
            sender.sendto(datagram, address)
        await _settle(harness, 6)
        nursery.cancel_scope.cancel()
    counters = harness.counters
    assert harness.documents() == [
        b'{"id":"1"}',
        b"\xff\xfe not utf-8",
        b"x" * (65507 - len(HEADER)),
    ]
    assert (counters.received, counters.accepted) == (6, 3)
    assert (counters.rejected_missing_header, counters.rejected_invalid_header) == (2, 1)
    assert ("WARNING", "Missing header: garbage without newline") in harness.messages()
    assert ("WARNING", "Missing header or segment: garbage without newline") in harness.messages()
    assert ("WARNING", 'Invalid header: {"format":"xml","version":1}') in harness.messages()
    assert ("WARNING", 'Missing header or segment: {"format":"json","version":1}') in (
        harness.messages()
    )


async def test_a_spent_budget_drops_the_newest_and_counts_it(sender: socket.socket) -> None:
    doc = b'{"id":"%03d"}'
    harness = Harness(budget_bytes=3 * document_cost(doc % 0))
    async with trio.open_nursery() as nursery:
        address = await harness.start(nursery)
        for i in range(5):
            sender.sendto(HEADER + doc % i, address)
        await _settle(harness, 5)
        nursery.cancel_scope.cancel()
    assert harness.documents() == [doc % i for i in range(3)]
    assert (harness.counters.accepted, harness.counters.spillover) == (3, 2)
    assert (
        harness.messages().count(("WARNING", "Segment dropped. Consider increasing memory limit"))
        == 2
    )


async def test_a_burst_is_drained_in_a_few_channel_sends(sender: socket.socket) -> None:
    harness = Harness()
    async with trio.open_nursery() as nursery:
        address = await harness.start(nursery)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        # Send while the receiver cannot run, so every datagram waits in the kernel.
        for i in range(400):
            sender.sendto(HEADER + b'{"n":%d}' % i, address)
        await _settle(harness, 400)
        chunks = harness.send.statistics().current_buffer_used
        nursery.cancel_scope.cancel()
    assert harness.counters.accepted == 400
    assert chunks <= 2  # one send per wakeup, not one per datagram
    assert harness.documents() == [b'{"n":%d}' % i for i in range(400)]


async def test_cancelling_closes_the_socket_and_the_channel() -> None:
    harness = Harness()
    async with trio.open_nursery() as nursery:
        await harness.start(nursery)
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.EndOfChannel):
        await harness.receive.receive()


async def test_binding_a_busy_address_fails_with_gos_text() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(StartupError) as info:
            await bind_udp(f"127.0.0.1:{port}")
    assert str(info.value) == f"listen udp 127.0.0.1:{port}: bind: address already in use"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:2000", ("127.0.0.1", 2000)),
        ("[::1]:2000", ("::1", 2000)),
        (":2000", ("", 2000)),
        ("localhost:2000", ("localhost", 2000)),
    ],
)
def test_go_address_forms(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize("address", ["2000", "::1:2000", "host:http", "host:70000"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError, match=f"address {address}"):
        split_host_port(address)


async def test_ipv6_loopback_binds() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        sock = await bind_udp("[::1]:0")
    except StartupError:
        pytest.skip("IPv6 loopback unavailable")
    with sock:
        assert sock.family == socket.AF_INET6


async def test_events_reach_a_subscriber_and_segments_only_when_asked(
    sender: socket.socket,
) -> None:
    from xray_trio.events import Dropped, EventHub, Rejected, SegmentSeen

    doc = (
        b'{"trace_id":"1-5759e988-bd862e3fe1be46a994272793","id":"70de5b6f19ff9a0a",'
        b'"name":"a","start_time":1,"end_time":2}'
    )
    harness = Harness(budget_bytes=document_cost(doc))
    hub = EventHub()
    async with trio.open_nursery() as nursery:
        async with (
            hub.open_subscription(snapshots_only=True) as quiet,
            hub.open_subscription() as watcher,
        ):
            address = await harness.start(nursery, hub=hub)
            for datagram in (HEADER + doc, b"junk", HEADER + doc):
                sender.sendto(datagram, address)
            await _settle(harness, 3)
            events = []
            while True:
                try:
                    events.append(watcher.events.receive_nowait())
                except trio.WouldBlock:
                    break
            with pytest.raises(trio.WouldBlock):
                quiet.events.receive_nowait()
        nursery.cancel_scope.cancel()
    kinds = sorted(type(event).__name__ for event in events)
    assert kinds == ["Dropped", "Rejected", "SegmentSeen"]
    seen = next(e for e in events if isinstance(e, SegmentSeen))
    assert (seen.name, seen.id, seen.findings) == ("a", "70de5b6f19ff9a0a", ())
    rejected = next(e for e in events if isinstance(e, Rejected))
    assert (rejected.reason, rejected.head) == ("missing_header", b"junk")
    dropped = next(e for e in events if isinstance(e, Dropped))
    assert (dropped.reason, dropped.count) == ("spillover", 1)


def test_summaries_are_capped_per_second_but_refill() -> None:
    from xray_trio.receiver import SummaryAllowance

    allowance = SummaryAllowance(500)
    assert allowance.take(400, 10.0) == 400
    assert allowance.take(400, 10.0) == 100  # the second's allowance is spent
    assert allowance.take(400, 10.1) == 50  # a tenth of a second refills a tenth
    assert allowance.take(5000, 20.0) == 500  # never more than one second's worth


async def test_first_document_is_signalled_by_a_valid_datagram_only(
    sender: socket.socket,
) -> None:
    harness = Harness()
    first = trio.Event()
    async with trio.open_nursery() as nursery:
        address = await harness.start(nursery, first_document=first)
        sender.sendto(b"garbage", address)
        await _settle(harness, 1)
        assert not first.is_set()
        sender.sendto(HEADER + b"{}", address)
        with trio.fail_after(5):
            await first.wait()
        nursery.cancel_scope.cancel()
