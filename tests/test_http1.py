"""The lean upload client against real loopback servers: reuse, stale connections, TLS, errors."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from typing import TYPE_CHECKING

import pytest
import trio
import trustme

from xray_trio.errors import ErrorKind, UploadError
from xray_trio.http1 import H11Pool, open_h11_pool

if TYPE_CHECKING:
    from collections.abc import Callable


class Server:
    """A tiny HTTP/1.1 server that answers each request with a scripted reply.

    ``close_after`` closes the connection after that many answers, as a server whose idle
    timeout expired would.
    """

    def __init__(self, close_after: int = 1000) -> None:
        self.close_after = close_after
        self.connections = 0
        self.bodies: list[bytes] = []

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        buffer = b""
        answered = 0
        async with stream:
            while answered < self.close_after:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                self.bodies.append(buffer[:length])
                buffer = buffer[length:]
                reply = b'{"UnprocessedTraceSegments":[]}'
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amzn-RequestId: r1\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                )
                answered += 1


async def _serve(
    nursery: trio.Nursery, server: Server, wrap: Callable[[trio.abc.Stream], trio.abc.Stream]
) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        # A client that refused our certificate hangs up mid-handshake.
        with contextlib.suppress(trio.BrokenResourceError):
            await server.handle(wrap(stream))

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def test_connections_are_kept_alive_and_reused(nursery: trio.Nursery) -> None:
    server = Server()
    port = await _serve(nursery, server, lambda s: s)
    async with open_h11_pool(f"http://127.0.0.1:{port}") as pool:
        for i in range(5):
            response = await pool.request("POST", "/TraceSegments", [("X-N", str(i))], b"x" * i)
            assert (response.status, response.body) == (200, b'{"UnprocessedTraceSegments":[]}')
            assert response.header(b"x-amzn-requestid") == "r1"
    assert server.connections == 1
    assert server.bodies == [b"x" * i for i in range(5)]


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    nursery: trio.Nursery,
) -> None:
    server = Server(close_after=1)
    port = await _serve(nursery, server, lambda s: s)
    async with open_h11_pool(f"http://127.0.0.1:{port}") as pool:
        for _ in range(3):
            await trio.sleep(0.01)  # let the server's close land first, like an idle timeout
            response = await pool.request("POST", "/TraceSegments", [], b"{}")
            assert response.status == 200
    assert server.connections == 3
    assert len(server.bodies) == 3  # every request delivered exactly once


async def test_tls_with_a_trusted_certificate(nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = Server()
    port = await _serve(
        nursery, server, lambda s: trio.SSLStream(s, server_context, server_side=True)
    )
    pool = H11Pool(f"https://localhost:{port}", ssl_context=client_context, max_idle=4)
    response = await pool.request("POST", "/TraceSegments", [], b"{}")
    await pool.aclose()
    assert response.status == 200
    # The system trust store does not know this CA: verification must fail, not be skipped.
    async with open_h11_pool(f"https://localhost:{port}") as strict:
        with pytest.raises(UploadError) as info:
            await strict.request("POST", "/TraceSegments", [], b"{}")
    assert info.value.retriable
    # ...unless NoVerifySSL asked for exactly that.
    async with open_h11_pool(f"https://localhost:{port}", verify=False) as lax:
        assert (await lax.request("POST", "/TraceSegments", [], b"{}")).status == 200


async def test_a_refused_connection_is_classified() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        async with open_h11_pool(f"http://127.0.0.1:{port}") as pool:
            with pytest.raises(UploadError) as info:
                await pool.request("POST", "/TraceSegments", [], b"{}")
    assert info.value.kind is ErrorKind.CONNECTION_REFUSED


async def test_a_server_that_hangs_up_mid_answer_is_an_error(nursery: trio.Nursery) -> None:
    async def rude(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    listeners = await nursery.start(functools.partial(trio.serve_tcp, rude, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    async with open_h11_pool(f"http://127.0.0.1:{port}") as pool:
        with pytest.raises(UploadError) as info:
            await pool.request("POST", "/TraceSegments", [], b"{}")
    assert info.value.kind is ErrorKind.OTHER


def test_only_http_origins() -> None:
    with pytest.raises(ValueError, match="not an http"):
        H11Pool("ftp://example.com", ssl_context=None, max_idle=1)


async def test_an_unsolicited_answer_on_an_idle_connection_is_not_taken_as_ours(
    nursery: trio.Nursery,
) -> None:
    served: list[bytes] = []

    async def idle_timeout_server(stream: trio.SocketStream) -> None:
        # Answers one request, then (like servers whose idle timer fired) sends a 408 and hangs up.
        async with stream:
            request = await stream.receive_some(65536)
            served.append(request.split(b" ")[1])
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await trio.sleep(0.01)
            await stream.send_all(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, idle_timeout_server, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    async with open_h11_pool(f"http://127.0.0.1:{port}") as pool:
        first = await pool.request("POST", "/one", [], b"{}")
        await trio.sleep(0.05)  # the 408 arrives while the connection sits in the pool
        second = await pool.request("POST", "/two", [], b"{}")
    assert (first.status, second.status) == (200, 200)
    assert served == [b"/one", b"/two"]  # the second went out on a fresh connection


async def test_a_request_the_server_took_but_never_answered_is_not_resent(
    nursery: trio.Nursery,
) -> None:
    served: list[bytes] = []

    async def flaky(stream: trio.SocketStream) -> None:
        async with stream:
            while request := await stream.receive_some(65536):
                served.append(request.split(b" ")[1])
                if len(served) == 2:
                    return  # processed, then the connection dies without an answer
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    listeners = await nursery.start(functools.partial(trio.serve_tcp, flaky, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    async with open_h11_pool(f"http://127.0.0.1:{port}") as pool:
        await pool.request("POST", "/one", [], b"{}")
        with pytest.raises(UploadError) as info:
            await pool.request("POST", "/two", [], b"{}")
    assert info.value.retriable  # the uploader retries it, counted and logged
    assert served == [b"/one", b"/two"]  # the pool itself did not send it twice


async def test_a_header_h11_refuses_fails_only_that_call() -> None:
    async with open_h11_pool("http://127.0.0.1:9") as pool:
        with pytest.raises(UploadError) as info:
            await pool.request("POST", "/", [("X-Amz-Security-Token", "token\n")], b"")
    assert not info.value.retriable
    assert info.value.kind is ErrorKind.OTHER
