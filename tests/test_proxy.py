"""The sampling proxy on a real loopback socket, with X-Ray faked at the httpx transport.

Requests are the SDKs' own (``tests/data/aws/*.http``, replayed byte for byte) or built by hand;
every signature the fake X-Ray receives is recomputed with botocore from the daemon's keys.
"""

from __future__ import annotations

import functools
import gzip
import re
import socket
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from xray_trio.errors import StartupError
from xray_trio.proxy import ProxyLimits, serve_sampling_proxy
from xray_trio.signing import CredentialSource
from xray_trio.snapshot import ProxyCounters
from xray_trio.transport import HttpxTransport

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncIterator, Callable, Mapping

    from tests.logs import Lines

DATA = Path(__file__).parent / "data" / "aws"
REGION = "us-west-2"
ENDPOINT = "https://xray.us-west-2.amazonaws.com"
KEYS = Credentials("AKIDDAEMON", "daemon-secret", "daemon-session-token")


def check_sigv4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
) -> str:
    """Recompute a SigV4 ``xray`` signature as the service would; return the access key id."""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/xray/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        headers["authorization"],
    )
    assert match, headers["authorization"]
    key_id, day, signed_region, signed, signature = match.groups()
    assert key_id == credentials.access_key
    assert signed_region == region
    assert headers["x-amz-date"].startswith(day)
    request = AWSRequest(
        method=method, url=url, data=body, headers={n: headers[n] for n in signed.split(";")}
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(credentials, "xray", region)
    canonical = signer.canonical_request(request)
    assert signature == signer.signature(signer.string_to_sign(request, canonical), request)
    return key_id


class FakeXRay(httpx.AsyncBaseTransport):
    """X-Ray at the transport: records each request and answers with ``handler``.

    Unlike ``httpx.MockTransport`` the answer is not read here, so the proxy sees the raw
    (still compressed) bytes a real connection would give it.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.handler: Callable[[httpx.Request], object] = lambda _: httpx.Response(
            200, json={"SamplingRuleRecords": []}
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        answer = self.handler(request)
        if not isinstance(answer, httpx.Response):
            answer = await answer  # type: ignore[misc]
        assert isinstance(answer, httpx.Response)
        # httpx.Response(content=...) reads (and decodes) its body; re-wrap the raw bytes.
        raw = b"".join(answer.stream)  # type: ignore[arg-type]
        return httpx.Response(
            answer.status_code, headers=answer.headers, stream=httpx.ByteStream(raw)
        )


@pytest.fixture
def fake() -> FakeXRay:
    return FakeXRay()


def _origin(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
async def start_proxy(
    nursery: trio.Nursery, fake: FakeXRay, logger: logging.Logger
) -> AsyncIterator[Callable[..., object]]:
    clients: list[httpx.AsyncClient] = []

    async def start(
        *,
        limits: ProxyLimits | None = None,
        credentials: CredentialSource | None = None,
        address: str = "127.0.0.1:0",
        endpoint: str = ENDPOINT,
        counters: ProxyCounters | None = None,
    ) -> tuple[str, int] | None:
        http = httpx.AsyncClient(transport=fake)
        clients.append(http)
        bound: tuple[str, int] | None = await nursery.start(
            functools.partial(
                serve_sampling_proxy,
                address,
                upstream_endpoint=endpoint,
                region=REGION,
                credentials=credentials
                or CredentialSource(lambda: KEYS, limiter=trio.CapacityLimiter(1)),
                transport=HttpxTransport(http, _origin(endpoint)),
                logger=logger,
                limits=limits,
                counters=counters,
            )
        )
        return bound

    yield start
    for http in clients:
        await http.aclose()


def captured(name: str, host: str) -> bytes:
    raw = (DATA / name).read_bytes()
    return re.sub(rb"\r\nHost: [^\r]*\r\n", f"\r\nHost: {host}\r\n".encode(), raw, count=1)


async def raw_status(host: str, port: int, request: bytes) -> int:
    """Send ``request`` as raw bytes on a new connection; the status of the answer."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            status, _, _ = await read_response(stream)
    return status


async def read_response(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length, read off a raw stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers.get("content-length", "0")):
        body += await stream.receive_some()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "capture",
    [
        "py-GetSamplingRules.http",
        "py-SamplingTargets.http",
        "node-GetSamplingRules.http",
        "node-SamplingTargets.http",
    ],
)
async def test_sdk_requests_are_re_signed_and_forwarded(
    start_proxy: Callable[..., object], fake: FakeXRay, capture: str
) -> None:
    host, port = await start_proxy()  # type: ignore[misc]
    raw = captured(capture, f"{host}:{port}")
    client_head, _, client_body = raw.partition(b"\r\n\r\n")
    fake.handler = lambda _: httpx.Response(
        200, json={"SamplingRuleRecords": []}, headers={"x-amzn-RequestId": "req-1"}
    )
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(raw)
            status, headers, body = await read_response(stream)
    assert status == 200
    assert body == b'{"SamplingRuleRecords":[]}'
    assert headers["x-amzn-requestid"] == "req-1"
    [upstream] = fake.requests
    path = "/" + capture.split("-", 1)[1].removesuffix(".http")
    assert str(upstream.url) == ENDPOINT + path
    assert upstream.method == "POST"
    assert upstream.headers["host"] == "xray.us-west-2.amazonaws.com"
    assert upstream.content == client_body
    check_sigv4("POST", str(upstream.url), upstream.headers, upstream.content, KEYS, REGION)
    assert upstream.headers["x-amz-security-token"] == "daemon-session-token"
    assert "connection" not in upstream.headers
    # Nothing is added after signing: an Accept-Encoding only if the SDK sent one.
    expected_encoding = "identity" if capture.startswith("py-") else None
    assert upstream.headers.get("accept-encoding") == expected_encoding
    if capture.startswith("py-"):
        assert upstream.headers["user-agent"].startswith("Botocore/")
        assert b"amz-sdk-invocation-id" in client_head
        assert "amz-sdk-invocation-id" in upstream.headers


async def test_any_method_path_and_query_are_forwarded(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy(endpoint="https://xray.example.com/ignored/path")  # type: ignore[misc]
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        got = await client.get("/TraceGraph/x%20y?NextToken=a%2Fb&x=1")
        put = await client.put("/Groups", content=b"{}")
    assert (got.status_code, put.status_code) == (200, 200)
    first, second = fake.requests
    assert (first.method, str(first.url)) == (
        "GET",
        "https://xray.example.com/TraceGraph/x%20y?NextToken=a%2Fb&x=1",
    )
    assert (second.method, str(second.url)) == ("PUT", "https://xray.example.com/Groups")
    for upstream in fake.requests:
        check_sigv4(
            upstream.method, str(upstream.url), upstream.headers, upstream.content, KEYS, REGION
        )


async def test_a_raw_non_ascii_target_is_refused_before_it_is_forwarded(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy()  # type: ignore[misc]
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(stream))[0] == 400
    assert fake.requests == []


async def test_client_auth_and_hop_by_hop_headers_are_not_forwarded(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy()  # type: ignore[misc]
    async with httpx.AsyncClient() as client:
        await client.post(
            f"http://{host}:{port}/SamplingTargets",
            content=b"{}",
            headers={
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/x",
                "X-Amz-Date": "20200101T000000Z",
                "X-Amz-Security-Token": "client-token",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "dropped because Connection names it",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic eDp5",
                "X-Custom": "kept",
            },
        )
    [upstream] = fake.requests
    assert check_sigv4(
        "POST", str(upstream.url), upstream.headers, upstream.content, KEYS, REGION
    ) == ("AKIDDAEMON")
    assert upstream.headers["x-amz-security-token"] == "daemon-session-token"
    assert upstream.headers["x-amz-date"] != "20200101T000000Z"
    for name in ("connection", "x-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in upstream.headers
    assert upstream.headers["x-custom"] == "kept"
    assert "x-custom" in upstream.headers["authorization"]  # kept headers are signed


async def test_error_answers_and_compressed_bodies_are_relayed_as_they_came(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy()  # type: ignore[misc]
    packed = gzip.compress(b'{"message":"denied"}')
    fake.handler = lambda _: httpx.Response(
        403,
        content=packed,
        headers={
            "x-amzn-ErrorType": "AccessDeniedException",
            "Content-Encoding": "gzip",
            "Keep-Alive": "timeout=5",
            "Connection": "keep-alive",
        },
    )
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(
                b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
            )
            status, headers, body = await read_response(stream)
    assert status == 403
    assert body == packed
    assert headers["content-encoding"] == "gzip"
    assert headers["content-length"] == str(len(packed))
    assert headers["x-amzn-errortype"] == "AccessDeniedException"
    assert "keep-alive" not in headers
    assert "server" not in headers  # the proxy adds nothing of its own


async def test_transport_error_answers_502_and_is_logged(
    start_proxy: Callable[..., object], fake: FakeXRay, lines: Lines
) -> None:
    counters = ProxyCounters()
    host, port = await start_proxy(counters=counters)  # type: ignore[misc]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    fake.handler = refuse
    async with httpx.AsyncClient() as client:
        response = await client.post(f"http://{host}:{port}/GetSamplingRules", content=b"{}")
    assert response.status_code == 502
    assert (
        response.text
        == f"X-Ray endpoint {ENDPOINT} unreachable: ConnectError: [Errno 111] Connection refused\n"
    )
    assert "http: proxy error: ConnectError: [Errno 111] Connection refused" in lines.messages(
        "ERROR"
    )
    assert (counters.requests, counters.errors) == (1, 1)


async def test_an_upstream_that_does_not_answer_in_time_gets_504(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy(limits=ProxyLimits(upstream_timeout_s=0.2))  # type: ignore[misc]

    async def hang(_: httpx.Request) -> httpx.Response:
        await trio.sleep(10)
        raise AssertionError("not reached")  # pragma: no cover

    fake.handler = hang
    async with httpx.AsyncClient() as client:
        with trio.fail_after(5):
            response = await client.post(f"http://{host}:{port}/SamplingTargets", content=b"{}")
    assert response.status_code == 504


async def test_bodies_over_the_limit_get_413(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy(limits=ProxyLimits(max_body_bytes=100))  # type: ignore[misc]

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 30

    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
        declared = await client.post("/SamplingTargets", content=b"x" * 101)
        streamed = await client.post("/SamplingTargets", content=chunked())
        fits = await client.post("/SamplingTargets", content=b"x" * 100)
    assert (declared.status_code, streamed.status_code, fits.status_code) == (413, 413, 200)
    assert len(fake.requests) == 1


async def test_a_body_that_trickles_in_gets_408(start_proxy: Callable[..., object]) -> None:
    host, port = await start_proxy(limits=ProxyLimits(body_timeout_s=0.2))  # type: ignore[misc]
    status = await raw_status(
        host, port, b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}"
    )
    assert status == 408


async def test_headers_that_trickle_in_get_408(start_proxy: Callable[..., object]) -> None:
    host, port = await start_proxy(limits=ProxyLimits(header_timeout_s=0.2))  # type: ignore[misc]
    status = await raw_status(host, port, b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\n")
    assert status == 408


async def test_oversized_headers_get_431(start_proxy: Callable[..., object]) -> None:
    host, port = await start_proxy(limits=ProxyLimits(max_header_bytes=1024))  # type: ignore[misc]
    status = await raw_status(host, port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
    assert status == 431


async def test_an_absolute_form_request_is_forwarded_by_its_path(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    host, port = await start_proxy()  # type: ignore[misc]
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(
                b"POST http://example.com/GetSamplingRules?x=1 HTTP/1.1\r\nHost: example.com\r\n"
                b"Content-Length: 2\r\n\r\n{}"
            )
            status, _, _ = await read_response(stream)
    assert status == 200
    [upstream] = fake.requests
    assert upstream.url == f"{ENDPOINT}/GetSamplingRules?x=1"


async def test_kept_alive_connections_serve_polls_until_idle_too_long(
    start_proxy: Callable[..., object], fake: FakeXRay
) -> None:
    assert ProxyLimits().idle_timeout_s >= 30  # SDKs poll every 10 s on one connection
    host, port = await start_proxy(limits=ProxyLimits(idle_timeout_s=0.5))  # type: ignore[misc]
    poll = b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            for _ in range(3):
                await stream.send_all(poll)
                status, _, _ = await read_response(stream)
                assert status == 200
                await trio.sleep(0.2)
            await trio.sleep(0.6)
            assert await stream.receive_some() == b""  # closed by the server
    assert len(fake.requests) == 3


async def test_without_credentials_the_request_goes_unsigned(
    start_proxy: Callable[..., object], fake: FakeXRay, lines: Lines
) -> None:
    credentials = CredentialSource(lambda: None, limiter=trio.CapacityLimiter(1))
    host, port = await start_proxy(credentials=credentials)  # type: ignore[misc]
    async with httpx.AsyncClient() as client:
        response = await client.post(f"http://{host}:{port}/GetSamplingRules", content=b"{}")
    assert response.status_code == 200
    [upstream] = fake.requests
    assert "authorization" not in upstream.headers
    assert lines.messages("ERROR") == [
        "Unable to retrieve credentials: NoCredentialProviders: no valid providers in chain"
    ]


async def test_log_lines_are_the_go_daemons_and_the_server_adds_none(
    start_proxy: Callable[..., object], lines: Lines
) -> None:
    host, port = await start_proxy()  # type: ignore[misc]
    async with httpx.AsyncClient() as client:
        await client.post(f"http://{host}:{port}/GetSamplingRules", content=b"{}")
    assert lines.lines == [
        ("INFO", f"HTTP Proxy server using X-Ray Endpoint : {ENDPOINT}"),
        ("INFO", "Starting proxy http server on 127.0.0.1:0"),
        ("DEBUG", "Received request on HTTP Proxy server : /GetSamplingRules"),
    ]


async def test_a_busy_port_is_logged_and_the_daemon_carries_on(
    start_proxy: Callable[..., object], lines: Lines
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert await start_proxy(address=f"127.0.0.1:{port}") is None
    [error] = lines.messages("ERROR")
    assert error == (
        f"proxy http server failed to listen: listen tcp 127.0.0.1:{port}: bind: "
        "address already in use"
    )
    assert lines.messages("INFO")[-1] == f"Starting proxy http server on 127.0.0.1:{port}"


async def test_an_address_that_does_not_resolve_stops_start_up(
    start_proxy: Callable[..., object],
) -> None:
    with pytest.raises(StartupError, match=r"^Unable to start http proxy server: "):
        await start_proxy(address="127.0.0.1")


async def test_cancelling_closes_the_proxy_and_its_connections(
    fake: FakeXRay, logger: logging.Logger
) -> None:
    async with httpx.AsyncClient(transport=fake) as http:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                host, port = await nursery.start(
                    functools.partial(
                        serve_sampling_proxy,
                        "127.0.0.1:0",
                        upstream_endpoint=ENDPOINT,
                        region=REGION,
                        credentials=CredentialSource(lambda: KEYS, limiter=trio.CapacityLimiter(1)),
                        transport=HttpxTransport(http, _origin(ENDPOINT)),
                        logger=logger,
                    )
                )
                stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(
                    b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                )
                assert (await read_response(stream))[0] == 200
                nursery.cancel_scope.cancel()
            async with stream:
                assert await stream.receive_some() == b""
            with pytest.raises(OSError, match="all attempts to connect"):
                await trio.open_tcp_stream(host, port)
