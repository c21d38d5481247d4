"""Snapshots from a collect reply written by hand, decoded as the node manager does."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.model import NodeSnapshot, decode_snapshot


def node_snapshot(
    node: str,
    family: str,
    cluster: str,
    taken_at: float,
    duration: float,
    reply: Mapping[str, object],
) -> NodeSnapshot:
    """``reply`` (a ``collect/1`` map: str keys, Erlang terms) as a typed snapshot."""
    return decode_snapshot(
        reply, node=node, family=family, cluster=cluster, taken_at=taken_at, duration=duration
    )
