"""The ranch plugin against real ranch 2.1 and cowboy 2.8 (the ones RabbitMQ
bundles in its plugins directory, put on a plain OTP 25 node's code path):
a listener with a connection held open, its limit, the metrics and the
``ranch_connection_limit`` alarm; a cowboy listener seen as a ranch one;
nothing without ranch."""

from __future__ import annotations

import glob
import socket
import time

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import RanchListener
from tests.agents.conftest import (  # noqa: F401  (local: the fixture)
    load_source,
    local,
    snapshot,
)
from tests.conftest import NodeFactory
from tests.support.prometheus import promtool_check_metrics

PLUGINS = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"


def ebin(app: str) -> str:
    (found,) = glob.glob(f"{PLUGINS}/{app}-*/ebin")  # apt-get install -y rabbitmq-server
    return found


# A ranch protocol that holds its connection until the peer closes it.
HOLDER = [
    "-module(bs_test_holder).",
    "-export([start_link/3, init/3]).",
    "start_link(Ref, T, O) -> {ok, proc_lib:spawn_link(bs_test_holder, init, [Ref, T, O])}.",
    "init(Ref, T, _) -> {ok, S} = ranch:handshake(Ref), loop(S, T).",
    "loop(S, T) -> case T:recv(S, 0, infinity) of {ok, _} -> loop(S, T); _ -> ok end.",
]


async def test_a_listener_near_its_limit_and_a_cowboy_one(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory(
        "otp25", extra_args=["-pa", ebin("ranch"), "-pa", ebin("cowlib"), "-pa", ebin("cowboy")]
    )
    load_source(node, HOLDER)
    port = int(
        node.eval(
            "{ok, _} = application:ensure_all_started(cowboy),"
            " {ok, _} = ranch:start_listener(bs_held, ranch_tcp,"
            " #{socket_opts => [{ip, {127,0,0,1}}, {port, 0}], max_connections => 2},"
            " bs_test_holder, []),"
            " {ok, _} = cowboy:start_clear(bs_http, [{ip, {127,0,0,1}}, {port, 0}],"
            " #{env => #{dispatch => cowboy_router:compile([])}}),"
            " ranch:get_port(bs_held)"
        )
    )
    client = socket.create_connection(("127.0.0.1", port))
    try:
        for _ in range(100):
            if node.eval("maps:get(active_connections, ranch:info(bs_held))") == "1":
                break
            time.sleep(0.05)
        info = await agents.ensure_loaded(local, node.name)
        assert info.plugins["ranch"] is True
        snap = await snapshot(local, node)
        ranch = snap.ranch
        assert ranch is not None and ranch.version == "2.1.0" and not ranch.truncated
        listeners = dict(ranch.listeners)
        assert set(listeners) == {"bs_held", "bs_http"}
        held = listeners["bs_held"]
        assert isinstance(held, RanchListener)
        assert (held.transport, held.protocol, held.ip, held.status) == (
            "ranch_tcp", "bs_test_holder", "127.0.0.1", "running"
        )  # fmt: skip
        assert (held.port, held.max_connections, held.active_connections) == (port, 2, 1)
        assert held.accepted == 1 and held.usage == 0.5
        http = listeners["bs_http"]
        assert isinstance(http, RanchListener) and http.protocol == "cowboy_clear"
        assert http.max_connections == 1024 and http.active_connections == 0

        body = ExpositionCache().exposition([snap], TEXT).decode()
        active = [x for x in body.splitlines() if x.startswith("erlang_ranch_active_connections{")]
        assert any('listener="bs_held"' in x and x.endswith(" 1.0") for x in active), active
        assert 'protocol="cowboy_clear"' in body
        assert "certfile" not in body and "socket_opts" not in body  # options never sent
        lint = promtool_check_metrics(body.encode())
        assert lint.returncode == 0, lint.stdout + lint.stderr

        engine = AlarmEngine("c")
        checker = AlarmChecker(engine)
        checker.on_snapshot(snap)  # 50 %: below the 80 % of minor
        assert not [a for a in engine.active() if a.id == "ranch_connection_limit"]
        node.eval("ok = ranch:set_max_connections(bs_held, 1)")
        checker.on_snapshot(await snapshot(local, node))
        (alarm,) = [a for a in engine.active() if a.id == "ranch_connection_limit"]
        assert alarm.severity.name == "MAJOR" and "bs_held has 100%" in alarm.cause
        assert alarm.info == {"usage": {"bs_held": 1.0}}
    finally:
        client.close()


async def test_nothing_without_ranch(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    info = await agents.ensure_loaded(local, node.name)
    assert info.plugins["ranch"] is False
    snap = await snapshot(local, node)
    assert snap.ranch is None and "ranch" not in snap.plugin_names
