"""The X-Ray sink: deliver batches with PutTraceSegments, retrying instead of losing them.

Where the Go daemon makes two attempts and then silently loses a batch, an uploader keeps a
failed batch (and the budget it holds, which is what pushes back on the receiver) and retries it
with exponential back-off and full jitter on throttling, 5xx, timeouts and connection errors,
until ``retry_deadline_s`` passes. Every document ends as sent, unprocessed or given up, and each
of those is counted and logged.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import trio

from xray_trio.errors import ErrorKind, UploadError
from xray_trio.events import DeliveryFailed, EventHub
from xray_trio.health import Health
from xray_trio.log import TRACE
from xray_trio.snapshot import UploadLatency
from xray_trio.xray_client import encode_trace_segments

if TYPE_CHECKING:
    import logging
    import random

    from xray_trio.batch import Batch
    from xray_trio.config import Tuning
    from xray_trio.stats import Counters
    from xray_trio.xray_client import Unprocessed, XRayClient

SINK = "xray"

# Go finds a document by the first "id" with a regular expression; allowing spaces also
# matches the Python SDK's ``"id": "..."`` form, which Go's compact-only pattern misses.
_ID = re.compile(rb'"id"\s*:\s*"([^"]*)"')
_TRACE_ID = re.compile(rb'"trace_id"\s*:\s*"([^"]*)"')


def backoff_s(attempt: int, tuning: Tuning, rng: random.Random) -> float:
    """Full-jitter exponential back-off before retry number ``attempt`` (1-based)."""
    # The exponent is capped: past a few dozen doublings every ceiling is retry_max_s anyway,
    # and 2.0 ** 1100 would overflow a float.
    ceiling = min(tuning.retry_max_s, tuning.retry_base_s * 2.0 ** min(attempt - 1, 64))
    return rng.uniform(0, ceiling)


class Uploader:
    """Everything an uploader task needs, so the task itself reads as the delivery loop."""

    def __init__(
        self,
        client: XRayClient,
        *,
        counters: Counters,
        tuning: Tuning,
        logger: logging.Logger,
        rng: random.Random,
        hub: EventHub | None = None,
        health: Health | None = None,
        latency: UploadLatency | None = None,
    ) -> None:
        self._client = client
        self._counters = counters
        self._tuning = tuning
        self._logger = logger
        self._rng = rng
        self._hub = EventHub() if hub is None else hub
        self._health = Health([SINK]) if health is None else health
        self._latency = UploadLatency() if latency is None else latency

    async def deliver(self, documents: list[bytes], *, retry_unprocessed: bool = True) -> bool:
        """Send until delivered or given up; return whether X-Ray throttled any attempt."""
        body = encode_trace_segments(documents)
        give_up_at = trio.current_time() + self._tuning.retry_deadline_s
        attempt = 0
        throttled = False
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                with trio.fail_after(self._tuning.request_timeout_s):
                    unprocessed = await self._client.put_trace_segments(body)
            except (UploadError, trio.TooSlowError) as exc:
                error = _as_upload_error(exc)
                self._latency.observe(time.perf_counter() - started)
                self._counters.upload_errors[error.kind] += 1
                self._health.upload_failed(SINK, str(error))
                throttled = throttled or error.throttled
                self._logger.error("Sending segment batch failed with: %s", error)
                delay = backoff_s(attempt, self._tuning, self._rng)
                giving_up = not error.retriable or trio.current_time() + delay > give_up_at
                self._hub.publish(
                    DeliveryFailed(
                        sink=SINK,
                        kind=error.kind,
                        status=error.status,
                        message=str(error),
                        segments=len(documents),
                        given_up=giving_up,
                    )
                )
                if giving_up:
                    self._give_up(documents, attempt, error)
                    return throttled
                self._counters.retries += 1
                self._logger.debug(
                    "Retrying batch of %d segments in %.3f seconds (attempt %d)",
                    len(documents),
                    delay,
                    attempt + 1,
                )
                await trio.sleep(delay)
                continue
            elapsed = time.perf_counter() - started
            self._latency.observe(elapsed)
            self._health.upload_succeeded(SINK)
            await self._record_success(documents, unprocessed, elapsed, retry_unprocessed)
            return throttled

    async def _record_success(
        self,
        documents: list[bytes],
        unprocessed: list[Unprocessed],
        elapsed: float,
        retry_unprocessed: bool,
    ) -> None:
        counters = self._counters
        counters.batches_sent += 1
        counters.sent += len(documents) - len(unprocessed)
        if not unprocessed:
            self._logger.info(
                "Successfully sent batch of %d segments (%.3f seconds)", len(documents), elapsed
            )
            return
        self._logger.info(
            "Sent batch of %d segments but had %d Unprocessed segments (%.3f seconds)",
            len(documents),
            len(unprocessed),
            elapsed,
        )
        by_id = _documents_by_id(documents)
        again: list[bytes] = []
        for entry in unprocessed:
            # An in-progress segment and its completed version share an id: one entry each.
            candidates = by_id.get(entry.id or "")
            document = candidates.pop(0) if candidates else None
            if document is None:
                self._logger.error("Unprocessed segment: %s", entry)
                counters.unprocessed += 1
                continue
            if retry_unprocessed:
                again.append(document)
                continue
            counters.unprocessed += 1
            trace = _TRACE_ID.search(document)
            trace_id = trace.group(1).decode("utf-8", "replace") if trace else ""
            self._logger.error("Unprocessed trace %s, segment: %s", trace_id, entry)
            self._logger.debug("%s", document.decode("utf-8", "replace"))
        if again:
            # X-Ray sometimes refuses part of a batch under load; one more try for those.
            await self.deliver(again, retry_unprocessed=False)

    def _give_up(self, documents: list[bytes], attempts: int, error: UploadError) -> None:
        self._counters.given_up += len(documents)
        self._logger.error(
            "Dropping batch of %d segments after %d attempt(s): %s", len(documents), attempts, error
        )


async def run_uploaders(
    batches_in: trio.MemoryReceiveChannel[Batch],
    uploader: Uploader,
    *,
    concurrency: int,
    max_concurrency: int,
    logger: logging.Logger,
) -> None:
    """Deliver batches with between ``concurrency`` and ``max_concurrency`` calls in flight.

    Go runs exactly ``Concurrency`` uploaders, so a slow endpoint caps throughput (8 x 50
    segments per 200 ms response is 2,000/s) and the rest is lost. Here the limit grows by one
    whenever every slot is busy and batches are waiting, and halves (never below
    ``concurrency``) when X-Ray throttles: additive increase, multiplicative decrease. The
    budget still bounds what is in flight, so memory stays within ``-m``.

    A batch's budget is released only once it is finished; if the task is cancelled (the
    shutdown deadline), it keeps holding it so the daemon can count what was lost.
    """
    limiter = trio.CapacityLimiter(concurrency)

    async def deliver(batch: Batch) -> None:
        try:
            throttled = await uploader.deliver(batch.documents)
        finally:
            limiter.release_on_behalf_of(batch)
        batch.release()
        if throttled and limiter.total_tokens > concurrency:
            limiter.total_tokens = max(concurrency, int(limiter.total_tokens) // 2)
            logger.debug("Upload concurrency lowered to %d", limiter.total_tokens)

    async with batches_in, trio.open_nursery() as nursery:
        async for batch in batches_in:
            if (
                limiter.available_tokens == 0
                and limiter.total_tokens < max_concurrency
                and batches_in.statistics().current_buffer_used > 0
            ):
                limiter.total_tokens += 1
                logger.debug("Upload concurrency raised to %d", limiter.total_tokens)
            await limiter.acquire_on_behalf_of(batch)
            nursery.start_soon(deliver, batch)
    logger.log(TRACE, "Segment batch: done!")


def _as_upload_error(exc: UploadError | trio.TooSlowError) -> UploadError:
    if isinstance(exc, UploadError):
        return exc
    return UploadError(
        "operation error XRay: PutTraceSegments, request canceled, context deadline exceeded",
        kind=ErrorKind.TIMEOUT,
        retriable=True,
    )


def _documents_by_id(documents: list[bytes]) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for document in documents:
        match = _ID.search(document)
        if match:
            found.setdefault(match.group(1).decode("utf-8", "replace"), []).append(document)
    return found
