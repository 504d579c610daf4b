"""AttachSource against a tiny loopback NDJSON server that drops the connection and comes back."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from tui_support import document, seen, snap

from xray_trio.events import Lost, SegmentSeen, SnapshotEvent, encode_event
from xray_trio.tui.app import InspectApp
from xray_trio.tui.messages import Link
from xray_trio.tui.source import AttachSource

DEADLINE_S = 10.0


class Recorder:
    """A Feed that keeps everything it is told."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.states: list[tuple[Link, str]] = []

    def push(self, event) -> None:
        self.events.append(event)

    def set_state(self, link: Link, detail: str = "") -> None:
        self.states.append((link, detail))


class EventServer:
    """Answers every request with ``status`` and ``lines``, then closes (a daemon going away)."""

    def __init__(self, lines: list[bytes], status: int = 200) -> None:
        self.lines = lines
        self.status = status
        self.server: asyncio.Server | None = None
        self.port = 0
        self.requests: list[bytes] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        reason = b"OK" if self.status == 200 else b"Not Found"
        writer.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n"
            % (self.status, reason)
        )
        for line in self.lines:
            writer.write(line)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def wait_for(condition, what: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not condition():
            await asyncio.sleep(0.01)


def links(feed: Recorder) -> list[Link]:
    return [link for link, _ in feed.states]


@pytest.mark.asyncio
async def test_reconnects_with_backoff_after_the_daemon_goes_away():
    lines = [
        encode_event(snap(1, received=5)),
        b"not json\n",  # skipped, as a line from a newer daemon would be
        b'{"type": "from-the-future"}\n',
        encode_event(seen(document("checkout"), 0)),
        encode_event(Lost(total=2)),
    ]
    server = EventServer(lines)
    await server.start()
    source = AttachSource(
        f"127.0.0.1:{server.port}", backoff_initial_s=0.2, backoff_max_s=0.8, read_timeout_s=5
    )
    feed = Recorder()
    task = asyncio.create_task(source.run(feed))
    try:
        await wait_for(lambda: Link.DISCONNECTED in links(feed), "first stream to end")
        assert [type(e) for e in feed.events] == [SnapshotEvent, SegmentSeen, Lost]
        assert links(feed)[:3] == [Link.CONNECTING, Link.CONNECTED, Link.DISCONNECTED]
        assert feed.states[2][1].startswith("the daemon closed the stream; retrying in 0.2 s")
        assert server.requests[0].startswith(b"GET /events HTTP/1.1")

        await server.stop()  # the daemon is down: connections are refused for a while
        await wait_for(
            lambda: any("cannot connect" in detail for _, detail in feed.states), "a refusal"
        )
        delays = [d.rsplit("retrying in ", 1)[1] for _, d in feed.states if "retrying" in d]
        assert delays[:2] == ["0.2 s", "0.4 s"]  # doubling while the daemon stays away

        await server.start()  # same port: the daemon is back
        await wait_for(lambda: source.connections == 2, "the reconnect")
        await wait_for(lambda: len(feed.events) == 6, "the second stream's events")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


@pytest.mark.asyncio
async def test_a_wrong_endpoint_is_reported():
    server = EventServer([], status=404)
    await server.start()
    source = AttachSource(f"127.0.0.1:{server.port}", backoff_initial_s=0.05)
    feed = Recorder()
    task = asyncio.create_task(source.run(feed))
    try:
        await wait_for(lambda: Link.DISCONNECTED in links(feed), "the refusal")
        assert feed.states[1][1].startswith("HTTP 404 from http://127.0.0.1:")
        assert source.connections == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


@pytest.mark.asyncio
async def test_dashboard_shows_the_connection_state():
    server = EventServer([encode_event(snap(1, received=5)), encode_event(snap(2, received=25))])
    await server.start()
    source = AttachSource(f"127.0.0.1:{server.port}", backoff_initial_s=5)
    app = InspectApp(source)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(lambda: app.link is Link.DISCONNECTED, "the stream to end")
        app.refresh_view()
        await pilot.pause()
        status = str(app.query_one("#status").content)
        assert "disconnected" in status
        assert "retrying in 5.0 s" in status
        assert "20/s" in str(app.query_one("#rate-received").content)
        assert app.sub_title == f"attached to 127.0.0.1:{server.port}"
        await pilot.press("q")
    assert app.return_code == 0
    await server.stop()
