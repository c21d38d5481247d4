"""The exporter's line writer in its builds: what a node's render and a scrape cost.

Run from the repository root::

    python bench/bench_render.py [--nodes 300] [--runs 9]

On the recorded collect replies of real OTP 25, OTP 28 and Elixir nodes
(``tests/vectors/replies``), in one process, alternately (issue 15):

* **render**: ``render_text`` of one node (every sample of its snapshot into
  its kept text), the ``installed`` build -- ``vm_metrics`` and ``exposition``
  compiled with mypyc where ``pip install`` could -- against the ``pure``
  sources loaded under other names (``sidecar.compiled.load_pure``);
* **body**: ``write_texts`` of ``--nodes`` nodes (the recorded snapshots
  under distinct node names) into the scrape body, the installed build (with
  the C scatter of ``sidecar/exporter/_scatter.c`` where it was built)
  against the pure sources with the pure scatter;
* **gzip** of that body at level 1: ISA-L (``isal``, what ``/metrics`` uses)
  against zlib (``gzip``, the reference and the fallback).

Each figure is the median (and best) of ``--runs`` timed with
``time.perf_counter``, the garbage collector on.  Both builds must write the
same bytes (checked); a compiled module made from another source than the
tree's is refused.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from isal import igzip

from sidecar import compiled
from sidecar.exporter import exposition
from sidecar.exporter.exposition import OPENMETRICS
from tests.support.golden import RUNTIMES, golden_snapshot

RENDER_GROUP = "sidecar.exporter.render"


def timed(runs: int, call: Callable[[], Any], inner: int = 1) -> tuple[float, float]:
    """(median, best) seconds of one ``call``, over ``runs`` rounds of ``inner`` calls."""
    call()  # warm
    walls = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        walls.append((time.perf_counter() - t0) / inner)
    return statistics.median(walls), min(walls)


def fmt(seconds: tuple[float, float], unit: str) -> str:
    scale = 1e6 if unit == "µs" else 1e3
    return f"{seconds[0] * scale:8.1f} ({seconds[1] * scale:.1f}) {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=300, help="nodes in the scrape body")
    parser.add_argument("--runs", type=int, default=9, help="timed rounds per figure")
    args = parser.parse_args()

    installed = compiled.installed()
    stale = [reason for m in installed if (reason := compiled.stale_reason(m))]
    if stale:
        sys.exit("bench_render: " + "; ".join(stale))
    builds = {
        "installed": exposition,
        "pure": compiled.load_pure(compiled.COMPILED[RENDER_GROUP])[1],
    }
    print(
        f"bench_render: python {platform.python_version()} on {platform.machine()}; "
        f"installed: "
        + ", ".join(
            f"{m.__name__.rpartition('.')[2]} {'compiled' if compiled.is_compiled(m) else 'pure'}"
            for m in installed
        )
    )
    print(f"median (best) of {args.runs} rounds\n")

    print("render_text, one node (every sample of its snapshot into its text):")
    snaps = {name: golden_snapshot(name) for name in RUNTIMES}
    for name, snap in snaps.items():
        figures = {
            build: timed(args.runs, lambda m=module, s=snap: m.render_text(s), inner=50)
            for build, module in builds.items()
        }
        same = {builds[b].render_text(snap).expand() for b in builds}
        print(
            f"  {name:7s} installed {fmt(figures['installed'], 'µs')}   "
            f"pure {fmt(figures['pure'], 'µs')}   "
            f"pure/installed {figures['pure'][0] / figures['installed'][0]:.2f}x   "
            f"same bytes: {'yes' if len(same) == 1 else 'NO'}"
        )

    nodes = [
        replace(snaps[RUNTIMES[i % len(RUNTIMES)]], node=f"bench_{i:05d}@127.0.0.1")
        for i in range(args.nodes)
    ]
    print(f"\nwrite_texts, the scrape body of {args.nodes} nodes (OpenMetrics):")
    bodies: dict[str, bytes] = {}
    figures = {}
    for build, module in builds.items():
        texts = [module.render_text(s, OPENMETRICS) for s in nodes]
        if build == "pure":  # the pure scatter too (the installed one is the C one)
            module._scatter = module._scatter_py
        figures[build] = timed(args.runs, lambda m=module, t=texts: m.write_texts(t, OPENMETRICS))
        bodies[build] = bytes(module.write_texts(texts, OPENMETRICS))
    body = bodies["installed"]
    print(
        f"  installed {fmt(figures['installed'], 'ms')} (scatter: "
        f"{'C' if exposition._scatter is not exposition._scatter_py else 'pure'})   "
        f"pure {fmt(figures['pure'], 'ms')}   "
        f"pure/installed {figures['pure'][0] / figures['installed'][0]:.2f}x   "
        f"{len(body):,} bytes, same bytes: {'yes' if len(set(bodies.values())) == 1 else 'NO'}"
    )

    print(f"\ngzip level 1 of that body ({len(body):,} bytes):")
    zlib_time = timed(args.runs, lambda: gzip.compress(body, 1))
    isal_time = timed(args.runs, lambda: igzip.compress(body, 1))
    zlib_size, isal_size = len(gzip.compress(body, 1)), len(igzip.compress(body, 1))
    assert gzip.decompress(igzip.compress(body, 1)) == body
    print(
        f"  ISA-L {fmt(isal_time, 'ms')} -> {isal_size:,} bytes   "
        f"zlib {fmt(zlib_time, 'ms')} -> {zlib_size:,} bytes   "
        f"zlib/ISA-L {zlib_time[0] / isal_time[0]:.1f}x"
    )


if __name__ == "__main__":
    main()
