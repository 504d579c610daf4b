"""The TCP sampling proxy: SDKs call X-Ray through it unsigned; it signs with the daemon's identity.

SDKs with centralized sampling POST ``/GetSamplingRules`` and ``/SamplingTargets`` (every 10 s,
on a kept-alive connection) to the daemon's TCP address. Like Go's reverse proxy, every method
and path is forwarded to the X-Ray endpoint; the request is re-signed with SigV4 (service
``xray``, the daemon's region and credentials) after dropping hop-by-hop headers and any
signature the client brought, and the answer is relayed as it came.

HTTP parsing, keep-alive and connection limits are hypercorn's (trio worker) behind a small ASGI
app. Unlike Go, which sets no limits at all, a stuck or hostile client cannot pin the daemon: a
body is capped (413) and must arrive in time (408), a connection may sit idle (or take that long
to send its headers: hypercorn has one timer for both) for ``idle_timeout_s``, and the upstream
call has a deadline (504). Transport failures towards X-Ray answer 502 with a short reason.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import urllib.parse
from typing import TYPE_CHECKING, Any

import hypercorn.logging
import trio
from botocore.exceptions import BotoCoreError
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from xray_trio.errors import StartupError, UploadError
from xray_trio.receiver import split_host_port
from xray_trio.signing import sign_request
from xray_trio.snapshot import ProxyCounters

if TYPE_CHECKING:
    import logging

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

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
# Expect is dropped because hypercorn has already answered any 100-continue.
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

_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
"""Printable ASCII: every byte a request target may hold unescaped passes through as it is."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProxyLimits:
    """Bounds on what one client can hold; generous next to what SDKs send (a few KB)."""

    max_body_bytes: int = 1024 * 1024
    """Larger request bodies are refused with 413."""
    max_header_bytes: int = 16 * 1024
    """Request line plus headers; larger is refused by hypercorn with 431/400."""
    body_timeout_s: float = 20.0
    """A body that takes longer to arrive is refused with 408."""
    idle_timeout_s: float = 60.0
    """Keep-alive idle time, and the time allowed for a request's headers. SDKs poll every
    10 s and rules every 5 minutes on one connection, so this must stay well above 10 s."""
    upstream_timeout_s: float = 30.0
    """Deadline for X-Ray's whole answer; past it the client gets 504."""


class _ErrorsOnlyLogger(hypercorn.logging.Logger):
    """hypercorn's error log, routed to the daemon's logger, minus its informational lines
    ("Running on ..."), which the daemon states itself in the Go daemon's words."""

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        pass

    async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        pass


def _hypercorn_config(limits: ProxyLimits, logger: logging.Logger) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = logger
    config.logger_class = _ErrorsOnlyLogger
    config.keep_alive_timeout = limits.idle_timeout_s
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.h2_max_header_list_size = limits.max_header_bytes
    # X-Ray's own Date and Server headers are relayed; hypercorn's would be duplicates.
    config.include_date_header = False
    config.include_server_header = False
    # Go closes the proxy at once on shutdown; so does cancelling this task.
    config.graceful_timeout = 0
    return config


class SamplingProxy:
    """The ASGI app: one signed upstream call per request."""

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

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http":
            await self._proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        else:  # WebSocket: not something X-Ray speaks.
            await send({"type": "websocket.close", "code": 1008, "reason": ""})

    async def _proxy(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self._logger.debug("Received request on HTTP Proxy server : %s", scope["path"])
        self._counters.requests += 1
        headers = _forwarded_headers(scope["headers"])
        if int(headers.get("content-length", "0") or "0") > self._limits.max_body_bytes:
            await _respond(send, 413, "request body too large\n")
            return
        try:
            with trio.fail_after(self._limits.body_timeout_s):
                body = await _read_body(receive, self._limits.max_body_bytes)
        except trio.TooSlowError:
            await _respond(send, 408, "request body not received in time\n")
            return
        if body is None:
            await _respond(send, 413, "request body too large\n")
            return
        for name in _REPLACED:
            headers.pop(name, None)
        # Bytes as the client sent them. HTTP/1.1 parsing refuses non-ASCII targets; h2c does
        # not, so those bytes are escaped rather than left to fail the request.
        target = urllib.parse.quote_from_bytes(scope["raw_path"], safe=_URL_SAFE)
        if scope["query_string"]:
            target += "?" + urllib.parse.quote_from_bytes(scope["query_string"], safe=_URL_SAFE)
        method: str = scope["method"]
        signed = await self._sign(method, self._target + target, headers, body)
        try:
            with trio.fail_after(self._limits.upstream_timeout_s):
                response = await self._transport.request(method, target, list(signed.items()), body)
        except trio.TooSlowError:
            self._counters.errors += 1
            self._logger.error("http: proxy error: no answer from %s in time", self._target)
            await _respond(send, 504, f"X-Ray endpoint {self._target} did not answer in time\n")
            return
        except UploadError as exc:
            reason = str(exc)
            self._counters.errors += 1
            self._logger.error("http: proxy error: %s", reason)
            await _respond(send, 502, f"X-Ray endpoint {self._target} unreachable: {reason}\n")
            return
        relayed = [
            (name, value)
            for name, value in response.headers
            if name.decode("latin-1") not in _HOP_BY_HOP
            and (method == "HEAD" or name != b"content-length")
        ]
        if method != "HEAD":
            relayed.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": relayed})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

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
        except BotoCoreError as exc:
            self._logger.error("Unable to sign request: %s", exc)
            return headers


def _forwarded_headers(raw: Any) -> dict[str, str]:
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


async def _read_body(receive: ASGIReceiveCallable, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; nothing will be sent back
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: ASGISendCallable, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _listen(address: str, backlog: int) -> socket.socket:
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
        sock.listen(backlog)
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
    config = _hypercorn_config(limits, logger)
    try:
        sock = await _listen(address, config.backlog)
    except OSError as exc:
        logger.error("proxy http server failed to listen: %s", exc)
        task_status.started(None)
        return
    logger.info("Starting proxy http server on %s", address)
    sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
    bound: tuple[str, int] = sock.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                worker_serve,
                wrap_app(app, config.wsgi_max_body_size, "asgi"),
                config,
                sockets=sockets,
            )
        )
        task_status.started(bound)
