"""The real daemon under the dashboard, in trio guest mode on the test's asyncio loop."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest
from textual.widgets import RichLog
from tui_support import document

from xray_trio.config import Config, SocketConfig, Tuning
from xray_trio.tui.app import InspectApp
from xray_trio.tui.inprocess import (
    LOCAL_ONLY_NOTICE,
    InProcessSource,
    LogBuffer,
    choose_sinks,
    panel_logger,
)
from xray_trio.tui.messages import Link
from xray_trio.tui.widgets import SegmentTable

DEADLINE_S = 15.0


def local_config(**changes) -> Config:
    config = Config(
        total_buffer_size_mb=8,
        sinks=(),  # local-only, as choose_sinks picks without AWS
        local_mode=True,
        socket=SocketConfig(udp_address="127.0.0.1:0", tcp_address="127.0.0.1:0"),
        tuning=Tuning(idle_timeout_s=0.05, shutdown_timeout_s=5.0),
    )
    return dataclasses.replace(config, **changes)


async def wait_for(condition, what: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not condition():
            await asyncio.sleep(0.02)


HEADER = b'{"format":"json","version":1}\n'


def send(port: int, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, ("127.0.0.1", port))


@pytest.mark.asyncio
async def test_daemon_runs_under_the_dashboard_and_flushes_on_quit():
    buffer = LogBuffer()
    logger = panel_logger("info", buffer)
    source = InProcessSource(local_config(), logger, notice=LOCAL_ONLY_NOTICE)
    app = InspectApp(source, log_buffer=buffer)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(lambda: app.link is Link.RUNNING, "the daemon to start")
        port = int(app.link_detail.rsplit(":", 1)[1])
        send(
            port,
            HEADER + document("one"),
            HEADER + document("two", id="1111111111111111"),
            b'{"format":"xml"}\n{}',
        )
        await wait_for(
            lambda: app.board.snapshot is not None and app.board.snapshot.received == 3,
            "a snapshot with the datagrams",
        )
        await wait_for(lambda: app.board.rejected_seen == 1, "the rejection event")
        assert [row.seen.name for row in app.board.segments] == ["one", "two"]
        app.refresh_view()
        await pilot.pause()
        assert app.query_one(SegmentTable).row_count == 2
        assert "local only" in str(app.query_one("#status").content)
        await pilot.press("q")
        await wait_for(lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 0
    assert app.link is Link.STOPPED


class RecordingLogBuffer(LogBuffer):
    """Remembers what the dashboard took from it."""

    def __init__(self) -> None:
        super().__init__()
        self.drained: list[str] = []

    def drain(self) -> list[tuple[int, str]]:
        lines = super().drain()
        self.drained += [line for _, line in lines]
        return lines


@pytest.mark.asyncio
async def test_daemon_log_goes_to_the_panel():
    buffer = RecordingLogBuffer()
    source = InProcessSource(local_config(), panel_logger("info", buffer))
    app = InspectApp(source, log_buffer=buffer, refresh_s=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(lambda: app.link is Link.RUNNING, "the daemon to start")
        await wait_for(lambda: buffer.drained, "the first log lines on screen")
        shown = "\n".join(strip.text for strip in app.query_one("#log", RichLog).lines)
        assert "[Info] Initializing AWS X-Ray daemon" in shown
        await pilot.press("q")
        await wait_for(lambda: app.return_code is not None, "the app to exit")
    # Lines logged while the app closes stay in the buffer; `inspect` prints them on exit.
    everything = buffer.drained + [line for _, line in buffer.drain()]
    assert any("Got shutdown signal: inspector quit" in line for line in everything)


@pytest.mark.asyncio
async def test_a_startup_error_is_shown_and_exits_1():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = local_config(socket=SocketConfig(udp_address=address, tcp_address="127.0.0.1:0"))
        buffer = LogBuffer()
        app = InspectApp(InProcessSource(config, panel_logger("info", buffer)), log_buffer=buffer)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(lambda: app.link is Link.FAILED, "the bind to fail")
            assert "address already in use" in app.link_detail.lower()
            await pilot.press("q")
            await wait_for(lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 1


def test_without_region_or_credentials_only_local_sinks_run():
    config, notice = choose_sinks(Config(), sinks_given=False, env={})
    assert config.sinks == ()
    assert notice == LOCAL_ONLY_NOTICE


def test_explicit_sinks_are_kept():
    config, notice = choose_sinks(Config(sinks=("xray",)), sinks_given=True, env={})
    assert config.sinks == ("xray",)
    assert notice == ""


def test_region_and_credentials_keep_xray(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    config, notice = choose_sinks(Config(region="eu-west-1"), sinks_given=False, env={})
    assert config.sinks == ("xray",)
    assert notice == ""
