"""The batcher: documents in, batches of at most ``batch_size`` out to every sink.

Like Go, a batch is sent when full, when the budget runs low (so a partial batch does not sit on
memory the receiver needs), or when ``idle_timeout_s`` passes without a send; the idle timer is
re-armed after every send, not after every document. Unlike Go, a full batch queue makes the
batcher wait instead of evicting the oldest batch: the wait fills the budget, and the receiver
drops (and counts) new datagrams at the edge. There is one place where data is lost, not two.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio

from xray_trio.batch import Batch

if TYPE_CHECKING:
    import logging
    from collections.abc import Sequence

    from xray_trio.budget import ByteBudget
    from xray_trio.config import Tuning

LOW_BUDGET_BYTES = 65536
"""Below this much free budget the next large datagram may be refused, so flush early."""


async def run_batcher(
    segments_in: trio.MemoryReceiveChannel[list[bytes]],
    batches_out: Sequence[trio.MemorySendChannel[Batch]],
    *,
    budget: ByteBudget,
    tuning: Tuning,
    logger: logging.Logger,
) -> None:
    """Batch until ``segments_in`` ends, then flush the remainder and close every output."""
    size = tuning.batch_size
    pending: list[bytes] = []

    async def send(documents: list[bytes], why: str) -> None:
        logger.debug("processor: %s", why)
        batch = Batch(documents, budget, holders=len(batches_out))
        logger.debug("processor: segment batch size: %d. capacity: %d", len(batch), size)
        for out in batches_out:
            await out.send(batch)

    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(segments_in)
        for out in batches_out:
            stack.enter_context(out)
        deadline = trio.current_time() + tuning.idle_timeout_s
        while True:
            chunk: list[bytes] | None = None
            # Only the wait for input is bounded by the idle timer: a send in progress must
            # never be cancelled, or its batch would vanish without a count.
            with trio.move_on_at(deadline):
                try:
                    chunk = await segments_in.receive()
                except trio.EndOfChannel:
                    break
            if chunk is None:
                if pending:
                    await send(pending, "sending partial batch")
                    pending = []
                deadline = trio.current_time() + tuning.idle_timeout_s
                continue
            pending.extend(chunk)
            while len(pending) >= size:
                await send(pending[:size], "sending complete batch")
                del pending[:size]
                deadline = trio.current_time() + tuning.idle_timeout_s
            if pending and budget.available < LOW_BUDGET_BYTES:
                await send(pending, "sending partial batch due to load on buffer pool")
                pending = []
                deadline = trio.current_time() + tuning.idle_timeout_s
        if pending:
            await send(pending, "sending partial batch")
        logger.debug("processor: done!")
