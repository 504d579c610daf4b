"""A lean HTTP/1.1 client for calls to X-Ray: h11 over trio streams, keep-alive pooled.

httpx costs about 560 us of CPU per PutTraceSegments call on this machine (its layers of
request/response models, anyio and httpcore); h11 over a bare trio stream costs about 140 us.
At 400 batches a second that is the difference between 22 % of a core and 6 %. This client
does only what the daemon's calls need: one request with a complete body to one origin,
connections reused while the server keeps them, TLS with the system's trust store, and the
answer's raw bytes (a compressed body stays compressed, for the sampling proxy to relay).
Calls that go through an HTTP proxy use httpx instead (``transport.HttpxTransport``), which is
only imported then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import select
import socket
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Protocol

import h11
import trio

from xray_trio.errors import ErrorKind, UploadError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

_READ_SIZE = 65536
_IDLE_PROBE_S = 0.005
_TRANSPORT_ERRORS = (OSError, trio.BrokenResourceError, h11.ProtocolError, ssl.SSLError)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    """As received, names lower-cased (HTTP names are case-insensitive)."""
    body: bytes

    def header(self, name: bytes) -> str:
        """The first value of header ``name`` (lower-case), or ``""``."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return ""


class OriginTransport(Protocol):
    """One HTTP exchange with the X-Ray origin; transport failures raise ``UploadError``."""

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Response: ...


class _Connection:
    """One kept-alive connection; owned by one call at a time."""

    __slots__ = ("h11", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)


class H11Pool:
    """Keep-alive connections to one origin. Inert: opened and closed by ``open_h11_pool``."""

    def __init__(self, origin: str, *, ssl_context: ssl.SSLContext | None, max_idle: int) -> None:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: list[_Connection] = []
        default_port = 443 if self._tls else 80
        bracketed = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = (
            bracketed if parts.port in (None, default_port) else f"{bracketed}:{parts.port}"
        )

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Response:
        """Send one request for ``target`` (path and query) and read the whole answer.

        Transport failures raise ``UploadError`` classified for telemetry. A kept-alive
        connection is reused only if the server has not closed it or spoken on it while it sat
        idle (an unsolicited ``408`` must not become this request's answer), and a request is
        sent again on a fresh connection only when it could not be written at all: one that
        reached the server is never repeated silently.
        """
        fields = [(name, value) for name, value in headers if name.lower() != "content-length"]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            fields.append(("Content-Length", str(len(body))))
        if not any(name.lower() == "host" for name, _ in fields):
            fields.append(("Host", self._host_header))
        try:
            request = h11.Request(method=method, target=target, headers=fields)
        except h11.LocalProtocolError as exc:
            # A header h11 refuses (a token ending in a newline, say) fails this call alone.
            raise UploadError(
                f"invalid request: {exc}", kind=ErrorKind.OTHER, retriable=False
            ) from exc
        while self._idle:
            connection = self._idle.pop()
            if await _spoke_while_idle(connection.stream):
                await trio.aclose_forcefully(connection.stream)
                continue
            try:
                return await self._exchange(connection, request, body, reused=True)
            except _StaleConnection:
                continue
        return await self._exchange(await self._connect(), request, body, reused=False)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await trio.aclose_forcefully(connection.stream)

    async def _connect(self) -> _Connection:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(exc) from exc
        if self._tls:
            if self._ssl_context is None:
                # Made on first use: loading the trust store costs ~2 MB that an http://
                # endpoint never needs.
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
            tls = trio.SSLStream(stream, context, server_hostname=self._host)
            try:
                await tls.do_handshake()
            except BaseException as exc:
                await trio.aclose_forcefully(stream)
                if isinstance(exc, _TRANSPORT_ERRORS):
                    raise _transport_error(exc) from exc
                raise
            stream = tls
        return _Connection(stream)

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes, *, reused: bool
    ) -> Response:
        conn = connection.h11
        sent = False
        try:
            await connection.stream.send_all(
                b"".join(
                    (
                        conn.send(request) or b"",
                        conn.send(h11.Data(data=body)) or b"",
                        conn.send(h11.EndOfMessage()) or b"",
                    )
                )
            )
            sent = True
            status, headers, chunks = 0, [], []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await connection.stream.receive_some(_READ_SIZE)))
                elif isinstance(event, (h11.Response, h11.InformationalResponse)):
                    if event.status_code < 200:
                        continue  # 100 Continue and friends: the real answer follows
                    status = event.status_code
                    headers = list(event.headers)
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed before the response ended
                    raise h11.RemoteProtocolError("connection closed before the response ended")
        except BaseException as exc:
            # Cancelled, timed out or broken: the connection's state is unknown, so drop it.
            await trio.aclose_forcefully(connection.stream)
            if not isinstance(exc, _TRANSPORT_ERRORS):
                raise
            if reused and not sent:
                raise _StaleConnection from exc
            raise _transport_error(exc) from exc
        # Reused only after a clean exchange with nothing left over from the server.
        if (
            conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
            and not conn.trailing_data[0]
        ):
            conn.start_next_cycle()
            if len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return Response(status, headers, b"".join(chunks))
        await trio.aclose_forcefully(connection.stream)
        return Response(status, headers, b"".join(chunks))


class _StaleConnection(Exception):
    """A reused connection could not even take the request: the server had closed it."""


async def _spoke_while_idle(stream: trio.abc.Stream) -> bool:
    """Whether the server closed an idle connection or sent something nobody asked for.

    A poll of the socket says whether anything arrived. Over TLS that may be only a protocol
    record (a session ticket), which a short read consumes without yielding data; anything
    that does yield data, or the end of the stream, makes the connection unusable.
    """
    transport = stream
    while isinstance(transport, trio.SSLStream):
        transport = transport.transport_stream
    assert isinstance(transport, trio.SocketStream)
    poller = select.poll()
    poller.register(transport.socket.fileno(), select.POLLIN)
    if not poller.poll(0):
        return False
    with trio.move_on_after(_IDLE_PROBE_S):
        with contextlib.suppress(*_TRANSPORT_ERRORS):  # reset or broken: unusable all the same
            await stream.receive_some(_READ_SIZE)
        return True
    return False


def _transport_error(exc: BaseException) -> UploadError:
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the TLS or socket error that broke the stream says more
    return UploadError(
        f"{type(exc).__name__}: {exc}",
        kind=classify_network_error(exc),
        retriable=True,
    )


def classify_network_error(exc: BaseException) -> ErrorKind:
    """The telemetry bucket of a failed connection or exchange.

    The root cause may sit behind wrappers: httpcore's errors, or the single OSError that
    ``trio.open_tcp_stream`` (and anyio) raise for "all attempts to connect failed", whose
    cause or context is a group of the per-address errors.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return ErrorKind.UNKNOWN_HOST
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return ErrorKind.CONNECTION_REFUSED
        if isinstance(cause, BaseExceptionGroup):
            pending.extend(cause.exceptions)
        pending.extend(c for c in (cause.__cause__, cause.__context__) if c is not None)
    return ErrorKind.OTHER


@contextlib.asynccontextmanager
async def open_h11_pool(
    origin: str, *, verify: bool = True, max_idle: int = 16
) -> AsyncIterator[H11Pool]:
    context = None
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    pool = H11Pool(origin, ssl_context=context, max_idle=max_idle)
    try:
        yield pool
    finally:
        await pool.aclose()
