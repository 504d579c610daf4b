"""Test-wide rules: no AWS settings leak in from the machine, and async tests run on trio.

Tests under ``tests/tui`` run on asyncio (Textual's loop) and mark themselves; every other
coroutine test is run by pytest-trio. The hook below marks only those, so the two worlds do
not trip over each other (enabling trio mode globally would capture the Textual tests too).
"""

from __future__ import annotations

import inspect
import logging
import os
import sys

import pytest

from tests.logs import Lines

_TUI_DIR = os.path.join(os.path.dirname(__file__), "tui")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if str(item.path).startswith(_TUI_DIR):
            continue
        if inspect.iscoroutinefunction(item.obj) and item.get_closest_marker("trio") is None:
            item.add_marker(pytest.mark.trio)


_LEAKY_PREFIXES = (
    "AWS_",
    "ECS_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def _clean_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Strip AWS and proxy settings, and point botocore at empty config files."""
    for name in list(os.environ):
        if name.startswith(_LEAKY_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close the socket of the SDK's global recorder, opened when aws_xray_sdk.core is imported."""

    core = sys.modules.get("aws_xray_sdk.core")
    if core is not None:
        core.xray_recorder.emitter._socket.close()


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def logger(lines: Lines) -> logging.Logger:
    """A daemon logger (outside logging's registry, as the daemon's own) that records into
    ``lines``."""
    log = logging.Logger("test", logging.DEBUG)
    log.addHandler(lines)
    return log
