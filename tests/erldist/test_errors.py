"""Error classes carry their metric ``reason`` label (``metric_reason``), and
the manager's :func:`failure_reason` reads it: the labels are the ones
``beamside_node_connect_failures_total`` has always had."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidecar import agents
from sidecar.erldist import errors
from sidecar.erldist.node import LocalNode
from sidecar.manager import CookieUnavailable, failure_reason
from tests.support.nodes import ErlangNode

# The label of every error class, as the manager's isinstance chain and
# class-name table gave them before the classes carried them.
LABELS: list[tuple[errors.DistError, str]] = [
    (CookieUnavailable("no file"), "cookie_unavailable"),
    (agents.AgentConflict("newer agent in use"), "agent_conflict"),
    (agents.AgentError("failed", "badarg"), "error"),
    (errors.CookieRefused("closed"), "cookie"),
    (errors.PeerCookieMismatch("digest"), "cookie"),
    (errors.DistTimeout("late"), "timeout"),
    (errors.HandshakeError("broken"), "handshake"),
    (errors.HandshakeProtocolError("not a distribution peer"), "handshake"),
    (errors.HandshakeRefused("not_allowed"), "handshake"),
    (errors.HostUnresolvable("nowhere"), "resolve"),
    (errors.EpmdUnreachable("no epmd"), "epmd"),
    (errors.NodeNotRegistered("no name"), "not_registered"),
    (errors.NodeUnreachable("refused"), "refused"),
    (errors.NodeDown("gone"), "down"),
    (errors.PeerSilent("no tick"), "net_tick_timeout"),
    (errors.ConnectError("other"), "error"),
    (errors.RpcError("badrpc", "nodedown"), "error"),
    (errors.ProtocolError("bad"), "error"),
    (errors.DecodeError("bad byte", 3), "protocol"),
    (errors.RemoteProtocolError("garbage"), "protocol"),
    (errors.FrameTooLarge("1 GiB"), "frame_too_large"),
    (errors.InflationRefused("512 MiB", 7), "inflation"),
    (errors.BufferOverflow("full"), "buffer_overflow"),
    (errors.MemoryBudgetExceeded("all full"), "memory_budget"),
    (errors.EncodeError("no term"), "error"),
    (errors.DistError("base"), "error"),
]


@pytest.mark.parametrize(("exc", "label"), LABELS, ids=lambda v: type(v).__name__)
def test_failure_reason_is_the_class_label(exc: errors.DistError, label: str) -> None:
    assert type(exc).metric_reason == label
    assert failure_reason(exc) == label


def test_non_dist_errors_are_error() -> None:
    assert failure_reason(ValueError("x")) == "error"
    assert failure_reason(TimeoutError()) == "error"


def test_rpc_error_keeps_its_own_reason_term() -> None:
    exc = errors.RpcError("badrpc", reason=("EXIT", "boom"))
    assert exc.reason == ("EXIT", "boom")
    assert exc.metric_reason == "error"


@pytest.fixture
async def stranger(epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-errors@127.0.0.1", "not-the-cookie", epmd_port=epmd_port)
    yield node
    await node.close()


async def test_real_failures_get_their_labels(otp25_node: ErlangNode, stranger: LocalNode) -> None:
    with pytest.raises(errors.CookieRefused) as refused:
        await stranger.rpc(otp25_node.name, "erlang", "node", [], timeout=5)
    assert failure_reason(refused.value) == "cookie"
    with pytest.raises(errors.NodeNotRegistered) as unknown:
        await stranger.rpc("nobody-here@127.0.0.1", "erlang", "node", [], timeout=5)
    assert failure_reason(unknown.value) == "not_registered"
