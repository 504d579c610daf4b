"""Telemetry: a PutTelemetryRecords call every minute with what the daemon did since the last one.

Go keeps a "current record" that every stage bumps; here every stage bumps the daemon's
cumulative ``Counters`` and a record is the difference between two readings of them, so
nothing on the hot path knows telemetry exists. The rest follows Go (pkg/telemetry):

- nothing is reported until the first datagram arrives (issue #39), then every minute, even
  when all counts are zero;
- records wait in a queue of 30 (oldest dropped first) and go out 10 per call; a failed call
  puts the unsent records back for the next minute, and counts itself in that next record;
- when the daemon shuts down, a last record is sent, under its own short deadline.

Go re-arms a 60 s timer after each report, so its period drifts by the send time; here ticks
are paced from the start (``sleep_until``), so they fall at exactly 60 s, 120 s, ...
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import TYPE_CHECKING, Any

import trio

from xray_trio.errors import ErrorKind, UploadError
from xray_trio.region import instance_identity

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping

    from xray_trio.config import Config
    from xray_trio.stats import Counters
    from xray_trio.xray_client import XRayClient

QUEUE_CAP = 30
"""Records kept while X-Ray cannot be reached (Go: 30); the oldest go first."""
CHUNK = 10
"""Records per PutTelemetryRecords call (Go: 10)."""

_ERROR_FIELDS = {
    ErrorKind.TIMEOUT: "TimeoutCount",
    ErrorKind.CONNECTION_REFUSED: "ConnectionRefusedCount",
    ErrorKind.HTTP_4XX: "HTTPCode4XXCount",
    ErrorKind.HTTP_5XX: "HTTPCode5XXCount",
    ErrorKind.UNKNOWN_HOST: "UnknownHostCount",
    ErrorKind.OTHER: "OtherCount",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Totals:
    """One reading of the cumulative counters that telemetry reports."""

    received: int
    sent: int
    spillover: int
    rejected: int
    errors: tuple[int, ...]
    """Failed upload attempts, in ``_ERROR_FIELDS`` order."""

    @classmethod
    def read(cls, counters: Counters) -> Totals:
        return cls(
            received=counters.received,
            sent=counters.sent,
            spillover=counters.spillover,
            rejected=counters.rejected,
            errors=tuple(counters.upload_errors[kind] for kind in _ERROR_FIELDS),
        )


def build_record(
    now: Totals, last: Totals, own_errors: Mapping[ErrorKind, int], *, timestamp: float
) -> dict[str, Any]:
    """A TelemetryRecord for what happened between ``last`` and ``now``.

    ``SegmentsSentCount`` counts documents X-Ray accepted; Go also counts the ones it returned
    as unprocessed, which are already in ``SegmentsRejectedCount``.
    """
    errors = {
        field: new - old + own_errors.get(kind, 0)
        for (kind, field), new, old in zip(
            _ERROR_FIELDS.items(), now.errors, last.errors, strict=True
        )
    }
    return {
        # Epoch seconds with milliseconds, as the Go SDK serializes timestamps for X-Ray.
        "Timestamp": round(timestamp, 3),
        "SegmentsReceivedCount": now.received - last.received,
        "SegmentsSentCount": now.sent - last.sent,
        "SegmentsSpilloverCount": now.spillover - last.spillover,
        "SegmentsRejectedCount": now.rejected - last.rejected,
        "BackendConnectionErrors": errors,
    }


class _Reporter:
    """The queue and the last reading, between ticks of ``run_telemetry``."""

    def __init__(
        self,
        client: XRayClient,
        counters: Counters,
        *,
        envelope: dict[str, str],
        logger: logging.Logger,
        request_timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._counters = counters
        self._envelope = envelope
        self._logger = logger
        self._request_timeout_s = request_timeout_s
        self._clock = clock
        # From zero rather than a first reading: datagrams that arrive while the host identity
        # is looked up (seconds, off EC2) belong in the first record too.
        self._last = Totals(0, 0, 0, 0, (0,) * len(_ERROR_FIELDS))
        self._own_errors: collections.Counter[ErrorKind] = collections.Counter()
        self._queue: collections.deque[dict[str, Any]] = collections.deque()

    async def report(self) -> None:
        if self._counters.received == 0:
            self._logger.debug("Skipped telemetry data as no segments found")
            return
        now = Totals.read(self._counters)
        self._enqueue(build_record(now, self._last, self._own_errors, timestamp=self._clock()))
        self._last = now
        self._own_errors.clear()
        await self._send_all()

    def _enqueue(self, record: dict[str, Any]) -> None:
        if len(self._queue) >= QUEUE_CAP:
            self._queue.popleft()
            self._logger.debug("Telemetry Buffers truncated")
        self._queue.append(record)

    async def _send_all(self) -> None:
        records = list(self._queue)
        self._queue.clear()
        for start in range(0, len(records), CHUNK):
            try:
                with trio.fail_after(self._request_timeout_s):
                    await self._client.put_telemetry_records(
                        {"TelemetryRecords": records[start : start + CHUNK], **self._envelope}
                    )
            except (UploadError, trio.TooSlowError) as exc:
                kind = exc.kind if isinstance(exc, UploadError) else ErrorKind.TIMEOUT
                self._own_errors[kind] += 1
                unsent = records[start:]
                self._logger.debug(
                    "Failed to send telemetry %d record(s). Re-queue records. %s",
                    len(unsent),
                    exc if isinstance(exc, UploadError) else "request timed out",
                )
                for record in unsent:
                    self._enqueue(record)
                return
        self._logger.debug("Send %d telemetry record(s)", len(records))


async def run_telemetry(
    client: XRayClient,
    counters: Counters,
    *,
    hostname: str,
    instance_id: str,
    resource_arn: str,
    logger: logging.Logger,
    shutdown: trio.Event,
    period_s: float = 60.0,
    request_timeout_s: float = 2.0,
    final_timeout_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Report every ``period_s`` until ``shutdown`` is set, then send a last record and return.

    The last record is also attempted if the task is cancelled (the daemon's shutdown deadline),
    shielded and bounded by ``final_timeout_s``. ``clock`` stamps records (wall-clock time).
    """
    reporter = _Reporter(
        client,
        counters,
        envelope={"EC2InstanceId": instance_id, "Hostname": hostname, "ResourceARN": resource_arn},
        logger=logger,
        request_timeout_s=request_timeout_s,
        clock=clock,
    )
    logger.debug("Telemetry initiated")
    started = trio.current_time()
    tick = 0
    try:
        while True:
            tick += 1
            with trio.move_on_at(started + tick * period_s):
                await shutdown.wait()
                break
            await reporter.report()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(final_timeout_s):
            await reporter.report()
        logger.debug("telemetry: done!")


async def run_daemon_telemetry(
    client: XRayClient,
    counters: Counters,
    *,
    config: Config,
    env: Mapping[str, str],
    logger: logging.Logger,
    limiter: trio.CapacityLimiter,
    shutdown: trio.Event,
) -> None:
    """``run_telemetry`` for the daemon: looks up the host's identity first (IMDS, in a thread)."""
    identity = await trio.to_thread.run_sync(
        functools.partial(instance_identity, env, logger, local_mode=config.local_mode),
        limiter=limiter,
        # An IMDS lookup that outlives shutdown has nothing left to report to.
        abandon_on_cancel=True,
    )
    await run_telemetry(
        client,
        counters,
        hostname=identity.hostname,
        instance_id=identity.instance_id,
        resource_arn=config.resource_arn,
        logger=logger,
        shutdown=shutdown,
        request_timeout_s=config.tuning.request_timeout_s,
    )
