"""Wiring and shutdown order; nothing else.

    serve_udp --[documents]--> run_batcher --[batches, one channel per sink]--> sinks
                                                       run_uploaders (xray), run_stdout_sink
    serve_sampling_proxy, run_snapshots, serve_admin (opt-in)   run_daemon_telemetry

The front nursery holds what takes input (the UDP socket, the sampling proxy, the admin
endpoint); the pipeline nursery holds what drains it. A shutdown signal cancels the front: the
receiver closes its channel, the batcher flushes and closes the sinks' channels, and the sinks
finish what they hold, within ``shutdown_timeout_s``. Anything still undelivered after that is
counted and logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

import trio

from xray_trio import __version__
from xray_trio.batch import Batch
from xray_trio.batcher import run_batcher
from xray_trio.budget import MIB, MIN_BUFFER_MB, ByteBudget, buffer_memory_mb, total_ram_bytes
from xray_trio.errors import StartupError, UploadError
from xray_trio.events import EventHub, run_snapshots
from xray_trio.health import Health
from xray_trio.receiver import bind_udp, serve_udp
from xray_trio.snapshot import Gauges, ProxyCounters, Snapshotter, UploadLatency
from xray_trio.stats import Counters
from xray_trio.stdout_sink import run_stdout_sink

if TYPE_CHECKING:
    import logging
    import socket
    from collections.abc import AsyncIterator, Mapping, Sequence

    from xray_trio.config import Config
    from xray_trio.credentials import XRayAccess
    from xray_trio.signing import CredentialSource

NOT_ENOUGH_MEMORY = (
    f"Not enough Buffers Memory Allocated. Min Buffers Memory required: {MIN_BUFFER_MB} MB."
)

RunSink: TypeAlias = Callable[[trio.MemoryReceiveChannel[Batch]], Awaitable[None]]
"""A sink's task: consumes its batch channel until it ends, releasing each batch when done."""

_SIGNAL_NAMES = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated"}


@dataclasses.dataclass(frozen=True, slots=True)
class Observers:
    """What the pipeline reports into, for the admin endpoint and the inspector."""

    hub: EventHub = dataclasses.field(default_factory=EventHub)
    latency: UploadLatency = dataclasses.field(default_factory=UploadLatency)
    proxy: ProxyCounters = dataclasses.field(default_factory=ProxyCounters)


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


async def run_daemon(
    config: Config,
    logger: logging.Logger,
    *,
    env: Mapping[str, str] | None = None,
    shutdown_trigger: Callable[[], Awaitable[str]] = wait_for_signal,
    stdout: BinaryIO | None = None,
    counters: Counters | None = None,
    observers: Observers | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``shutdown_trigger`` returns, then flush and return.

    ``task_status.started`` reports the bound UDP address once segments can be received.
    """
    env = os.environ if env is None else env
    counters = Counters() if counters is None else counters
    observers = Observers() if observers is None else observers
    logger.info("Initializing AWS X-Ray daemon %s", __version__)
    budget = open_budget(config, logger)
    logger.debug("Batch size: %d", config.tuning.batch_size)
    logger.debug("ARN of the AWS resource running the daemon: %s", config.resource_arn)
    sock = await bind_udp(
        config.socket.udp_address, receive_buffer_bytes=config.tuning.receive_buffer_bytes
    )
    # serve_udp owns and closes the socket; this covers a start-up failure before it runs.
    with sock:
        await _run(
            config,
            logger,
            env,
            sock,
            budget,
            counters,
            observers,
            stdout,
            task_status,
            shutdown_trigger,
        )
    logger.debug(
        "Trace segment: received: %d, truncated: %d, processed: %d",
        counters.accepted,
        counters.spillover,
        counters.sent + counters.stdout_written,
    )
    logger.debug("Shutdown finished. Current epoch in nanoseconds: %d", time.time_ns())


async def _run(
    config: Config,
    logger: logging.Logger,
    env: Mapping[str, str],
    sock: socket.socket,
    budget: ByteBudget,
    counters: Counters,
    observers: Observers,
    stdout: BinaryIO | None,
    task_status: trio.TaskStatus[tuple[str, int]],
    shutdown_trigger: Callable[[], Awaitable[str]],
) -> None:
    tuning = config.tuning
    thread_limiter = trio.CapacityLimiter(4)
    health = Health(config.sinks)
    telemetry_shutdown = trio.Event()
    first_document = trio.Event()
    async with _open_sinks(
        config, logger, env, counters, observers, health, thread_limiter, stdout
    ) as (sinks, xray):
        segment_send, segment_recv = trio.open_memory_channel[list[bytes]](budget.max_documents)
        batch_channels = [trio.open_memory_channel[Batch](tuning.batch_queue) for _ in sinks]
        take_snapshot = Snapshotter(
            counters,
            functools.partial(_gauges, budget, [receive for _, receive in batch_channels]),
            latency=observers.latency,
            proxy=observers.proxy,
            started_at=trio.current_time(),
        )
        # Telemetry outlives the pipeline, so its final record counts what the drain delivered.
        async with trio.open_nursery() as reporting:
            if xray is None:
                logger.info("No xray sink: the sampling proxy and telemetry are off")
            else:
                from xray_trio.telemetry import run_daemon_telemetry

                reporting.start_soon(
                    functools.partial(
                        run_daemon_telemetry,
                        xray.client,
                        counters,
                        config=config,
                        env=env,
                        logger=logger,
                        limiter=thread_limiter,
                        shutdown=telemetry_shutdown,
                    )
                )
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
                for run_sink, (_, receive) in zip(sinks, batch_channels, strict=True):
                    pipeline.start_soon(run_sink, receive)
                async with trio.open_nursery() as front:
                    front.start_soon(run_snapshots, observers.hub, take_snapshot)
                    if config.admin_address:
                        await _start_admin(front, config, observers, take_snapshot, health, logger)
                    if xray is not None:
                        await _start_sampling_proxy(front, config, xray, observers, logger)
                        front.start_soon(_warm_credentials, first_document, xray.credentials)
                    address = await front.start(
                        functools.partial(
                            serve_udp,
                            sock,
                            segment_send,
                            budget=budget,
                            counters=counters,
                            logger=logger,
                            hub=observers.hub,
                            first_document=first_document,
                        )
                    )
                    health.intake_up = True
                    _settle_memory()
                    task_status.started(address)
                    reason = await shutdown_trigger()
                    logger.debug(
                        "Shutdown Initiated. Current epoch in nanoseconds: %d", time.time_ns()
                    )
                    logger.info("Got shutdown signal: %s", reason)
                    health.intake_up = False
                    front.cancel_scope.cancel()
                pipeline.cancel_scope.deadline = trio.current_time() + tuning.shutdown_timeout_s
            _count_undelivered(budget, counters, tuning.shutdown_timeout_s, logger)
            telemetry_shutdown.set()


async def _warm_credentials(first_document: trio.Event, credentials: CredentialSource) -> None:
    """Look the credentials up when the first document arrives, not at the first upload.

    The lookup loads botocore (~12 MB, ~120 ms to import), so a daemon that never received
    anything does without it; starting with the first document overlaps it with filling the
    first batch.
    """
    await first_document.wait()
    with contextlib.suppress(UploadError):  # the upload that needs them will report it
        await credentials.get()


def _settle_memory() -> None:
    # Start-up (imports, botocore's data files) leaves megabytes of garbage in cycles; collect
    # it once, then freeze what is left so later collections skip these long-lived objects.
    gc.collect()
    gc.freeze()


def _count_undelivered(
    budget: ByteBudget, counters: Counters, deadline_s: float, logger: logging.Logger
) -> None:
    # Whatever still holds budget after the pipeline ended was cut off by the deadline.
    if budget.documents:
        counters.given_up += budget.documents
        logger.error(
            "Shutdown deadline of %s seconds passed: %d segments were not delivered",
            deadline_s,
            budget.documents,
        )


def _gauges(budget: ByteBudget, batch_queues: Sequence[trio.MemoryReceiveChannel[Batch]]) -> Gauges:
    return Gauges(
        budget_used_bytes=budget.used,
        budget_total_bytes=budget.total,
        segments_queued=budget.documents,
        batches_queued=sum(queue.statistics().current_buffer_used for queue in batch_queues),
    )


async def _start_admin(
    nursery: trio.Nursery,
    config: Config,
    observers: Observers,
    take_snapshot: Snapshotter,
    health: Health,
    logger: logging.Logger,
) -> None:
    # Imported here: the HTTP server only loads when the endpoint is on.
    from xray_trio.admin import serve_admin

    host, port = await nursery.start(
        functools.partial(
            serve_admin,
            config.admin_address,
            hub=observers.hub,
            take_snapshot=take_snapshot,
            health=health,
            logger=logger,
        )
    )
    logger.info("Admin endpoint on http://%s:%d (/healthz, /metrics, /events)", host, port)


async def _start_sampling_proxy(
    nursery: trio.Nursery,
    config: Config,
    xray: XRayAccess,
    observers: Observers,
    logger: logging.Logger,
) -> None:
    from xray_trio.proxy import serve_sampling_proxy

    await nursery.start(
        functools.partial(
            serve_sampling_proxy,
            config.socket.tcp_address,
            upstream_endpoint=xray.endpoint,
            region=xray.region,
            credentials=xray.credentials,
            transport=xray.transport,
            logger=logger,
            counters=observers.proxy,
        )
    )


@contextlib.asynccontextmanager
async def _open_sinks(
    config: Config,
    logger: logging.Logger,
    env: Mapping[str, str],
    counters: Counters,
    observers: Observers,
    health: Health,
    limiter: trio.CapacityLimiter,
    stdout: BinaryIO | None,
) -> AsyncIterator[tuple[list[RunSink], XRayAccess | None]]:
    """Open what each configured sink needs, yielding each sink's task, and the X-Ray access
    (region, credentials, HTTP client) when the ``xray`` sink is on."""
    sinks: list[RunSink] = []
    xray: XRayAccess | None = None
    async with contextlib.AsyncExitStack() as stack:
        for name in config.sinks:
            if name == "xray":
                # Imported here: botocore (~12 MB) loads only when the daemon talks to AWS.
                from xray_trio.credentials import open_xray_access
                from xray_trio.uploader import Uploader, run_uploaders

                xray = await open_xray_access(config, logger, env, limiter, stack)
                uploader = Uploader(
                    xray.client,
                    counters=counters,
                    tuning=config.tuning,
                    logger=logger,
                    rng=random.Random(),
                    hub=observers.hub,
                    health=health,
                    latency=observers.latency,
                )
                floor = _uploaders(config, logger)
                sinks.append(
                    functools.partial(
                        run_uploaders,
                        uploader=uploader,
                        concurrency=floor,
                        max_concurrency=max(floor, config.tuning.max_upload_concurrency),
                        logger=logger,
                    )
                )
            elif name == "stdout":
                out = sys.stdout.buffer if stdout is None else stdout
                sinks.append(
                    functools.partial(run_stdout_sink, out=out, counters=counters, limiter=limiter)
                )
            else:  # pragma: no cover - the CLI and config loader refuse unknown sinks
                raise StartupError(f"unknown sink: {name}")
        yield sinks, xray


def _uploaders(config: Config, logger: logging.Logger) -> int:
    # Go starts no uploader at all for Concurrency < 0, so every segment is silently lost;
    # one uploader is what anyone writing that would want.
    if config.concurrency < 1:
        logger.warning("Concurrency %d is less than 1; using 1 uploader", config.concurrency)
        return 1
    return config.concurrency
