"""The `dist` section as an aggregate per node (issue 15), on real meshed nodes.

A full mesh of OTP 25 and OTP 28 nodes plus a hidden node: the default reply
carries no per-peer list and its figures are those of the per-peer list
(equal within one call, where both come from the same readings; close
across calls, where counters move); ``max_peers`` cuts the list and says how
many peers it left out; a peer that stops reading makes its port busy; and
the aggregate costs the node less than the per-peer list.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from sidecar import agents
from sidecar.erldist.node import LocalNode
from tests.conftest import NodeFactory
from tests.support.golden import unpacked
from tests.support.nodes import ErlangNode

SOCKET_SUMS = (
    ("recv_bytes", "recv_oct"),
    ("recv_packets", "recv_cnt"),
    ("send_bytes", "send_oct"),
    ("send_packets", "send_cnt"),
    ("output_queue_bytes", "send_pend"),
)


def _mesh(node_factory: NodeFactory) -> tuple[list[ErlangNode], ErlangNode]:
    """Three OTP 25 and two OTP 28 nodes, each connected to all others, and a
    hidden node connected to the first."""
    mesh = node_factory.many(3, "otp25") + node_factory.many(2, "otp28")
    for node in mesh:
        names = ", ".join(f"'{other.name}'" for other in mesh if other is not node)
        assert node.eval(f"lists:usort([net_kernel:connect_node(N) || N <- [{names}]]).") == (
            "[true]"
        )
    hidden = node_factory("otp28", hidden=True)
    assert hidden.eval(f"net_kernel:connect_node('{mesh[0].name}').") == "true"
    return mesh, hidden


async def _dist(local: LocalNode, node: ErlangNode, **opts: Any) -> dict[str, Any]:
    data = await agents.collect(local, node.name, {"sections": ["dist"], **opts}, timeout=30)
    dist: dict[str, Any] = unpacked(data)["dist"]
    return dist


def _peer_sum(peers: list[dict[str, Any]], key: str) -> int:
    return sum(int(p["controller"]["socket"][key]) for p in peers)


async def test_aggregate_is_the_sum_of_the_peers_on_a_mesh(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    mesh, hidden = _mesh(node_factory)
    for node in (mesh[0], mesh[3]):  # one OTP 25, one OTP 28 node
        await agents.ensure_loaded(local, node.name)
        others = len(mesh) - 1
        extra_hidden = 1 if node is mesh[0] else 0  # the hidden node
        expected = {"visible": others, "hidden": 1 + extra_hidden}  # 1: us
        up = others + 1 + extra_hidden

        default = await _dist(local, node)
        assert default["per_peer"] is False
        assert "peers" not in default and "omitted" not in default
        assert default["peer_counts"]["up"] == expected
        assert default["peer_counts"]["pending"] == {"visible": 0, "hidden": 0}
        assert default["up"] == up and default["pending"] == 0
        assert default["sockets"]["count"] == up  # plain TCP: every controller a port
        assert default["processes"]["count"] == 0
        assert default["sockets"]["busy"] == 0

        full = await _dist(local, node, dist_per_peer=True)
        assert full["per_peer"] is True and full["omitted"] == 0 and full["truncated"] is False
        peers = full["peers"]
        assert len(peers) == up
        types = [str(p["type"]) for p in peers]
        assert {t: types.count(t) for t in set(types)} == expected
        assert {str(p["node"]) for p in peers if p["type"] == "visible"} == {
            o.name for o in mesh if o is not node
        }
        # Same call, same readings: the sums are exact.
        for agg_key, peer_key in SOCKET_SUMS:
            assert full["sockets"][agg_key] == _peer_sum(peers, peer_key), agg_key
        assert full["sockets"]["output_queue_max_bytes"] == max(
            int(p["controller"]["socket"]["send_pend"]) for p in peers
        )
        assert full["peer_counts"] == default["peer_counts"]

        # Across calls counters move: the default figures of the next call are
        # the per-peer sums plus what moved meanwhile (our rpc traffic, ticks).
        later = await _dist(local, node)
        for agg_key, _ in SOCKET_SUMS[:4]:
            before = full["sockets"][agg_key]
            assert before <= later["sockets"][agg_key] <= before + 1_000_000, agg_key
        assert later["sockets"]["recv_bytes"] > 0 and later["sockets"]["send_packets"] > 0

        # The cap: the first max_peers peers detailed, the rest counted.
        capped = await _dist(local, node, dist_per_peer=True, max_peers=2)
        assert len(capped["peers"]) == 2
        assert capped["omitted"] == up - 2 and capped["truncated"] is True
        assert capped["sockets"]["count"] == up  # the aggregate still covers all
        assert capped["peer_counts"] == default["peer_counts"]
    assert hidden.eval("nodes(hidden) ++ nodes(visible).") == f"['{mesh[0].name}']"


async def test_a_peer_that_stops_reading_makes_a_busy_port(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    sender, stalled = node_factory.many(2, "otp25")
    assert sender.eval(f"net_kernel:connect_node('{stalled.name}').") == "true"
    await agents.ensure_loaded(local, sender.name)
    assert (await _dist(local, sender))["sockets"]["busy"] == 0
    os_pid = int(stalled.eval("list_to_integer(os:getpid()).").strip())
    os.kill(os_pid, signal.SIGSTOP)
    try:
        # 30 MB towards a node that reads nothing: the socket fills, the inet
        # driver's queue passes its high watermark (the port is busy), the VM
        # buffers up to dist_buf_busy_limit, then suspends the sender.
        sender.eval(
            f"spawn(fun() -> B = binary:copy(<<1>>, 100000), "
            f"[erlang:send({{x, '{stalled.name}'}}, B) || _ <- lists:seq(1, 300)] end), ok."
        )
        deadline = time.monotonic() + 20
        while True:
            dist = await _dist(local, sender)
            if dist["sockets"]["busy"] == 1:
                break
            assert time.monotonic() < deadline, dist
            time.sleep(0.2)
        high = int(
            sender.eval(
                f"{{ok, [{{high_watermark, H}}]}} = inet:getopts(proplists:get_value("
                f"'{stalled.name}', erlang:system_info(dist_ctrl)), [high_watermark]), H."
            )
        )
        assert dist["sockets"]["output_queue_max_bytes"] >= high
        assert dist["sockets"]["output_queue_bytes"] >= dist["sockets"]["output_queue_max_bytes"]
        # The sender is suspended on the busy connection: busy_dist_port.
        assert (
            sender.eval(
                "lists:any(fun(P) -> process_info(P, current_function) =:= "
                "{current_function, {erts_internal, dsend_continue_trap, 1}} end, processes())."
            )
            == "true"
        )
    finally:
        os.kill(os_pid, signal.SIGCONT)


async def test_the_aggregate_costs_the_node_less_than_the_peer_list(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    mesh = node_factory.many(6, "otp25")
    names = ", ".join(f"'{n.name}'" for n in mesh[1:])
    assert mesh[0].eval(f"lists:usort([net_kernel:connect_node(N) || N <- [{names}]]).") == (
        "[true]"
    )
    node = mesh[0]
    await agents.ensure_loaded(local, node.name)
    # The least of 20 rounds of 200 calls each, both modes interleaved: what
    # the section itself costs, whatever else the machine runs.
    out = await node.aeval(
        "T = fun(O) -> element(1, timer:tc(fun() -> [beamside_vm:section(dist, O, #{}) "
        "|| _ <- lists:seq(1, 200)] end)) end, "
        "R = [{T(#{}), T(#{dist_per_peer => true})} || _ <- lists:seq(1, 20)], "
        "{lists:min([A || {A, _} <- R]), lists:min([P || {_, P} <- R])}.",
        timeout=60,
    )
    aggregate_us, per_peer_us = (int(x) / 200 for x in out.strip("{}").split(","))
    print(
        f"\ndist section with {len(mesh)} peers: aggregate {aggregate_us:.1f} us, "
        f"per peer {per_peer_us:.1f} us ({per_peer_us / aggregate_us:.1f}x)"
    )
    assert aggregate_us < per_peer_us
