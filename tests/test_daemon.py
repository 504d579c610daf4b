"""The whole pipeline in-process: wiring, shutdown flush and the shutdown deadline."""

from __future__ import annotations

import functools
import io
import json
import logging
import socket

import pytest
import trio

from xray_trio.config import Config, SocketConfig, Tuning
from xray_trio.daemon import NOT_ENOUGH_MEMORY, run_daemon
from xray_trio.errors import ErrorKind, StartupError
from xray_trio.stats import Counters

HEADER = b'{"format":"json","version":1}\n'


class Stopper:
    """A shutdown trigger the test pulls, standing in for SIGTERM."""

    def __init__(self) -> None:
        self.event = trio.Event()

    async def __call__(self) -> str:
        await self.event.wait()
        return "terminated"


def _config(**overrides: object) -> Config:
    defaults: dict[str, object] = {
        "sinks": ("stdout",),
        "total_buffer_size_mb": 16,
        "socket": SocketConfig(udp_address="127.0.0.1:0", tcp_address="127.0.0.1:0"),
    }
    return Config(**(defaults | overrides))  # type: ignore[arg-type]


def _logger() -> tuple[logging.Logger, list[str]]:
    logger = logging.Logger("test", level=5)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    return logger, lines


async def test_everything_accepted_before_shutdown_is_written() -> None:
    out, counters, stop = io.BytesIO(), Counters(), Stopper()
    logger, lines = _logger()
    docs = [json.dumps({"id": f"{i:016x}", "name": "svc"}).encode() for i in range(123)]
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            functools.partial(
                run_daemon,
                _config(),
                logger,
                shutdown_trigger=stop,
                stdout=out,
                counters=counters,
            )
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for doc in docs:
                sender.sendto(HEADER + doc, address)
        with trio.fail_after(5):
            while counters.received < len(docs):
                await trio.sleep(0.001)
        stop.event.set()  # well before the 1 s idle flush: shutdown must flush the remainder
    assert out.getvalue().splitlines() == docs
    assert counters.stdout_written == 123
    assert "Got shutdown signal: terminated" in lines
    assert "processor: done!" in lines
    assert "Trace segment: received: 123, truncated: 0, processed: 123" in lines


async def test_what_cannot_be_delivered_by_the_deadline_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    counters, stop = Counters(), Stopper()
    logger, lines = _logger()
    # No uploader for xray (Concurrency -1, as Go allows), so nothing can leave.
    config = _config(
        sinks=("xray",),
        concurrency=-1,
        region="us-east-1",
        endpoint="http://127.0.0.1:9",
        tuning=Tuning(shutdown_timeout_s=0.2),
    )
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            functools.partial(
                run_daemon,
                config,
                logger,
                shutdown_trigger=stop,
                counters=counters,
            )
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(7):
                sender.sendto(HEADER + b'{"n":%d}' % i, address)
        with trio.fail_after(5):
            while counters.received < 7:
                await trio.sleep(0.001)
        stop.event.set()
    assert counters.given_up == 7
    assert counters.upload_errors[ErrorKind.CONNECTION_REFUSED] >= 1
    assert "Concurrency -1 is less than 1; using 1 uploader" in lines
    assert "Shutdown deadline of 0.2 seconds passed: 7 segments were not delivered" in lines


async def test_too_little_buffer_memory_is_refused_with_gos_text() -> None:
    logger, _ = _logger()
    with pytest.raises(StartupError, match=f"^{NOT_ENOUGH_MEMORY}$"):
        await run_daemon(_config(total_buffer_size_mb=2), logger)
    assert NOT_ENOUGH_MEMORY == (
        "Not enough Buffers Memory Allocated. Min Buffers Memory required: 3 MB."
    )


async def test_a_start_up_failure_after_binding_releases_the_udp_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No region anywhere: the xray sink refuses to start after the UDP socket was bound.
    logger, _ = _logger()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _config(
        sinks=("xray",), local_mode=True, socket=SocketConfig(udp_address=f"127.0.0.1:{port}")
    )
    with pytest.raises(StartupError, match="Cannot fetch region variable"):
        await run_daemon(config, logger, env={})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # free again: the daemon closed it
