"""The compiled modules (``sidecar.compiled``): in use wherever ``pip install``
can build them, and built from the sources in the tree.

Each module's own tests run its cases on both builds (the term codec in
tests/erldist/test_term.py, the line writer in tests/exporter/test_render_builds.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

from sidecar import compiled

MODULES = [name for group in compiled.COMPILED.values() for name in group]
MODULES += list(compiled.C_EXTENSIONS)


def can_compile() -> bool:
    """mypyc, a C compiler and Python's headers are here: `pip install -e .`
    builds the compiled modules (a Debian python3 without python3-dev has no
    headers: the build falls back to pure Python, as it must)."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    return (
        importlib.util.find_spec("mypyc") is not None
        and shutil.which(compiler) is not None
        and headers
    )


def extension_files(name: str) -> list[str]:
    package, _, leaf = name.rpartition(".")
    directory = Path(str(importlib.import_module(package).__file__)).parent
    return [p.name for p in directory.glob(f"{leaf}.*.so")]


@pytest.mark.parametrize("name", MODULES)
def test_each_module_is_compiled_where_it_can_be_and_fresh(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError:
        # a C extension that was not built: its pure-Python function serves
        assert name in compiled.C_EXTENSIONS and not extension_files(name)
        assert os.environ.get("BEAMSIDE_PURE_PYTHON") == "1" or not can_compile()
        return
    # a compiled module can only be in use when the files it is made of exist
    assert compiled.is_compiled(module) == bool(extension_files(name))
    if os.environ.get("BEAMSIDE_PURE_PYTHON") == "1":
        assert not compiled.is_compiled(module), "BEAMSIDE_PURE_PYTHON=1 builds none"
        return
    if can_compile():
        assert compiled.is_compiled(module), (
            f"mypyc and a C compiler are here but {name} is pure Python: run "
            "`pip install -e '.[dev]'` again (or look for 'beamside setup.py' in its output)"
        )
    # built from the source in the tree, not an older one
    assert compiled.stale_reason(module) is None, compiled.stale_reason(module)
    if name in compiled.C_EXTENSIONS:  # its pure-Python function is there, the fallback
        _, fallback_module, function = compiled.C_EXTENSIONS[name]
        assert callable(getattr(importlib.import_module(fallback_module), function))
    if compiled.is_compiled(module):
        assert compiled.built_from(module) == compiled.source_sha256(module)


@pytest.mark.parametrize("group", sorted(compiled.COMPILED))
def test_pure_copies_are_the_sources_and_import_each_other(group: str) -> None:
    names = compiled.COMPILED[group]
    pure = compiled.load_pure(names)
    assert compiled.load_pure(names) == pure  # loaded once
    for name, module in zip(names, pure, strict=True):
        package, _, leaf = name.rpartition(".")
        assert module.__name__ == f"{package}._pure.{leaf}"
        assert not compiled.is_compiled(module) and compiled.built_from(module) is None
        assert module is not importlib.import_module(name)
    if len(pure) > 1:  # the writer's subclass is the pure module's, not the compiled one's
        vm_metrics, exposition = pure
        assert exposition.NodeWriter is vm_metrics.NodeWriter


def test_a_module_compiled_from_another_source_is_refused() -> None:
    module = importlib.import_module(MODULES[-1])
    fake = ModuleType(module.__name__)
    fake.__file__ = str(compiled.source(module).with_suffix(".cpython-311-x86_64-linux-gnu.so"))
    fake._SOURCE_SHA256 = "0" * 64  # type: ignore[attr-defined]
    reason = compiled.stale_reason(fake)
    assert reason is not None and "pip install -e ." in reason and "0" * 64 in reason
    fake._SOURCE_SHA256 = compiled.source_sha256(module)  # type: ignore[attr-defined]
    assert compiled.stale_reason(fake) is None
