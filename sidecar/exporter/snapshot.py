"""What the exporter renders: the last snapshot collected from each node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NodeSnapshot"]


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node's ``beamside_agent:collect/1`` reply and where it came from.

    ``data`` is the reply as decoded (:class:`~sidecar.erldist.term.Atom` keys,
    which are ``str``; binaries as ``bytes``; a section that failed on the
    node is an ``(Atom('error'), reason)`` tuple).  ``taken_at`` is when the
    collect was sent (unix seconds) and ``duration`` how long it took, round
    trip included (seconds).
    """

    node: str
    family: str
    cluster: str
    taken_at: float
    duration: float
    data: Mapping[str, Any]
