"""alert_rules/: ``promtool check rules``, ``promtool test rules``, and the
house rules every alert follows (severity, annotations, a firing and a quiet
test case, metric names beamside really exports)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import binary

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "alert_rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
SEVERITIES = {"critical", "major", "minor", "warning"}
ANNOTATIONS = {"summary", "description", "runbook"}
# Series no beamside code defines (yet): Prometheus's own, and the Loki
# sink's failure counter, which SPEC §5's issue adds.
NOT_OURS = {"up", "beamside_loki_push_failures_total"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    found.append({**rule, "_file": path.name})
    return found


def rule_tests() -> list[dict[str, Any]]:
    """Every alert_rule_test case of every test file."""
    cases = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test") or [])
    return cases


def test_there_are_rules_and_tests() -> None:
    assert RULE_FILES, "no rule files in alert_rules/"
    assert TEST_FILES, "no promtool tests in alert_rules/tests/"
    assert len(alerts()) >= 10


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_test_rules() -> None:
    out = promtool("test", "rules", *(str(p) for p in TEST_FILES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout + out.stderr


def test_every_rule_file_is_tested() -> None:
    tested = set()
    for path in TEST_FILES:
        for name in yaml.safe_load(path.read_text())["rule_files"]:
            tested.add((path.parent / name).resolve())
    assert {p.resolve() for p in RULE_FILES} <= tested


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_has_severity_annotations_and_both_test_cases(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule.get("labels", {}).get("severity") in SEVERITIES, name
    notes = rule.get("annotations", {})
    assert notes.keys() >= ANNOTATIONS, f"{name}: missing {ANNOTATIONS - notes.keys()}"
    assert all(str(notes[k]).strip() for k in ANNOTATIONS), name
    cases = [c for c in rule_tests() if c.get("alertname") == name]
    assert any(c.get("exp_alerts") for c in cases), f"{name}: no test case where it fires"
    assert any(not c.get("exp_alerts") for c in cases), f"{name}: no case where it stays quiet"


def test_alert_names_are_unique() -> None:
    names = [r["alert"] for r in alerts()]
    assert len(names) == len(set(names))


def test_rules_use_metrics_beamside_exports() -> None:
    """A renamed metric must not leave a rule silently matching nothing."""
    source = "\n".join(p.read_text() for p in (ROOT / "sidecar").rglob("*.py"))
    missing = set()
    for rule in alerts():
        for metric in re.findall(r"\b(?:erlang|beamside)_[a-z0-9_]+\b|\bup\b", rule["expr"]):
            if metric in NOT_OURS:
                continue
            base = metric.removesuffix("_total")  # counters are declared without it
            if f'"{base}"' not in source and f'"{metric}"' not in source:
                missing.add(metric)
    assert not missing, f"rules use series nothing in sidecar/ defines: {missing}"
