"""LogEntry: low-cardinality labels, bounded JSON lines."""

from __future__ import annotations

import json

import pytest

from sidecar.loki.model import (
    MAX_LABEL_VALUE,
    TRUNCATED_FIELD,
    LogEntry,
    details_line,
    make_entry,
)


def test_labels_are_the_six_low_cardinality_ones() -> None:
    e = make_entry("alarm", "WARN", "a@h", "fam", "c1", 5, {"x": 1})
    assert e.label_dict == {
        "job": "beamside",
        "cluster": "c1",
        "family": "fam",
        "node": "a@h",
        "kind": "alarm",
        "level": "warning",
    }
    assert [n for n, _ in e.labels] == sorted(n for n, _ in e.labels)
    assert e.line == '{"x":1}'


def test_label_values_sanitized() -> None:
    e = make_entry("log", "bogus", "a\nb\x00@h" + "x" * 1000, "", "c1", 0, {})
    d = e.label_dict
    assert d["level"] == "unknown"
    assert "family" not in d  # empty = absent
    assert d["node"].startswith("a_b_@h")
    assert len(d["node"]) == MAX_LABEL_VALUE


def test_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        make_entry("metrics", "info", "n", "f", "c", 0, {})


def test_entry_validation() -> None:
    with pytest.raises(TypeError):
        LogEntry((("a", "b"),), 1.5, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LogEntry((), 1, "x")
    with pytest.raises(ValueError):
        LogEntry((("b", "1"), ("a", "2")), 1, "x")


def test_details_made_json_safe() -> None:
    line = details_line({"b": b"\xff\x00ok", "t": (1, 2), "f": float("nan"), 3: None, "o": object})
    doc = json.loads(line)
    assert doc["t"] == [1, 2] and doc["f"] == "nan" and doc["3"] is None
    assert "ok" in doc["b"]


@pytest.mark.parametrize(
    "details",
    [
        {"msg": "x" * 200_000},
        {"msg": "é" * 100_000},
        {f"k{i}": "v" * 50 for i in range(5000)},
        {"list": list(range(50_000))},
        {"deep": {"a": {"b": ["\x01" * 70_000]}}},
    ],
)
def test_long_lines_truncated_to_valid_json_with_marker(details: dict[str, object]) -> None:
    limit = 64 * 1024
    line = details_line(details, limit)
    assert len(line.encode()) <= limit
    doc = json.loads(line)
    assert doc[TRUNCATED_FIELD]["original_bytes"] > limit


def test_short_lines_untouched() -> None:
    assert details_line({"a": "b"}) == '{"a":"b"}'
