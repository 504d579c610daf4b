"""Wiring and shutdown order; nothing else.

    serve_udp --[documents]--> run_batcher --[batches, one channel per sink]--> sinks
                                                                 uploader x Concurrency (xray)
                                                                 run_stdout_sink (stdout)

The front nursery holds what takes input (the UDP socket); the pipeline nursery holds what
drains it. A shutdown signal cancels the front: the receiver closes its channel, the batcher
flushes and closes the sinks' channels, and the sinks finish what they hold, within
``shutdown_timeout_s``. Anything still undelivered after that is counted and logged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

import botocore.session
import httpx
import trio

from xray_trio import __version__
from xray_trio.batch import Batch
from xray_trio.batcher import run_batcher
from xray_trio.budget import MIB, MIN_BUFFER_MB, ByteBudget, buffer_memory_mb, total_ram_bytes
from xray_trio.errors import StartupError
from xray_trio.receiver import bind_udp, serve_udp
from xray_trio.region import resolve_region, xray_endpoint
from xray_trio.signing import CredentialSource
from xray_trio.stats import Counters
from xray_trio.stdout_sink import run_stdout_sink
from xray_trio.uploader import Uploader, run_uploaders
from xray_trio.xray_client import XRayClient

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncIterator, Awaitable, Mapping

    from xray_trio.config import Config

NOT_ENOUGH_MEMORY = (
    f"Not enough Buffers Memory Allocated. Min Buffers Memory required: {MIN_BUFFER_MB} MB."
)

SinkStarter: TypeAlias = Callable[[trio.Nursery, trio.MemoryReceiveChannel[Batch]], None]
"""Starts a sink's task(s) in the pipeline nursery, handing over the sink's batch channel."""

_SIGNAL_NAMES = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated"}


async def wait_for_signal() -> str:
    """Return Go's name for the first SIGINT or SIGTERM; later ones are ignored, as in Go."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            return _SIGNAL_NAMES[signal.Signals(signum)]
    raise AssertionError("signal receiver ended")  # pragma: no cover


def open_budget(config: Config, logger: logging.Logger) -> ByteBudget:
    megabytes = buffer_memory_mb(config.total_buffer_size_mb, total_ram_bytes())
    if megabytes < MIN_BUFFER_MB:
        raise StartupError(NOT_ENOUGH_MEMORY)
    logger.info("Using buffer memory limit of %d MB", megabytes)
    budget = ByteBudget(megabytes * MIB)
    logger.info(
        "Buffer budget of %d bytes allocated (room for %d segments of 64 KB, "
        "or many more small ones)",
        budget.total,
        budget.total // 65536,
    )
    return budget


def open_http_client(config: Config, env: Mapping[str, str]) -> httpx.AsyncClient:
    """One keep-alive pool for every X-Ray call; the proxy is ``-p`` or the environment's."""
    proxy = config.proxy_address or None
    if proxy is not None:
        try:
            httpx.Proxy(proxy)
        except (ValueError, TypeError, httpx.InvalidURL) as exc:
            raise StartupError(f"Bad proxy URL: {exc}") from None
    timeout = config.tuning.request_timeout_s
    return httpx.AsyncClient(
        proxy=proxy,
        trust_env=proxy is None,
        verify=not config.no_verify_ssl,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=max(config.concurrency, 1) * 2
        ),
    )


async def run_daemon(
    config: Config,
    logger: logging.Logger,
    *,
    env: Mapping[str, str] | None = None,
    shutdown_trigger: Callable[[], Awaitable[str]] = wait_for_signal,
    stdout: BinaryIO | None = None,
    counters: Counters | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``shutdown_trigger`` returns, then flush and return.

    ``task_status.started`` reports the bound UDP address once segments can be received.
    """
    env = os.environ if env is None else env
    counters = Counters() if counters is None else counters
    tuning = config.tuning
    logger.info("Initializing AWS X-Ray daemon %s", __version__)
    budget = open_budget(config, logger)
    logger.debug("Batch size: %d", tuning.batch_size)
    if config.resource_arn:
        logger.debug("ARN of the AWS resource running the daemon: %s", config.resource_arn)
    sock = await bind_udp(
        config.socket.udp_address, receive_buffer_bytes=tuning.receive_buffer_bytes
    )
    thread_limiter = trio.CapacityLimiter(4)

    async with _open_sinks(config, logger, env, counters, thread_limiter, stdout) as sinks:
        segment_send, segment_recv = trio.open_memory_channel[list[bytes]](budget.max_documents)
        batch_channels = [trio.open_memory_channel[Batch](tuning.batch_queue) for _ in sinks]
        async with trio.open_nursery() as pipeline:
            pipeline.start_soon(
                functools.partial(
                    run_batcher,
                    segment_recv,
                    [send for send, _ in batch_channels],
                    budget=budget,
                    tuning=tuning,
                    logger=logger,
                )
            )
            for start_sink, (_, receive) in zip(sinks, batch_channels, strict=True):
                start_sink(pipeline, receive)
            async with trio.open_nursery() as front:
                address = await front.start(
                    functools.partial(
                        serve_udp,
                        sock,
                        segment_send,
                        budget=budget,
                        counters=counters,
                        logger=logger,
                    )
                )
                task_status.started(address)
                reason = await shutdown_trigger()
                logger.debug("Shutdown Initiated. Current epoch in nanoseconds: %d", time.time_ns())
                logger.info("Got shutdown signal: %s", reason)
                front.cancel_scope.cancel()
            pipeline.cancel_scope.deadline = trio.current_time() + tuning.shutdown_timeout_s
    if budget.documents:
        counters.given_up += budget.documents
        logger.error(
            "Shutdown deadline of %s seconds passed: %d segments were not delivered",
            tuning.shutdown_timeout_s,
            budget.documents,
        )
    logger.debug(
        "Trace segment: received: %d, truncated: %d, processed: %d",
        counters.received,
        counters.spillover,
        counters.sent + counters.stdout_written,
    )
    logger.debug("Shutdown finished. Current epoch in nanoseconds: %d", time.time_ns())


@contextlib.asynccontextmanager
async def _open_sinks(
    config: Config,
    logger: logging.Logger,
    env: Mapping[str, str],
    counters: Counters,
    limiter: trio.CapacityLimiter,
    stdout: BinaryIO | None,
) -> AsyncIterator[list[SinkStarter]]:
    """Open what each configured sink needs, yielding one starter per sink."""
    starters: list[SinkStarter] = []
    async with contextlib.AsyncExitStack() as stack:
        for name in config.sinks:
            if name == "xray":
                client = await _open_xray_client(config, logger, env, limiter, stack)
                uploader = Uploader(
                    client,
                    counters=counters,
                    tuning=config.tuning,
                    logger=logger,
                    rng=random.Random(),
                )
                starters.append(
                    functools.partial(
                        _start_uploaders,
                        functools.partial(
                            run_uploaders,
                            uploader=uploader,
                            concurrency=(floor := _uploaders(config, logger)),
                            max_concurrency=max(floor, config.tuning.max_upload_concurrency),
                            logger=logger,
                        ),
                    )
                )
            elif name == "stdout":
                out = sys.stdout.buffer if stdout is None else stdout
                starters.append(
                    functools.partial(_start_stdout, out=out, counters=counters, limiter=limiter)
                )
            else:  # pragma: no cover - the CLI and config loader refuse unknown sinks
                raise StartupError(f"unknown sink: {name}")
        yield starters


async def _open_xray_client(
    config: Config,
    logger: logging.Logger,
    env: Mapping[str, str],
    limiter: trio.CapacityLimiter,
    stack: contextlib.AsyncExitStack,
) -> XRayClient:
    region = await trio.to_thread.run_sync(resolve_region, config, logger, env, limiter=limiter)
    endpoint = await trio.to_thread.run_sync(xray_endpoint, config, region, logger, limiter=limiter)
    http = await stack.enter_async_context(open_http_client(config, env))
    return XRayClient(
        http,
        endpoint=endpoint,
        region=region,
        credentials=CredentialSource(
            lambda: botocore.session.Session().get_credentials(), limiter=limiter
        ),
        exec_env=env.get("AWS_EXECUTION_ENV", ""),
    )


def _uploaders(config: Config, logger: logging.Logger) -> int:
    # Go starts no uploader at all for Concurrency < 0, so every segment is silently lost;
    # one uploader is what anyone writing that would want.
    if config.concurrency < 1:
        logger.warning("Concurrency %d is less than 1; using 1 uploader", config.concurrency)
        return 1
    return config.concurrency


def _start_uploaders(
    run: Callable[[trio.MemoryReceiveChannel[Batch]], Awaitable[None]],
    nursery: trio.Nursery,
    batches_in: trio.MemoryReceiveChannel[Batch],
) -> None:
    nursery.start_soon(run, batches_in)


def _start_stdout(
    nursery: trio.Nursery,
    batches_in: trio.MemoryReceiveChannel[Batch],
    *,
    out: BinaryIO,
    counters: Counters,
    limiter: trio.CapacityLimiter,
) -> None:
    nursery.start_soon(
        functools.partial(run_stdout_sink, batches_in, out=out, counters=counters, limiter=limiter)
    )
