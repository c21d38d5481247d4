"""Reading an application's own log: entries at warning or above that are about beamside.

Each application writes its own format; an entry starts on a line that begins
with a timestamp and runs until the next such line (crash reports span many
lines):

* RabbitMQ, ejabberd: ``2026-12-04 17:05:04.937906+00:00 [warning] <0.1.0> ...``
* Yaws (report.log): ``2026-12-04T17:07:42.474645+00:00 notice: ...``
* Elixir's console Logger: ``17:07:42.474 [error] ...``
* plain ``erl`` output on a console (yaws' stdout): ``=ERROR REPORT==== ...``
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from tests.realapps.apps import AppNode

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_RANK = {name: i for i, name in enumerate(LEVELS)} | {"warn": 3, "crit": 5, "emerg": 7}

_START = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S*|\d\d:\d\d:\d\d\.\d+|=[A-Z ]+ REPORT====)"
)
_LEVEL = re.compile(r"^\S+(?: \S+)?\s+\[(\w+)\]|^\S+\s+(\w+):|^\d\d:\d\d:\d\d\.\d+\s+\[(\w+)\]")
_REPORT = re.compile(r"^=([A-Z ]+) REPORT====")

# Text that marks an entry as beamside's doing even without the word "beamside":
# ejabberd's system monitor complaining about a message from beamside's handler.
EXTRA_PATTERNS = (re.compile(r"unexpected info", re.I),)


def entries(text: str) -> list[tuple[str, str]]:
    """(level, entry text) for each entry of a log; level "" when unknown."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if _START.match(line) or not out:
            level = ""
            if m := _REPORT.match(line):
                level = {"ERROR": "error", "WARNING": "warning", "CRASH": "error"}.get(
                    m.group(1).strip(), "info"
                )
            elif m := _LEVEL.match(line):
                level = next(g for g in m.groups() if g).lower()
            out.append((level, [line]))
        else:
            out[-1][1].append(line)
    return [(level, "\n".join(lines)) for level, lines in out]


def at_least_warning(level: str) -> bool:
    return _RANK.get(level, -1) >= _RANK["warning"]


def about_beamside(entry: str) -> bool:
    return "beamside" in entry.lower() or any(p.search(entry) for p in EXTRA_PATTERNS)


def offending(node: AppNode, offsets: Mapping[Path, int]) -> list[str]:
    """Entries at warning or above about beamside written since ``offsets``,
    each prefixed with its file name (empty when there is none)."""
    found = []
    for path, text in node.log_since(offsets).items():
        for level, entry in entries(text):
            if at_least_warning(level) and about_beamside(entry):
                found.append(f"{path.name}: {entry[:1500]}")
    return found
