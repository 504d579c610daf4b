"""Where the dashboard's events come from.

A ``Source`` runs in a Textual worker on the app's asyncio loop and hands every event to a
``Feed`` (the app), which only appends it to bounded history; the screen is redrawn from that
history a few times a second, whatever the event rate.

    AttachSource    a running daemon's admin ``/events`` NDJSON stream, reconnecting with backoff
    ReplaySource    a fixed list of events (tests, demos)
    InProcessSource the daemon itself, in trio guest mode (``inprocess.py``)
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Protocol

import httpx

from xray_trio.events import decode_event
from xray_trio.tui.messages import Link

if TYPE_CHECKING:
    from collections.abc import Sequence

    from xray_trio.events import Event, Lost


class Feed(Protocol):
    """What a source reports to; every method is called on the app's loop and never blocks."""

    def push(self, event: Event | Lost) -> None:
        """One event from the daemon."""

    def set_state(self, link: Link, detail: str = "") -> None:
        """The link to the daemon changed."""


class Source(Protocol):
    """A stream of daemon events for the dashboard."""

    @property
    def title(self) -> str:
        """What the dashboard is looking at, for its header."""

    @property
    def notice(self) -> str:
        """A standing remark to show (e.g. that nothing is uploaded), or empty."""

    async def run(self, feed: Feed) -> None:
        """Report events to ``feed`` until the stream ends or the worker is cancelled."""

    async def stop(self) -> None:
        """Finish gracefully (a daemon flushes); returns when ``run`` may be cancelled."""


class ReplaySource:
    """Replays fixed events, then idles: for tests and demos."""

    def __init__(
        self,
        events: Sequence[Event | Lost] = (),
        *,
        title: str = "replay",
        notice: str = "",
        link: Link = Link.RUNNING,
        detail: str = "",
    ) -> None:
        self.events = list(events)
        self._title = title
        self._notice = notice
        self._link = link
        self._detail = detail
        self.stopped = False

    @property
    def title(self) -> str:
        return self._title

    @property
    def notice(self) -> str:
        return self._notice

    async def run(self, feed: Feed) -> None:
        feed.set_state(self._link, self._detail)
        for event in self.events:
            feed.push(event)
        await asyncio.Event().wait()  # idle until the app cancels the worker

    async def stop(self) -> None:
        self.stopped = True


class AttachSource:
    """Follows ``http://ADDRESS/events`` and reconnects with exponential backoff.

    The daemon never waits for this reader: its event hub drops what a slow subscriber cannot
    take and says so in ``lost`` lines.
    """

    def __init__(
        self,
        address: str,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        read_timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.address = address
        self.url = f"http://{address}/events"
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._timeout = httpx.Timeout(2.0, read=read_timeout_s)
        self._transport = transport
        self.connections = 0
        """Successful connections so far (reconnects are ``connections - 1``)."""

    @property
    def title(self) -> str:
        return f"attached to {self.address}"

    @property
    def notice(self) -> str:
        return ""

    async def run(self, feed: Feed) -> None:
        delay = self._backoff_initial_s
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
            while True:
                feed.set_state(Link.CONNECTING, self.url)
                try:
                    reason = await self._follow(client, feed)
                    delay = self._backoff_initial_s  # a stream that ran resets the backoff
                except (httpx.HTTPError, _BadResponse) as exc:
                    reason = describe_error(exc)
                feed.set_state(Link.DISCONNECTED, f"{reason}; retrying in {_seconds(delay)}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)

    async def _follow(self, client: httpx.AsyncClient, feed: Feed) -> str:
        async with client.stream("GET", self.url) as response:
            if response.status_code != 200:
                raise _BadResponse(f"HTTP {response.status_code} from {self.url}")
            self.connections += 1
            feed.set_state(Link.CONNECTED, self.address)
            async for line in response.aiter_lines():
                if not line:
                    continue
                try:
                    event = decode_event(line)
                except ValueError:
                    continue  # a line from a newer daemon, or not ours: skip it
                feed.push(event)
        return "the daemon closed the stream"

    async def stop(self) -> None:
        """Nothing to flush: the app cancels ``run``."""


class _BadResponse(Exception):
    """The address answered, but not with an event stream."""


def describe_error(exc: BaseException) -> str:
    """A short reason for a lost or refused connection."""
    match exc:
        case httpx.ConnectError():
            return "cannot connect"
        case httpx.ReadTimeout():
            return "no data from the daemon"
        case httpx.RemoteProtocolError():
            return "connection dropped"
        case httpx.TimeoutException():
            return "timed out"
        case _BadResponse():
            return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 or not math.isfinite(value) else f"{value:.0f} s"
