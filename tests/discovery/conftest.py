"""Fixtures for discovery tests: the Kubernetes API double and a local DNS server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.discovery.dns_server import LocalDns
from tests.discovery.k8s_api import KubeApiDouble

TOKEN = "token-one"


@pytest.fixture
def kube_api() -> Iterator[KubeApiDouble]:
    """A plain-HTTP API double on 127.0.0.1 that requires ``TOKEN``."""
    api = KubeApiDouble()
    api.state.token = TOKEN
    with api:
        yield api


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def local_dns() -> Iterator[LocalDns]:
    with LocalDns() as server:
        yield server
