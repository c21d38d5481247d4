"""Families without a release: the node's main application names it
(family_source `application'); plain nodes stay `erlang'; the config's
`family:` still wins."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from sidecar import agents
from sidecar import manager as manager_module
from sidecar.config import parse_config
from sidecar.daemon import local_name_for
from sidecar.erldist.node import LocalNode
from sidecar.manager import NodeManager
from sidecar.model import NodeState
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode
from tests.support.waiting import eventually

APP_MOD = """-module({app}_app).
-behaviour(application).
-behaviour(supervisor).
-export([start/2, stop/1, init/1]).
start(_, _) -> supervisor:start_link({{local, {app}_sup}}, ?MODULE, []).
stop(_) -> ok.
init([]) -> {{ok, {{#{{}}, []}}}}.
"""


def _app(ebin: Path, name: str, deps: list[str], *, mod: bool = True, vsn: str = "1.0") -> None:
    """An application `name` in `ebin`: its .app file and, with `mod`, a
    callback module starting an empty supervisor."""
    keys = [
        f'{{vsn, "{vsn}"}}',
        f"{{modules, [{name}_app]}}" if mod else "{modules, []}",
        "{registered, []}",
        f"{{applications, [{', '.join(['kernel', 'stdlib', *deps])}]}}",
    ]
    if mod:
        keys.append(f"{{mod, {{{name}_app, []}}}}")
        src = ebin / f"{name}_app.erl"
        src.write_text(APP_MOD.format(app=name))
        subprocess.run(["erlc", "-o", str(ebin), str(src)], check=True)
    (ebin / f"{name}.app").write_text(f"{{application, {name}, [{', '.join(keys)}]}}.\n")


def _ebin(tmp_path: Path) -> Path:
    ebin = tmp_path / "apps" / "ebin"
    ebin.mkdir(parents=True)
    # my_app (depends on sasl and on my_lib, which has a supervisor of its
    # own), and my_tool: a library application (no mod) started after it.
    _app(ebin, "my_lib", [])
    _app(ebin, "my_app", ["sasl", "my_lib"], vsn="1.2.3")
    _app(ebin, "my_tool", [], mod=False)
    return ebin


async def test_plain_node_is_erlang(otp25_node: ErlangNode, local: LocalNode) -> None:
    """OTP's own applications only (sasl, os_mon, mnesia...): no main application."""
    await otp25_node.aeval(
        "{ok, _} = application:ensure_all_started(os_mon), "
        "{ok, _} = application:ensure_all_started(runtime_tools), ok."
    )
    info = await agents.ensure_loaded(local, otp25_node.name)
    assert (info.family_hint, info.family_source) == ("erlang", "default")
    assert info.release_version is None


async def test_main_application_names_the_family(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    node = node_factory("otp25", extra_args=["-pa", str(_ebin(tmp_path))])
    await node.aeval(
        "{ok, Started} = application:ensure_all_started(my_app), "
        "{ok, _} = application:ensure_all_started(my_tool), Started."
    )
    info = await agents.ensure_loaded(local, node.name)
    assert (info.family_hint, info.family_source) == ("my_app", "application")
    assert info.release_version == "1.2.3"
    assert {"my_app", "my_lib", "my_tool", "sasl"} <= set(info.applications)


async def test_known_application_names_its_product(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    """An application called `rabbit' (RabbitMQ's) makes the family `rabbitmq',
    whatever else runs beside it."""
    ebin = _ebin(tmp_path)
    _app(ebin, "rabbit", ["sasl"], vsn="3.10.8")
    node = node_factory("otp25", extra_args=["-pa", str(ebin)])
    await node.aeval(
        "{ok, _} = application:ensure_all_started(rabbit), "
        "{ok, _} = application:ensure_all_started(my_app), ok."
    )
    info = await agents.ensure_loaded(local, node.name)
    assert (info.family_hint, info.family_source) == ("rabbitmq", "application")
    assert info.release_version == "3.10.8"


async def test_elixir_application(elixir_node: ErlangNode, local: LocalNode) -> None:
    node = elixir_node
    before = await agents.ensure_loaded(local, node.name)
    assert (before.family_hint, before.family_source) == ("erlang", "default")
    # A small supervised Elixir application, defined and started at run time.
    await node.aeval(
        "'Elixir.Code':eval_string(<<\"defmodule ShopApp do\\n"
        "  use Application\\n"
        "  def start(_, _), do: Supervisor.start_link([], strategy: :one_for_one)\\n"
        'end">>), '
        'ok = application:load({application, shop_app, [{vsn, "0.4.0"}, '
        "{modules, ['Elixir.ShopApp']}, {registered, []}, "
        "{applications, [kernel, stdlib, elixir, logger]}, {mod, {'Elixir.ShopApp', []}}]}), "
        "{ok, _} = application:ensure_all_started(shop_app), ok.",
        timeout=30,
    )
    await agents.unload(local, node.name)
    info = await agents.ensure_loaded(local, node.name)
    assert (info.family_hint, info.family_source) == ("shop_app", "application")
    assert info.release_version == "0.4.0"


async def test_manager_family_and_the_config_override(
    node_factory: NodeFactory, epmd_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manager takes the agent's family unless the config names one, and
    asks again (here every second instead of every minute) while it comes from
    no release: a node attached before its application started (booting)
    gets the application's family once it runs."""
    monkeypatch.setattr(manager_module, "FAMILY_RECHECK", 1.0)
    ebin = _ebin(tmp_path)
    plain = node_factory("otp25", extra_args=["-pa", str(ebin)])
    pinned = node_factory("otp25", extra_args=["-pa", str(ebin)])
    booting = node_factory("otp25", extra_args=["-pa", str(ebin)])
    for node in (plain, pinned):
        await node.aeval("{ok, _} = application:ensure_all_started(my_app), ok.")
    config = parse_config(
        {
            "cluster": "unit",
            "node_name": "beamside-family@127.0.0.1",
            "targets": [
                {"nodes": [plain.name], "cookie": plain.cookie},
                {"nodes": [pinned.name], "cookie": pinned.cookie, "family": "payments"},
                {"nodes": [booting.name], "cookie": booting.cookie},
            ],
            "intervals": {"metrics": "1s"},
        }
    )
    local = LocalNode(local_name_for(config), "unused", epmd_port=epmd_port)
    manager = NodeManager(config.manager_config(), local)
    await manager.start()
    try:

        def up(node: ErlangNode) -> bool:
            status = manager.status(node.name)
            return status is not None and status.state is NodeState.UP

        def family(node: ErlangNode) -> str | None:
            status = manager.status(node.name)
            return None if status is None else status.family

        await eventually(lambda: up(plain) and up(pinned) and up(booting), 20, "all up")
        assert [family(n) for n in (plain, pinned, booting)] == ["my_app", "payments", "erlang"]
        await eventually(lambda: plain.name in manager.snapshots, 10, "a snapshot")
        assert manager.snapshots[plain.name].family == "my_app"
        # The application starts after the attach: the family follows.
        await booting.aeval("{ok, _} = application:ensure_all_started(my_app), ok.")
        await eventually(lambda: family(booting) == "my_app", 10, "family re-read")
        await eventually(
            lambda: manager.snapshots[booting.name].family == "my_app", 5, "snapshots follow"
        )
        # The config's family is never asked again.
        await pinned.aeval("ok = application:stop(my_app), ok.")
        await asyncio.sleep(2.5)
        assert family(pinned) == "payments"
    finally:
        await manager.stop()
