"""The UDP edge: bind, then drain datagrams into the budget and on to the batcher.

The receive loop waits for readability once and then reads every queued datagram without
awaiting; one await per datagram costs a scheduler round trip each and loses packets at high
rates. Each wakeup hands the batcher one list of documents, so the channel sees a few sends per
second per thousand segments rather than one per datagram.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import TYPE_CHECKING

import trio

from xray_trio.budget import document_cost
from xray_trio.errors import StartupError
from xray_trio.events import Dropped, EventHub, segment_seen
from xray_trio.events import Rejected as RejectedEvent
from xray_trio.segment import Rejected, RejectReason, split_datagram

if TYPE_CHECKING:
    import logging

    from xray_trio.budget import ByteBudget
    from xray_trio.stats import Counters

MAX_DATAGRAM = 65536
"""Go reads into 64 KiB buffers; the largest UDP payload is 65,507 bytes, so nothing is cut."""

DRAIN_LIMIT = 512
TRICKLE = 4
"""Fewer datagrams than this per wake-up counts as a trickle (below ~2,000/s with SDK pacing)."""
TRICKLE_WAIT_S = 0.004
"""Datagrams read per wakeup before yielding, so uploads still get the CPU during a flood."""


def split_host_port(address: str) -> tuple[str, int]:
    """Parse Go's ``host:port`` forms: ``127.0.0.1:2000``, ``[::1]:2000``, ``:2000``, ``h:2000``."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"address {address}: too many colons in address")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {address}: invalid port") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {address}: invalid port")
    return host, port


def go_os_error(err: OSError) -> str:
    # Go prints syscall errors as lower-case strerror text: "address already in use".
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


async def bind_udp(address: str, *, receive_buffer_bytes: int = 0) -> socket.socket:
    """Resolve and bind the segment socket, raising ``StartupError`` with Go's text on failure."""
    try:
        host, port = split_host_port(address)
    except ValueError as exc:
        raise StartupError(f"listen udp {address}: {exc}") from None
    try:
        infos = await trio.socket.getaddrinfo(
            host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise StartupError(f"listen udp {address}: lookup {host}: {exc}") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        if receive_buffer_bytes:
            _raise_receive_buffer(sock, receive_buffer_bytes)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise StartupError(f"listen udp {address}: bind: {go_os_error(exc)}") from None
    sock.setblocking(False)
    return sock


def _raise_receive_buffer(sock: socket.socket, size: int) -> None:
    # A deeper kernel queue absorbs bursts while an upload or GC holds the trio thread.
    # SO_RCVBUFFORCE passes rmem_max when privileged; otherwise take what the kernel allows.
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    for option in (force, socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENOPROTOOPT):
                raise


SEGMENT_SUMMARIES_PER_S = 500
"""At most this many received segments a second are summarised for watchers.

A summary parses the document (~20 us); no dashboard shows more than a few hundred rows a second,
and at 20,000 segments a second summarising all of them would cost more than the daemon itself.
"""


class SummaryAllowance:
    """A token bucket: how many documents of a burst may be summarised right now."""

    __slots__ = ("_at", "_rate", "_tokens")

    def __init__(self, per_second: float) -> None:
        self._rate = per_second
        self._tokens = per_second
        self._at = 0.0

    def take(self, wanted: int, now: float) -> int:
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        granted = min(wanted, int(self._tokens + 1e-9))
        self._tokens -= granted
        return granted


def describe_rejection(rejected: Rejected) -> str:
    """Go's Warn text for a refused datagram (it echoes the raw header bytes)."""
    header = rejected.header.decode("utf-8", "replace")
    if rejected.reason is RejectReason.INVALID_HEADER:
        return f"Invalid header: {header}"
    return f"Missing header or segment: {header}"


async def serve_udp(
    sock: socket.socket,
    segments_out: trio.MemorySendChannel[list[bytes]],
    *,
    budget: ByteBudget,
    counters: Counters,
    logger: logging.Logger,
    hub: EventHub | None = None,
    first_document: trio.Event | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Receive datagrams until cancelled; the socket is closed on the way out.

    Never awaits downstream: documents the budget cannot hold are dropped (newest first) and
    counted as spillover, which is the only place live data is lost. Events for ``hub`` cost
    nothing per datagram unless someone subscribes to segments. ``first_document`` is set when
    the first document is accepted.
    """
    recv = sock.recv
    take = budget.try_take
    send = segments_out.send_nowait
    hub = EventHub() if hub is None else hub
    first_document = trio.Event() if first_document is None else first_document
    allowance = SummaryAllowance(SEGMENT_SUMMARIES_PER_S)
    with sock:
        async with segments_out:
            logger.debug("Listening on UDP %s", _format_address(sock.getsockname()))
            task_status.started(sock.getsockname()[:2])
            while True:
                await trio.lowlevel.wait_readable(sock)
                documents: list[bytes] = []
                spilled = 0
                drained = 0
                for drained in range(DRAIN_LIMIT):  # noqa: B007 - counted for the trickle check
                    try:
                        data = recv(MAX_DATAGRAM)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        # ICMP errors and the like surface here; Go logs them and carries on.
                        logger.error("daemon: socket: err: %s", exc)
                        continue
                    if not data:
                        continue
                    counters.received += 1
                    counters.bytes_received += len(data)
                    document = split_datagram(data)
                    if isinstance(document, Rejected):
                        _count_rejection(document, counters, logger)
                        hub.publish(RejectedEvent(reason=document.reason.value, head=data[:64]))
                    elif take(document_cost(document)):
                        documents.append(document)
                    else:
                        spilled += 1
                        logger.warning("Segment dropped. Consider increasing memory limit")
                if spilled:
                    counters.spillover += spilled
                    hub.publish(Dropped(reason="spillover", count=spilled))
                if documents:
                    counters.accepted += len(documents)
                    if not first_document.is_set():
                        first_document.set()
                    if hub.wants_segments:
                        shown = allowance.take(len(documents), trio.current_time())
                        now = time.time()
                        for document in documents[:shown]:
                            hub.publish(segment_seen(document, now))
                    # Capacity is budget.max_documents, and each document holds budget, so
                    # this cannot raise WouldBlock.
                    send(documents)
                if drained < TRICKLE:
                    # A trickle: each wake-up costs more than the datagram it brings, so let
                    # a few more queue up in the kernel first. This adds at most TRICKLE_WAIT_S
                    # to a segment's trip, small beside the batcher's 50-segment fill time at
                    # these rates; a busy socket never waits here.
                    await trio.sleep(TRICKLE_WAIT_S)


def _count_rejection(rejected: Rejected, counters: Counters, logger: logging.Logger) -> None:
    if rejected.reason is RejectReason.INVALID_HEADER:
        counters.rejected_invalid_header += 1
    else:
        counters.rejected_missing_header += 1
        if not rejected.has_newline:
            logger.warning("Missing header: %s", rejected.header.decode("utf-8", "replace"))
    logger.warning("%s", describe_rejection(rejected))


def _format_address(sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
