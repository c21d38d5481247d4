"""The line writer's two builds write the same bytes.

``pip install`` compiles ``vm_metrics`` and ``exposition`` with mypyc where it
can (``sidecar.compiled``); tests/exporter/test_exposition_cache.py holds the
installed build to prometheus_client's bytes, and this module holds the pure
sources (the fallback) to the installed build on the same snapshots: the
recorded replies of three runtimes with their error and misshapen variants,
odd label values and numbers, the plugin series budget.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from sidecar import compiled
from sidecar.exporter import exposition, vm_metrics
from sidecar.exporter.exposition import Format, generate
from tests.exporter.test_exposition_cache import (
    FORMAT_IDS,
    FORMATS,
    golden_all,
    odd_snapshot,
)

INSTALLED = (vm_metrics, exposition)
PURE = tuple(compiled.load_pure(compiled.COMPILED["sidecar.exporter.render"]))


class _Families:
    def __init__(self, families: list[object]) -> None:
        self._families = families

    def collect(self) -> list[object]:
        return self._families


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
        outputs.append((generate(fmt, _Families(families)), dropped))
    assert outputs[0] == outputs[1]
    assert outputs[0][1]  # the budget dropped something, counted alike


def test_each_build_is_the_one_it_says() -> None:
    pure_metrics, pure_exposition = PURE
    modules: tuple[ModuleType, ...] = (pure_metrics, pure_exposition)
    assert all(not compiled.is_compiled(m) for m in modules)
    assert pure_exposition.render_text is not exposition.render_text
    assert pure_exposition.NodeWriter is pure_metrics.NodeWriter
