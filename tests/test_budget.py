from __future__ import annotations

import pytest

from xray_trio.batch import Batch
from xray_trio.budget import (
    DOCUMENT_OVERHEAD,
    MIB,
    ByteBudget,
    buffer_memory_mb,
    document_cost,
)


def test_take_until_spent_then_refuse() -> None:
    budget = ByteBudget(3 * document_cost(b"x" * 100))
    assert all(budget.try_take(document_cost(b"x" * 100)) for _ in range(3))
    assert not budget.try_take(document_cost(b"y"))
    assert budget.available == 0
    assert budget.documents == 3


def test_give_back_frees_exactly_and_refuses_double_release() -> None:
    budget = ByteBudget(10_000)
    docs = [b"a" * 10, b"b" * 20]
    for doc in docs:
        assert budget.try_take(document_cost(doc))
    batch = Batch(docs, budget, holders=2)
    assert batch.cost == 30 + 2 * DOCUMENT_OVERHEAD
    batch.release()
    assert budget.used == batch.cost  # the second sink still holds it
    batch.release()
    assert (budget.used, budget.documents) == (0, 0)
    with pytest.raises(RuntimeError):
        batch.release()
    with pytest.raises(RuntimeError):
        budget.give_back(1, 1)


def test_max_documents_bounds_what_can_be_in_flight() -> None:
    budget = ByteBudget(10 * DOCUMENT_OVERHEAD)
    taken = 0
    while budget.try_take(document_cost(b"")):
        taken += 1
    assert taken == budget.max_documents == 10


@pytest.mark.parametrize(
    ("configured", "ram", "expected"),
    [
        (16, 0, 16),
        (0, 24 * 1024 * MIB, 245),  # 1 % of 24 GiB, rounded down like Go
        (-1, 200 * MIB, 2),  # too small: the daemon refuses it at start-up
        (0, 299 * MIB, 2),
        (0, 300 * MIB, 3),
    ],
)
def test_buffer_memory_follows_go(configured: int, ram: int, expected: int) -> None:
    assert buffer_memory_mb(configured, ram) == expected
