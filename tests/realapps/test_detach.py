"""Detaching from each real application leaves the node as it was.

A snapshot of the node is taken through a plain hidden Erlang probe (never
through beamside) before beamside attaches; after a SIGTERM of the sidecar the
node must be back to it at once, after a SIGKILL within 10 s (the node-side
watchdog's bound). The application's own log must say nothing about beamside
at warning or above, after either.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.realapps import residue
from tests.realapps.applog import offending
from tests.realapps.conftest import RunningApp

SIGKILL_BOUND = 10.0


def _before(app: RunningApp) -> tuple[residue.Snapshot, dict[Path, int]]:
    """The snapshot to compare with, once an earlier beamside (killed by an
    earlier test) is gone from the node, or after the SIGKILL bound."""
    deadline = time.monotonic() + SIGKILL_BOUND + 2
    while residue.beamside_traces(before := residue.take(app.probe)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return before, app.node.log_offsets()


def test_sigterm_detach_leaves_no_residue(app: RunningApp) -> None:
    before, offsets = _before(app)
    beamside = app.beamside(name="term")
    beamside.wait_attached(collects=3)
    during = residue.take(app.probe)
    assert any("beamside" in m for m in during.keys("module")), "the agents were never loaded"

    assert beamside.terminate(timeout=30) == 0, beamside.stderr()[-3000:]
    found = residue.residue(before, residue.take(app.probe), app.probe.node.name)
    time.sleep(1.0)  # anything the node logs about the detach is written by now
    logged = offending(app.node, offsets)
    assert not found and not logged, _report("a SIGTERM detach", found, logged)
    assert app.is_up()


def test_sigkill_detach_leaves_no_residue_within_10s(app: RunningApp) -> None:
    before, offsets = _before(app)
    beamside = app.beamside(name="kill")
    beamside.wait_attached(collects=3)

    beamside.sigkill()
    killed = time.monotonic()
    found: list[str] = []
    while True:
        found = residue.residue(before, residue.take(app.probe), app.probe.node.name)
        if not found or time.monotonic() - killed > SIGKILL_BOUND:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    logged = offending(app.node, offsets)
    assert not found and not logged, _report(
        f"a SIGKILL of beamside ({SIGKILL_BOUND:.0f}s after)", found, logged
    )
    assert app.is_up()


def _report(after: str, found: list[str], logged: list[str]) -> str:
    parts = []
    if found:
        parts.append(f"left on the node after {after}:\n  " + "\n  ".join(found))
    if logged:
        parts.append("the application logged about beamside:\n\n" + "\n\n".join(logged))
    return "\n\n".join(parts)


def test_disconnect_from_the_node_side_logs_nothing(app: RunningApp) -> None:
    """A network cut as the node sees it (``erlang:disconnect_node/1``): the
    node's log stays quiet, and beamside attaches again."""
    _, offsets = _before(app)
    beamside = app.beamside(name="cut")
    beamside.wait_attached(collects=2)
    attaches = beamside.value("beamside_node_attaches_total", node=app.node.name)
    local = beamside.local_name()
    assert app.probe.eval(f"erlang:disconnect_node('{local}')") == "true"
    beamside.wait_until(
        lambda: (
            (beamside.value("beamside_node_attaches_total", node=app.node.name) or 0)
            > (attaches or 0)
        ),
        30,
        "attached again after the cut",
    )
    beamside.wait_attached(collects=2)
    time.sleep(1.0)
    logged = offending(app.node, offsets)
    assert not logged, _report("a disconnect", [], logged)
    assert app.is_up()
