"""Splitting one cluster's nodes between N beamside replicas.

Replica ``i`` of ``N`` (a StatefulSet pod ``name-i``) manages exactly the
nodes whose name hashes to ``i``.  Every replica computes the same answer on
its own, with no coordination: the hash is a stable function of the node name
alone (BLAKE2b, not Python's per-process salted ``hash``).

Why jump consistent hashing (Lamping & Veach, 2014) over the 64-bit hash:

- StatefulSet ordinals are exactly the buckets it numbers, ``0..N-1``;
- when N grows to N+1 only about 1/(N+1) of the nodes move, and all of them
  move to the new replica, so scaling up never shuffles the others (and
  scaling down moves only the removed replica's nodes);
- balance is even in expectation, it needs no table, and costs O(log N).

Rendezvous hashing has the same movement property but costs O(N) hashes per
node and nothing in return here, since replicas are never removed from the
middle of the ordinal range.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_SHARDS",
    "SINGLE",
    "ShardSpec",
    "ShardingError",
    "node_hash",
    "ordinal_from_name",
    "owner",
    "owns",
    "resolve_shard",
    "shard_from_environment",
]

MAX_SHARDS = 1024
# Environment variables the chart sets (POD_NAME through the downward API).
ENV_POD_NAME = "POD_NAME"
ENV_SHARD_INDEX = "BEAMSIDE_SHARD_INDEX"
ENV_SHARD_COUNT = "BEAMSIDE_SHARD_COUNT"

_ORDINAL = re.compile(r"^(?P<base>.+)-(?P<ordinal>\d+)$")
_MASK64 = (1 << 64) - 1
_LCG_MULTIPLIER = 2862933555777941757  # the 64-bit LCG step of jump hashing


class ShardingError(ValueError):
    """The shard index or count is missing, malformed, or out of range."""


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """This replica is shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ShardingError(f"shard count must be 1 to {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardingError(
                f"shard index must be 0 to {self.count - 1} for {self.count} shard(s), "
                f"got {self.index}"
            )

    def __str__(self) -> str:
        return f"shard {self.index}/{self.count}"


SINGLE = ShardSpec(0, 1)


def node_hash(node_name: str) -> int:
    """A stable unsigned 64-bit hash of a node name (same on every replica,
    every Python version and every run)."""
    digest = hashlib.blake2b(node_name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _jump(key: int, buckets: int) -> int:
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _LCG_MULTIPLIER + 1) & _MASK64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def owner(node_name: str, count: int) -> int:
    """The shard (0..count-1) that manages ``node_name``."""
    if not 1 <= count <= MAX_SHARDS:
        raise ShardingError(f"shard count must be 1 to {MAX_SHARDS}, got {count}")
    if count == 1:
        return 0
    return _jump(node_hash(node_name), count)


def owns(spec: ShardSpec, node_name: str) -> bool:
    """Whether the replica ``spec`` manages ``node_name``."""
    return spec.count == 1 or owner(node_name, spec.count) == spec.index


def ordinal_from_name(name: str) -> int | None:
    """The StatefulSet ordinal in a pod name (``beamside-3`` -> 3), else None."""
    match = _ORDINAL.match(name.strip())
    return int(match.group("ordinal")) if match else None


def shard_from_environment(
    count: int, *, pod_name: str | None = None, environ: Mapping[str, str] | None = None
) -> ShardSpec:
    """This replica's shard, its index taken from the StatefulSet pod name.

    The name is ``pod_name`` if given, else ``$POD_NAME``, else the host name
    (a StatefulSet pod's host name is its pod name).
    """
    environ = os.environ if environ is None else environ
    if count == 1:
        return SINGLE
    name = pod_name or environ.get(ENV_POD_NAME) or socket.gethostname()
    ordinal = ordinal_from_name(name)
    if ordinal is None:
        raise ShardingError(
            f"cannot tell this replica's shard index: {name!r} does not end in '-<ordinal>' "
            f"(run as a StatefulSet, set {ENV_POD_NAME}, or give --shard-index)"
        )
    if ordinal >= count:
        raise ShardingError(
            f"pod {name!r} has ordinal {ordinal} but the shard count is {count}: "
            "scale the StatefulSet and sharding.count together"
        )
    return ShardSpec(ordinal, count)


def _env_int(environ: Mapping[str, str], key: str) -> int | None:
    raw = environ.get(key, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ShardingError(f"${key} must be a whole number, got {raw!r}")
    return int(raw)


def resolve_shard(
    index: int | None = None,
    count: int | None = None,
    *,
    pod_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ShardSpec:
    """The shard from, by priority: the arguments (CLI flags, then config, as
    the caller merges them), ``$BEAMSIDE_SHARD_INDEX``/``$BEAMSIDE_SHARD_COUNT``,
    and for the index the pod name.  No count anywhere means one shard."""
    environ = os.environ if environ is None else environ
    if count is None:
        count = _env_int(environ, ENV_SHARD_COUNT)
    if count is None:
        count = 1
    if index is None:
        index = _env_int(environ, ENV_SHARD_INDEX)
    if index is None:
        return shard_from_environment(count, pod_name=pod_name, environ=environ)
    return ShardSpec(index, count)
