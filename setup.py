"""Build of beamside: everything is in pyproject.toml but the optional
compiled term codec (issue 15).

``sidecar/erldist/term.py`` is compiled with mypyc into an extension module
that takes its place (an extension module is found before the ``.py`` beside
it).  The build must never make an install fail: without mypyc, without a C
compiler, or with ``BEAMSIDE_PURE_PYTHON=1``, nothing is compiled, any
extension left in the source tree by an earlier editable build is removed,
and the pure-Python module is used.

What is compiled is a copy of term.py in which ``_SOURCE_SHA256`` holds the
SHA-256 of the real file, so a test (and the benchmark) can tell a compiled
module built from an older term.py (``sidecar.erldist.termbuild`` reads it),
and ``_COMPILED`` is True (a few hot reads have a branch for each build).
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
PACKAGE = ROOT / "sidecar" / "erldist"
MODULE = "sidecar.erldist.term"
# The modules mypy must see to check term.py: the compiled copy imports them
# (at run time, the installed ones).
DEPENDENCIES = ("errors.py", "termtypes.py")
METADATA_COMMANDS = {"egg_info", "dist_info", "sdist"}
PLACEHOLDER = "_SOURCE_SHA256: Final[str | None] = None\n"
COMPILED_FLAG = "_COMPILED: Final = False\n"


def note(message: str) -> None:
    print(f"beamside setup.py: {message}", file=sys.stderr, flush=True)


def staged_copy() -> Path:
    """term.py and what it imports under build/mypyc-src/, the hash filled in."""
    source = (PACKAGE / "term.py").read_bytes()
    text = source.decode("utf-8")
    for line in (PLACEHOLDER, COMPILED_FLAG):
        if text.count(line) != 1:
            raise RuntimeError(f"term.py must hold the line {line.strip()!r} once")
    digest = hashlib.sha256(source).hexdigest()
    stage = ROOT / "build" / "mypyc-src"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "sidecar" / "erldist").mkdir(parents=True)
    (stage / "sidecar" / "__init__.py").write_text("")
    (stage / "sidecar" / "erldist" / "__init__.py").write_text("")
    for name in DEPENDENCIES:
        shutil.copyfile(PACKAGE / name, stage / "sidecar" / "erldist" / name)
    copy = stage / "sidecar" / "erldist" / "term.py"
    staged = text.replace(PLACEHOLDER, f'_SOURCE_SHA256: Final[str | None] = "{digest}"\n')
    copy.write_text(staged.replace(COMPILED_FLAG, "_COMPILED: Final = True\n"), encoding="utf-8")
    return copy


@functools.cache  # one translation per process, however many commands ask
def compiled_extensions() -> list[Any]:
    if os.environ.get("BEAMSIDE_PURE_PYTHON") == "1":
        note("BEAMSIDE_PURE_PYTHON=1: the term codec stays pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        note(f"mypyc is not available ({exc}): the term codec stays pure Python")
        return []
    started = time.monotonic()
    try:
        copy = staged_copy()
        # mypyc names the module from the copy's packages: sidecar.erldist.term.
        extensions: list[Any] = mypycify(
            [str(copy.relative_to(ROOT)), "--strict"], opt_level="3", target_dir="build/mypyc"
        )
    except BaseException as exc:  # mypy reports its errors with SystemExit
        note(f"mypyc could not translate term.py ({exc!r:.300}): it stays pure Python")
        return []
    names = sorted(ext.name for ext in extensions)
    note(f"mypyc translated term.py in {time.monotonic() - started:.1f} s: {', '.join(names)}")
    return extensions


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
            note(f"compiling the term codec failed ({exc!r:.300}): it stays pure Python")
            self._discard_all()
            return
        note(f"compiled the term codec in {time.monotonic() - started:.1f} s")

    def _outputs(self) -> list[Path]:
        """Every file an extension of this build may have left, here or in the tree."""
        found: list[Path] = []
        for directory in (Path(self.build_lib) / "sidecar" / "erldist", PACKAGE):
            for pattern in ("term.*.so", "term__mypyc.*.so", "term.*.pyd", "term__mypyc.*.pyd"):
                found.extend(directory.glob(pattern))
        return found

    def _discard_all(self) -> None:
        # A shim without its library (or an old library) must not be imported.
        for path in self._outputs():
            path.unlink(missing_ok=True)
        self.extensions = []

    def _remove_inplace_leftovers(self) -> None:
        for pattern in ("term.*.so", "term__mypyc.*.so", "term.*.pyd", "term__mypyc.*.pyd"):
            for path in PACKAGE.glob(pattern):
                note(f"removing {path.relative_to(ROOT)} (an earlier build's; pure Python now)")
                path.unlink()

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []


# A stand-in: it makes setuptools run build_ext (and tag the wheel for this
# platform); OptionalBuildExt replaces it with what mypyc makes, or nothing.
setup(
    ext_modules=[Extension(MODULE, sources=[])],
    cmdclass={"build_ext": OptionalBuildExt},
)
