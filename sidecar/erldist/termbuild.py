"""Which build of the term codec is in use, and the pure-Python one beside it.

``pip install`` compiles :mod:`sidecar.erldist.term` with mypyc where it can
(``setup.py``); the extension module then shadows ``term.py``.  The tests and
``bench/bench_term.py`` run the same cases on both builds, and refuse a
compiled module made from another ``term.py`` than the one in the tree.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from . import term

SOURCE: Path = Path(__file__).resolve().with_name("term.py")
PURE_NAME = "sidecar.erldist.term_pure"
"""The pure module's name: in the same package, so its relative imports (and
so the value classes of :mod:`sidecar.erldist.termtypes`) are shared."""


def is_compiled(module: ModuleType = term) -> bool:
    """Whether ``module`` is an extension module rather than Python source."""
    return not str(module.__file__).endswith(".py")


def source_sha256() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def built_from(module: ModuleType = term) -> str | None:
    """The SHA-256 of the term.py a compiled module was made from (None: pure)."""
    value = getattr(module, "_SOURCE_SHA256", None)
    return value if isinstance(value, str) else None


def stale_reason(module: ModuleType = term) -> str | None:
    """Why the compiled ``module`` must not be used (None: pure, or fresh)."""
    if not is_compiled(module):
        return None
    made_from = built_from(module)
    if made_from != source_sha256():
        return (
            f"{module.__file__} was compiled from another term.py "
            f"(sha256 {made_from}, the tree has {source_sha256()}): "
            "run `pip install -e .` again"
        )
    return None


def load_pure() -> ModuleType:
    """``term.py`` imported from source under :data:`PURE_NAME` (once)."""
    loaded = sys.modules.get(PURE_NAME)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(PURE_NAME, SOURCE)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has one
        raise ImportError(f"cannot load {SOURCE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PURE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PURE_NAME]
        raise
    return module


__all__ = ["PURE_NAME", "SOURCE", "built_from", "is_compiled", "load_pure", "stale_reason"]
