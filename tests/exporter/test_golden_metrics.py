"""/metrics rendered from the golden replies equals the committed exposition.

The ``.prom`` files in ``tests/vectors/replies`` were rendered by the exporter
before the typed node model; the model must render the same bytes from the
same replies: the recorded ones, their ``errors`` variants (every other
section ``{error, _}``) and their ``shapes`` variants (every other section
misshapen), one node per registry and all nine nodes in one.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from itertools import islice

import pytest

from sidecar.exporter.exposition import TEXT, ExpositionCache
from tests.support.golden import KINDS, RUNTIMES, exposition, golden_snapshot, prom_path

MAX_DIFF_LINES = 40

VARIANTS = [(name, kind) for name in RUNTIMES for kind in KINDS]


def _assert_same(rendered: bytes, expected: bytes, what: str) -> None:
    if rendered == expected:
        return
    diff = difflib.unified_diff(
        expected.decode().splitlines(),
        rendered.decode().splitlines(),
        fromfile=f"{what} (committed)",
        tofile=f"{what} (rendered)",
        lineterm="",
        n=1,
    )
    shown = "\n".join(islice(diff, MAX_DIFF_LINES))
    pytest.fail(f"/metrics differs from {what}:\n{shown}", pytrace=False)


@pytest.mark.parametrize(
    ("name", "kind"), VARIANTS, ids=[f"{n}-{k}" if k else n for n, k in VARIANTS]
)
def test_one_node_renders_the_committed_exposition(name: str, kind: str) -> None:
    path = prom_path(name, kind)
    rendered = exposition([golden_snapshot(name, kind)])
    _assert_same(rendered, path.read_bytes(), path.name)


def test_all_nodes_in_one_registry_render_the_committed_exposition() -> None:
    path = prom_path("all")
    rendered = exposition(golden_snapshot(name, kind) for name, kind in VARIANTS)
    _assert_same(rendered, path.read_bytes(), path.name)


def test_the_variants_are_not_trivially_equal() -> None:
    """The comparison can fail: each variant renders differently from the reply."""
    for name in RUNTIMES:
        plain = exposition([golden_snapshot(name)])
        assert b"beamside_agent_section_error" not in plain
        for kind in ("errors", "shapes"):
            other = exposition([golden_snapshot(name, kind)])
            assert other != plain.replace(name.encode(), f"{name}-{kind}".encode())
            assert b"beamside_agent_section_error" in other


@pytest.mark.parametrize(
    ("name", "kind"), VARIANTS, ids=[f"{n}-{k}" if k else n for n, k in VARIANTS]
)
def test_packed_sections_render_the_committed_exposition(name: str, kind: str) -> None:
    """Agent version 12 sends the exporter sections packed in one binary: the
    snapshot keeps the bytes instead of the maps, and both renders (the
    prometheus_client reference and the cached text /metrics serves) give
    the same bytes as from the maps."""
    snap = golden_snapshot(name, kind, pack=True)
    assert snap.packed and not snap.trees
    path = prom_path(name, kind)
    _assert_same(exposition([snap]), path.read_bytes(), path.name)
    _assert_same(ExpositionCache(None).exposition([snap], TEXT), path.read_bytes(), path.name)


def test_a_packed_binary_that_does_not_decode_is_a_section_error() -> None:
    """A node sending garbage as ``packed`` loses those sections, with a
    ``beamside_agent_section_error{section="packed"}`` sample; the typed
    sections still render, and so does the cached text."""
    snap = golden_snapshot("otp25", pack=True)
    assert snap.packed is not None
    bad = replace(snap, packed=snap.packed[:-40])
    body = exposition([bad]).decode()
    error = 'beamside_agent_section_error{cluster="c",family="golden",node="otp25@127.0.0.1",'
    assert error + 'section="packed"} 1.0' in body
    assert "erlang_vm_statistics_reductions_total" not in body  # a packed section
    assert "erlang_vm_processes{" in body  # a typed one
    assert ExpositionCache(None).exposition([bad], TEXT).decode() == body
    trees, errors = bad.exporter_trees()
    assert trees == {} and set(errors) == {"packed"} and errors["packed"].malformed
