"""The yaws plugin against real Yaws 2.1 (Debian's, started by the
real-application fixtures): the server group of its configured port,
a held keep-alive connection seen as active, its requests counted when it
ends (as Yaws counts them),
promtool-clean; nothing in Yaws' logs."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import AsyncIterator

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import NodeSnapshot, YawsServer, decode_snapshot
from tests.realapps.applog import offending
from tests.realapps.conftest import RunningApp
from tests.support.prometheus import promtool_check_metrics

pytestmark = pytest.mark.parametrize("real_app", ["yaws"], indirect=True)


class Web:
    def __init__(self, app: RunningApp, local: LocalNode) -> None:
        self.app, self.local, self.name = app, local, app.node.name

    async def snapshot(self) -> NodeSnapshot:
        data = await agents.collect(self.local, self.name, {}, timeout=30)
        return decode_snapshot(
            data, node=self.name, family="yaws", cluster="rt", taken_at=time.time(),
            duration=0.0,
        )  # fmt: skip

    async def server(self) -> YawsServer:
        snap = await self.snapshot()
        assert not [k for k in snap.errors if k.startswith("plugins")], snap.errors
        assert snap.yaws is not None, snap.plugin_names
        servers = dict(snap.yaws.servers)
        key = f"127.0.0.1:{self.app.node.ports['http']}"
        found = servers.get(key)
        assert isinstance(found, YawsServer), servers
        return found


@pytest.fixture
async def web(app: RunningApp) -> AsyncIterator[Web]:
    local = LocalNode(
        f"beamside-web{os.getpid()}@localhost", app.node.cookie, epmd_port=app.node.epmd_port
    )
    try:
        await agents.ensure_loaded(local, app.node.name)
        yield Web(app, local)
    finally:
        await agents.detach(local, app.node.name)
        await local.close()


async def test_servers_connections_and_requests(web: Web) -> None:
    app = web.app
    offsets = app.node.log_offsets()
    before = await web.server()
    assert before.port == app.node.ports["http"] and before.ip == "127.0.0.1"
    assert before.names == (f"localhost:{app.node.ports['http']}",)  # as Yaws keeps it
    held = http.client.HTTPConnection("127.0.0.1", app.node.ports["http"], timeout=10)
    try:
        for _ in range(5):  # one keep-alive connection, five requests
            held.request("GET", "/")
            held.getresponse().read()
        during = await web.server()
        assert during.active_connections is not None and during.active_connections >= 1
        assert during.accepted is not None and before.accepted is not None
        assert during.accepted - before.accepted == 1
        body = ExpositionCache().exposition([await web.snapshot()], TEXT).decode()
        lint = promtool_check_metrics(body.encode())
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert "erlang_yaws_requests_total{" in body and "erlang_yaws_server_info{" in body
    finally:
        held.close()
    deadline = time.monotonic() + 10
    while (after := await web.server()).active_connections != before.active_connections:
        assert time.monotonic() < deadline, "the connection stayed active"
        time.sleep(0.2)
    # Yaws adds a connection's requests when the connection ends
    assert after.requests is not None and before.requests is not None
    assert after.requests - before.requests == 5
    assert offending(app.node, offsets) == []
