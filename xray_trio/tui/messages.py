"""Messages sources post to the app (children post messages up; the app sets attributes down)."""

from __future__ import annotations

import dataclasses
import enum

from textual.message import Message


class Link(enum.Enum):
    """Where a source stands."""

    STARTING = "starting"
    RUNNING = "running"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FLUSHING = "flushing"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclasses.dataclass
class SourceStateChanged(Message):
    """The source's link state changed; ``detail`` says more (an address, an error)."""

    link: Link
    detail: str = ""

    def can_replace(self, message: Message) -> bool:
        # Only the latest state matters: a backlog of them collapses into one.
        return isinstance(message, SourceStateChanged)


@dataclasses.dataclass
class SourceFinished(Message):
    """The source will produce nothing more; ``error`` is why, if it failed."""

    error: str | None = None
