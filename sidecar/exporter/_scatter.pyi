# The C build of sidecar.exporter.exposition._scatter_py (sidecar/exporter/_scatter.c).
from array import array
from collections.abc import Sequence

_SOURCE_SHA256: str

def scatter(
    out: bytearray,
    cursors: array[int],
    nodes: Sequence[
        tuple[bytes, tuple[bytes, bytes, bytes, bytes] | None, array[int], array[int]]
    ],
    /,
) -> None: ...
