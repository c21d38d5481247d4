"""The node manager following Kubernetes discovery, and sharded replicas.

Against the Kubernetes API double (no cluster can run here) and real Erlang
nodes: pods coming and going become managed nodes attached and detached;
two shards over the same pods manage every node exactly once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sidecar.config import parse_config
from sidecar.daemon import local_name_for
from sidecar.discovery.sharding import ShardSpec, owner
from sidecar.erldist.node import LocalNode
from sidecar.manager import NodeManager
from sidecar.model import NodeState
from tests.conftest import NodeFactory
from tests.discovery.k8s_api import KubeApiDouble, make_pod
from tests.support.waiting import eventually

RESIDUE = '[M || {M, _} <- code:all_loaded(), lists:prefix("beamside", atom_to_list(M))].'


def k8s_config(
    kube_api: KubeApiDouble, token_file: Path, cookie: str, name: str, shards: int = 1
) -> Any:
    return parse_config(
        {
            "cluster": "k8s",
            "node_name": f"{name}@127.0.0.1",
            "targets": [
                {
                    "cookie": cookie,
                    "family": "shop",
                    "discover": "kubernetes",
                    "kubernetes": {
                        "namespace": "shop",
                        "label_selector": "app=shop",
                        "node_name_template": "{pod_name}@{pod_ip}",
                        "interval": "1s",
                        "api_url": kube_api.url,
                        "token_file": str(token_file),
                    },
                }
            ],
            "intervals": {"metrics": "1s"},
            "sharding": {"count": shards},
        }
    )


def up(manager: NodeManager, node: str) -> bool:
    status = manager.status(node)
    return status is not None and status.state is NodeState.UP


async def test_nodes_follow_pods(
    kube_api: KubeApiDouble,
    token_file: Path,
    node_factory: NodeFactory,
    cookie: str,
    epmd_port: int,
) -> None:
    a, b = node_factory("otp25"), node_factory("otp28")
    alive = {n.name: n.name.split("@")[0] for n in (a, b)}
    kube_api.set_pods(make_pod(alive[a.name], "127.0.0.1"))
    config = k8s_config(kube_api, token_file, cookie, "beamside-k8s")
    local = LocalNode(local_name_for(config), "x", epmd_port=epmd_port)
    manager = NodeManager(config.manager_config(), local)
    await manager.start()
    try:
        await eventually(lambda: up(manager, a.name), 20, "first pod's node attached")
        status = manager.status(a.name)
        assert status is not None and status.family == "shop"
        assert status.discovered_by == "kubernetes shop/app=shop"

        # A pod that is not Ready yet is left alone; once Ready it is attached.
        kube_api.add_pod(make_pod(alive[b.name], "127.0.0.1", ready=False))
        await asyncio.sleep(2.5)
        assert manager.status(b.name) is None
        kube_api.add_pod(make_pod(alive[b.name], "127.0.0.1"))
        await eventually(lambda: up(manager, b.name), 20, "second pod's node attached")

        # The first pod goes away: its node is detached, nothing left on it.
        kube_api.remove_pod("shop", alive[a.name])
        await eventually(lambda: manager.status(a.name) is None, 10, "node of the gone pod dropped")
        await eventually(lambda: a.eval(RESIDUE) == "[]", 10, "no agent left on the node")
        assert up(manager, b.name)
        follow = manager.discovery_status["kubernetes shop/app=shop"]
        assert follow.nodes == frozenset({b.name}) and follow.last_error is None
    finally:
        await manager.stop()


async def test_api_outage_keeps_the_nodes(
    kube_api: KubeApiDouble,
    token_file: Path,
    node_factory: NodeFactory,
    cookie: str,
    epmd_port: int,
) -> None:
    a = node_factory("otp25")
    kube_api.set_pods(make_pod(a.name.split("@")[0], "127.0.0.1"))
    config = k8s_config(kube_api, token_file, cookie, "beamside-k8s-outage")
    local = LocalNode(local_name_for(config), "x", epmd_port=epmd_port)
    manager = NodeManager(config.manager_config(), local)
    await manager.start()
    try:
        await eventually(lambda: up(manager, a.name), 20, "attached")
        kube_api.stop()  # the API server is gone: the last known set stays
        follow = manager.discovery_status["kubernetes shop/app=shop"]
        await eventually(lambda: follow.last_error is not None, 10, "the failure is noticed")
        await asyncio.sleep(1.5)
        assert up(manager, a.name)
    finally:
        await manager.stop()


async def test_shards_split_the_nodes(
    kube_api: KubeApiDouble, token_file: Path, cookie: str, epmd_port: int
) -> None:
    # Names only: whether these nodes exist does not matter to who owns them.
    names = [f"shop{i}" for i in range(24)]
    kube_api.set_pods(*(make_pod(n, "127.0.0.1") for n in names))
    expected = {f"{n}@127.0.0.1" for n in names}
    managers = []
    for index in range(2):
        config = k8s_config(kube_api, token_file, cookie, f"beamside-shard{index}", shards=2)
        local = LocalNode(local_name_for(config), "x", epmd_port=epmd_port)
        managers.append(NodeManager(config.manager_config(), local, shard=ShardSpec(index, 2)))
    for m in managers:
        await m.start()
    try:
        owned = [lambda m=m: {s.node for s in m.statuses()} for m in managers]
        await eventually(lambda: owned[0]() | owned[1]() == expected, 10, "every node managed")
        assert not owned[0]() & owned[1](), "a node managed by both shards"
        for index, get in enumerate(owned):
            assert all(owner(node, 2) == index for node in get())
            assert get(), f"shard {index} got nothing out of {len(names)} nodes"
    finally:
        for m in managers:
            await m.stop()
