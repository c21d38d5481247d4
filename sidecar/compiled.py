"""Which modules run compiled, and the pure-Python sources beside them.

``pip install`` compiles the hot modules of :data:`COMPILED` with mypyc where
it can (``setup.py``); an extension module then shadows the ``.py`` beside it.
Each compiled copy carries the SHA-256 of the source it was made from
(``_SOURCE_SHA256``, None in the source itself), so a module compiled from an
older source is told apart (:func:`stale_reason`): the tests refuse it, and
the benchmarks too.  The tests and benchmarks run the same cases on both
builds: :func:`load_pure` imports the sources under other names.

After editing one of these modules, run ``pip install -e .`` again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

#: what setup.py compiles, by group: the modules of a group share one library
#: (named after the group), and only import each other in this order
COMPILED: Final = {
    "sidecar.erldist.term": ("sidecar.erldist.term",),
    "sidecar.exporter.render": ("sidecar.exporter.vm_metrics", "sidecar.exporter.exposition"),
}
#: hand-written C extensions (setup.py), each the compiled form of a pure-Python
#: function: module -> (its source file, the module and name of that function)
C_EXTENSIONS: Final = {
    "sidecar.exporter._scatter": ("_scatter.c", "sidecar.exporter.exposition", "_scatter_py"),
}
PURE_PACKAGE: Final = "_pure"
"""Pure copies of ``pkg.mod`` are ``pkg._pure.mod``."""


def source(module: ModuleType) -> Path:
    """The ``.py`` file of ``module`` (beside the extension when compiled).

    Found from its package: a compiled module first imported by another of
    its group has a wrong ``__file__`` (the package's path twice)."""
    package, _, leaf = module.__name__.rpartition(".")
    if package.endswith(f".{PURE_PACKAGE}"):
        package = package.rpartition(".")[0]
    directory = Path(str(importlib.import_module(package).__file__)).resolve().parent
    c_source = C_EXTENSIONS.get(f"{package}.{leaf}")
    return directory / (c_source[0] if c_source else f"{leaf}.py")


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` is an extension module rather than Python source."""
    return not str(module.__file__).endswith(".py")


def source_sha256(module: ModuleType) -> str:
    return hashlib.sha256(source(module).read_bytes()).hexdigest()


def built_from(module: ModuleType) -> str | None:
    """The SHA-256 of the source a compiled module was made from (None: pure)."""
    value = getattr(module, "_SOURCE_SHA256", None)
    return value if isinstance(value, str) else None


def stale_reason(module: ModuleType) -> str | None:
    """Why the compiled ``module`` must not be used (None: pure, or fresh)."""
    if not is_compiled(module):
        return None
    made_from, now = built_from(module), source_sha256(module)
    if made_from != now:
        return (
            f"{module.__file__} was compiled from another {source(module).name} "
            f"(sha256 {made_from}, the tree has {now}): run `pip install -e .` again"
        )
    return None


def installed() -> list[ModuleType]:
    """Every module of :data:`COMPILED`, as imported (compiled or not), and
    the C extensions that were built."""
    modules = [importlib.import_module(name) for group in COMPILED.values() for name in group]
    for name in C_EXTENSIONS:
        with contextlib.suppress(ImportError):  # not built: its pure-Python function serves
            modules.append(importlib.import_module(name))
    return modules


def load_pure(names: Sequence[str]) -> list[ModuleType]:
    """The sources of ``names`` (one package's, in :data:`COMPILED`'s order),
    imported as ``pkg._pure.<name>`` (once).

    Their relative imports of each other reach the pure copies; of their
    other siblings, the installed modules (the same objects, so the value
    classes they share are the same classes)."""
    package = names[0].rpartition(".")[0]
    if any(name.rpartition(".")[0] != package for name in names):
        raise ValueError(f"not one package: {names}")
    shadow = f"{package}.{PURE_PACKAGE}"
    if shadow not in sys.modules:
        holder = ModuleType(shadow)
        holder.__path__ = []  # finds nothing: every module it holds is put there
        sys.modules[shadow] = holder
    modules = []
    for name in names:
        leaf = name.rpartition(".")[2]
        pure_name = f"{shadow}.{leaf}"
        loaded = sys.modules.get(pure_name)
        if loaded is None or loaded.__name__ != pure_name:  # not yet, or an alias
            loaded = _load_source(pure_name, source(importlib.import_module(name)), package)
        modules.append(loaded)
    return modules


def _load_source(pure_name: str, path: Path, package: str) -> ModuleType:
    # the real package's modules the source imports relatively, under the shadow's name
    shadow = pure_name.rpartition(".")[0]
    for name, module in list(sys.modules.items()):
        parent, _, leaf = name.rpartition(".")
        if parent == package and leaf != PURE_PACKAGE:
            sys.modules.setdefault(f"{shadow}.{leaf}", module)
    # the pure copy replaces an alias of the installed module of that name
    sys.modules.pop(pure_name, None)
    spec = importlib.util.spec_from_file_location(pure_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has one
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[pure_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[pure_name]
        raise
    return module


__all__ = [
    "COMPILED",
    "C_EXTENSIONS",
    "built_from",
    "installed",
    "is_compiled",
    "load_pure",
    "source",
    "source_sha256",
    "stale_reason",
]
