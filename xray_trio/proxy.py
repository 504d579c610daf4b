"""The TCP sampling proxy: SDKs call X-Ray through it unsigned; it signs with the daemon's identity.

SDKs with centralized sampling POST ``/GetSamplingRules`` and ``/SamplingTargets`` (every 10 s,
on a kept-alive connection) to the daemon's TCP address. Like Go's reverse proxy, every method
and path is forwarded to the X-Ray endpoint; the request is re-signed with SigV4 (service
``xray``, the daemon's region and credentials) after dropping hop-by-hop headers and any
signature the client brought, and the answer is relayed as it came.

HTTP parsing is h11's, served by ``h11_server``. Unlike Go, which sets no limits at all, a stuck
or hostile client cannot pin the daemon: headers are capped (431) and must arrive in time (408),
a body is capped (413) and must arrive in time (408), a connection may sit idle between requests
for ``idle_timeout_s``, and the upstream call has a deadline (504). Transport failures towards
X-Ray answer 502 with a short reason.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import urllib.parse
from typing import TYPE_CHECKING

import trio

from xray_trio.errors import StartupError, UploadError
from xray_trio.h11_server import Request, Response, ServerLimits, serve_connection, text_response
from xray_trio.receiver import go_os_error, split_host_port
from xray_trio.signing import sign_request
from xray_trio.snapshot import ProxyCounters

if TYPE_CHECKING:
    import logging

    from xray_trio.http1 import OriginTransport
    from xray_trio.signing import CredentialSource

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Set again for the upstream request: Host and length by the transport, the signature by us.
# Expect is dropped because the server has already answered any 100-continue.
_REPLACED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
    }
)

_BACKLOG = 128

_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
"""Printable ASCII: every byte a request target may hold unescaped passes through as it is."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProxyLimits(ServerLimits):
    """The server's limits on clients, plus the deadline for X-Ray's answer."""

    upstream_timeout_s: float = 30.0
    """Deadline for X-Ray's whole answer; past it the client gets 504."""


class SamplingProxy:
    """The request handler: one signed upstream call per request."""

    def __init__(
        self,
        *,
        upstream_endpoint: str,
        region: str,
        credentials: CredentialSource,
        transport: OriginTransport,
        logger: logging.Logger,
        limits: ProxyLimits,
        counters: ProxyCounters,
    ) -> None:
        # Go uses only the endpoint's scheme and host; the client's path is kept as sent.
        parts = urllib.parse.urlsplit(upstream_endpoint)
        self._target = f"{parts.scheme}://{parts.netloc}"
        self._region = region
        self._credentials = credentials
        self._transport = transport
        self._logger = logger
        self._limits = limits
        self._counters = counters

    @property
    def target(self) -> str:
        return self._target

    async def __call__(self, request: Request) -> Response:
        """Forward one request, re-signed; the answer X-Ray gave, or why there is none."""
        self._logger.debug(
            "Received request on HTTP Proxy server : %s", request.target.decode("latin-1")
        )
        self._counters.requests += 1
        headers = _forwarded_headers(request.headers)
        for name in _REPLACED:
            headers.pop(name, None)
        # Bytes as the client sent them; anything outside printable ASCII is escaped. A client
        # talking to us as to a forward proxy sends an absolute URL: only its path and query
        # count, as in Go's reverse proxy.
        raw_target = request.target
        if not raw_target.startswith(b"/"):
            parts = urllib.parse.urlsplit(raw_target)
            raw_target = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
        target = urllib.parse.quote_from_bytes(raw_target, safe=_URL_SAFE)
        method = request.method
        signed = await self._sign(method, self._target + target, headers, request.body)
        try:
            with trio.fail_after(self._limits.upstream_timeout_s):
                response = await self._transport.request(
                    method, target, list(signed.items()), request.body
                )
        except trio.TooSlowError:
            self._counters.errors += 1
            self._logger.error("http: proxy error: no answer from %s in time", self._target)
            return text_response(504, f"X-Ray endpoint {self._target} did not answer in time\n")
        except UploadError as exc:
            reason = str(exc)
            self._counters.errors += 1
            self._logger.error("http: proxy error: %s", reason)
            return text_response(502, f"X-Ray endpoint {self._target} unreachable: {reason}\n")
        relayed = [
            (name, value)
            for name, value in response.headers
            if name.decode("latin-1") not in _HOP_BY_HOP
        ]
        return Response(response.status, relayed, response.body)

    async def _sign(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        """Headers with a fresh signature; unsigned (as Go does) when that is impossible."""
        try:
            credentials = await self._credentials.get()
        except UploadError as exc:
            self._logger.error("Unable to retrieve credentials: %s", exc)
            return headers
        try:
            return sign_request(
                credentials, self._region, method=method, url=url, headers=headers, body=body
            )
        except Exception as exc:  # whatever botocore raises: forward unsigned, as Go does
            self._logger.error("Unable to sign request: %s", exc)
            return headers


def _forwarded_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Client headers minus hop-by-hop ones (and those ``Connection`` names), repeats joined."""
    pairs = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
    dropped = set(_HOP_BY_HOP)
    for name, value in pairs:
        if name == "connection":
            dropped.update(token.strip().lower() for token in value.split(","))
    headers: dict[str, str] = {}
    for name, value in pairs:
        if name not in dropped:
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def _listen(address: str) -> socket.socket:
    """Resolve (failure is fatal, as in Go) and bind; ``OSError`` means the port is taken."""
    try:
        host, port = split_host_port(address)
        infos = await trio.socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (ValueError, OSError) as exc:
        raise StartupError(f"Unable to start http proxy server: {exc}") from None
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        # Go's listener sets SO_REUSEADDR, so a restart does not wait out TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve_sampling_proxy(
    address: str,
    *,
    upstream_endpoint: str,
    region: str,
    credentials: CredentialSource,
    transport: OriginTransport,
    logger: logging.Logger,
    limits: ProxyLimits | None = None,
    counters: ProxyCounters | None = None,
    task_status: trio.TaskStatus[tuple[str, int] | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the sampling proxy on ``address`` until cancelled.

    ``task_status.started`` reports the bound ``(host, port)``. If the port cannot be bound the
    error is logged, ``started(None)`` is reported and this returns: as in Go, the daemon keeps
    relaying segments without a proxy. An address that does not resolve is a ``StartupError``.
    """
    limits = ProxyLimits() if limits is None else limits
    app = SamplingProxy(
        upstream_endpoint=upstream_endpoint,
        region=region,
        credentials=credentials,
        transport=transport,
        logger=logger,
        limits=limits,
        counters=ProxyCounters() if counters is None else counters,
    )
    logger.info("HTTP Proxy server using X-Ray Endpoint : %s", app.target)
    logger.info("Starting proxy http server on %s", address)
    try:
        sock = await _listen(address)
    except OSError as exc:
        # Go's text: "listen tcp 127.0.0.1:2000: bind: address already in use".
        logger.error(
            "proxy http server failed to listen: listen tcp %s: bind: %s",
            address,
            go_os_error(exc),
        )
        task_status.started(None)
        return
    bound: tuple[str, int] = sock.getsockname()[:2]
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    serve = functools.partial(serve_connection, handler=app, limits=limits, logger=logger)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, [listener])
        task_status.started(bound)
