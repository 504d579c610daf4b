"""The exceptions xray-trio raises, and the one place that knows them all.

    XrayTrioError
     +-- ConfigError      a YAML file or value the Go daemon would refuse (Go's message text)
     +-- StartupError     bind, region, proxy URL or buffer memory problems found at start-up
     +-- UploadError      one failed call to the X-Ray API, classified for telemetry and retries

Rejected datagrams are values (``segment.Rejected``), not exceptions. Only ``cli.py`` turns an
exception into an exit code.
"""

from __future__ import annotations

import enum


class XrayTrioError(Exception):
    """Base class of every error xray-trio raises on purpose."""


class ConfigError(XrayTrioError):
    """The configuration cannot be used; the message is the Go daemon's text. Exit code 1."""


class StartupError(XrayTrioError):
    """The daemon cannot start (bind, region, proxy URL, buffer memory). Exit code 1."""


class ErrorKind(enum.Enum):
    """Telemetry's BackendConnectionErrors buckets, one per kind of failed call."""

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    UNKNOWN_HOST = "unknown_host"
    OTHER = "other"


class UploadError(XrayTrioError):
    """A call to the X-Ray API failed.

    Attributes:
        kind: the telemetry bucket this failure counts in.
        status: the HTTP status, or ``None`` when no response arrived.
        retriable: whether sending the same request again may succeed (throttling, 5xx,
            timeouts, connection failures), as opposed to a request X-Ray will always refuse.
        throttled: X-Ray said to slow down (429 or a ThrottlingException).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        status: int | None = None,
        retriable: bool,
        throttled: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retriable = retriable
        self.throttled = throttled


def leaf_exceptions(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside ``group`` and its nested groups, in order."""
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves += leaf_exceptions(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return leaves
