"""Shared fixtures: a private EPMD and real Erlang/Elixir nodes.

See ``tests/support/nodes.py`` for the node API. Nodes never use the system EPMD on
4369: the session fixture ``epmd_port`` runs a private one and sets
``ERL_EPMD_PORT`` for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon_proc import BeamsideProcess
from tests.support.loki_double import LokiDouble
from tests.support.nodes import (
    RUNTIMES,
    Epmd,
    ErlangNode,
    Runtime,
    RuntimeNotAvailable,
    random_cookie,
    require_runtimes,
    start_nodes,
    stop_nodes,
)

DEFAULT_START_TIMEOUT = 30.0


def _fail_missing(runtimes: Sequence[str]) -> None:
    try:
        require_runtimes(runtimes)
    except RuntimeNotAvailable as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def epmd_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Port of a private EPMD (foreground, 127.0.0.1 only) for the session.

    ``os.environ["ERL_EPMD_PORT"]`` is set to it for the session (restored at
    teardown) so client code under test finds it too."""
    _fail_missing(())
    log = tmp_path_factory.mktemp("epmd") / "epmd.log"
    epmd = Epmd(log_path=log).start()
    old = os.environ.get("ERL_EPMD_PORT")
    os.environ["ERL_EPMD_PORT"] = str(epmd.port)
    try:
        yield epmd.port
    finally:
        if old is None:
            os.environ.pop("ERL_EPMD_PORT", None)
        else:
            os.environ["ERL_EPMD_PORT"] = old
        epmd.stop()


@pytest.fixture
def cookie() -> str:
    """A fresh random cookie for this test."""
    return random_cookie()


class NodeFactory:
    """Starts nodes for one test; everything it started is killed at teardown
    (SIGKILL of each node's process group, reaped; call ``node.stop()`` in the
    test for a graceful ``init:stop()``).

    ``node_factory("otp28", extra_args=["-kernel", "net_ticktime", "4"])``
    returns a started :class:`ErlangNode` (long name, the test's ``cookie``,
    unique name). ``node_factory.many(3, "otp25")`` starts several in parallel.
    """

    def __init__(self, epmd_port: int, cookie: str, log_dir: Path) -> None:
        self.epmd_port = epmd_port
        self.cookie = cookie
        self.log_dir = log_dir
        self.nodes: list[ErlangNode] = []

    def new(
        self,
        runtime: Runtime = "otp25",
        *,
        name: str | None = None,
        cookie: str | None = None,
        longnames: bool = True,
        extra_args: Sequence[str] = (),
        hidden: bool = False,
        env: dict[str, str] | None = None,
    ) -> ErlangNode:
        """An unstarted node, tracked for teardown."""
        _fail_missing([runtime])
        node = ErlangNode(
            runtime,
            name=name,
            cookie=cookie if cookie is not None else self.cookie,
            longnames=longnames,
            extra_args=extra_args,
            epmd_port=self.epmd_port,
            log_dir=self.log_dir,
            env=env,
            hidden=hidden,
        )
        self.nodes.append(node)
        return node

    def __call__(
        self,
        runtime: Runtime = "otp25",
        *,
        name: str | None = None,
        cookie: str | None = None,
        longnames: bool = True,
        extra_args: Sequence[str] = (),
        hidden: bool = False,
        env: dict[str, str] | None = None,
        start: bool = True,
        timeout: float = DEFAULT_START_TIMEOUT,
    ) -> ErlangNode:
        node = self.new(
            runtime,
            name=name,
            cookie=cookie,
            longnames=longnames,
            extra_args=extra_args,
            hidden=hidden,
            env=env,
        )
        if start:
            node.start(timeout)
        return node

    def many(
        self,
        count: int,
        runtime: Runtime = "otp25",
        *,
        cookie: str | None = None,
        longnames: bool = True,
        extra_args: Sequence[str] = (),
        timeout: float = DEFAULT_START_TIMEOUT,
    ) -> list[ErlangNode]:
        """Start ``count`` nodes of one runtime in parallel."""
        nodes = [
            self.new(runtime, cookie=cookie, longnames=longnames, extra_args=extra_args)
            for _ in range(count)
        ]
        return start_nodes(nodes, timeout)

    def stop_all(self) -> None:
        """Gracefully (``init:stop()``, ~1 s, done concurrently)."""
        stop_nodes(self.nodes)

    def kill_all(self) -> None:
        """SIGKILL every node's process group and reap (what teardown does:
        fast, and nothing is left behind)."""
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                node.kill()
            except BaseException as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def logs(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes)


@pytest.fixture
def node_factory(epmd_port: int, cookie: str, tmp_path: Path) -> Generator[NodeFactory, None, None]:
    factory = NodeFactory(epmd_port, cookie, tmp_path / "nodes")
    try:
        yield factory
    finally:
        factory.kill_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the node logs to the report of a failed test."""
    report = yield
    factory = getattr(item, "funcargs", {}).get("node_factory")
    if report.failed and isinstance(factory, NodeFactory) and factory.nodes:
        report.sections.append(("erlang node logs", factory.logs()))
    return report


@pytest.fixture
def otp25_node(node_factory: NodeFactory) -> ErlangNode:
    return node_factory("otp25")


@pytest.fixture
def otp28_node(node_factory: NodeFactory) -> ErlangNode:
    return node_factory("otp28")


@pytest.fixture
def elixir_node(node_factory: NodeFactory) -> ErlangNode:
    return node_factory("elixir")


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> Runtime:
    """Each runtime name in turn ("otp25", "otp28", "elixir"), for tests that
    start their nodes themselves with ``node_factory(runtime, ...)``."""
    rt: Runtime = request.param
    return rt


@pytest.fixture
def any_node(runtime: Runtime, node_factory: NodeFactory) -> ErlangNode:
    """A started long-name node, once per runtime (otp25, otp28, elixir)."""
    return node_factory(runtime)


@pytest.fixture
def beamside_procs() -> Iterator[list[BeamsideProcess]]:
    """Where a test puts the ``beamside run`` processes it starts; killed after."""
    started: list[BeamsideProcess] = []
    yield started
    for proc in started:
        proc.kill()


@pytest.fixture
def loki() -> Iterator[LokiDouble]:
    """A running strict Loki double (:mod:`tests.support.loki_double`) with Loki's
    default limits."""
    double = LokiDouble().start()
    try:
        yield double
    finally:
        double.stop()
