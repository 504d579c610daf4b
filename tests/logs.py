"""Capturing what the daemon logs, without touching logging's global registry."""

from __future__ import annotations

import logging


class Lines(logging.Handler):
    """Every record as ``(level name, message)``, in order."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))

    def messages(self, level: str | None = None) -> list[str]:
        return [message for name, message in self.lines if level is None or name == level]
