"""Copy the alert rules and Grafana dashboards into the Helm chart.

Helm reads only files inside the chart directory, so the chart carries copies
of ``alert_rules/beamside.rules.yml`` (the PrometheusRule) and of
``grafana_dashboards/*.json`` (the dashboard ConfigMaps) under
``helm/beamside/files/``.  Run this after changing either source;
``--check`` changes nothing and exits 1 listing every copy that differs,
is missing, or has no source any more (for CI).

    python scripts/sync_helm_files.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART_FILES = ROOT / "helm" / "beamside" / "files"
RULES_SOURCE = ROOT / "alert_rules" / "beamside.rules.yml"
DASHBOARDS_SOURCE = ROOT / "grafana_dashboards"


def planned_copies(root: Path = ROOT) -> dict[Path, Path]:
    """Chart file -> its source."""
    files = root / "helm" / "beamside" / "files"
    plan = {files / "beamside.rules.yml": root / "alert_rules" / "beamside.rules.yml"}
    for source in sorted((root / "grafana_dashboards").glob("*.json")):
        plan[files / "dashboards" / source.name] = source
    return plan


def differences(root: Path = ROOT) -> list[str]:
    """What --check reports: one line per copy that is out of date."""
    plan = planned_copies(root)
    problems: list[str] = []
    for copy, source in plan.items():
        if not copy.exists():
            problems.append(f"missing: {copy.relative_to(root)} (from {source.relative_to(root)})")
        elif copy.read_bytes() != source.read_bytes():
            problems.append(f"differs: {copy.relative_to(root)} from {source.relative_to(root)}")
    dashboards = root / "helm" / "beamside" / "files" / "dashboards"
    for stale in sorted(dashboards.glob("*.json")):
        if stale not in plan:
            problems.append(f"no source any more: {stale.relative_to(root)}")
    return problems


def sync(root: Path = ROOT) -> list[str]:
    """Bring the copies up to date; returns what changed."""
    changed = differences(root)
    plan = planned_copies(root)
    for copy, source in plan.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            copy.write_bytes(source.read_bytes())
    for stale in (root / "helm" / "beamside" / "files" / "dashboards").glob("*.json"):
        if stale not in plan:
            stale.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report differences, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python scripts/sync_helm_files.py", file=sys.stderr)
            return 1
        print(f"helm chart copies up to date ({len(planned_copies())} files)")
        return 0
    for line in sync():
        print(f"updated ({line})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
