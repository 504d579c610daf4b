"""The opt-in admin endpoint (``--admin ADDR`` / ``AdminAddress``): health, metrics and events.

    GET /healthz   200 {"status": "ok", ...} while intake is up and at least one sink delivers,
                   else 503 {"status": "unhealthy", "reason": ...}
    GET /metrics   Prometheus text (see ``metrics.py``)
    GET /events    NDJSON stream of the ``EventHub`` (``?snapshots=1``: snapshots only); the first
                   line is a current snapshot, and ``{"type": "lost", "total": n}`` lines say how
                   many events this client missed by reading too slowly

Served by ``h11_server``, like the sampling proxy. ``/events`` writes every event already
waiting in one chunk, so a busy stream costs one write per wake-up, not per event; a client that
leaves is noticed at the next write (at the latest the next 1 s snapshot), which ends its
subscription.
"""

from __future__ import annotations

import functools
import json
import socket
import urllib.parse
from typing import TYPE_CHECKING, NoReturn

import trio

from xray_trio.errors import StartupError
from xray_trio.events import Lost, SnapshotEvent, encode_event
from xray_trio.h11_server import Request, Response, ServerLimits, serve_connection
from xray_trio.metrics import CONTENT_TYPE, render_metrics
from xray_trio.receiver import split_host_port

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncGenerator, Callable

    from xray_trio.events import EventHub
    from xray_trio.health import Health
    from xray_trio.snapshot import Snapshot

_MAX_LINES_PER_WRITE = 256
"""Bounds one ``/events`` write, so a backlog drains in steps rather than one huge chunk."""

_NO_STORE = (b"cache-control", b"no-store")


async def serve_admin(
    address: str,
    *,
    hub: EventHub,
    take_snapshot: Callable[[], Snapshot],
    health: Health,
    logger: logging.Logger,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the admin endpoint on ``address`` (``host:port``; no host means 127.0.0.1).

    Calls ``task_status.started((host, port))`` once listening; runs until cancelled. Raises
    ``StartupError`` when the address cannot be bound.
    """
    sock = await _bind(address)
    bound = sock.getsockname()[:2]
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    app = _AdminApp(hub, take_snapshot, health)
    serve = functools.partial(serve_connection, handler=app, limits=ServerLimits(), logger=logger)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, [listener])
        task_status.started(bound)
    raise AssertionError("serve_listeners returned")  # pragma: no cover - it runs until cancelled


async def _bind(address: str) -> socket.socket:
    try:
        host, port = split_host_port(address)
    except ValueError as exc:
        raise StartupError(f"admin endpoint: {exc}") from None
    try:
        infos = await trio.socket.getaddrinfo(
            host or "127.0.0.1", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise StartupError(f"admin endpoint {address}: lookup {host}: {exc}") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(f"admin endpoint {address}: bind: {exc.strerror or exc}") from None
    return sock


class _AdminApp:
    def __init__(
        self, hub: EventHub, take_snapshot: Callable[[], Snapshot], health: Health
    ) -> None:
        self._hub = hub
        self._take_snapshot = take_snapshot
        self._health = health

    async def __call__(self, request: Request) -> Response:
        if request.method != "GET":
            return _answer(405, "text/plain", b"method not allowed\n", (b"allow", b"GET"))
        path, _, query = request.target.decode("latin-1").partition("?")
        match path:
            case "/healthz":
                report = self._health.check()
                body = json.dumps(report.body).encode() + b"\n"
                return _answer(200 if report.healthy else 503, "application/json", body)
            case "/metrics":
                text = render_metrics(self._take_snapshot())
                return _answer(200, CONTENT_TYPE, text.encode())
            case "/events":
                values = urllib.parse.parse_qs(query).get("snapshots", ["0"])
                snapshots_only = values[-1].lower() in ("1", "true", "yes")
                headers = [(b"content-type", b"application/x-ndjson"), _NO_STORE]
                return Response(200, headers, b"", stream=self._events(snapshots_only))
            case _:
                return _answer(404, "text/plain", b"not found\n")

    async def _events(self, snapshots_only: bool) -> AsyncGenerator[bytes, None]:
        async with self._hub.open_subscription(snapshots_only=snapshots_only) as sub:
            # A first snapshot, so a client has the current state without waiting for a tick.
            chunk = [encode_event(SnapshotEvent(snapshot=self._take_snapshot()))]
            reported_lost = 0
            while True:
                yield b"".join(chunk)
                chunk = [encode_event(await sub.events.receive())]
                while len(chunk) < _MAX_LINES_PER_WRITE:
                    try:
                        chunk.append(encode_event(sub.events.receive_nowait()))
                    except trio.WouldBlock:
                        break
                if sub.lost != reported_lost:
                    reported_lost = sub.lost
                    chunk.append(encode_event(Lost(total=reported_lost)))


def _answer(
    status: int, content_type: str, body: bytes, *extra_headers: tuple[bytes, bytes]
) -> Response:
    headers = [(b"content-type", content_type.encode()), _NO_STORE, *extra_headers]
    return Response(status, headers, body)
