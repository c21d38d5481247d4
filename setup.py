"""Build of beamside: everything is in pyproject.toml but the optional
compiled modules (issue 15): the term codec, and the exporter's line writer.

The modules of ``sidecar.compiled.COMPILED`` are compiled with mypyc into
extension modules that take their place (an extension module is found before
the ``.py`` beside it), one library per group; the C extensions of
``C_EXTENSIONS`` are built beside them (the pure-Python function each one
replaces stays the fallback).  The build must never make an
install fail: without mypyc, without a C compiler, or with
``BEAMSIDE_PURE_PYTHON=1``, nothing is compiled, any extension left in the
source tree by an earlier editable build is removed, and the pure-Python
modules are used.

What is compiled is a copy of the package in which each compiled module's
``_SOURCE_SHA256`` holds the SHA-256 of its real file (a C extension gets
it as a macro), so a test (and the
benchmarks) can tell a compiled module built from an older source
(``sidecar.compiled`` reads it), and term.py's ``_COMPILED`` is True (a few
hot reads have a branch for each build).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "sidecar"
#: group (its library: ``<group>__mypyc``) -> its modules; as in sidecar/compiled.py
#: (not imported from there: the build environment lacks the package's dependencies)
COMPILED = {
    "sidecar.erldist.term": ("sidecar.erldist.term",),
    "sidecar.exporter.render": ("sidecar.exporter.vm_metrics", "sidecar.exporter.exposition"),
}
#: hand-written C extensions -> their source (each the compiled form of a
#: pure-Python function beside it; as in sidecar/compiled.py)
C_EXTENSIONS = {"sidecar.exporter._scatter": "sidecar/exporter/_scatter.c"}
METADATA_COMMANDS = {"egg_info", "dist_info", "sdist"}
PLACEHOLDER = "_SOURCE_SHA256: Final[str | None] = None\n"
#: term.py's build switch
COMPILED_FLAG = "_COMPILED: Final = False\n"


def note(message: str) -> None:
    print(f"beamside setup.py: {message}", file=sys.stderr, flush=True)


def module_path(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def staged_copy() -> Path:
    """The package's sources under build/mypyc-src/ (mypy checks the compiled
    modules against what they import), the hashes filled in."""
    stage = ROOT / "build" / "mypyc-src"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(
        PACKAGE, stage / "sidecar", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    )
    for group in COMPILED.values():
        for module in group:
            source = module_path(ROOT, module).read_bytes()
            text = source.decode("utf-8")
            if text.count(PLACEHOLDER) != 1:
                raise RuntimeError(f"{module} must hold the line {PLACEHOLDER.strip()!r} once")
            digest = hashlib.sha256(source).hexdigest()
            text = text.replace(PLACEHOLDER, f'_SOURCE_SHA256: Final[str | None] = "{digest}"\n')
            if module == "sidecar.erldist.term":
                if text.count(COMPILED_FLAG) != 1:
                    raise RuntimeError(f"term.py must hold the line {COMPILED_FLAG.strip()!r} once")
                text = text.replace(COMPILED_FLAG, "_COMPILED: Final = True\n")
            module_path(stage, module).write_text(text, encoding="utf-8")
    return stage


def c_extensions() -> list[Extension]:
    """The C extensions, each with the SHA-256 of its source (``_SOURCE_SHA256``)."""
    extensions = []
    for name, source in C_EXTENSIONS.items():
        digest = hashlib.sha256((ROOT / source).read_bytes()).hexdigest()
        extensions.append(
            Extension(
                name,
                [source],
                define_macros=[("SOURCE_SHA256", f'"{digest}"')],
                extra_compile_args=["-O2"],
            )
        )
    return extensions


@functools.cache  # one translation per process, however many commands ask
def compiled_extensions() -> list[Any]:
    if os.environ.get("BEAMSIDE_PURE_PYTHON") == "1":
        note("BEAMSIDE_PURE_PYTHON=1: every module stays pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        note(f"mypyc is not available ({exc}): only the C extensions are built")
        return c_extensions()
    started = time.monotonic()
    try:
        stage = staged_copy()
        groups = [
            ([str(module_path(stage, m).relative_to(ROOT)) for m in modules], group)
            for group, modules in COMPILED.items()
        ]
        # mypyc names each module from the copy's packages (sidecar.erldist.term, ...)
        extensions: list[Any] = mypycify(
            [path for paths, _ in groups for path in paths] + ["--strict"],
            opt_level="3",
            target_dir="build/mypyc",
            separate=groups,
        )
    except BaseException as exc:  # mypy reports its errors with SystemExit
        note(f"mypyc could not translate the modules ({exc!r:.300}): they stay pure Python")
        return c_extensions()
    names = sorted(ext.name for ext in extensions)
    note(f"mypyc translated them in {time.monotonic() - started:.1f} s: {', '.join(names)}")
    return extensions + c_extensions()


def _extension_files(directory: Path) -> list[Path]:
    """What a build may have left in one of the compiled modules' directories."""
    found: list[Path] = []
    stems = [name.rpartition(".")[2] for name in C_EXTENSIONS]
    for group, modules in COMPILED.items():
        stems += [m.rpartition(".")[2] for m in modules] + [f"{group.rpartition('.')[2]}__mypyc"]
    for stem in stems:
        for suffix in ("so", "pyd"):
            found.extend(directory.glob(f"{stem}.*.{suffix}"))
    return sorted(set(found))


def _directories(root: Path) -> list[Path]:
    modules = [*C_EXTENSIONS, *(m for group in COMPILED.values() for m in group)]
    return sorted({module_path(root, m).parent for m in modules})


class OptionalBuildExt(build_ext):
    """Build the extensions if possible; on any failure, none of them."""

    def finalize_options(self) -> None:
        # mypyc runs here, not when setup.py is loaded, and not for pip's
        # metadata steps (egg_info and dist_info finalize build_ext too).
        metadata_only = set(self.distribution.commands) <= METADATA_COMMANDS
        self.distribution.ext_modules = [] if metadata_only else compiled_extensions()
        super().finalize_options()

    def run(self) -> None:
        if not self.extensions:
            self._remove_inplace_leftovers()
            return
        started = time.monotonic()
        try:
            super().run()
        except Exception as exc:  # no compiler, a compiler error, a missing header...
            note(f"compiling failed ({exc!r:.300}): every module stays pure Python")
            self._discard_all()
            return
        note(f"compiled in {time.monotonic() - started:.1f} s")

    def _outputs(self) -> list[Path]:
        """Every file an extension of this build may have left, here or in the tree."""
        directories = _directories(Path(self.build_lib)) + _directories(ROOT)
        return [path for directory in directories for path in _extension_files(directory)]

    def _discard_all(self) -> None:
        # A shim without its library (or an old library) must not be imported.
        for path in self._outputs():
            path.unlink(missing_ok=True)
        self.extensions = []

    def _remove_inplace_leftovers(self) -> None:
        for directory in _directories(ROOT):
            for path in _extension_files(directory):
                note(f"removing {path.relative_to(ROOT)} (an earlier build's; pure Python now)")
                path.unlink()

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []


# A stand-in: it makes setuptools run build_ext (and tag the wheel for this
# platform); OptionalBuildExt replaces it with what mypyc makes, or nothing.
setup(
    ext_modules=[Extension("sidecar.erldist.term", sources=[])],
    cmdclass={"build_ext": OptionalBuildExt},
)
