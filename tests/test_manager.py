"""The node manager in-process: targets added and removed at run time, the live
path, and the OTLP bridge over the same registry (real nodes throughout)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sidecar.config import CookieSource, parse_config
from sidecar.daemon import local_name_for
from sidecar.erldist.node import LocalNode
from sidecar.exporter.collector import build_registry
from sidecar.exporter.otlp import OtlpBridge
from sidecar.manager import NodeManager
from sidecar.model import NodeState
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode
from tests.support.waiting import eventually

RESIDUE = (
    '{[M || {M, _} <- code:all_loaded(), lists:prefix("beamside", atom_to_list(M))],'
    " nodes(hidden)}."
)


@pytest.fixture
async def manager(otp25_node: ErlangNode, epmd_port: int) -> AsyncIterator[NodeManager]:
    config = parse_config(
        {
            "cluster": "unit",
            "node_name": "beamside-manager@127.0.0.1",
            "targets": [{"nodes": [otp25_node.name], "cookie": otp25_node.cookie}],
            "intervals": {"metrics": "1s"},
        }
    )
    local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
    mgr = NodeManager(config.manager_config(), local)
    await mgr.start()
    yield mgr
    await mgr.stop()


def is_up(manager: NodeManager, node: str) -> bool:
    status = manager.status(node)
    return status is not None and status.state is NodeState.UP and node in manager.snapshots


async def test_targets_added_and_removed_at_run_time(
    manager: NodeManager, node_factory: NodeFactory, otp25_node: ErlangNode
) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "seed up")
    assert manager.ready
    late = node_factory("otp28")
    assert manager.add_target(late.name, cookie=CookieSource("inline", late.cookie), family="x")
    assert not manager.add_target(late.name, cookie=CookieSource("inline", late.cookie))
    await eventually(lambda: is_up(manager, late.name), 20, "late node up")
    status = manager.status(late.name)
    assert status is not None and status.family == "x" and status.agent_version >= 1

    assert await manager.remove_target(late.name)
    assert manager.status(late.name) is None and late.name not in manager.snapshots
    # The node notices the closed connection on its own, a moment later.
    await eventually(lambda: late.eval(RESIDUE) == "{[],[]}", 5, "no residue on the node")
    assert not await manager.remove_target(late.name)
    assert is_up(manager, otp25_node.name)


async def test_live_path(manager: NodeManager, otp25_node: ErlangNode) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "up")
    values = await manager.live(otp25_node.name, ["process_count", "memory_total"])
    assert values["process_count"] > 10 and values["memory_total"] > 1_000_000
    with pytest.raises(KeyError):
        await manager.live("nobody@127.0.0.1", ["process_count"])
    # The stream yields at intervals.live (1 s here).
    started = time.monotonic()
    readings = []
    async for reading in manager.live_stream(otp25_node.name, ["reductions"]):
        readings.append(reading["reductions"])
        if len(readings) == 3:
            break
    assert 1.5 < time.monotonic() - started < 5
    assert readings == sorted(readings)


async def test_family_from_release_when_not_overridden(
    manager: NodeManager, otp25_node: ErlangNode
) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "up")
    status = manager.status(otp25_node.name)
    # A plain `erl` runs no release: the agent says so, and the family follows.
    assert status is not None and status.family == "erlang"
    assert manager.snapshots[otp25_node.name].family == "erlang"


async def test_otlp_bridge_exports_the_same_series(
    manager: NodeManager, otp25_node: ErlangNode
) -> None:
    await eventually(lambda: is_up(manager, otp25_node.name), 20, "up")
    registry = build_registry(manager, "test")
    reader = InMemoryMetricReader()
    bridge = OtlpBridge(registry, reader)
    bridge.refresh()
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert "erlang_vm_processes" in metrics and "beamside_node_up" in metrics
    (point,) = metrics["beamside_node_up"].data.data_points
    assert point.attributes["node"] == otp25_node.name and point.value == 1
    assert point.attributes["cluster"] == "unit"
    reductions = metrics["erlang_vm_statistics_reductions_total"].data
    assert reductions.is_monotonic
    bridge.shutdown()
