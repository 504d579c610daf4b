"""SigV4 for X-Ray calls, with botocore doing the signing and owning the credentials.

botocore may do network I/O to refresh credentials (IMDS, STS, SSO). That never happens on the
trio thread: a refresh that is due runs in a worker thread, and the common case, credentials
that are still fresh, is a cheap in-memory read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

from xray_trio.errors import ErrorKind, UploadError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from botocore.credentials import Credentials

SERVICE = "xray"


class FrozenCredentials(Protocol):
    access_key: str
    secret_key: str
    token: str | None


class CredentialSource:
    """Hands out a consistent set of credentials, refreshing off the trio thread when due.

    Like the Go daemon, credentials are looked up lazily: a missing or broken chain shows up as
    a failed (and retried) upload rather than a refusal to start, since instance roles and
    container credentials can appear after the daemon does.
    """

    def __init__(
        self,
        resolve: Callable[[], Credentials | None],
        *,
        limiter: trio.CapacityLimiter,
        credentials: Credentials | None = None,
    ) -> None:
        self._resolve = resolve
        self._credentials = credentials
        self._limiter = limiter

    @classmethod
    def static(cls, credentials: Credentials) -> CredentialSource:
        """Fixed credentials that never need a lookup (tests, ``--sink`` fakes)."""
        return cls(lambda: credentials, limiter=trio.CapacityLimiter(1), credentials=credentials)

    async def get(self) -> FrozenCredentials:
        credentials = self._credentials
        if credentials is None:
            credentials = await trio.to_thread.run_sync(
                self._resolve, limiter=self._limiter, abandon_on_cancel=True
            )
            if credentials is None:
                raise UploadError(
                    "NoCredentialProviders: no valid providers in chain",
                    kind=ErrorKind.OTHER,
                    retriable=True,
                )
            self._credentials = credentials
        # botocore's RefreshableCredentials, checked by shape so botocore loads only when used.
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            # Abandoned on cancel: an STS or IMDS call that hangs must not outlive the upload's
            # timeout or the shutdown deadline; botocore's own lock keeps refreshes consistent.
            frozen: FrozenCredentials = await trio.to_thread.run_sync(
                credentials.get_frozen_credentials, limiter=self._limiter, abandon_on_cancel=True
            )
            return frozen
        # Fresh credentials: get_frozen_credentials() only copies three strings here.
        return credentials.get_frozen_credentials()  # type: ignore[no-any-return]


def sign_request(
    credentials: FrozenCredentials,
    region: str,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, str]:
    """Return ``headers`` plus ``Authorization``, ``X-Amz-Date`` and the session token header."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())
