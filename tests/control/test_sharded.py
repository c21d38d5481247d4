"""A sharded replica asked about a node another shard owns says which shard."""

from __future__ import annotations

import grpc
import pytest

from sidecar.config import parse_config
from sidecar.control.base import NodeCalls
from sidecar.control.errors import RpcFailure
from sidecar.discovery.sharding import ShardSpec, owner
from sidecar.erldist.node import LocalNode
from sidecar.manager import NodeManager


def test_node_of_another_shard_is_a_failed_precondition() -> None:
    config = parse_config(
        {"cluster": "c", "node_name": "b@127.0.0.1", "targets": [{"nodes": ["a@h"], "cookie": "x"}]}
    )
    names = [f"n{i}@h" for i in range(20)]
    theirs = next(n for n in names if owner(n, 2) == 1)
    mine = next(n for n in names if owner(n, 2) == 0)
    local = LocalNode("b@127.0.0.1", "x")
    calls = NodeCalls(NodeManager(config.manager_config(), local, shard=ShardSpec(0, 2)))
    with pytest.raises(RpcFailure) as info:
        calls.status(theirs)
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "shard 1 of 2" in info.value.message
    with pytest.raises(RpcFailure) as info:
        calls.status(mine)  # ours, just not managed
    assert info.value.code is grpc.StatusCode.NOT_FOUND
