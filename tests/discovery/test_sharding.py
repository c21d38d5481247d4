"""Sharding: every node has exactly one owner, scaling moves few nodes, and
replicas agree without talking to each other."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sidecar.discovery.sharding import (
    MAX_SHARDS,
    ShardingError,
    ShardSpec,
    node_hash,
    ordinal_from_name,
    owner,
    owns,
    resolve_shard,
    shard_from_environment,
)

NAMES = [f"app@10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(10_000)]


@pytest.mark.parametrize("count", range(1, 17))
def test_every_node_has_exactly_one_owner(count: int) -> None:
    specs = [ShardSpec(i, count) for i in range(count)]
    for name in NAMES:
        owners = [spec.index for spec in specs if owns(spec, name)]
        assert owners == [owner(name, count)]


@pytest.mark.parametrize("count", range(1, 17))
def test_growing_by_one_moves_few_nodes_and_only_to_the_new_shard(count: int) -> None:
    before = {name: owner(name, count) for name in NAMES}
    after = {name: owner(name, count + 1) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert all(after[name] == count for name in moved)  # only to the new shard
    expected = len(NAMES) / (count + 1)
    assert abs(len(moved) - expected) < 0.1 * expected + 50  # ~1/(n+1) of them


@pytest.mark.parametrize("count", [2, 3, 5, 8, 16])
def test_balance(count: int) -> None:
    loads = Counter(owner(name, count) for name in NAMES)
    fair = len(NAMES) / count
    assert set(loads) == set(range(count))
    assert max(abs(load - fair) for load in loads.values()) < 0.12 * fair


def test_the_hash_is_the_same_in_another_process() -> None:
    """Replicas must agree: no per-process hash salt may leak in."""
    sample = NAMES[:50]
    script = (
        "import sys; from sidecar.discovery.sharding import node_hash, owner\n"
        "for n in sys.argv[1:]: print(node_hash(n), owner(n, 7))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *sample],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    ).stdout.split("\n")
    assert out[:-1] == [f"{node_hash(n)} {owner(n, 7)}" for n in sample]


def test_pinned_values() -> None:
    """A change of hash or algorithm would split ownership between replicas
    of different versions during a rolling upgrade: these must never change."""
    assert node_hash("app@10.0.0.1") == 0x43AF08D1E23DF528
    assert [owner(f"shop@10.1.0.{i}", 4) for i in range(1, 13)] == [
        1,
        1,
        1,
        1,
        0,
        3,
        0,
        1,
        2,
        2,
        3,
        3,
    ]


def test_ordinals_from_pod_names() -> None:
    assert ordinal_from_name("beamside-0") == 0
    assert ordinal_from_name("prod-eu-beamside-12") == 12
    assert ordinal_from_name("beamside") is None
    assert ordinal_from_name("beamside-7f9c4-x2p") is None  # a Deployment's pod


def test_shard_from_environment() -> None:
    assert shard_from_environment(3, pod_name="beamside-2") == ShardSpec(2, 3)
    assert shard_from_environment(3, environ={"POD_NAME": "beamside-1"}) == ShardSpec(1, 3)
    assert shard_from_environment(1, pod_name="anything") == ShardSpec(0, 1)
    with pytest.raises(ShardingError, match=r"scale the StatefulSet and sharding\.count together"):
        shard_from_environment(3, pod_name="beamside-3")
    with pytest.raises(ShardingError, match="does not end in '-<ordinal>'"):
        shard_from_environment(3, pod_name="beamside-7f9c4-x2p")


def test_resolve_shard_priorities() -> None:
    env = {"POD_NAME": "beamside-1", "BEAMSIDE_SHARD_COUNT": "4"}
    assert resolve_shard(environ=env) == ShardSpec(1, 4)
    assert resolve_shard(index=3, environ=env) == ShardSpec(3, 4)
    assert resolve_shard(count=2, environ=env) == ShardSpec(1, 2)
    assert resolve_shard(environ={**env, "BEAMSIDE_SHARD_INDEX": "0"}) == ShardSpec(0, 4)
    assert resolve_shard(environ={}) == ShardSpec(0, 1)
    with pytest.raises(ShardingError, match="whole number"):
        resolve_shard(environ={"BEAMSIDE_SHARD_COUNT": "two"})
    with pytest.raises(ShardingError, match="index must be 0 to 1"):
        resolve_shard(index=2, count=2, environ={})


def test_spec_bounds() -> None:
    with pytest.raises(ShardingError, match="count must be 1 to"):
        ShardSpec(0, 0)
    with pytest.raises(ShardingError):
        ShardSpec(0, MAX_SHARDS + 1)
    with pytest.raises(ShardingError, match="count must be 1 to"):
        owner("app@h", 0)
    assert str(ShardSpec(2, 5)) == "shard 2/5"
