#!/usr/bin/env python3
"""Generate beamside's Grafana dashboards (grafana_dashboards/*.json).

One generator keeps every dashboard consistent: the same datasource and
cluster/family/node variables, stable uids, units, and thresholds taken from
the built-in alarm defaults of ``sidecar/alarms/catalogue.py`` (so a panel
turns orange and red where beamside raises its minor and major alarms).

    python scripts/build_dashboards.py          # (re)write the JSON files
    python scripts/build_dashboards.py --check  # exit 1 if a file is stale

Queries use the metric names beamside exports (prometheus.erl's where that
project has the metric) and the Loki stream labels of SPEC §5.  Every
Prometheus query is run against a real Prometheus by tests/test_dashboards.py.

The helpers live in scripts/dashboards/ (queries.py, panels.py, board.py), one
module per dashboard beside them; this file lists the dashboards and writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from anywhere, or loaded by path (tests/test_dashboards.py):
# the dashboards package sits beside this file and imports sidecar/ from ROOT.
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from dashboards.alarms import alarms  # noqa: E402
from dashboards.applications import applications  # noqa: E402
from dashboards.distribution import distribution  # noqa: E402
from dashboards.ets_mnesia import ets_mnesia  # noqa: E402
from dashboards.logs import logs_dashboard  # noqa: E402
from dashboards.memory import memory  # noqa: E402
from dashboards.node import node_detail  # noqa: E402
from dashboards.overview import overview  # noqa: E402
from dashboards.processes import processes  # noqa: E402

OUT_DIR = ROOT / "grafana_dashboards"

BUILDERS = {
    "beamside-overview.json": overview,
    "beamside-node.json": node_detail,
    "beamside-memory.json": memory,
    "beamside-processes.json": processes,
    "beamside-distribution.json": distribution,
    "beamside-ets-mnesia.json": ets_mnesia,
    "beamside-alarms.json": alarms,
    "beamside-logs.json": logs_dashboard,
    "beamside-applications.json": applications,
}


def render(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(make()) for name, make in BUILDERS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    wanted = build()
    if args.check:
        stale = [
            name
            for name, body in wanted.items()
            if not (args.out / name).exists() or (args.out / name).read_text() != body
        ]
        extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in wanted)
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        for name in extra:
            print(f"not generated (remove or add to BUILDERS): {args.out / name}", file=sys.stderr)
        if stale or extra:
            print("run: python scripts/build_dashboards.py", file=sys.stderr)
            return 1
        print(f"{len(wanted)} dashboards up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in wanted.items():
        (args.out / name).write_text(body)
    print(f"wrote {len(wanted)} dashboards to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
