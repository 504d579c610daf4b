"""Whether the daemon is doing its job, as ``/healthz`` reports it.

Kept apart from ``admin.py`` so the pipeline can record health without importing the HTTP
server, which only loads when the admin endpoint is on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclasses.dataclass(slots=True)
class SinkHealth:
    """One sink's recent delivery record."""

    consecutive_failures: int = 0
    failing_since: float | None = None
    """When the current run of failures began (``trio.current_time()``); None after a success."""
    last_success: float | None = None
    last_error: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class HealthReport:
    healthy: bool
    body: dict[str, Any]
    """The JSON ``/healthz`` answers with."""


class Health:
    """Liveness as the pipeline sees it, updated in place by its tasks; inert.

    A sink is unhealthy after ``max_failures`` failed upload attempts in a row, or when it has
    been failing (with no success in between) for ``max_failing_s``; one success makes it
    healthy again. A sink with no traffic is healthy: silence is not failure.
    """

    def __init__(
        self, sinks: Iterable[str], *, max_failures: int = 10, max_failing_s: float = 30.0
    ) -> None:
        self.intake_up = False
        """Set by the pipeline: True once the UDP sockets receive, False when they stop."""
        self.sinks = {name: SinkHealth() for name in sinks}
        self._max_failures = max_failures
        self._max_failing_s = max_failing_s

    def upload_succeeded(self, sink: str) -> None:
        state = self.sinks[sink]
        state.consecutive_failures = 0
        state.failing_since = None
        state.last_success = trio.current_time()

    def upload_failed(self, sink: str, message: str) -> None:
        state = self.sinks[sink]
        state.consecutive_failures += 1
        state.last_error = message
        if state.failing_since is None:
            state.failing_since = trio.current_time()

    def check(self) -> HealthReport:
        now = trio.current_time()
        reasons: list[str] = []
        if not self.intake_up:
            reasons.append("intake is down")
        sinks: dict[str, Any] = {}
        sink_problems: list[str] = []
        for name, state in self.sinks.items():
            problem = self._problem(state, now)
            if problem:
                sink_problems.append(f"sink {name}: {problem}")
            sinks[name] = {
                "healthy": not problem,
                "consecutive_failures": state.consecutive_failures,
                "last_success_age_s": None
                if state.last_success is None
                else now - state.last_success,
                "last_error": state.last_error,
            }
        if self.sinks and len(sink_problems) == len(self.sinks):
            reasons.append("no sink is delivering" + "".join(f"; {p}" for p in sink_problems))
        body: dict[str, Any] = {"status": "unhealthy" if reasons else "ok"}
        if reasons:
            body["reason"] = "; ".join(reasons)
        body["intake"] = "up" if self.intake_up else "down"
        body["sinks"] = sinks
        return HealthReport(healthy=not reasons, body=body)

    def _problem(self, state: SinkHealth, now: float) -> str:
        if state.consecutive_failures >= self._max_failures:
            return f"{state.consecutive_failures} failed uploads in a row: {state.last_error}"
        if state.failing_since is not None and now - state.failing_since >= self._max_failing_s:
            return f"failing for {now - state.failing_since:.0f} s: {state.last_error}"
        return ""
