"""The daemon itself as the dashboard's source: trio in guest mode on Textual's asyncio loop.

Both loops share one thread, so trio tasks call the feed directly. Quitting asks the daemon to
shut down exactly as SIGTERM does (its ``shutdown_trigger`` returns): the receiver stops, the
batcher flushes and the sinks deliver what they hold, then ``run`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
from collections import deque
from typing import TYPE_CHECKING, BinaryIO

import botocore.session
import trio

from xray_trio.daemon import Observers, run_daemon
from xray_trio.errors import ConfigError, StartupError, leaf_exceptions
from xray_trio.events import EventHub, Lost
from xray_trio.log import GoFormatter, level_for
from xray_trio.tui.messages import Link

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import outcome

    from xray_trio.config import Config
    from xray_trio.events import Subscription
    from xray_trio.tui.source import Feed

LOCAL_ONLY_NOTICE = "local only: no region or credentials found, segments are not uploaded"
SUBSCRIPTION_BUFFER = 8192
"""Events waiting for the dashboard before the hub counts them lost (the daemon never waits)."""


class LogBuffer(logging.Handler):
    """Keeps the last log lines for the dashboard's log panel; safe from any thread."""

    def __init__(self, maxlen: int = 1000) -> None:
        super().__init__()
        self.lines: deque[tuple[int, str]] = deque(maxlen=maxlen)
        self.setFormatter(GoFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        # deque.append is atomic: credential look-ups log from worker threads.
        self.lines.append((record.levelno, self.format(record)))

    def drain(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        with contextlib.suppress(IndexError):
            while True:
                out.append(self.lines.popleft())
        return out


def panel_logger(level_name: str, buffer: LogBuffer) -> logging.Logger:
    """A daemon logger that writes only to ``buffer`` (outside logging's global registry)."""
    logger = logging.Logger("xray_trio", level_for(level_name))
    logger.addHandler(buffer)
    return logger


def choose_sinks(
    config: Config, *, sinks_given: bool, env: Mapping[str, str]
) -> tuple[Config, str]:
    """The sinks to run under the dashboard, and a notice to show about them.

    Explicit ``--sink`` flags (or ``Sinks`` in a file) are kept. Otherwise X-Ray is used only
    when a region and credentials are at hand; without them the daemon runs with no sink at
    all (the dashboard is where segments go), so it works with no AWS account.
    """
    if sinks_given or not config.needs_aws:
        return config, ""
    if _aws_ready(config, env):
        return config, ""
    return dataclasses.replace(config, sinks=()), LOCAL_ONLY_NOTICE


def _aws_ready(config: Config, env: Mapping[str, str]) -> bool:
    session = botocore.session.Session()
    region = config.region or env.get("AWS_REGION") or session.get_config_variable("region")
    return bool(region) and session.get_credentials() is not None


class InProcessSource:
    """Runs ``run_daemon`` under the app; see the module docstring."""

    def __init__(
        self,
        config: Config,
        logger: logging.Logger,
        *,
        notice: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.logger = logger
        self._notice = notice
        self._env = env
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event: trio.Event | None = None
        self._stop_requested = False
        self._scope: trio.CancelScope | None = None
        self._done: asyncio.Future[outcome.Outcome[None]] | None = None

    @property
    def title(self) -> str:
        return f"daemon on udp {self.config.socket.udp_address}"

    @property
    def notice(self) -> str:
        return self._notice

    async def run(self, feed: Feed) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
        self._done = done

        def finished(result: outcome.Outcome[None]) -> None:
            if not done.done():
                done.set_result(result)

        feed.set_state(Link.STARTING, "")
        trio.lowlevel.start_guest_run(
            self._main,
            feed,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            host_uses_signal_set_wakeup_fd=True,
            done_callback=finished,
        )
        # Shielded: cancelling the worker must not abandon a daemon that is still flushing.
        result = await asyncio.shield(done)
        failures: list[BaseException] = []
        try:
            result.unwrap()
        except* (ConfigError, StartupError) as group:
            failures = leaf_exceptions(group)
        if failures:
            message = "; ".join(str(exc) for exc in failures)
            self.logger.error("%s", message)
            feed.set_state(Link.FAILED, message)
        else:
            feed.set_state(Link.STOPPED, "flushed and stopped")

    async def stop(self) -> None:
        """Ask the daemon to shut down like SIGTERM, and wait until it has flushed."""
        self._stop_requested = True
        self._call_in_trio(self._set_stop)
        if self._done is not None:
            await asyncio.shield(self._done)

    def force(self) -> None:
        """Cancel the daemon outright (a second quit while flushing)."""
        self._call_in_trio(self._cancel)

    def _set_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _call_in_trio(self, fn: Callable[[], None]) -> None:
        if self._token is None or (self._done is not None and self._done.done()):
            return
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn)

    async def _main(self, feed: Feed) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop_event = trio.Event()
        if self._stop_requested:
            self._stop_event.set()
        hub = EventHub()
        stdout = _null_output() if "stdout" in self.config.sinks else None
        try:
            # The subscription outlives the nursery, so the pump never sees its channel close.
            async with (
                hub.open_subscription(max_buffer=SUBSCRIPTION_BUFFER) as sub,
                trio.open_nursery() as watchers,
            ):
                self._scope = watchers.cancel_scope
                watchers.start_soon(_pump, sub, feed)
                daemon = functools.partial(
                    run_daemon,
                    self.config,
                    self.logger,
                    env=self._env,
                    shutdown_trigger=functools.partial(self._wait_stop, feed),
                    stdout=stdout,
                    observers=Observers(hub=hub),
                )
                async with trio.open_nursery() as nursery:
                    host, port = await nursery.start(daemon)
                    feed.set_state(Link.RUNNING, f"udp {host}:{port}")
                _drain(sub, feed)
                watchers.cancel_scope.cancel()
        finally:
            if stdout is not None:
                stdout.close()

    async def _wait_stop(self, feed: Feed) -> str:
        assert self._stop_event is not None
        await self._stop_event.wait()
        feed.set_state(Link.FLUSHING, "flushing…")
        return "inspector quit"


async def _pump(sub: Subscription, feed: Feed) -> None:
    async for event in sub.events:
        feed.push(event)
        _drain(sub, feed)


def _drain(sub: Subscription, feed: Feed) -> None:
    """Hand over everything already waiting, then the loss count (the feed keeps the last)."""
    with contextlib.suppress(trio.WouldBlock):
        while True:
            feed.push(sub.events.receive_nowait())
    if sub.lost:
        feed.push(Lost(total=sub.lost))


def _null_output() -> BinaryIO:
    # The stdout sink writes segment JSON; under the dashboard, stdout is the screen.
    return open(os.devnull, "wb")  # closed when the daemon ends
