"""Go's log line format, level mapping, destinations and rotation (pkg/logger tests, spec §9)."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from typing import TYPE_CHECKING

import pytest

from xray_trio.config import LOG_LEVEL_NAMES, LoggingConfig
from xray_trio.log import (
    LEVELS,
    ROTATE_BYTES,
    TRACE,
    close_logger,
    format_line,
    format_timestamp,
    level_for,
    open_logger,
    write_early_error,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# 2021-03-23T06:02:13Z
EPOCH = 1616479333.75
LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \[(\w+)\] (.*)")


@pytest.fixture
def timezone() -> Iterator[None]:
    """Lets a test set TZ; the process's zone is restored afterwards."""
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def set_tz(zone: str) -> None:
    os.environ["TZ"] = zone
    time.tzset()


@pytest.mark.usefixtures("timezone")
@pytest.mark.parametrize(
    ("zone", "stamp"),
    [
        ("UTC0", "2021-03-23T06:02:13Z"),
        ("JST-9", "2021-03-23T15:02:13+09:00"),  # POSIX TZ: the sign is inverted
        ("NST+3:30", "2021-03-23T02:32:13-03:30"),
        ("GMT0BST,M3.5.0/1,M10.5.0", "2021-03-23T06:02:13Z"),  # zero offset outside summer
    ],
)
def test_timestamp_is_local_rfc3339_seconds(zone: str, stamp: str) -> None:
    set_tz(zone)
    assert format_timestamp(EPOCH) == stamp


@pytest.mark.usefixtures("timezone")
@pytest.mark.parametrize(
    ("level", "word"),
    [
        (TRACE, "Trace"),
        (logging.DEBUG, "Debug"),
        (logging.INFO, "Info"),
        (logging.WARNING, "Warn"),
        (logging.ERROR, "Error"),
        (logging.CRITICAL, "Critical"),
    ],
)
def test_line_format(level: int, word: str) -> None:
    set_tz("JST-9")
    assert format_line(level, "Got shutdown signal: terminated", EPOCH) == (
        f"2021-03-23T15:02:13+09:00 [{word}] Got shutdown signal: terminated"
    )


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("dev", TRACE),
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warn", logging.WARNING),
        ("error", logging.ERROR),
        ("prod", logging.INFO),
        ("Prod", TRACE),  # case-sensitive; unknown means the most verbose
        ("", TRACE),
        ("verbose", TRACE),
    ],
)
def test_level_mapping(name: str, level: int) -> None:
    assert level_for(name) == level


def test_every_config_level_name_is_mapped() -> None:
    assert set(LEVELS) == set(LOG_LEVEL_NAMES)


def log_every_level(logger: logging.Logger) -> None:
    logger.log(TRACE, "trace")
    logger.debug("debug")
    logger.info("info")
    logger.warning("warn")
    logger.error("error")
    logger.critical("critical")


def parsed(text: str) -> list[tuple[str, str]]:
    lines = []
    for line in text.splitlines():
        match = LINE.fullmatch(line)
        assert match, line
        lines.append((match[2], match[3]))
    return lines


@pytest.mark.parametrize(
    ("level", "words"),
    [
        ("dev", ["Trace", "Debug", "Info", "Warn", "Error", "Critical"]),
        ("debug", ["Debug", "Info", "Warn", "Error", "Critical"]),
        ("prod", ["Info", "Warn", "Error", "Critical"]),
        ("warn", ["Warn", "Error", "Critical"]),
        ("error", ["Error", "Critical"]),
    ],
)
def test_logger_writes_go_lines_at_or_above_its_level(level: str, words: list[str]) -> None:
    stream = io.StringIO()
    logger = open_logger(LoggingConfig(log_level=level), stream=stream)
    log_every_level(logger)
    close_logger(logger)
    assert parsed(stream.getvalue()) == [(word, word.lower()) for word in words]


def test_multi_line_messages_are_written_as_is() -> None:
    stream = io.StringIO()
    logger = open_logger(LoggingConfig(), stream=stream)
    logger.info("Invalid header: %s", "a\nb")
    assert stream.getvalue().endswith("] Invalid header: a\nb\n")


def test_logger_is_not_registered_globally() -> None:
    logger = open_logger(LoggingConfig(), stream=io.StringIO())
    assert logger not in logging.Logger.manager.loggerDict.values()
    assert logger.parent is None  # so nothing reaches the root logger's handlers


def test_log_path_appends_to_the_file_only(tmp_path: Path) -> None:
    path = tmp_path / "xray.log"
    path.write_text("earlier line\n")
    stream = io.StringIO()
    logger = open_logger(LoggingConfig(log_path=str(path)), stream=stream)
    logger.info("hello")
    close_logger(logger)
    assert stream.getvalue() == ""
    first, second = path.read_text().splitlines()
    assert first == "earlier line"
    assert parsed(second) == [("Info", "hello")]


def test_log_path_is_created_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "new.log"
    logger = open_logger(
        LoggingConfig(log_path=str(path), log_rotation=False), stream=io.StringIO()
    )
    logger.info("hello")
    close_logger(logger)
    assert parsed(path.read_text()) == [("Info", "hello")]


def test_a_missing_log_directory_is_created_like_go(tmp_path: Path) -> None:
    path = tmp_path / "var" / "log" / "xray" / "xray.log"
    logger = open_logger(LoggingConfig(log_path=str(path)), stream=io.StringIO())
    logger.info("kept")
    close_logger(logger)
    assert parsed(path.read_text()) == [("Info", "kept")]


def test_an_unusable_log_path_falls_back_to_stderr_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Go loses every line; here nothing is lost. The path is a directory: no file can open.
    stream = io.StringIO()
    logger = open_logger(LoggingConfig(log_path=str(tmp_path)), stream=stream)
    logger.error("not lost")
    close_logger(logger)
    err = capsys.readouterr().err
    assert err.startswith(f"cannot open log file {tmp_path}: ")
    assert "logging to stderr" in err
    assert parsed(err.split("\n", 1)[1]) == [("Error", "not lost")]
    assert stream.getvalue() == ""


def fill(path: Path, *, rotation: bool, lines: int) -> None:
    config = LoggingConfig(log_path=str(path), log_rotation=rotation)
    logger = open_logger(config, stream=io.StringIO(), rotate_bytes=200)
    for n in range(lines):
        logger.info("line %02d", n)
    close_logger(logger)


def test_rotation_keeps_one_rolled_file(tmp_path: Path) -> None:
    path = tmp_path / "xray.log"
    fill(path, rotation=True, lines=40)  # each line is ~40 bytes: several rollovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xray.log", "xray.log.1"]
    assert path.stat().st_size <= 200
    rolled = parsed((tmp_path / "xray.log.1").read_text())
    current = parsed(path.read_text())
    assert current[-1] == ("Info", "line 39")
    assert rolled[-1][1] == f"line {int(current[0][1][5:]) - 1:02d}"  # contiguous


def test_without_rotation_the_file_just_grows(tmp_path: Path) -> None:
    path = tmp_path / "xray.log"
    fill(path, rotation=False, lines=40)
    assert [p.name for p in tmp_path.iterdir()] == ["xray.log"]
    assert len(path.read_text().splitlines()) == 40


def test_rotation_size_is_50_mib() -> None:
    assert ROTATE_BYTES == 50 * 1024 * 1024


def test_early_error_goes_to_the_stream_and_the_log_file(tmp_path: Path) -> None:
    path = tmp_path / "xray.log"
    stream = io.StringIO()
    write_early_error("Config Version is missing.", stream=stream, log_path=str(path))
    write_early_error("second", stream=stream, log_path=str(path))
    assert parsed(stream.getvalue()) == [
        ("Error", "Config Version is missing."),
        ("Error", "second"),
    ]
    assert path.read_text() == stream.getvalue()


def test_early_error_ignores_an_unusable_log_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    write_early_error("boom", stream=stream, log_path=str(tmp_path / "no" / "x.log"))
    assert parsed(stream.getvalue()) == [("Error", "boom")]
