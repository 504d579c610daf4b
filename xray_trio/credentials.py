"""Where the daemon's AWS credentials come from: botocore's default chain, or a role on top of it.

The chain is botocore's, in full: environment keys, shared credentials/config files and
``AWS_PROFILE``, SSO, web identity (EKS IRSA), ECS/EKS container credentials and the EC2
instance role. With ``-r``/``RoleARN`` the chain's credentials assume that role through STS in
the daemon's region (regional endpoint, RoleSessionName ``xray-daemon``), as Go does.

Every lookup and refresh may do network I/O, so all of it runs in worker threads: the
resolver functions here run inside ``CredentialSource``, which calls them (and botocore's
refresh) through ``trio.to_thread.run_sync``. Nothing is fetched at start-up; as in Go, a broken
chain or a denied AssumeRole shows up on the first call that needs credentials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import urllib.parse
from typing import TYPE_CHECKING

import trio

from xray_trio.errors import ErrorKind, UploadError
from xray_trio.http1 import open_h11_pool
from xray_trio.proxies import uses_proxy
from xray_trio.region import resolve_region, xray_endpoint
from xray_trio.signing import CredentialSource
from xray_trio.xray_client import XRayClient

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncIterator, Callable, Mapping

    from botocore.credentials import Credentials

    from xray_trio.config import Config
    from xray_trio.http1 import OriginTransport
    from xray_trio.signing import FrozenCredentials

ROLE_SESSION_NAME = "xray-daemon"


class GuardedCredentialSource(CredentialSource):
    """A ``CredentialSource`` whose failures are ``UploadError``s, like any failed X-Ray call.

    botocore reports a broken chain or a refused AssumeRole with its own exceptions; callers
    (uploader, telemetry, sampling proxy) handle ``UploadError`` only, and must not be taken down
    by credentials that may well work a minute later.
    """

    async def get(self) -> FrozenCredentials:
        try:
            return await super().get()
        except Exception as exc:
            # botocore is loaded by now: the failure came out of it, or is not botocore's.
            from botocore.exceptions import BotoCoreError, ClientError

            if not isinstance(exc, (BotoCoreError, ClientError)):
                raise
            raise UploadError(
                f"failed to refresh cached credentials, {exc}",
                kind=ErrorKind.OTHER,
                retriable=True,
            ) from exc


def default_chain() -> Credentials | None:
    """botocore's default credential chain (blocking: call it in a worker thread).

    botocore (~12 MB) is imported here, on the first call to X-Ray, as the Go daemon too looks
    its credentials up lazily: a daemon that has received nothing has not paid for it.
    """
    import botocore.session

    credentials: Credentials | None = botocore.session.Session().get_credentials()
    return credentials


def assume_role_chain(role_arn: str, region: str) -> Credentials | None:
    """Credentials for ``role_arn``, assumed with the default chain's credentials.

    Returns deferred credentials: the AssumeRole call happens on first use and again shortly
    before each expiry (botocore refreshes 15 minutes ahead), always in a worker thread.
    """
    import botocore.session
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

    session = botocore.session.Session()
    source = session.get_credentials()
    if source is None:
        return None
    # "regional" is botocore's current default; pinned so an old shared config cannot send the
    # call to the global endpoint, which Go's v2 build never uses.
    session.set_config_variable("sts_regional_endpoints", "regional")
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=functools.partial(session.create_client, region_name=region),
        source_credentials=source,
        role_arn=role_arn,
        extra_args={"RoleSessionName": ROLE_SESSION_NAME},
    )
    return DeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )


def make_credential_source(
    *, role_arn: str, region: str, limiter: trio.CapacityLimiter
) -> GuardedCredentialSource:
    """The daemon's credentials: the default chain, or ``role_arn`` assumed on top of it."""
    resolve: Callable[[], Credentials | None] = (
        functools.partial(assume_role_chain, role_arn, region) if role_arn else default_chain
    )
    return GuardedCredentialSource(resolve, limiter=limiter)


@contextlib.asynccontextmanager
async def open_origin_transport(
    config: Config, env: Mapping[str, str], endpoint: str, logger: logging.Logger
) -> AsyncIterator[OriginTransport]:
    """Connections to X-Ray's origin: the lean HTTP/1.1 pool, or httpx when a proxy is in play.

    httpx (and its ~3.5 MB client) is imported only then.
    """
    parts = urllib.parse.urlsplit(endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    logger.debug("Using proxy address: %s", config.proxy_address)  # Go logs it even when empty
    if uses_proxy(config, env):
        from xray_trio.transport import HttpxTransport, open_http_client

        async with open_http_client(config, env) as http:
            yield HttpxTransport(http, origin)
        return
    async with open_h11_pool(
        origin,
        verify=not config.no_verify_ssl,
        max_idle=max(config.tuning.max_upload_concurrency, config.concurrency),
    ) as pool:
        yield pool


@dataclasses.dataclass(frozen=True, slots=True)
class XRayAccess:
    """What every task that calls X-Ray as the daemon shares: uploaders, telemetry, proxy."""

    region: str
    endpoint: str
    credentials: CredentialSource
    transport: OriginTransport
    """The keep-alive connections to X-Ray's origin, shared by uploads, telemetry and proxy."""
    client: XRayClient


async def open_xray_access(
    config: Config,
    logger: logging.Logger,
    env: Mapping[str, str],
    limiter: trio.CapacityLimiter,
    stack: contextlib.AsyncExitStack,
) -> XRayAccess:
    """Resolve region and endpoint (in a thread: IMDS), open the HTTP client on ``stack``."""
    region = await trio.to_thread.run_sync(resolve_region, config, logger, env, limiter=limiter)
    endpoint = await trio.to_thread.run_sync(xray_endpoint, config, region, logger, limiter=limiter)
    credentials = make_credential_source(role_arn=config.role_arn, region=region, limiter=limiter)
    transport = await stack.enter_async_context(
        open_origin_transport(config, env, endpoint, logger)
    )
    client = XRayClient(
        transport,
        endpoint=endpoint,
        region=region,
        credentials=credentials,
        exec_env=env.get("AWS_EXECUTION_ENV", ""),
    )
    return XRayAccess(region, endpoint, credentials, transport, client)
