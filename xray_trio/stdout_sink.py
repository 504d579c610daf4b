"""The ``stdout`` sink: every accepted document as one JSON line, for ``| jq`` without AWS."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, BinaryIO

import trio

if TYPE_CHECKING:
    from xray_trio.batch import Batch
    from xray_trio.stats import Counters


def as_json_line(document: bytes) -> bytes:
    """The document on one line: unchanged unless it holds raw newlines (then compacted if JSON)."""
    if b"\n" in document or b"\r" in document:
        try:
            document = json.dumps(json.loads(document), separators=(",", ":")).encode()
        except ValueError:
            # Not JSON: keep every byte but escape line breaks so one document stays one line.
            document = document.replace(b"\r", b"\\r").replace(b"\n", b"\\n")
    return document + b"\n"


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
                await trio.to_thread.run_sync(write, data, limiter=limiter)
            except BrokenPipeError:
                # The reader went away (``| head``): keep serving other sinks, drop these.
                counters.given_up += len(batch)
            else:
                counters.stdout_written += len(batch)
            batch.release()
