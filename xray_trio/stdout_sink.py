"""The ``stdout`` sink: every accepted document as one JSON line, for ``| jq`` without AWS."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

import trio

if TYPE_CHECKING:
    from xray_trio.batch import Batch
    from xray_trio.stats import Counters


def as_json_line(document: bytes) -> bytes:
    """The document on one line: raw line breaks become spaces, every other byte is kept.

    In JSON a raw line break can only be whitespace between tokens (inside strings it must be
    escaped), so this keeps a valid document valid and equal, without re-encoding it; anything
    else still arrives as one line.
    """
    return document.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n"


async def run_stdout_sink(
    batches_in: trio.MemoryReceiveChannel[Batch],
    *,
    out: BinaryIO,
    counters: Counters,
    limiter: trio.CapacityLimiter,
) -> None:
    """Write batches until the channel ends. A slow reader (a pipe to jq) blocks a worker
    thread, never the trio thread; meanwhile the batch holds budget, so backpressure is honest."""

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    async with batches_in:
        async for batch in batches_in:
            data = b"".join(map(as_json_line, batch.documents))
            try:
                # Abandoned on cancel: a reader that stopped (``jq`` suspended) must not hold
                # shutdown past its deadline; the batch then counts as undelivered.
                await trio.to_thread.run_sync(write, data, limiter=limiter, abandon_on_cancel=True)
            except BrokenPipeError:
                # The reader went away (``| head``): keep serving other sinks, drop these.
                counters.given_up += len(batch)
            else:
                counters.stdout_written += len(batch)
            batch.release()
