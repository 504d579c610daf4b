"""Batch size, idle flush and shutdown flush, in trio's virtual time."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING

import trio
import trio.testing

from xray_trio.batch import Batch
from xray_trio.batcher import LOW_BUDGET_BYTES, run_batcher
from xray_trio.budget import ByteBudget, document_cost
from xray_trio.config import Tuning

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

LOGGER = logging.Logger("test")


def _documents(budget: ByteBudget, n: int, size: int = 10) -> list[bytes]:
    docs = [b"%0*d" % (size, i) for i in range(n)]
    for doc in docs:
        assert budget.try_take(document_cost(doc))
    return docs


async def _collect(
    receive: trio.MemoryReceiveChannel[Batch], into: list[tuple[float, list[bytes]]]
) -> None:
    async with receive:
        async for batch in receive:
            into.append((trio.current_time(), batch.documents))
            batch.release()


@contextlib.asynccontextmanager
async def running_batcher(
    budget: ByteBudget, tuning: Tuning
) -> AsyncIterator[tuple[trio.MemorySendChannel[list[bytes]], list[tuple[float, list[bytes]]]]]:
    """A batcher feeding one collecting sink; yields its input and what the sink got (when)."""
    seg_send, seg_recv = trio.open_memory_channel[list[bytes]](100)
    out_send, out_recv = trio.open_memory_channel[Batch](20)
    got: list[tuple[float, list[bytes]]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_collect, out_recv, got)
        nursery.start_soon(
            functools.partial(
                run_batcher, seg_recv, [out_send], budget=budget, tuning=tuning, logger=LOGGER
            )
        )
        async with seg_send:
            yield seg_send, got


async def test_full_batches_go_at_once_and_the_rest_after_one_idle_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(10_000_000)
    async with running_batcher(budget, Tuning()) as (seg_send, got):
        await trio.sleep(0.25)
        docs = _documents(budget, 120)
        await seg_send.send(docs)
        await trio.sleep(5)
        assert [(t, len(b)) for t, b in got] == [(0.25, 50), (0.25, 50), (1.25, 20)]
        assert [d for _, b in got for d in b] == docs  # order kept, nothing lost
    assert budget.used == 0


async def test_idle_timer_rearms_after_each_send_not_each_document(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(10_000_000)
    async with running_batcher(budget, Tuning()) as (seg_send, got):
        for _ in range(4):  # a trickle every 0.4 s must not postpone the flush forever
            await seg_send.send(_documents(budget, 1))
            await trio.sleep(0.4)
    assert [(t, len(b)) for t, b in got] == [(1.0, 3), (1.6, 1)]


async def test_end_of_input_flushes_the_partial_batch_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(10_000_000)
    async with running_batcher(budget, Tuning()) as (seg_send, got):
        await seg_send.send(_documents(budget, 7))
        await trio.sleep(0.1)
    assert [(t, len(b)) for t, b in got] == [(0.1, 7)]


async def test_low_budget_flushes_a_partial_batch_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(LOW_BUDGET_BYTES + 1000)
    async with running_batcher(budget, Tuning()) as (seg_send, got):
        await seg_send.send(_documents(budget, 3, size=5000))
        await trio.sleep(0.01)
        assert [(t, len(b)) for t, b in got] == [(0.0, 3)]


async def test_every_sink_gets_every_batch_and_budget_returns_after_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(10_000_000)
    seg_send, seg_recv = trio.open_memory_channel[list[bytes]](100)
    a_send, a_recv = trio.open_memory_channel[Batch](20)
    b_send, b_recv = trio.open_memory_channel[Batch](20)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_batcher(
                seg_recv,
                [a_send, b_send],
                budget=budget,
                tuning=Tuning(batch_size=2),
                logger=LOGGER,
            )
        )
        await seg_send.send(_documents(budget, 2))
        batch_a = await a_recv.receive()
        batch_b = await b_recv.receive()
        assert batch_a is batch_b
        batch_a.release()
        assert budget.documents == 2  # the second sink still has it
        batch_b.release()
        assert budget.documents == 0
        await seg_send.aclose()


async def test_a_full_sink_queue_makes_the_batcher_wait_not_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(10_000_000)
    seg_send, seg_recv = trio.open_memory_channel[list[bytes]](100)
    out_send, out_recv = trio.open_memory_channel[Batch](1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_batcher(
                seg_recv, [out_send], budget=budget, tuning=Tuning(batch_size=1), logger=LOGGER
            )
        )
        await seg_send.send(_documents(budget, 5))
        await trio.sleep(10)
        assert out_recv.statistics().current_buffer_used == 1
        assert budget.documents == 5  # everything still held, nothing silently dropped
        await seg_send.aclose()
        got = [batch.documents async for batch in out_recv]
    assert len(got) == 5


async def test_with_no_sink_the_budget_comes_back_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = ByteBudget(10_000_000)
    seg_send, seg_recv = trio.open_memory_channel[list[bytes]](100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_batcher(
                seg_recv, [], budget=budget, tuning=Tuning(batch_size=2), logger=LOGGER
            )
        )
        await seg_send.send(_documents(budget, 5))
        await trio.sleep(2)
        assert (budget.used, budget.documents) == (0, 0)
        await seg_send.aclose()
