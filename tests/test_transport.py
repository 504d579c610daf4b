"""The shared HTTP client: proxy URL checks, ``-p``, environment proxies and ``NO_PROXY``.

An HTTP forward-proxy fake on loopback answers uploads itself, so it proves the request went
through it (absolute-form request line) without forwarding anywhere.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.parse
from typing import TYPE_CHECKING

import pytest
import trio
from botocore.credentials import Credentials
from fake_xray import TRACE_SEGMENTS, FakeXRay

from tests.loopback import LoopbackServer, QuietHandler
from xray_trio.config import Config
from xray_trio.errors import StartupError
from xray_trio.proxies import check_proxy_url
from xray_trio.signing import CredentialSource
from xray_trio.transport import HttpxTransport, open_http_client
from xray_trio.xray_client import XRayClient, encode_trace_segments

if TYPE_CHECKING:
    from collections.abc import Iterator


class FakeForwardProxy(LoopbackServer):
    """Records request lines; answers every request like X-Ray accepting the batch."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake.request_lines.append(self.requestline)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.answer(200, json.dumps({"UnprocessedTraceSegments": []}).encode())

        super().__init__(Handler)


@pytest.fixture
def proxy() -> Iterator[FakeForwardProxy]:
    with FakeForwardProxy() as fake:
        yield fake


@pytest.fixture
def keys() -> CredentialSource:
    return CredentialSource(lambda: Credentials("AKID", "secret"), limiter=trio.CapacityLimiter(1))


async def upload(config: Config, endpoint: str, keys: CredentialSource) -> None:
    async with open_http_client(config, os.environ) as http:
        origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(endpoint))
        client = XRayClient(
            HttpxTransport(http, origin), endpoint=endpoint, region="us-west-2", credentials=keys
        )
        assert await client.put_trace_segments(encode_trace_segments([b'{"id":"1"}'])) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://[%10::1]", "invalid IPv6 host"),
        ("http://%41:8080/", "invalid URL escape in host"),
        ("http://a b.com/", "invalid character in host name 'a b.com'"),
        ("127.0.0.1:3128", "first path segment in URL cannot contain colon"),
        ("ftp://proxy:21", "unsupported proxy scheme 'ftp', expected http or https"),
        ("http://proxy:99999", "invalid port '99999'"),
    ],
)
def test_a_bad_proxy_url_stops_start_up(value: str, reason: str) -> None:
    with pytest.raises(StartupError, match=r"^Bad proxy URL: ") as caught:
        open_http_client(Config(proxy_address=value), {})
    assert str(caught.value).startswith(f'Bad proxy URL: parse "{value}": {reason}')


@pytest.mark.parametrize(
    "value", ["http://proxy:3128", "https://user:pw@proxy.corp:8443/", "http://[::1]:3128"]
)
def test_good_proxy_urls_are_kept(value: str) -> None:
    assert check_proxy_url(value) == value


def test_environment_proxies_are_checked_but_may_omit_the_scheme() -> None:
    with pytest.raises(StartupError, match=r"^Bad proxy URL: "):
        open_http_client(Config(), {"HTTPS_PROXY": "http://a b.com/"})
    assert check_proxy_url("proxy.corp:3128", scheme_required=False) == "http://proxy.corp:3128"


async def test_uploads_go_through_the_configured_proxy(
    proxy: FakeForwardProxy, keys: CredentialSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in Go, -p applies to every call: NO_PROXY does not exempt the endpoint.
    monkeypatch.setenv("NO_PROXY", "xray.example.test")
    await upload(Config(proxy_address=proxy.url), "http://xray.example.test", keys)
    assert proxy.request_lines == [f"POST http://xray.example.test{TRACE_SEGMENTS} HTTP/1.1"]


async def test_environment_proxy_is_used_unless_no_proxy_names_the_host(
    proxy: FakeForwardProxy, keys: CredentialSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with FakeXRay() as xray:
        endpoint = xray.url.rstrip("/")
        await upload(Config(), endpoint, keys)
        assert proxy.request_lines == [f"POST {endpoint}{TRACE_SEGMENTS} HTTP/1.1"]
        assert xray.requests == []

        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        await upload(Config(), endpoint, keys)
        assert len(proxy.request_lines) == 1
        assert len(xray.requests_to(TRACE_SEGMENTS)) == 1


def test_no_verify_ssl_turns_certificate_checks_off() -> None:
    for no_verify, mode in ((False, ssl.CERT_REQUIRED), (True, ssl.CERT_NONE)):
        client = open_http_client(Config(no_verify_ssl=no_verify), {})
        context = client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode == mode
