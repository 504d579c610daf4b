"""Where the daemon runs: its region, X-Ray endpoint, and EC2 identity, in the Go daemon's order.

These functions are synchronous and may do network I/O (EC2 instance metadata), so the daemon
calls them through ``trio.to_thread.run_sync``. Instance metadata goes through botocore's IMDS
client: the IMDSv2 token flow first, IMDSv1 when no token can be had, and the endpoint from
``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (issue #105) or ``..._ENDPOINT_MODE=IPv6``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from xray_trio.errors import StartupError

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from xray_trio.config import Config

NO_REGION = (
    "Cannot fetch region variable from config file, environment variables, ecs metadata, "
    "or ec2 metadata. Use local-mode to use the local config region."
)

# Go's fallback when the SDK's endpoint data does not know a region (pkg/conn/constants.go).
_PARTITION_SUFFIXES = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-iso-", "c2s.ic.gov"),
)

# One second per attempt, two attempts: off EC2 the lookup fails fast instead of stalling start-up.
_IMDS_TIMEOUT_S = 1.0
_IMDS_ATTEMPTS = 2


def resolve_region(config: Config, logger: logging.Logger, env: Mapping[str, str]) -> str:
    """``-n``/config, then ``AWS_REGION``, then ECS metadata file or EC2 IMDS (not in local
    mode), then the SDK's own chain (local mode: ``AWS_DEFAULT_REGION``, profile)."""
    region = _first_region(config, logger, env)
    if not region:
        raise StartupError(NO_REGION)
    logger.info("Using region: %s", region)
    return region


def _first_region(config: Config, logger: logging.Logger, env: Mapping[str, str]) -> str:
    if config.region:
        logger.debug("Fetch region %s from commandline/config file", config.region)
        return config.region
    if env.get("AWS_REGION"):
        logger.debug("Fetch region %s from environment variables", env["AWS_REGION"])
        return env["AWS_REGION"]
    if config.local_mode:
        import botocore.session  # here: botocore loads only where the daemon needs it

        region: str = botocore.session.Session().get_config_variable("region") or ""
        if region:
            logger.debug("Fetched region %s from config", region)
        return region
    if env.get("ECS_ENABLE_CONTAINER_METADATA", "").lower() == "true":
        region = _ecs_metadata_region(env.get("ECS_CONTAINER_METADATA_FILE", ""), logger)
        if region:
            logger.debug("Fetch region %s from ECS metadata file", region)
        return region
    return _imds_region(logger, env)


def _ecs_metadata_region(path: str, logger: logging.Logger) -> str:
    try:
        with open(path, "rb") as file:
            text = file.read()
    except OSError as exc:
        logger.error("Unable to open ECS metadata file: %s", exc)
        return ""
    try:
        task_arn = json.loads(text)["TaskARN"]
        return str(task_arn).split(":")[3]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        # Go panics on a file without a TaskARN string; a log line and no region is kinder.
        logger.error("Unable to read ECS metadata file contents: %s", exc)
        return ""


def imds_config(env: Mapping[str, str]) -> dict[str, str]:
    """botocore's IMDS settings taken from ``env`` (botocore would read ``os.environ``)."""
    settings = {
        "ec2_metadata_service_endpoint": env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", ""),
        "ec2_metadata_service_endpoint_mode": env.get(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", ""
        ).lower(),
    }
    return {key: value for key, value in settings.items() if value}


def _imds_region(logger: logging.Logger, env: Mapping[str, str]) -> str:
    """The region from EC2 instance metadata: IMDSv2 token flow, falling back to v1."""
    from botocore.utils import InstanceMetadataRegionFetcher

    fetcher = InstanceMetadataRegionFetcher(
        timeout=_IMDS_TIMEOUT_S,
        num_attempts=_IMDS_ATTEMPTS,
        env=dict(env),
        config=imds_config(env),
    )
    try:
        region = fetcher.retrieve_region()
    except Exception as exc:  # botocore raises many unrelated types for an unreachable IMDS.
        logger.error("Unable to fetch region from EC2 metadata: %s\n", exc)
        return ""
    if not region:
        logger.error("Unable to fetch region from EC2 metadata: %s\n", "no response from IMDS")
        return ""
    logger.debug("Fetch region %s from ec2 metadata", region)
    return str(region)


def _read_metadata(fetcher: Any, path: str) -> str:
    """One instance-metadata path, read the way botocore's own region fetcher reads its own."""
    token = fetcher._fetch_metadata_token()
    response = fetcher._get_request(
        url_path=f"latest/meta-data/{path}", retry_func=fetcher._default_retry, token=token
    )
    return str(response.text)


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceIdentity:
    """What telemetry reports about the host: ``Hostname`` and ``EC2InstanceId``."""

    hostname: str = ""
    instance_id: str = ""


def instance_identity(
    env: Mapping[str, str], logger: logging.Logger, *, local_mode: bool
) -> InstanceIdentity:
    """``AWS_HOSTNAME`` / ``AWS_INSTANCE_ID`` (PR #54), else IMDS; empty when neither answers.

    Local mode means "not on EC2", so IMDS is not asked (it would only cost seconds of retries).
    """
    hostname = env.get("AWS_HOSTNAME", "")
    instance_id = env.get("AWS_INSTANCE_ID", "")
    if local_mode or (hostname and instance_id):
        return InstanceIdentity(hostname=hostname, instance_id=instance_id)
    from botocore.utils import IMDSFetcher

    fetcher = IMDSFetcher(
        timeout=_IMDS_TIMEOUT_S,
        num_attempts=_IMDS_ATTEMPTS,
        env=dict(env),
        config=imds_config(env),
    )
    if not hostname:
        try:
            hostname = _read_metadata(fetcher, "hostname")
        except Exception as exc:  # botocore raises many unrelated types for an unreachable IMDS.
            logger.debug("Get hostname metadata failed: %s", str(exc) or type(exc).__name__)
    if not instance_id:
        try:
            instance_id = _read_metadata(fetcher, "instance-id")
        except Exception as exc:  # as above
            logger.error("Get instance id metadata failed: %s", str(exc) or type(exc).__name__)
    return InstanceIdentity(hostname=hostname, instance_id=instance_id)


def xray_endpoint(config: Config, region: str, logger: logging.Logger) -> str:
    """``Endpoint`` from the config, else X-Ray's endpoint in the region's partition.

    botocore's endpoint data knows every partition (aws, aws-cn, aws-us-gov, aws-iso,
    aws-iso-b and newer ones); Go's suffix rules cover regions newer than that data.
    """
    if config.endpoint:
        logger.debug("Using Endpoint read from Config file: %s", config.endpoint)
        return config.endpoint.rstrip("/")
    import botocore.loaders
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))
    resolved = resolver.construct_endpoint("xray", region)
    if resolved is not None:
        hostname = str(resolved["hostname"])
    else:
        suffix = next(
            (dns for prefix, dns in _PARTITION_SUFFIXES if region.startswith(prefix)),
            "amazonaws.com",
        )
        hostname = f"xray.{region}.{suffix}"
    endpoint = f"https://{hostname}"
    logger.debug("Using Endpoint: %s", endpoint)
    return endpoint
