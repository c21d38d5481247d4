"""Fixtures for the Loki tests: a strict Loki double on a free 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loki_double import LokiDouble


@pytest.fixture
def loki() -> Iterator[LokiDouble]:
    """A running :class:`~tests.loki_double.LokiDouble` with Loki's default limits."""
    double = LokiDouble().start()
    try:
        yield double
    finally:
        double.stop()
