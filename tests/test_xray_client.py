"""Error classification at the X-Ray boundary: the buckets Go's telemetry means to fill."""

from __future__ import annotations

import errno
import socket

import httpx
import pytest

from xray_trio.errors import ErrorKind
from xray_trio.transport import classify_transport_error
from xray_trio.xray_client import classify_status, user_agent


def _wrapped(root: BaseException) -> httpx.TransportError:
    """Nest ``root`` the way httpx on anyio/trio reports a failed connect."""
    group = ExceptionGroup("attempts", [root])  # type: ignore[type-var]
    attempts = OSError("all attempts to connect to host:443 failed")
    attempts.__context__ = group
    error = httpx.ConnectError("all attempts to connect to host:443 failed")
    error.__cause__ = attempts
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ConnectTimeout("t"), ErrorKind.TIMEOUT),
        (httpx.ReadTimeout("t"), ErrorKind.TIMEOUT),
        (httpx.PoolTimeout("t"), ErrorKind.TIMEOUT),
        (
            _wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
            ErrorKind.CONNECTION_REFUSED,
        ),
        (_wrapped(socket.gaierror(-2, "Name or service not known")), ErrorKind.UNKNOWN_HOST),
        (_wrapped(OSError(errno.ENETUNREACH, "unreachable")), ErrorKind.OTHER),
        (httpx.RemoteProtocolError("closed"), ErrorKind.OTHER),
    ],
)
def test_transport_errors(error: httpx.TransportError, kind: ErrorKind) -> None:
    assert classify_transport_error(error) is kind


@pytest.mark.parametrize(
    ("status", "code", "kind", "retriable"),
    [
        (500, "InternalFailure", ErrorKind.HTTP_5XX, True),
        (502, "UnknownError", ErrorKind.HTTP_5XX, True),
        (429, "UnknownError", ErrorKind.HTTP_4XX, True),
        (400, "ThrottlingException", ErrorKind.HTTP_4XX, True),
        (403, "ExpiredTokenException", ErrorKind.HTTP_4XX, True),
        (403, "InvalidSignatureException", ErrorKind.HTTP_4XX, False),
        (400, "InvalidRequestException", ErrorKind.HTTP_4XX, False),
        (301, "UnknownError", ErrorKind.OTHER, False),
    ],
)
def test_status_codes(status: int, code: str, kind: ErrorKind, retriable: bool) -> None:
    assert classify_status(status, code) == (kind, retriable)


async def test_a_refused_connection_on_loopback_is_classified_as_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connect is refused
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.post(f"http://127.0.0.1:{port}/TraceSegments")
    assert classify_transport_error(info.value) is ErrorKind.CONNECTION_REFUSED


def test_user_agent_carries_the_daemon_marker() -> None:
    agent = user_agent("AWS_ECS_FARGATE")
    assert " xray-agent/xray-daemon/" in agent
    assert " exec-env/AWS_ECS_FARGATE " in agent
    assert " exec-env/UNKNOWN " in user_agent("")
