"""Distribution series of a meshed node (issue 15), from real meshes.

In the default aggregate mode a node's distribution series do not depend on
the size of its mesh (a target with n nodes no longer carries ~20 n² dist
series); per-peer mode grows with the peers, as prometheus.erl does, and its
cap leaves a ``peer="_omitted"`` series that keeps ``sum by (node)`` exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.vm_metrics import vm_metric_families
from sidecar.model import NodeSnapshot, decode_snapshot
from tests.conftest import NodeFactory
from tests.support.golden import exposition
from tests.support.nodes import ErlangNode
from tests.support.prometheus import promtool_check_metrics


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-dist-series@127.0.0.1", cookie, epmd_port=epmd_port)
    yield node
    await node.close()


def _mesh(nodes: list[ErlangNode]) -> None:
    for node in nodes:
        names = ", ".join(f"'{o.name}'" for o in nodes if o is not node)
        assert node.eval(f"lists:usort([net_kernel:connect_node(N) || N <- [{names}]]).") == (
            "[true]"
        )


async def _snap(local: LocalNode, node: ErlangNode, **opts: Any) -> NodeSnapshot:
    data = await agents.collect(local, node.name, {"sections": ["dist"], **opts}, timeout=30)
    return decode_snapshot(
        data, node=node.name, family="f", cluster="c", taken_at=0.0, duration=0.0
    )


def _dist_samples(snap: NodeSnapshot) -> dict[str, list[Any]]:
    return {
        f.name: list(f.samples)
        for f in vm_metric_families([snap])
        if f.name.startswith(("erlang_vm_dist_", "beamside_dist_"))
    }


def _series(snap: NodeSnapshot) -> int:
    return sum(len(s) for s in _dist_samples(snap).values())


async def test_aggregate_series_do_not_grow_with_the_mesh(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    nodes = node_factory.many(3, "otp25") + node_factory.many(3, "otp28")
    _mesh(nodes[:3])
    counts: dict[int, tuple[int, int]] = {}
    for size in (3, 6):
        _mesh(nodes[:size])
        node = nodes[0]
        await agents.ensure_loaded(local, node.name)
        default = await _snap(local, node)
        per_peer = await _snap(local, node, dist_per_peer=True)
        counts[size] = (_series(default), _series(per_peer))
        samples = _dist_samples(default)
        peers = {
            (s.labels["state"], s.labels["type"]): s.value for s in samples["erlang_vm_dist_peers"]
        }
        assert peers == {
            ("up", "visible"): size - 1,
            ("up", "hidden"): 1,
            ("pending", "visible"): 0,
            ("pending", "hidden"): 0,
        }
        (sent,) = samples["erlang_vm_dist_send_bytes"]
        assert "peer" not in sent.labels and sent.value > 0
        assert samples["erlang_vm_dist_busy_ports"][0].value == 0
        assert "beamside_dist_peers_omitted" not in samples  # not per peer: nothing omitted
        assert "erlang_vm_dist_node_state" not in samples
        lint = promtool_check_metrics(exposition([default, per_peer]))
        assert lint.returncode == 0, lint.stdout + lint.stderr
    print(f"\ndist series of one node (aggregate, per peer): {counts}")
    assert counts[3][0] == counts[6][0]  # the aggregate: constant
    # Per peer: 3 more peers, 3 times the series of one peer more.
    per_one = (counts[6][1] - counts[3][1]) / 3
    assert per_one >= 15 and counts[6][1] > 2 * counts[6][0]


async def test_the_per_peer_cap_keeps_the_sums_whole(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    nodes = node_factory.many(5, "otp25")
    _mesh(nodes)
    node = nodes[0]
    await agents.ensure_loaded(local, node.name)
    capped = await _snap(local, node, dist_per_peer=True, max_peers=2)
    tree = capped.exporter_trees()[0]["dist"]
    samples = _dist_samples(capped)
    (omitted,) = samples["beamside_dist_peers_omitted"]
    assert omitted.value == 3  # 4 mesh peers and us, 2 listed
    for name, key in (
        ("erlang_vm_dist_send_bytes", "send_bytes"),
        ("erlang_vm_dist_recv_cnt", "recv_packets"),
    ):
        series = samples[name]
        peers = {s.labels["peer"] for s in series}
        assert len(peers) == 3 and "_omitted" in peers
        # Listed peers plus the rest: the node's total, read in the same call.
        assert sum(s.value for s in series) == tree["sockets"][key]
    states = samples["erlang_vm_dist_node_state"]
    assert len(states) == 2 and all(s.value == 3 for s in states)
