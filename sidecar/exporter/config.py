"""``metrics:``: what beamside asks the nodes for and how much it exports.

Plain values only: the config reader (:mod:`sidecar.config`) builds them, the
node manager sends the distribution options with every collect, and the
exporter applies the series budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_DIST_PEERS", "MAX_SERIES_BUDGET", "MetricsConfig"]

#: the agent's own cap on peers it details (its max_peers is clamped to 100000;
#: beyond 1000 peers per-peer series are no longer useful)
MAX_DIST_PEERS: Final = 1000
MAX_SERIES_BUDGET: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``metrics:``.

    ``dist_per_peer``: distribution metrics per peer (prometheus.erl's
    families with a ``peer`` label, at most ``dist_max_peers`` peers per
    node) instead of the default aggregate per node, whose series do not grow
    with the mesh.  ``series_budget``: at most this many plugin series per
    node."""

    dist_per_peer: bool = False
    dist_max_peers: int = 100
    series_budget: int = 1000
