"""What one peer, and all peers together, may cost us in memory (issue 14).

One beamside serves hundreds of nodes; a broken or hostile one must never
cost the others.  :class:`DistLimits` is the ``distribution:`` section of the
config: the largest frame a peer may send (refused from its 4-byte header,
before any byte of it is buffered), how far a compressed term may inflate
(by ratio and in bytes), the bytes buffered per connection and, through
:class:`MemoryBudget`, across all connections.

Bounds that follow (one event loop, one decode at a time)::

    buffered, all peers   <= max_buffered_total
    inflated, at a time   <= max_uncompressed
    one frame             <= max_frame  (and a copy of it while it is parsed)

Pure accounting: no I/O, shared by the sans-I/O core and the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .term import DecodeLimits

MiB: Final = 1 << 20

DEFAULT_MAX_FRAME: Final = 8 * MiB
DEFAULT_MAX_INFLATION_RATIO: Final = 100.0
DEFAULT_MAX_UNCOMPRESSED: Final = 64 * MiB
DEFAULT_MAX_BUFFERED_PER_PEER: Final = 16 * MiB
DEFAULT_MAX_BUFFERED_TOTAL: Final = 256 * MiB
DEFAULT_NET_TICKTIME: Final = 60.0
"""The node's own default (``net_kernel``'s ``net_ticktime``)."""

FRAME_HEADER: Final = 4


@dataclass(frozen=True, slots=True)
class DistLimits:
    """The memory budget of distribution connections, and ``net_ticktime``."""

    max_frame: int = DEFAULT_MAX_FRAME
    """Largest frame a peer may send; a collect reply is tens of KB, a big
    ETS page or process state a few MB."""
    max_inflation_ratio: float = DEFAULT_MAX_INFLATION_RATIO
    """A compressed term may declare at most this many times its size on the wire."""
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED
    """And at most this many bytes inflated."""
    max_buffered_per_peer: int = DEFAULT_MAX_BUFFERED_PER_PEER
    """Bytes read from one peer and not yet parsed (at least one whole frame)."""
    max_buffered_total: int = DEFAULT_MAX_BUFFERED_TOTAL
    """The same, summed over every connection of the process."""
    net_ticktime: float = DEFAULT_NET_TICKTIME
    """A peer silent for net_ticktime (+ up to 25 %) is down; we tick every quarter."""

    def __post_init__(self) -> None:
        for name in (
            "max_frame",
            "max_uncompressed",
            "max_buffered_per_peer",
            "max_buffered_total",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_inflation_ratio < 1:
            raise ValueError(
                f"max_inflation_ratio must be at least 1, got {self.max_inflation_ratio!r}"
            )
        if self.net_ticktime <= 0:
            raise ValueError(f"net_ticktime must be positive, got {self.net_ticktime!r}")
        if self.max_buffered_per_peer < self.max_frame + FRAME_HEADER:
            raise ValueError(
                f"max_buffered_per_peer ({self.max_buffered_per_peer}) must hold one whole "
                f"frame: at least max_frame + {FRAME_HEADER} ({self.max_frame + FRAME_HEADER})"
            )
        if self.max_buffered_total < self.max_buffered_per_peer:
            raise ValueError(
                f"max_buffered_total ({self.max_buffered_total}) must be at least "
                f"max_buffered_per_peer ({self.max_buffered_per_peer})"
            )
        if self.max_uncompressed > self.max_buffered_total:
            raise ValueError(
                f"max_uncompressed ({self.max_uncompressed}) must not exceed "
                f"max_buffered_total ({self.max_buffered_total})"
            )

    def decode_limits(self) -> DecodeLimits:
        """The term decoder's caps for what peers send."""
        return DecodeLimits(
            max_uncompressed=self.max_uncompressed,
            max_inflation_ratio=self.max_inflation_ratio,
        )


DEFAULT_DIST_LIMITS: Final = DistLimits()


class MemoryBudget:
    """Bytes buffered by all connections of one process, against a limit.

    Each holder accounts its own bytes with :meth:`resize`; a holder that
    would push the total over the limit is refused (and must close)."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the memory budget must be positive, got {limit!r}")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refusals = 0

    def __repr__(self) -> str:
        return f"<MemoryBudget {self.used}/{self.limit}>"

    @property
    def available(self) -> int:
        return self.limit - self.used

    def resize(self, held: int, wanted: int) -> bool:
        """Move a holder from ``held`` to ``wanted`` bytes: False (and nothing
        changes) when growing would exceed the limit.  Shrinking always works."""
        delta = wanted - held
        if delta > 0 and self.used + delta > self.limit:
            self.refusals += 1
            return False
        self.used += delta
        self.peak = max(self.peak, self.used)
        return True


__all__ = ["DEFAULT_DIST_LIMITS", "DistLimits", "MemoryBudget"]
