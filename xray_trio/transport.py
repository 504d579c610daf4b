"""X-Ray calls through an HTTP proxy: httpx, whose proxy support (CONNECT, ``NO_PROXY``) is worth
its cost there. Only imported when a proxy is configured; direct calls use ``http1.H11Pool``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from xray_trio.errors import ErrorKind, UploadError
from xray_trio.http1 import Response, classify_network_error
from xray_trio.proxies import check_environment_proxies, check_proxy_url

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from xray_trio.config import Config


def classify_transport_error(exc: httpx.TransportError) -> ErrorKind:
    """Which telemetry bucket a request that got no response counts in."""
    if isinstance(exc, httpx.TimeoutException):
        return ErrorKind.TIMEOUT
    return classify_network_error(exc)


class HttpxTransport:
    """``http1.OriginTransport`` over httpx, for calls that go through an HTTP proxy."""

    def __init__(self, http: httpx.AsyncClient, origin: str) -> None:
        self._http = http
        self._origin = origin

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Response:
        # A bare Request, not build_request(): the client's default headers (Accept-Encoding,
        # User-Agent...) would otherwise be added after the proxy signed the request.
        request = httpx.Request(method, self._origin + target, headers=list(headers), content=body)
        try:
            response = await self._http.send(request, stream=True)
            try:
                # Raw bytes: a compressed answer stays compressed, with its headers. A response
                # made in memory (a mock transport) arrives already read.
                content = (
                    response.content
                    if response.is_stream_consumed
                    else b"".join([chunk async for chunk in response.aiter_raw()])
                )
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise UploadError(
                f"{type(exc).__name__}: {exc}", kind=classify_transport_error(exc), retriable=True
            ) from exc
        return Response(
            response.status_code,
            [(name.lower(), value) for name, value in response.headers.raw],
            content,
        )


def open_http_client(config: Config, env: Mapping[str, str]) -> httpx.AsyncClient:
    """One keep-alive pool for every X-Ray call; the proxy is ``-p`` or the environment's.

    The client's timeout is a backstop for reads that never end; callers put their own
    deadlines (``trio.fail_after``) around each call.
    """
    proxy = check_proxy_url(config.proxy_address) if config.proxy_address else None
    if proxy is None:
        check_environment_proxies(env)
    timeout = config.tuning.request_timeout_s
    return httpx.AsyncClient(
        # An explicit proxy makes httpx ignore the environment's proxies (NO_PROXY too, as Go
        # does with -p); SSL_CERT_FILE/SSL_CERT_DIR still apply either way.
        proxy=proxy,
        trust_env=True,
        verify=not config.no_verify_ssl,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=max(config.concurrency, 1) * 2
        ),
    )
