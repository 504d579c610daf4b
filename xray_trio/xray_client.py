"""The X-Ray API over httpx: PutTraceSegments and PutTelemetryRecords, signed with SigV4.

httpx failures and error responses are translated here, at the boundary, into ``UploadError``
with the telemetry bucket the Go daemon means to count them in (and which its 3.6.x build
misses). Request bodies are built once per batch from the raw documents; they are never parsed.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from xray_trio import __version__
from xray_trio.errors import ErrorKind, UploadError
from xray_trio.sigv4 import PostSigner

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xray_trio.http1 import OriginTransport, Response
    from xray_trio.signing import CredentialSource

_RETRIABLE_4XX_CODES = frozenset(
    {
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ExpiredTokenException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Unprocessed:
    """One entry of ``UnprocessedTraceSegments``."""

    id: str | None
    error_code: str | None
    message: str | None


def encode_trace_segments(documents: Sequence[bytes]) -> bytes:
    """The PutTraceSegments body: each raw document becomes one JSON string, unchanged.

    Bytes that are not UTF-8 become U+FFFD, as Go's encoder does with the same input.
    """
    texts = [document.decode("utf-8", "replace") for document in documents]
    return json.dumps(
        {"TraceSegmentDocuments": texts}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def user_agent(exec_env: str) -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return (
        f"xray-trio/{__version__} xray-agent/xray-daemon/{__version__} "
        f"exec-env/{exec_env or 'UNKNOWN'} OS/{platform.system().lower()}-{machine}"
    )


def classify_status(status: int, error_code: str) -> tuple[ErrorKind, bool]:
    """The bucket of an error response, and whether the same request may succeed later."""
    if status >= 500:
        return ErrorKind.HTTP_5XX, True
    if status >= 400:
        return ErrorKind.HTTP_4XX, status == 429 or error_code in _RETRIABLE_4XX_CODES
    return ErrorKind.OTHER, False


def _error_code(response: Response) -> tuple[str, str]:
    code = response.header(b"x-amzn-errortype").split(":")[0]
    message = ""
    try:
        payload: Any = json.loads(response.body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code = code or str(payload.get("__type", "")).rsplit("#", 1)[-1]
        message = str(payload.get("message") or payload.get("Message") or "")
    return code or "UnknownError", message


class XRayClient:
    """Signed calls to one X-Ray endpoint over a keep-alive connection pool.

    ``transport`` talks to the endpoint's origin: ``http1.H11Pool`` directly, or
    ``transport.HttpxTransport`` through an HTTP proxy.
    """

    def __init__(
        self,
        transport: OriginTransport,
        *,
        endpoint: str,
        region: str,
        credentials: CredentialSource,
        exec_env: str = "",
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        parts = urllib.parse.urlsplit(self._endpoint)
        self._base_path = parts.path
        self._transport = transport
        self._signer = PostSigner(host=_signed_host(parts), region=region)
        self._credentials = credentials
        self._user_agent = user_agent(exec_env)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    async def put_trace_segments(self, body: bytes) -> list[Unprocessed]:
        """Send a body made by ``encode_trace_segments``; return what X-Ray did not take."""
        payload = await self._call("PutTraceSegments", "/TraceSegments", body)
        entries = payload.get("UnprocessedTraceSegments") or []
        return [
            Unprocessed(entry.get("Id"), entry.get("ErrorCode"), entry.get("Message"))
            for entry in entries
            if isinstance(entry, dict)
        ]

    async def put_telemetry_records(self, record: dict[str, Any]) -> None:
        body = json.dumps(record, separators=(",", ":")).encode()
        await self._call("PutTelemetryRecords", "/TelemetryRecords", body)

    async def _call(self, operation: str, path: str, body: bytes) -> dict[str, Any]:
        # The endpoint's own escapes are kept; anything else unsafe in the path is escaped.
        target = urllib.parse.quote(self._base_path + path, safe="/~%")
        headers = self._signer.sign(
            await self._credentials.get(),
            path=target,
            headers={
                "Content-Type": "application/json",
                "X-Amzn-Xray-Timestamp": f"{time.time():.9f}",
            },
            body=body,
        )
        headers["User-Agent"] = self._user_agent
        try:
            response = await self._transport.request("POST", target, list(headers.items()), body)
        except UploadError as exc:
            raise UploadError(
                f"operation error XRay: {operation}, https response error: {exc}",
                kind=exc.kind,
                retriable=exc.retriable,
            ) from exc
        status = response.status
        if status >= 300:
            code, message = _error_code(response)
            kind, retriable = classify_status(status, code)
            request_id = response.header(b"x-amzn-requestid")
            raise UploadError(
                f"operation error XRay: {operation}, https response error StatusCode: "
                f"{status}, RequestID: {request_id}, api error {code}: {message}",
                kind=kind,
                status=status,
                retriable=retriable,
                throttled=status == 429 or "Throttl" in code,
            )
        try:
            payload = json.loads(response.body or b"{}")
        except ValueError:
            payload = {}
        return payload if isinstance(payload, dict) else {}


def _signed_host(parts: urllib.parse.SplitResult) -> str:
    # The Host header as HTTP sends it: the port only when it is not the scheme's default.
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port in (None, default) else f"{host}:{parts.port}"
