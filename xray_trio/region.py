"""Which region and endpoint the daemon talks to, resolved in the Go daemon's order.

These functions are synchronous and may do network I/O (EC2 instance metadata), so the daemon
calls them through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import botocore.loaders
import botocore.session
from botocore.regions import EndpointResolver
from botocore.utils import InstanceMetadataRegionFetcher

from xray_trio.errors import StartupError

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from xray_trio.config import Config

NO_REGION = (
    "Cannot fetch region variable from config file, environment variables, ecs metadata, "
    "or ec2 metadata. Use local-mode to use the local config region."
)


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


def _imds_region(logger: logging.Logger, env: Mapping[str, str]) -> str:
    """The region from EC2 instance metadata: IMDSv2 token flow, falling back to v1."""
    fetcher = InstanceMetadataRegionFetcher(timeout=1, num_attempts=2, env=dict(env))
    try:
        region = fetcher.retrieve_region()
    except Exception as exc:  # botocore raises many unrelated types for an unreachable IMDS.
        logger.error("Unable to fetch region from EC2 metadata: %s\n", exc)
        return ""
    if region:
        logger.debug("Fetch region %s from ec2 metadata", region)
    return region or ""


def xray_endpoint(config: Config, region: str, logger: logging.Logger) -> str:
    """``Endpoint`` from the config, else X-Ray's endpoint in the region's partition."""
    if config.endpoint:
        logger.debug("Using Endpoint read from Config file: %s", config.endpoint)
        return config.endpoint
    resolver = EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))
    resolved = resolver.construct_endpoint("xray", region)
    hostname = f"xray.{region}.amazonaws.com" if resolved is None else resolved["hostname"]
    endpoint = f"https://{hostname}"
    logger.debug("Using Endpoint: %s", endpoint)
    return endpoint
