"""A small HTTP/1.1 server on h11 for the sampling proxy and the admin endpoint.

h11 does the parsing and the protocol state; this module adds what a daemon's listener needs:
keep-alive, ``100 Continue``, and limits so that no client can pin the daemon (header size and
time, body size and time, idle keep-alive), and chunked answers of unknown length for the
admin endpoint's ``/events``. It replaced hypercorn: measured on this machine, hypercorn cost
~600 us of CPU per request, 3.3 MB of resident memory and ~110 ms of start-up, and has a single
timer for "waiting for headers" and "idle"; this costs ~100 us.
"""

from __future__ import annotations

import contextlib
import dataclasses
from http import HTTPStatus
from typing import TYPE_CHECKING

import h11
import trio

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncGenerator, Awaitable, Callable

_READ_SIZE = 65536
_CLIENT_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)
"""How a write ends when the client left, or stopped reading for ``send_timeout_s``."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """Bounds on what one client can hold; generous next to what SDKs send (a few KB)."""

    max_header_bytes: int = 16 * 1024
    """Request line plus headers; larger is refused with 431."""
    header_timeout_s: float = 20.0
    """Time allowed for a request's line and headers once its first byte arrived."""
    max_body_bytes: int = 1024 * 1024
    """Larger request bodies are refused with 413."""
    body_timeout_s: float = 20.0
    """A body that takes longer to arrive is refused with 408."""
    idle_timeout_s: float = 60.0
    """Keep-alive idle time between requests. SDKs poll every 10 s on one connection."""
    send_timeout_s: float = 20.0
    """A client that does not read an answer within this is dropped."""


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: bytes
    """Path and query, as the client sent them."""
    headers: list[tuple[bytes, bytes]]
    """Names lower-cased, in order, repeats kept."""
    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stream: AsyncGenerator[bytes, None] | None = None
    """A body of unknown length, sent chunk by chunk as it is produced (``body`` is ignored).

    It ends when the generator does, or when the client goes away (the generator is closed)."""


def text_response(status: int, text: str) -> Response:
    return Response(status, [(b"content-type", b"text/plain; charset=utf-8")], text.encode())


class _Refused(Exception):
    """The request cannot be served; answer ``response`` and close the connection."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def serve_connection(
    stream: trio.abc.Stream,
    handler: Callable[[Request], Awaitable[Response]],
    *,
    limits: ServerLimits,
    logger: logging.Logger,
) -> None:
    """Serve requests on one connection until the client leaves, idles or misbehaves."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
    async with stream:
        while True:
            try:
                request = await _read_request(stream, conn, limits)
            except _Refused as refused:
                await _send(stream, conn, refused.response, limits, head=False, close=True)
                return
            if request is None:
                return  # the client closed, or stayed idle too long
            try:
                response = await handler(request)
            except Exception:
                # A bug in one request must not take the listener (and the daemon) down.
                logger.exception("proxy request %s %r failed", request.method, request.target)
                response = text_response(500, "internal error\n")
            head = request.method == "HEAD"
            if response.stream is not None and not head:
                await _send_stream(stream, conn, response, response.stream, limits)
                return
            if not await _send(stream, conn, response, limits, head=head, close=False):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError as exc:
                logger.debug("proxy connection closed: %s", exc)
                return


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection, limits: ServerLimits
) -> Request | None:
    """The next whole request; ``None`` when the client left or idled out between requests."""
    if _nothing_buffered(conn):
        # Between requests: the keep-alive idle timer runs until the next request's first byte
        # (a pipelined request may already be buffered), then the header deadline.
        with trio.move_on_after(limits.idle_timeout_s):
            conn.receive_data(await _receive(stream))
        if _nothing_buffered(conn):
            return None  # idle too long, or the client hung up
    try:
        with trio.fail_after(limits.header_timeout_s):
            event = await _next_event(stream, conn)
    except trio.TooSlowError:
        raise _Refused(text_response(408, "request headers not received in time\n")) from None
    if not isinstance(event, h11.Request):
        return None  # ConnectionClosed: the client left
    headers = list(event.headers)
    length = next((int(v) for k, v in headers if k == b"content-length" and v.isdigit()), 0)
    if length > limits.max_body_bytes:
        raise _Refused(text_response(413, "request body too large\n"))
    if conn.they_are_waiting_for_100_continue:
        try:
            await _write(
                stream, conn.send(h11.InformationalResponse(status_code=100, headers=[])), limits
            )
        except _CLIENT_GONE:
            return None
    chunks: list[bytes] = []
    size = 0
    try:
        with trio.fail_after(limits.body_timeout_s):
            while not isinstance(body_event := await _next_event(stream, conn), h11.EndOfMessage):
                if not isinstance(body_event, h11.Data):
                    return None  # the client went away mid-body: nobody to answer
                size += len(body_event.data)
                if size > limits.max_body_bytes:
                    raise _Refused(text_response(413, "request body too large\n"))
                chunks.append(bytes(body_event.data))
    except trio.TooSlowError:
        raise _Refused(text_response(408, "request body not received in time\n")) from None
    return Request(event.method.decode("ascii"), bytes(event.target), headers, b"".join(chunks))


def _nothing_buffered(conn: h11.Connection) -> bool:
    return not conn.trailing_data[0]


async def _next_event(stream: trio.abc.Stream, conn: h11.Connection) -> h11.Event:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            raise _Refused(
                text_response(status, f"{status} {HTTPStatus(status).phrase}\n")
            ) from None
        if event is h11.NEED_DATA:
            conn.receive_data(await _receive(stream))
        elif event is h11.PAUSED:
            return h11.ConnectionClosed()  # cannot happen mid-request; treat as the end
        else:
            assert isinstance(event, h11.Event)
            return event


async def _receive(stream: trio.abc.Stream) -> bytes:
    """Bytes from the client; ``b""`` (end of stream, for h11) when it hung up."""
    try:
        return bytes(await stream.receive_some(_READ_SIZE))
    except trio.BrokenResourceError:
        return b""


async def _send_stream(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    response: Response,
    chunks: AsyncGenerator[bytes, None],
    limits: ServerLimits,
) -> None:
    """Send a chunked answer until ``chunks`` ends or the client leaves; then close.

    A quiet stream writes nothing for a while, so the client's leaving is watched for on the
    read side rather than discovered at the next write.
    """
    headers = [(k, v) for k, v in response.headers if k.lower() != b"content-length"]
    headers.append((b"connection", b"close"))
    async with contextlib.aclosing(chunks), trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_when_client_leaves, stream, nursery.cancel_scope)
        try:
            await _write(
                stream,
                conn.send(h11.Response(status_code=response.status, headers=headers)),
                limits,
            )
            async for chunk in chunks:
                await _write(stream, conn.send(h11.Data(data=chunk)), limits)
            await _write(stream, conn.send(h11.EndOfMessage()), limits)
        except _CLIENT_GONE:
            pass  # the client went away, or stopped reading: that ends the stream
        nursery.cancel_scope.cancel()


async def _cancel_when_client_leaves(stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
    # Whatever else the client sends is ignored; end of stream (or a reset) means it is gone.
    try:
        while await stream.receive_some(_READ_SIZE):
            pass
    except trio.BrokenResourceError:
        pass
    scope.cancel()


async def _send(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    response: Response,
    limits: ServerLimits,
    *,
    head: bool,
    close: bool,
) -> bool:
    """Write ``response``; False when the client is gone or the connection must close.

    The length is ours to state, except for HEAD, whose headers describe a body not sent.
    """
    headers = response.headers
    if not head:
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(response.body)).encode()))
    if close:
        headers = [*headers, (b"connection", b"close")]
    try:
        parts = [conn.send(_response_head(response.status, headers))]
        if response.body and not head:
            parts.append(conn.send(h11.Data(data=response.body)))
        parts.append(conn.send(h11.EndOfMessage()))
        await _write(stream, b"".join(part or b"" for part in parts), limits)
    except (h11.LocalProtocolError, *_CLIENT_GONE):
        return False
    return not close


async def _write(stream: trio.abc.Stream, data: bytes | None, limits: ServerLimits) -> None:
    """Send ``data``; a client that will not take it in time raises ``TooSlowError``."""
    with trio.fail_after(limits.send_timeout_s):
        await stream.send_all(data or b"")


def _response_head(status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""  # a status code HTTP does not name (X-Ray's own answers are all standard)
    return h11.Response(status_code=status, headers=headers, reason=reason)
