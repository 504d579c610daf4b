"""The small HTTP/1.1 server the proxy and the admin endpoint run on, over real loopback sockets."""

from __future__ import annotations

import functools
import logging

import pytest
import trio

from xray_trio.h11_server import Request, Response, ServerLimits, serve_connection

LOGGER = logging.Logger("test", logging.CRITICAL)


async def _echo(request: Request) -> Response:
    if request.target == b"/boom":
        raise RuntimeError("a bug in the handler")
    return Response(200, [(b"x-method", request.method.encode())], request.body or request.target)


async def _serve(nursery: trio.Nursery, limits: ServerLimits | None = None) -> int:
    serve = functools.partial(
        serve_connection, handler=_echo, limits=limits or ServerLimits(), logger=LOGGER
    )
    listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def _exchange(port: int, data: bytes, *, until: bytes) -> bytes:
    received = b""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            while until not in received:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
    return received


async def test_pipelined_requests_are_answered_in_order(nursery: trio.Nursery) -> None:
    port = await _serve(nursery)
    requests = b"".join(
        b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (n, n) for n in range(3)
    )
    answer = await _exchange(port, requests, until=b"\r\n\r\n2")
    assert answer.count(b"HTTP/1.1 200") == 3
    assert [answer.index(b"\r\n\r\n%d" % n) for n in range(3)] == sorted(
        answer.index(b"\r\n\r\n%d" % n) for n in range(3)
    )


async def test_expect_100_continue_is_answered_before_the_body(nursery: trio.Nursery) -> None:
    port = await _serve(nursery)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await stream.receive_some(65536)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await stream.send_all(b"{}")
            final = await stream.receive_some(65536)
    assert final.startswith(b"HTTP/1.1 200 ")
    assert final.endswith(b"{}")


async def test_head_gets_headers_only(nursery: trio.Nursery) -> None:
    port = await _serve(nursery)
    answer = await _exchange(
        port, b"HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", until=b"\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"x-method: HEAD" in answer
    assert answer.endswith(b"\r\n\r\n")  # no body follows


async def test_a_failing_handler_answers_500_and_the_server_goes_on(
    nursery: trio.Nursery,
) -> None:
    port = await _serve(nursery)
    first = await _exchange(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n", until=b"error\n")
    assert first.startswith(b"HTTP/1.1 500 ")
    second = await _exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", until=b"/ok")
    assert second.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", b"413"),
    ],
)
async def test_bad_requests_are_refused_and_closed(
    nursery: trio.Nursery, data: bytes, status: bytes
) -> None:
    port = await _serve(nursery, ServerLimits(max_body_bytes=1000))
    answer = await _exchange(port, data, until=b"\n\n")
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"connection: close" in answer.lower()


async def test_a_client_leaving_mid_body_costs_nothing(nursery: trio.Nursery) -> None:
    port = await _serve(nursery)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12")
        await stream.aclose()
    answer = await _exchange(port, b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n", until=b"/still")
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_client_that_never_reads_is_dropped() -> None:
    async def big(request: Request) -> Response:
        return Response(200, [], b"x" * 1_000_000)

    server_side, client_side = trio.socket.socketpair()
    server = trio.SocketStream(server_side)
    async with trio.SocketStream(client_side) as client:
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20)  # and never reads
        with trio.fail_after(5):
            await serve_connection(
                server, big, limits=ServerLimits(send_timeout_s=0.2), logger=LOGGER
            )
