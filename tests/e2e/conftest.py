"""Fixtures for the end-to-end tests; the machinery lives in ``e2e_support``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from e2e_support import Harness
from fake_xray import FakeXRay

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def fake_xray() -> Iterator[FakeXRay]:
    with FakeXRay() as fake:
        yield fake


@pytest.fixture
def harness(tmp_path: Path, fake_xray: FakeXRay) -> Iterator[Harness]:
    h = Harness(tmp_path, fake_xray)
    try:
        yield h
    finally:
        h.close()
