"""The ejabberd plugin against real ejabberd 23.01 (Debian's, started by the
real-application fixtures): users registered through ejabberd's own API,
an XMPP client logged in over the c2s listener (SASL PLAIN, resource
bound), seen as a session of its virtual host; s2s, the central queues;
promtool-clean; the switch; nothing in ejabberd's log."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import Ejabberd, EjabberdHost, NodeSnapshot, decode_snapshot
from tests.realapps.applog import offending
from tests.realapps.conftest import RunningApp
from tests.support.prometheus import promtool_check_metrics

pytestmark = pytest.mark.parametrize("real_app", ["ejabberd"], indirect=True)
STREAM = (
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client'"
    " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)


def _read_until(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    got = b""
    while needle not in got:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the stream: {got!r}"
        got += chunk
    return got


@contextmanager
def xmpp_session(port: int, user: str, password: str) -> Iterator[socket.socket]:
    """A c2s session: stream, SASL PLAIN, stream restart, resource bound."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(STREAM.encode())
        _read_until(sock, b"</stream:features>")
        plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        sasl = "urn:ietf:params:xml:ns:xmpp-sasl"
        sock.sendall(f"<auth xmlns='{sasl}' mechanism='PLAIN'>{plain}</auth>".encode())
        assert b"<success" in _read_until(sock, b"xmpp-sasl")
        sock.sendall(STREAM.encode())
        _read_until(sock, b"</stream:features>")
        sock.sendall(
            b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>beamside</resource></bind></iq>"
        )
        assert b"type='result'" in _read_until(sock, b"</iq>").replace(b'"', b"'")
        yield sock
    finally:
        sock.close()


class Xmpp:
    def __init__(self, app: RunningApp, local: LocalNode) -> None:
        self.app, self.local, self.name = app, local, app.node.name

    async def snapshot(self, opts: dict[str, object] | None = None) -> NodeSnapshot:
        data = await agents.collect(self.local, self.name, opts, timeout=30)
        return decode_snapshot(
            data, node=self.name, family="ejabberd", cluster="rt", taken_at=time.time(),
            duration=0.0,
        )  # fmt: skip

    async def section(self) -> Ejabberd:
        snap = await self.snapshot()
        assert not [k for k in snap.errors if k.startswith("plugins")], snap.errors
        assert snap.ejabberd is not None, snap.plugin_names
        return snap.ejabberd


@pytest.fixture
async def xmpp(app: RunningApp) -> AsyncIterator[Xmpp]:
    local = LocalNode(
        f"beamside-xmpp{os.getpid()}@localhost", app.node.cookie, epmd_port=app.node.epmd_port
    )
    try:
        await agents.ensure_loaded(local, app.node.name)
        yield Xmpp(app, local)
    finally:
        await agents.detach(local, app.node.name)
        await local.close()


async def test_sessions_users_and_queues(xmpp: Xmpp) -> None:
    app = xmpp.app
    offsets = app.node.log_offsets()
    for user in ("bs_alice", "bs_bob", "bs_carol"):
        app.probe.eval(
            f'case ejabberd_auth:try_register(<<"{user}">>, <<"localhost">>, <<"pw-{user}">>) of'
            " ok -> ok; {error, exists} -> ok end."
        )
    before = await xmpp.section()
    assert before.version is not None and before.version.startswith("23.")
    with xmpp_session(app.node.ports["c2s"], "bs_alice", "pw-bs_alice"):
        s = await xmpp.section()
        assert s.sessions == (before.sessions or 0) + 1
        hosts = dict(s.hosts) if isinstance(s.hosts, tuple) else {}
        host = hosts["localhost"]
        assert isinstance(host, EjabberdHost) and host.sessions == s.sessions
        assert host.users is not None and host.users >= 3
        assert dict(s.s2s or ()) == {"incoming": 0.0, "outgoing": 0.0}
        queues = dict(s.queues or ())
        assert {"ejabberd_router", "ejabberd_sm", "ejabberd_local"} <= set(queues), queues
        assert s.cluster_nodes == 1.0 and not s.hosts_truncated

        body = ExpositionCache().exposition([await xmpp.snapshot()], TEXT).decode()
        lint = promtool_check_metrics(body.encode())
        assert lint.returncode == 0, lint.stdout + lint.stderr
        (line,) = [x for x in body.splitlines() if x.startswith("erlang_ejabberd_vhost_sessions{")]
        assert 'vhost="localhost"' in line and line.endswith(f" {host.sessions}")
        assert "erlang_ejabberd_process_message_queue_len{" in body
    # the session closed with its socket
    deadline = time.monotonic() + 10
    while (await xmpp.section()).sessions != before.sessions:
        assert time.monotonic() < deadline, "the session stayed"
        time.sleep(0.2)
    # switched off: no section
    snap = await xmpp.snapshot({"plugins": ["os_mon"]})
    assert snap.ejabberd is None and "ejabberd" not in snap.plugin_names
    assert offending(app.node, offsets) == []


async def test_ejabberds_own_alarms_are_forwarded(xmpp: Xmpp) -> None:
    """ejabberd replaces SASL's default alarm handler with its own
    (ejabberd_system_monitor): an alarm set on its alarm_handler, as its
    monitor sets them, reaches beamside through the handler attach adds."""
    app = xmpp.app
    assert app.probe.eval("gen_event:which_handlers(alarm_handler).") == "[ejabberd_system_monitor]"
    await agents.attach(xmpp.local, xmpp.name)
    app.probe.eval('alarm_handler:set_alarm({bs_xmpp_alarm, "a test alarm"}), ok.')
    try:
        snap = await xmpp.snapshot()
        assert snap.alarms is not None and snap.alarms.sasl_alarms is not None
        ids = [a.id for a in snap.alarms.sasl_alarms]
        assert any("bs_xmpp_alarm" in i for i in ids), ids
    finally:
        app.probe.eval("alarm_handler:clear_alarm(bs_xmpp_alarm), ok.")
    snap = await xmpp.snapshot()
    assert snap.alarms is not None and snap.alarms.sasl_alarms is not None
    assert not [a for a in snap.alarms.sasl_alarms if "bs_xmpp_alarm" in a.id]
