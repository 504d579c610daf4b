"""Log lines in the Go daemon's format, on a logger that lives outside logging's global registry.

    2021-03-23T15:02:13+09:00 [Info] Got shutdown signal: terminated

Local time to the second, ``Z`` when the offset is zero. Config level names map to logging
levels as in Go: ``dev`` is Trace (below Debug), ``prod`` is Info, and an unknown name is Trace.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from xray_trio.config import LoggingConfig

TRACE: Final = 5
"""Below ``logging.DEBUG``: Go's most verbose level, chosen by ``-l dev``."""

ROTATE_BYTES: Final = 50 * 1024 * 1024
"""A log file is rolled over to ``<file>.1`` when it would grow past this size."""

LEVELS: Final = {
    "dev": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "prod": logging.INFO,
}

_LEVEL_WORDS: Final = {
    TRACE: "Trace",
    logging.DEBUG: "Debug",
    logging.INFO: "Info",
    logging.WARNING: "Warn",
    logging.ERROR: "Error",
    logging.CRITICAL: "Critical",
}


def level_for(name: str) -> int:
    """The logging level for a config level name; Go treats unknown names as Trace."""
    return LEVELS.get(name, TRACE)


def format_timestamp(epoch: float) -> str:
    """Go's ``2006-01-02T15:04:05Z07:00`` in local time (honours ``TZ``)."""
    local = time.localtime(epoch)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    offset_minutes = local.tm_gmtoff // 60
    if offset_minutes == 0:
        return stamp + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{stamp}{sign}{hours:02d}:{minutes:02d}"


def format_line(level: int, message: str, epoch: float) -> str:
    """One log line without its newline."""
    word = _LEVEL_WORDS.get(level) or logging.getLevelName(level)
    return f"{format_timestamp(epoch)} [{word}] {message}"


class GoFormatter(logging.Formatter):
    """Formats records as the Go daemon's seelog configuration does."""

    def format(self, record: logging.LogRecord) -> str:
        line = format_line(record.levelno, record.getMessage(), record.created)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def open_logger(
    cfg: LoggingConfig, *, stream: TextIO, rotate_bytes: int = ROTATE_BYTES
) -> logging.Logger:
    """A logger writing to ``cfg.log_path`` (appending) or else to ``stream``.

    The logger is not registered with ``logging.getLogger``, so nothing global is touched;
    release its file with ``close_logger``.
    """
    logger = logging.Logger("xray_trio", level_for(cfg.log_level))
    handler = _open_handler(cfg, stream, rotate_bytes)
    handler.setFormatter(GoFormatter())
    logger.addHandler(handler)
    return logger


def close_logger(logger: logging.Logger) -> None:
    """Flush and close every handler ``open_logger`` attached."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def _open_handler(cfg: LoggingConfig, stream: TextIO, rotate_bytes: int) -> logging.Handler:
    if not cfg.log_path:
        return logging.StreamHandler(stream)
    try:
        # Like Go's logger, create the file's directory (systemd units point at /var/log/xray).
        directory = os.path.dirname(cfg.log_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if cfg.log_rotation:
            return logging.handlers.RotatingFileHandler(
                cfg.log_path, maxBytes=rotate_bytes, backupCount=1, encoding="utf-8"
            )
        return logging.FileHandler(cfg.log_path, encoding="utf-8")
    except OSError as exc:
        # Go loses every line (saying so on stderr, once per line); logging to stderr instead,
        # after saying why, loses nothing.
        sys.stderr.write(f"cannot open log file {cfg.log_path}: {exc}; logging to stderr\n")
        return logging.StreamHandler(sys.stderr)


def write_early_error(message: str, *, stream: TextIO, log_path: str = "") -> None:
    """Report a config error before any logger exists: to ``stream``, and appended to ``log_path``.

    Go writes these with the normal line format at Error level.
    """
    line = format_line(logging.ERROR, message, time.time()) + "\n"
    stream.write(line)
    stream.flush()
    if log_path:
        try:
            with open(log_path, "a", encoding="utf-8") as file:
                file.write(line)
        except OSError:
            pass  # as with the logger: an unusable log file is not a second error
