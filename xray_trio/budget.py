"""The buffer budget: the one bound on memory held by segments in flight.

``-m`` / ``TotalBufferSizeMB`` becomes a byte budget. Each accepted document holds its size plus a
fixed per-document overhead (the Python objects around it) from the moment it is received until
every sink is done with it. The receiver only ever *tries* to take: UDP has no flow control, so a
spent budget means the newest datagram is dropped and counted, never that the receiver waits.
"""

from __future__ import annotations

import os

MIN_BUFFER_MB = 3
MIB = 1024 * 1024

DOCUMENT_OVERHEAD = 128
"""Bytes charged per document on top of its length: the bytes object and list slots around it.

It also bounds how many documents can ever be in flight (``total // DOCUMENT_OVERHEAD``), which
sizes the receiver-to-batcher channel so that a non-blocking send there can never fail.
"""


def document_cost(document: bytes) -> int:
    return len(document) + DOCUMENT_OVERHEAD


class ByteBudget:
    """Bytes in flight, taken by the receiver and given back when a batch is finished."""

    __slots__ = ("_total", "documents", "used")

    def __init__(self, total_bytes: int) -> None:
        if total_bytes <= 0:
            raise ValueError("a budget needs a positive size")
        self._total = total_bytes
        self.used = 0
        self.documents = 0
        """Documents holding budget right now."""

    @property
    def total(self) -> int:
        return self._total

    @property
    def available(self) -> int:
        return self._total - self.used

    @property
    def max_documents(self) -> int:
        """The most documents that can hold budget at once."""
        return self._total // DOCUMENT_OVERHEAD

    def try_take(self, cost: int) -> bool:
        """Hold ``cost`` bytes for one document if they are free; never waits."""
        if self.used + cost > self._total:
            return False
        self.used += cost
        self.documents += 1
        return True

    def give_back(self, cost: int, documents: int) -> None:
        """Release what ``documents`` documents of total ``cost`` bytes held."""
        if cost > self.used or documents > self.documents:
            # A double release would silently inflate the budget past -m; fail loudly instead.
            raise RuntimeError("budget given back more than was taken")
        self.used -= cost
        self.documents -= documents


def total_ram_bytes() -> int:
    """Physical memory of the host, as the Go daemon's gopsutil reads it."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def buffer_memory_mb(configured_mb: int, ram_bytes: int) -> int:
    """Go's rule: ``-m`` when positive, else 1 % of host RAM, in whole MB."""
    if configured_mb > 0:
        return configured_mb
    return int(ram_bytes * 0.01) // MIB
