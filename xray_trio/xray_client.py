"""The X-Ray API over httpx: PutTraceSegments and PutTelemetryRecords, signed with SigV4.

httpx failures and error responses are translated here, at the boundary, into ``UploadError``
with the telemetry bucket the Go daemon means to count them in (and which its 3.6.x build
misses). Request bodies are built once per batch from the raw documents; they are never parsed.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import platform
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx

from xray_trio import __version__
from xray_trio.errors import ErrorKind, UploadError
from xray_trio.signing import sign_request

if TYPE_CHECKING:
    from collections.abc import Sequence

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


def classify_transport_error(exc: httpx.TransportError) -> ErrorKind:
    """Which telemetry bucket a request that got no response counts in."""
    if isinstance(exc, httpx.TimeoutException):
        return ErrorKind.TIMEOUT
    # The root cause hides behind httpcore's error and, on trio, anyio's "all attempts to
    # connect failed" OSError whose context is a group of the per-address errors.
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return ErrorKind.UNKNOWN_HOST
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return ErrorKind.CONNECTION_REFUSED
        if isinstance(cause, BaseExceptionGroup):
            pending.extend(cause.exceptions)
        pending.extend(c for c in (cause.__cause__, cause.__context__) if c is not None)
    return ErrorKind.OTHER


def classify_status(status: int, error_code: str) -> tuple[ErrorKind, bool]:
    """The bucket of an error response, and whether the same request may succeed later."""
    if status >= 500:
        return ErrorKind.HTTP_5XX, True
    if status >= 400:
        return ErrorKind.HTTP_4XX, status == 429 or error_code in _RETRIABLE_4XX_CODES
    return ErrorKind.OTHER, False


def _error_code(response: httpx.Response) -> tuple[str, str]:
    code = response.headers.get("x-amzn-errortype", "").split(":")[0]
    message = ""
    try:
        payload: Any = json.loads(response.content)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        code = code or str(payload.get("__type", "")).rsplit("#", 1)[-1]
        message = str(payload.get("message") or payload.get("Message") or "")
    return code or "UnknownError", message


class XRayClient:
    """Signed calls to one X-Ray endpoint over a shared keep-alive connection pool."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        endpoint: str,
        region: str,
        credentials: CredentialSource,
        exec_env: str = "",
    ) -> None:
        self._http = http
        self._endpoint = endpoint.rstrip("/")
        self._region = region
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
        url = self._endpoint + path
        headers = sign_request(
            await self._credentials.get(),
            self._region,
            method="POST",
            url=url,
            headers={
                "Content-Type": "application/json",
                "X-Amzn-Xray-Timestamp": f"{time.time():.9f}",
            },
            body=body,
        )
        headers["User-Agent"] = self._user_agent
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            kind = classify_transport_error(exc)
            raise UploadError(
                f"operation error XRay: {operation}, https response error: {exc!r}",
                kind=kind,
                retriable=True,
            ) from exc
        if response.status_code >= 300:
            code, message = _error_code(response)
            kind, retriable = classify_status(response.status_code, code)
            request_id = response.headers.get("x-amzn-requestid", "")
            raise UploadError(
                f"operation error XRay: {operation}, https response error StatusCode: "
                f"{response.status_code}, RequestID: {request_id}, api error {code}: {message}",
                kind=kind,
                status=response.status_code,
                retriable=retriable,
                throttled=response.status_code == 429 or "Throttl" in code,
            )
        try:
            payload = json.loads(response.content or b"{}")
        except ValueError:
            payload = {}
        return payload if isinstance(payload, dict) else {}
