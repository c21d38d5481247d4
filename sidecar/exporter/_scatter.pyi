# The C build of sidecar.exporter.exposition._scatter_py (sidecar/exporter/_scatter.c).
from array import array

_SOURCE_SHA256: str

def scatter(
    out: bytearray,
    cursors: array[int],
    body: bytes,
    labels: tuple[bytes, bytes, bytes, bytes] | None,
    starts: array[int],
    plan: array[int],
    /,
) -> None: ...
