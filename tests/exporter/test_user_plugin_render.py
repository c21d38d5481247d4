"""The generic rendering of a user plugin's section (what the README's
"Your own plugin" promises), on a section as the agent sends it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sidecar.erldist.term import Atom
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import decode_snapshot
from tests.support.prometheus import promtool_check_metrics

A = Atom


def test_numbers_names_and_labels() -> None:
    section = {
        A("up"): True,
        A("ratio"): 0.25,
        A("note"): b"text is left out",
        A("items"): [1, 2, 3],
        A("pools"): {b"db": {A("size"): 10, A("busy"): 3}, b'we"ird': {A("size"): 1}},
        A("queues"): {b"q1": 5, b"q2": 7},
        A("node"): {b"a@h": 1},  # a label named like a node label: renamed
        A("deep"): {A("a"): {A("b"): {A("c"): {A("d"): 1}}}},
        A("weird-Name!"): 2,
    }
    snap = decode_snapshot(
        {A("plugins"): {A("mine"): section}},
        node="n@h", family="f", cluster="c", taken_at=1.7e9, duration=0.01,
    )  # fmt: skip
    assert snap.errors == {}
    body = ExpositionCache().exposition([snap], TEXT).decode()
    base = {"node": "n@h", "family": "f", "cluster": "c"}
    samples = sorted(
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in base)), s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name.startswith("erlang_plugin_mine_")
    )
    assert samples == [
        ("erlang_plugin_mine_node", (("plugin_node", "a@h"),), 1.0),
        ("erlang_plugin_mine_pools_busy", (("pools", "db"),), 3.0),
        ("erlang_plugin_mine_pools_size", (("pools", "db"),), 10.0),
        ("erlang_plugin_mine_pools_size", (("pools", 'we"ird'),), 1.0),
        ("erlang_plugin_mine_queues", (("queues", "q1"),), 5.0),
        ("erlang_plugin_mine_queues", (("queues", "q2"),), 7.0),
        ("erlang_plugin_mine_ratio", (), 0.25),
        ("erlang_plugin_mine_up", (), 1.0),
        ("erlang_plugin_mine_weird_Name", (), 2.0),
    ], samples
    lint = promtool_check_metrics(body.encode())
    assert lint.returncode == 0, lint.stdout + lint.stderr
