"""Releases on a real node: release_handler:which_releases/0 (it runs with
sasl) in the versions section and as ``erlang_vm_release_info``; nothing
without sasl; and ``release_changed`` when the permanent release is another
one at the next snapshot."""

from __future__ import annotations

import json
from dataclasses import replace

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.loki.model import LogEntry
from sidecar.model import Release
from sidecar.notify import Notifier
from tests.agents.conftest import local, snapshot  # noqa: F401  (local: the fixture)
from tests.conftest import NodeFactory


async def test_releases_and_a_permanent_release_change(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    await agents.ensure_loaded(local, node.name)
    bare = await snapshot(local, node)
    assert bare.versions is not None and bare.versions.releases is None  # no sasl
    node.eval("{ok, _} = application:ensure_all_started(sasl), ok.")
    snap = await snapshot(local, node)
    assert snap.versions is not None
    (release,) = snap.versions.releases or ()
    assert release == Release("Erlang/OTP", "25", "permanent")
    assert snap.versions.permanent == release
    body = ExpositionCache().exposition([snap], TEXT).decode()
    (line,) = [x for x in body.splitlines() if x.startswith("erlang_vm_release_info{")]
    assert 'release="Erlang/OTP"' in line and 'status="permanent"' in line

    # an upgrade made permanent: the next snapshot names another release
    sent: list[LogEntry] = []
    notifier = Notifier("c", lambda node: "f", sent.append)
    notifier.on_snapshot(snap)
    notifier.on_snapshot(snap)  # the same: nothing
    upgraded = replace(
        snap,
        versions=snap.versions._replace(
            releases=(Release("shop", "1.1.0", "permanent"), Release("shop", "1.0.0", "old")),
        ),
    )
    notifier.on_snapshot(upgraded)
    changes = [json.loads(e.line) for e in sent if "release_changed" in e.line]
    assert len(changes) == 1, sent
    assert changes[0]["message"] == "permanent release Erlang/OTP 25 -> shop 1.1.0"
    fields = {k: changes[0].get(k) for k in ("old_release", "old_version", "release", "version")}
    assert fields == {
        "old_release": "Erlang/OTP", "old_version": "25", "release": "shop", "version": "1.1.0",
    }  # fmt: skip
    assert changes[0]["type"] == "release_changed"
