"""A batch of documents on its way to the sinks, and the budget it holds until they finish."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xray_trio.budget import DOCUMENT_OVERHEAD

if TYPE_CHECKING:
    from xray_trio.budget import ByteBudget


class Batch:
    """Up to ``batch_size`` raw documents, shared by every sink.

    Each sink calls ``release()`` exactly once when it has delivered or given up on the batch;
    the last one returns the batch's bytes to the budget, which is what lets the receiver accept
    new datagrams again.
    """

    __slots__ = ("_budget", "_holders", "cost", "documents")

    def __init__(self, documents: list[bytes], budget: ByteBudget, holders: int) -> None:
        self.documents = documents
        self.cost = sum(map(len, documents)) + DOCUMENT_OVERHEAD * len(documents)
        self._budget = budget
        self._holders = holders
        if holders == 0:
            # No sink at all (the inspector's local-only mode): nobody will hold it.
            budget.give_back(self.cost, len(documents))

    def __len__(self) -> int:
        return len(self.documents)

    def release(self) -> None:
        if self._holders <= 0:
            raise RuntimeError("batch released more times than it has sinks")
        self._holders -= 1
        if self._holders == 0:
            self._budget.give_back(self.cost, len(self.documents))
