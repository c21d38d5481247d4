"""The line writer's two builds write the same bytes.

``pip install`` compiles ``vm_metrics`` and ``exposition`` with mypyc where it
can (``sidecar.compiled``); tests/exporter/test_exposition_cache.py holds the
installed build to prometheus_client's bytes, and this module holds the pure
sources (the fallback) to the installed build on the same snapshots: the
recorded replies of three runtimes with their error and misshapen variants,
odd label values and numbers, the plugin series budget.
"""

from __future__ import annotations

import os
from array import array
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import compiled
from sidecar.exporter import exposition, vm_metrics
from sidecar.exporter._scatter import scatter as compiled_scatter
from sidecar.exporter.exposition import OPENMETRICS, Format, generate
from tests.exporter.test_exposition_cache import (
    FORMAT_IDS,
    FORMATS,
    golden_all,
    odd_snapshot,
)

INSTALLED = (vm_metrics, exposition)
PURE = tuple(compiled.load_pure(compiled.COMPILED["sidecar.exporter.render"]))


@pytest.mark.parametrize("budget", [None, 40], ids=["no-budget", "budget-40"])
@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_the_pure_sources_write_what_the_installed_build_writes(
    fmt: Format, budget: int | None
) -> None:
    snaps = [*golden_all(), odd_snapshot()]
    bodies = []
    for _, module in (INSTALLED, PURE):
        texts = [module.render_text(snap, fmt, budget) for snap in snaps]
        bodies.append((texts, bytes(module.write_texts(texts, fmt, b"tail\n"))))
    (installed_texts, installed_body), (pure_texts, pure_body) = bodies
    assert pure_body == installed_body
    assert installed_body.endswith(b"tail\n") and installed_body.count(b"# TYPE ") > 120
    for a, b in zip(installed_texts, pure_texts, strict=True):
        assert (a.expand(), list(a.starts), a.order, a.labels) == (
            b.expand(),
            list(b.starts),
            b.order,
            b.labels,
        )
        assert dict(a.dropped) == dict(b.dropped)
    if budget is not None:
        assert any(text.dropped for text in installed_texts)


@pytest.mark.parametrize("fmt", FORMATS[:2], ids=FORMAT_IDS[:2])
def test_the_reference_families_are_the_same_in_both_builds(fmt: Format) -> None:
    snaps = [*golden_all(), odd_snapshot()]
    outputs = []
    for metrics, _ in (INSTALLED, PURE):
        dropped: dict[str, dict[str, int]] = {}
        families = metrics.vm_metric_families(snaps, series_budget=40, dropped=dropped)
        outputs.append((generate(fmt, exposition._Fixed(families)), dropped))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]  # the budget dropped something, counted alike


def test_each_build_is_the_one_it_says() -> None:
    pure_metrics, pure_exposition = PURE
    modules: tuple[ModuleType, ...] = (pure_metrics, pure_exposition)
    assert all(not compiled.is_compiled(m) for m in modules)
    assert pure_exposition.render_text is not exposition.render_text
    assert pure_exposition.NodeWriter is pure_metrics.NodeWriter


# --------------------------------------------------------------------------- scatter
# write_texts puts the nodes' texts into the body with sidecar/exporter/_scatter.c
# where it was built, else exposition._scatter_py: the same bytes, the same refusals.

SCATTERS = {"pure": exposition._scatter_py, "compiled": compiled_scatter}
#: examples per property (BEAMSIDE_FUZZ_EXAMPLES for a longer run)
EXAMPLES = int(os.environ.get("BEAMSIDE_FUZZ_EXAMPLES", "300"))


def test_write_texts_with_the_pure_scatter_writes_the_same_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snaps = [*golden_all(), odd_snapshot()]
    _, pure_exposition = PURE
    texts = [exposition.render_text(snap, OPENMETRICS) for snap in snaps]
    expected = bytes(exposition.write_texts(texts, OPENMETRICS))
    monkeypatch.setattr(pure_exposition, "_scatter", exposition._scatter_py)
    assert bytes(pure_exposition.write_texts(texts, OPENMETRICS)) == expected
    assert exposition._scatter is compiled_scatter  # the installed build uses the C one


LABELS = (b"cl", b'fam"', b"node@host", b'cluster="cl",family="fam",node="n"')


@st.composite
def node_texts(draw: st.DrawFn) -> tuple[bytes, tuple[bytes, ...] | None, list[int]]:
    """A text with stand-ins, its labels and its expanded block offsets."""
    labels = draw(st.sampled_from([LABELS, (b"", b"", b"", b""), None]))
    blocks = draw(st.lists(st.lists(st.binary(max_size=12), max_size=6), max_size=6))
    body, starts, at = b"", [0], 0
    for block in blocks:
        for piece in block:
            # plain bytes (without stand-ins when expanded) and a stand-in
            piece = piece.translate(None, b"\x01\x02\x03\x04") if labels else piece
            stand_in = draw(st.sampled_from([b"", b"\x01", b"\x02", b"\x03", b"\x04"]))
            body += piece + stand_in
            at += len(piece)
            if stand_in:
                at += len(labels[stand_in[0] - 1]) if labels else 1
        starts.append(at)
    return body, labels, starts


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(node_texts(), min_size=1, max_size=3), data=st.data())
def test_both_scatters_write_the_same_bytes(
    cases: list[tuple[bytes, tuple[bytes, ...] | None, list[int]]], data: st.DataObject
) -> None:
    """Nodes of the same families in their own orders, each family's blocks
    one after the other in the body, with gaps (the headers) between."""
    families = len(cases[0][2]) - 1
    cases = [case for case in cases if len(case[2]) - 1 == families]
    plans = [data.draw(st.permutations(range(families))) for _ in cases]
    sizes = [0] * families
    for (_, _, starts), plan in zip(cases, plans, strict=True):
        for i, family in enumerate(plan):
            sizes[family] += starts[i + 1] - starts[i]
    gaps = data.draw(st.lists(st.integers(0, 3), min_size=families, max_size=families))
    nodes = [
        (body, labels, array("I", starts), array("I", plan))
        for (body, labels, starts), plan in zip(cases, plans, strict=True)
    ]
    results = []
    for scatter in SCATTERS.values():
        cursors, at = array("Q"), 0
        for family in range(families):
            cursors.append(at + gaps[family])
            at += gaps[family] + sizes[family] + 1
        out = bytearray(b"." * at)
        scatter(out, cursors, nodes)  # type: ignore[arg-type]
        results.append((bytes(out), list(cursors)))
    assert results[0] == results[1]
    expanded = b"".join(
        exposition._expand(body, labels)  # type: ignore[arg-type]
        for body, labels, _ in cases
    )
    assert sorted(results[0][0].replace(b".", b"")) == sorted(expanded.replace(b".", b""))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    out_size=st.integers(0, 64),
    cursors=st.lists(st.integers(0, 2**64 - 1), max_size=4),
    body=st.binary(max_size=40),
    labels=st.sampled_from([LABELS, None]),
    starts=st.lists(st.integers(0, 2**32 - 1), max_size=5),
    plan=st.lists(st.integers(0, 2**32 - 1), max_size=4),
)
def test_the_compiled_scatter_refuses_arguments_that_disagree(
    out_size: int,
    cursors: list[int],
    body: bytes,
    labels: tuple[bytes, ...] | None,
    starts: list[int],
    plan: list[int],
) -> None:
    """Any offsets: ValueError or a write inside ``out``, never a crash; and
    where the pure one writes, the compiled one writes the same."""
    outcomes = []
    for scatter in SCATTERS.values():
        out = bytearray(out_size)
        cursor_array = array("Q", cursors)
        try:
            scatter(out, cursor_array, [(body, labels, array("I", starts), array("I", plan))])
        except ValueError:
            outcomes.append(None)
        else:
            assert len(out) == out_size
            outcomes.append((bytes(out), list(cursor_array)))
    pure, compiled_outcome = outcomes
    if pure is not None and compiled_outcome is not None:
        assert pure == compiled_outcome


NODE = (b"", None, array("I", [0]), array("I"))


@pytest.mark.parametrize(
    "args",
    [
        ("not a bytearray", array("Q"), [NODE]),
        (bytearray(4), array("I", [0]), [NODE]),
        (bytearray(4), array("Q"), [(b"", (b"a", b"b"), array("I", [0]), array("I"))]),
        (bytearray(4), array("Q"), [(b"", None, array("Q", [0]), array("I"))]),
        (bytearray(4), array("Q", [0]), [(b"\x01", LABELS, array("I", [0, 1]), array("I", [0]))]),
        (bytearray(4), array("Q"), [NODE, (b"", None)]),
        (bytearray(4), array("Q"), [NODE, "not a tuple"]),
        (bytearray(4), array("Q"), 7),
    ],
)
def test_the_compiled_scatter_says_what_is_wrong(args: tuple[Any, ...]) -> None:
    with pytest.raises((ValueError, TypeError)):
        compiled_scatter(*args)


def test_the_compiled_scatter_releases_every_buffer_it_took() -> None:
    """After a refusal half-way through the nodes, the buffers it took are
    released: the body can be resized again."""
    out = bytearray(8)
    bad = (b"x", None, array("I", [0, 5]), array("I", [0]))
    with pytest.raises(ValueError):
        compiled_scatter(out, array("Q", [0]), [NODE, bad, "not a tuple"])
    with pytest.raises(ValueError):
        compiled_scatter(out, array("Q", [0]), [NODE, "not a tuple", bad])
    out.extend(b"more")  # BufferError if a view of it were still held
    for node in (NODE, bad):
        node[2].append(1)  # the same for the nodes' arrays
