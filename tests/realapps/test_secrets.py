"""Secrets on real applications never leave through the agents in clear:
RabbitMQ's ``default_pass`` and ``ssl_options``, an Elixir ``Repo`` config with
``password:``; through GetEnv's agent call (as the Config service makes it),
SetEnv's reply, DiffConfig's env dump, the config_changed events, and
beamside_sysmon's table (protected, no planted secret in it).  The application's
own log gets nothing about beamside at warning or above, and never the secret."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, encode
from tests.realapps.applog import offending
from tests.realapps.conftest import RunningApp

A = Atom
# sha256 where the node has crypto loaded (RabbitMQ), else phash2 (the Elixir app)
MARKER = re.compile(rb"<redacted (sha256|phash2):[0-9a-f]{6}>")
PLANTED = "pl4nted-R3al-5ecret-77e1"
OPS = "beamside_ops_env"


class Node:
    """The agents on the application's node, called as the sidecar calls them."""

    def __init__(self, app: RunningApp, local: LocalNode) -> None:
        self.app, self.local, self.name = app, local, app.node.name

    async def ops(self, fun: str, args: list[Any]) -> Any:
        reply = await self.local.rpc(self.name, OPS, fun, args, timeout=15)
        assert isinstance(reply, tuple) and reply[0] == "ok", reply
        return reply[1]

    def probe(self, expr: str) -> str:
        return self.app.probe.eval(expr)

    def table_has(self, needle: str) -> str:
        """Whether beamside_sysmon's table (printed) contains ``needle``: "true"/"false"."""
        return self.probe(
            'T = lists:flatten(io_lib:format("~0tp", [ets:tab2list(beamside_sysmon)])),'
            f' string:find(T, "{needle}") =/= nomatch.'
        )


@pytest.fixture
async def node(app: RunningApp) -> AsyncIterator[Node]:
    local = LocalNode(
        f"beamside-secrets{os.getpid()}@localhost", app.node.cookie, epmd_port=app.node.epmd_port
    )
    try:
        await agents.ensure_loaded(local, app.node.name)
        yield Node(app, local)
    finally:
        await agents.detach(local, app.node.name)
        await local.close()


def _keyed(cookie: str, value: Any) -> bytes:
    """The marker the agent must print for ``value`` (HMAC-SHA256, cookie-keyed)."""
    digest = hmac.new(cookie.encode(), encode(value), hashlib.sha256).hexdigest()
    return f"<redacted sha256:{digest[:6]}>".encode()


async def _config_events(node: Node) -> dict[str, Any]:
    data = await agents.collect(
        node.local, node.name, {"sections": [], "config_events": True}, timeout=30
    )
    section = data["config_events"]
    assert isinstance(section, dict), section
    return section


@pytest.mark.parametrize("real_app", ["rabbitmq"], indirect=True)
async def test_rabbitmq_default_pass_and_ssl_options(node: Node) -> None:
    app = node.app
    offsets = app.node.log_offsets()
    original_pass = node.probe("{ok, P} = application:get_env(rabbit, default_pass), P.")
    original_ssl = node.probe("application:get_env(rabbit, ssl_options, []).")
    assert original_pass == '<<"guest">>'  # rabbit's own default, set at boot
    await agents.attach(node.local, node.name)
    try:
        assert (await _config_events(node))["baseline"] is True

        # GetEnv, as the Config service calls it: default_pass is a bare marker
        env = await node.ops("get_env", [b"rabbit", b"default_pass", {}])
        (entry,) = env["entries"]
        assert entry["value"] == _keyed(app.node.cookie, b"guest") and entry["redacted"] is True
        every = await node.ops("get_env", [b"rabbit", A("all"), {}])
        values = {e["key"]: e["value"] for e in every["entries"]}
        assert values[b"default_pass"] == entry["value"]
        assert values[b"default_user"] == b'<<"guest">>'  # not a secret: shown

        # ssl_options as an operator configures TLS listeners (nested secrets)
        node.probe(
            'application:set_env(rabbit, ssl_options, [{cacertfile, "/etc/rmq/ca.pem"},'
            ' {certfile, "/etc/rmq/cert.pem"}, {keyfile, "/etc/rmq/key.pem"},'
            f' {{password, "{PLANTED}"}}, {{verify, verify_peer}},'
            " {fail_if_no_peer_cert, true}])."
        )
        env = await node.ops("get_env", [b"rabbit", b"ssl_options", {}])
        text = env["entries"][0]["value"]
        assert PLANTED.encode() not in text and b"/etc/rmq" not in text
        assert b"{verify,verify_peer}" in text and b"{fail_if_no_peer_cert,true}" in text
        assert len(MARKER.findall(text)) == 4  # cacertfile, certfile, keyfile, password
        revealed = await node.ops("get_env", [b"rabbit", b"ssl_options", {A("reveal"): True}])
        assert PLANTED.encode() in revealed["entries"][0]["value"]

        # SetEnv of default_pass: the reply hides the old and the new password
        reply = await node.ops(
            "set_env", [b"rabbit", b"default_pass", f'<<"{PLANTED}">>'.encode(), {}]
        )
        assert reply["previous"] == _keyed(app.node.cookie, b"guest")
        assert reply["value"] == _keyed(app.node.cookie, PLANTED.encode())
        assert node.probe("application:get_env(rabbit, default_pass).") == f'{{ok,<<"{PLANTED}">>}}'

        # the config_changed events of both changes: visible, redacted
        section = await _config_events(node)
        events = {e["key"]: e for e in section["events"] if e["app"] == "rabbit"}
        assert set(events) >= {"default_pass", "ssl_options"}, section
        assert events["default_pass"]["old"] == _keyed(app.node.cookie, b"guest")
        assert events["default_pass"]["new"] == reply["value"]
        assert MARKER.search(events["ssl_options"]["new"])
        assert PLANTED.encode() not in repr(section).encode()

        # DiffConfig's dump: the text is redacted, the hash still compares values
        dump = await node.ops("env_dump", [[b"rabbit"], {}])
        rabbit = dump[b"rabbit"]
        assert rabbit[b"default_pass"]["text"] == reply["value"]
        assert PLANTED.encode() not in repr(rabbit).encode()
        assert str(rabbit[b"default_pass"]["hash"]) == node.probe(
            f'erlang:phash2(<<"{PLANTED}">>).'
        )

        # the agent's table: protected, and no secret of the node in it
        assert node.probe("ets:info(beamside_sysmon, protection).") == "protected"
        assert node.table_has(PLANTED) == "false"
        assert node.table_has("/etc/rmq") == "false"
        assert node.table_has("ssl_options") == "true"  # the view is there, redacted
    finally:
        node.probe(f"application:set_env(rabbit, default_pass, {original_pass}).")
        node.probe(f"application:set_env(rabbit, ssl_options, {original_ssl}).")
    log = "".join(app.node.log_since(offsets).values())
    assert PLANTED not in log
    assert not offending(app.node, offsets)


@pytest.mark.parametrize("real_app", ["elixir"], indirect=True)
async def test_elixir_repo_config_with_password(node: Node) -> None:
    app = node.app
    offsets = app.node.log_offsets()
    url = f"ecto://shop:{PLANTED}@localhost/shop_prod"
    # what `config :shop, Shop.Repo, username: ..., password: ..., url: ...` sets
    node.probe(
        "application:set_env(shop, 'Elixir.Shop.Repo', [{username, <<\"shop\">>},"
        f' {{password, <<"{PLANTED}">>}}, {{hostname, <<"localhost">>}},'
        f' {{url, <<"{url}">>}}, {{pool_size, 10}}]),'
        " application:set_env(shop, 'Elixir.ShopWeb.Endpoint', [{http, [{port, 4000}]},"
        f' {{secret_key_base, <<"{PLANTED}">>}},'
        f' {{live_view, [{{signing_salt, <<"{PLANTED}">>}}]}}]).'
    )
    await agents.attach(node.local, node.name)
    try:
        assert (await _config_events(node))["baseline"] is True
        env = await node.ops("get_env", [b"shop", A("all"), {}])
        values = {e["key"]: e["value"] for e in env["entries"]}
        repo, endpoint = values[b"Elixir.Shop.Repo"], values[b"Elixir.ShopWeb.Endpoint"]
        for text in (repo, endpoint):
            assert PLANTED.encode() not in text, text
        assert b'{username,<<"shop">>}' in repo and b"{pool_size,10}" in repo
        assert re.search(rb'\{password,"<redacted (sha256|phash2):\w{6}>"\}', repo), repo
        # the url's password only (the binary is cut by the print depth, as always)
        assert re.search(rb'<<"ecto://shop:<redacted (sha256|phash2):\w{6}>@localhost/', repo)
        assert b"{http,[{port,4000}]}" in endpoint and len(MARKER.findall(endpoint)) == 2

        # the password changes: the event shows it changed, never what it is
        node.probe(
            "{ok, R} = application:get_env(shop, 'Elixir.Shop.Repo'),"
            " application:set_env(shop, 'Elixir.Shop.Repo',"
            f' lists:keystore(password, 1, R, {{password, <<"n3w-{PLANTED}">>}})).'
        )
        section = await _config_events(node)
        (event,) = [e for e in section["events"] if e["key"] == "Elixir.Shop.Repo"]
        assert event["old"] != event["new"] and b"n3w" not in event["new"]
        assert PLANTED.encode() not in event["old"] + event["new"]
        dump = await node.ops("env_dump", [[b"shop"], {}])
        assert PLANTED.encode() not in repr(dump).encode()
        assert node.probe("ets:info(beamside_sysmon, protection).") == "protected"
        assert node.table_has(PLANTED) == "false"
        assert node.table_has("pool_size") == "true"
    finally:
        node.probe(
            "application:unset_env(shop, 'Elixir.Shop.Repo'),"
            " application:unset_env(shop, 'Elixir.ShopWeb.Endpoint')."
        )
    log = "".join(app.node.log_since(offsets).values())
    assert PLANTED not in log
    assert not offending(app.node, offsets)
