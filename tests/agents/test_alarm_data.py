"""The node-side alarm data (agent protocol 2), against real nodes.

SASL alarms forwarded and their handler removed again, mnesia system events,
old code, startup files, module md5s, application environment, time and the
dist node list, and the residue rules for all of them.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR, section_errors, snapshot, wait_for
from tests.conftest import NodeFactory
from tests.support.golden import exposition
from tests.support.nodes import ErlangNode
from tests.support.prometheus import promtool_check_metrics

A = Atom
HANDLERS = "gen_event:which_handlers(alarm_handler)."
OURS = "[H || {beamside_alarm_handler, _} = H <- gen_event:which_handlers(alarm_handler)]."


async def _alarms(local: LocalNode, node: ErlangNode, **opts: Any) -> dict[str, Any]:
    data = await agents.collect(local, node.name, {"sections": ["alarms"], **opts}, timeout=30)
    alarms: dict[str, Any] = data["alarms"]
    return alarms


def _sasl_ids(alarms: dict[str, Any]) -> dict[bytes, bytes]:
    sasl = alarms["sasl"]
    assert isinstance(sasl, dict), sasl
    assert sasl["count"] == len(sasl["alarms"]) and sasl["truncated"] is False
    return {a["id"]: a["description"] for a in sasl["alarms"]}


def compile_module(tmp_path: Path, name: str, version: int) -> bytes:
    """A tiny module compiled by OTP 25 (loads everywhere); each version differs."""
    out = tmp_path / f"v{version}"
    out.mkdir(exist_ok=True)
    src = out / f"{name}.erl"
    src.write_text(f"-module({name}).\n-export([version/0]).\nversion() -> {version}.\n")
    subprocess.run(["erlc", "-o", str(out), str(src)], check=True)
    return (out / f"{name}.beam").read_bytes()


async def load_binary(local: LocalNode, node: ErlangNode, name: str, beam: bytes) -> None:
    mod = A(name)
    reply = await local.rpc(node.name, "code", "load_binary", [mod, Charlist(f"{name}.erl"), beam])
    assert reply == (A("module"), mod)


# --------------------------------------------------------------------------- SASL


async def test_sasl_alarms_forwarded_and_handler_removed(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    node = node_factory("otp25", extra_args=["-boot", "start_sasl"])
    assert node.eval("whereis(alarm_handler) =/= undefined.") == "true"
    # Set before we attach: the seed must bring it in.
    node.eval('alarm_handler:set_alarm({{disk_almost_full, "/data"}, []}).')
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    alarms = await _alarms(local, node)
    assert section_errors(alarms) == {}
    assert _sasl_ids(alarms) == {b'{disk_almost_full,"/data"}': b"[]"}
    assert alarms["sasl"]["alarms"][0]["name"] == b"disk_almost_full"
    assert node.eval(OURS).startswith("[{beamside_alarm_handler,")
    sysmon = (await agents.collect(local, node.name, {"sections": ["sysmon"]}))["sysmon"]
    assert (sysmon["alarm_handler"], sysmon["mnesia_subscribed"]) == ("installed", False)

    node.eval('alarm_handler:set_alarm({my_alarm, "disk on fire"}).')
    ids = _sasl_ids(await _alarms(local, node))
    assert ids[b"my_alarm"] == b'"disk on fire"'
    node.eval("alarm_handler:clear_alarm(my_alarm).")
    assert b"my_alarm" not in _sasl_ids(await _alarms(local, node))

    # Big terms are printed bounded; at most 100 alarms are listed.
    node.eval(
        "Long = list_to_atom(lists:duplicate(200, $x)), "
        "[alarm_handler:set_alarm({{many, I}, {Long, Long, Long}}) || I <- lists:seq(1, 150)], "
        "alarm_handler:get_alarms(), ok."  # a call: every set_alarm above is handled
    )
    sasl = (await _alarms(local, node))["sasl"]
    assert sasl["count"] == 151 and len(sasl["alarms"]) == 100 and sasl["truncated"] is True
    many = [a for a in sasl["alarms"] if a["name"] == b"many"]
    assert all(len(a["description"]) == 512 and a["description"].endswith(b"...") for a in many)

    text = exposition([await snapshot(local, node)])
    lint = promtool_check_metrics(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert b"erlang_vm_sasl_alarms{" in text

    await agents.detach(local, node.name)
    assert node.eval(HANDLERS) == "[alarm_handler]"
    assert await node.aeval(RESIDUE_EXPR) == NO_RESIDUE


async def test_sasl_handler_removed_when_the_sidecar_goes(
    node_factory: NodeFactory, cookie: str, epmd_port: int
) -> None:
    node = node_factory("otp25", extra_args=["-boot", "start_sasl"])
    local = LocalNode("beamside-sasl-drop@127.0.0.1", cookie, epmd_port=epmd_port)
    try:
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name)
        await _alarms(local, node)
        assert node.eval(OURS) != "[]"
    finally:
        await local.close()
    assert await wait_for(node, HANDLERS, "[alarm_handler]") == "[alarm_handler]"
    assert await wait_for(node, "whereis(beamside_sysmon).", "undefined") == "undefined"


async def test_sasl_handler_removed_when_the_agent_is_killed(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    """The watchdog removes our handler at once if beamside_sysmon dies."""
    node = node_factory("otp25", extra_args=["-boot", "start_sasl"])
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    await _alarms(local, node)
    assert node.eval(OURS) != "[]"
    node.eval("exit(whereis(beamside_sysmon), kill).")
    assert await wait_for(node, HANDLERS, "[alarm_handler]") == "[alarm_handler]"
    await agents.detach(local, node.name)
    assert await node.aeval(RESIDUE_EXPR) == NO_RESIDUE


async def test_sasl_started_and_stopped_while_attached(
    otp25_node: ErlangNode, local: LocalNode
) -> None:
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    assert (await _alarms(local, node))["sasl"] == "not_running"
    sysmon = node.eval("whereis(beamside_sysmon).")

    node.eval("ok = application:start(sasl).")
    node.eval('alarm_handler:set_alarm({late_alarm, "after attach"}).')
    # The next collect sees sasl and installs the handler (seeded).
    assert _sasl_ids(await _alarms(local, node)) == {b"late_alarm": b'"after attach"'}
    node.eval("alarm_handler:clear_alarm(late_alarm).")
    assert _sasl_ids(await _alarms(local, node)) == {}

    # sasl stopping takes the handler (and the link to us) away: we survive.
    node.eval("ok = application:stop(sasl).")
    assert (await _alarms(local, node))["sasl"] == "not_running"
    assert node.eval("whereis(beamside_sysmon).") == sysmon
    # ... and a restarted sasl gets a new handler.
    node.eval("ok = application:start(sasl).")
    node.eval("alarm_handler:set_alarm({again, []}).")
    assert _sasl_ids(await _alarms(local, node)) == {b"again": b"[]"}
    await agents.detach(local, node.name)
    assert await node.aeval(RESIDUE_EXPR) == NO_RESIDUE


async def test_sasl_alarms_without_attach(node_factory: NodeFactory, local: LocalNode) -> None:
    """Not attached: alarm_handler:get_alarms() directly, nothing installed."""
    node = node_factory("otp25", extra_args=["-boot", "start_sasl"])
    node.eval("alarm_handler:set_alarm({unattached, []}).")
    await agents.ensure_loaded(local, node.name)
    alarms = await _alarms(local, node)
    assert _sasl_ids(alarms) == {b"unattached": b"[]"}
    assert alarms["sasl"]["alarms"][0]["set_at_ms"] == "undefined"
    assert node.eval(HANDLERS) == "[alarm_handler]"
    assert alarms["mnesia"] == "not_running"


# --------------------------------------------------------------------------- mnesia

SUBSCRIBED = "lists:member(whereis(beamside_sysmon), mnesia:system_info(subscribers))."


async def test_mnesia_overload_counted_and_subscription_removed(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    # A disc schema with a tiny dump_log_write_threshold: a burst of writes
    # makes mnesia report real {mnesia_overload, {dump_log, write_threshold}}.
    db = tmp_path / "mnesia"
    await node.aeval(
        f'ok = application:set_env(mnesia, dir, "{db}"), '
        "ok = application:set_env(mnesia, dump_log_write_threshold, 10), "
        "ok = mnesia:create_schema([node()]), ok = mnesia:start(), "
        "{atomic, ok} = mnesia:create_table(t, [{disc_copies, [node()]}]), ok.",
        timeout=30,
    )
    alarms = await _alarms(local, node)  # subscribes: mnesia started after attach
    assert alarms["mnesia"]["subscribed"] is True
    assert (alarms["mnesia"]["overload"], alarms["mnesia"]["last_overload"]) == (0, "none")
    assert node.eval(SUBSCRIBED) == "true"

    await node.aeval(
        "Self = self(), "
        "[spawn(fun() -> [mnesia:transaction(fun() -> mnesia:write({t, {I, J}, x}) end)"
        " || J <- lists:seq(1, 200)], Self ! done end) || I <- lists:seq(1, 20)], "
        "[receive done -> ok end || _ <- lists:seq(1, 20)], ok.",
        timeout=60,
    )
    mnesia = (await _alarms(local, node))["mnesia"]
    print(f"\nmnesia_overload events counted: {mnesia['overload']}")
    assert mnesia["overload"] > 0
    assert mnesia["last_overload"]["details"] == b"{dump_log,write_threshold}"
    assert mnesia["last_overload"]["at_ms"] > 0
    assert mnesia["inconsistent_database"] == 0
    # ... and exported, promtool-clean.
    text = exposition([await snapshot(local, node)])
    lint = promtool_check_metrics(text)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    overloads = [
        line
        for line in text.decode().splitlines()
        if line.startswith("erlang_mnesia_system_events_total{") and "mnesia_overload" in line
    ]
    assert len(overloads) == 1 and float(overloads[0].split()[-1]) > 0

    sysmon = node.eval("whereis(beamside_sysmon).")
    await agents.detach(local, node.name)
    member = f'lists:member(list_to_pid("{sysmon}"), mnesia:system_info(subscribers)).'
    assert node.eval(member) == "false"
    assert await node.aeval(RESIDUE_EXPR) == NO_RESIDUE


async def test_mnesia_inconsistent_database_from_a_partition(
    node_factory: NodeFactory, local: LocalNode
) -> None:
    """Two mnesia nodes lose their link and get it back: both report
    {inconsistent_database, running_partitioned_network, Other}."""
    a, b = node_factory.many(2, "otp25")
    start = "ok = application:set_env(mnesia, schema_location, ram), ok = mnesia:start(), ok."
    await asyncio.gather(a.aeval(start, timeout=30), b.aeval(start, timeout=30))
    await a.aeval(
        f"{{ok, [_]}} = mnesia:change_config(extra_db_nodes, ['{b.name}']), "
        f"{{atomic, ok}} = mnesia:create_table(t, [{{ram_copies, [node(), '{b.name}']}}]), ok.",
        timeout=30,
    )
    await agents.ensure_loaded(local, a.name)
    await agents.attach(local, a.name)
    before = (await _alarms(local, a))["mnesia"]
    assert before["subscribed"] is True and before["inconsistent_database"] == 0

    await a.aeval(f"true = erlang:disconnect_node('{b.name}'), ok.")
    await wait_for(a, "length(mnesia:system_info(running_db_nodes)).", "1")
    await a.aeval(f"true = net_kernel:connect_node('{b.name}'), ok.")
    deadline = time.monotonic() + 10
    while True:
        mnesia = (await _alarms(local, a))["mnesia"]
        if mnesia["inconsistent_database"] > 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert mnesia["inconsistent_database"] == 1
    last = mnesia["last_inconsistent_database"]
    assert last["context"] == b"running_partitioned_network"
    assert last["node"] == f"'{b.name}'".encode()
    await agents.detach(local, a.name)
    assert await a.aeval(RESIDUE_EXPR) == NO_RESIDUE


# --------------------------------------------------------------------------- code


async def test_old_code_listed(otp28_node: ErlangNode, local: LocalNode, tmp_path: Path) -> None:
    node = otp28_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    await load_binary(local, node, "fixture_old", compile_module(tmp_path, "fixture_old", 1))
    await load_binary(local, node, "fixture_old", compile_module(tmp_path, "fixture_old", 2))
    data = await agents.collect(local, node.name, {"sections": ["limits", "alarms"]})
    old = data["alarms"]["old_code"]
    assert (old["count"], old["modules"]) == (1, ["fixture_old"])
    assert list(old["ages_ms"]) == ["fixture_old"]
    assert 0 <= old["ages_ms"]["fixture_old"] < 5000
    assert data["limits"]["modules_old_code"] == 1
    assert node.eval("code:soft_purge(fixture_old).") == "true"
    alarms = await _alarms(local, node)
    assert alarms["old_code"] == {"count": 0, "modules": [], "ages_ms": {}}


async def test_modules_md5_differ_across_nodes(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    a, b = node_factory.many(2, "otp25")
    await load_binary(local, a, "fixture_family", compile_module(tmp_path, "fixture_family", 1))
    await load_binary(local, b, "fixture_family", compile_module(tmp_path, "fixture_family", 2))
    mods = {}
    for node in (a, b):
        await agents.ensure_loaded(local, node.name)
        data = await agents.collect(local, node.name, {"sections": [], "modules_md5": True})
        assert set(data) >= {"modules", "timings"} and "processes" not in data
        mods[node.name] = data["modules"]
    ma, mb = mods[a.name], mods[b.name]
    assert ma["fixture_family"] != mb["fixture_family"]
    assert len(ma["fixture_family"]) == 32
    assert ma["lists"] == mb["lists"]  # same OTP: same stdlib
    assert len(ma) > 50


# --------------------------------------------------------------------------- startup files


async def test_startup_files_clean_on_every_runtime(any_node: ErlangNode, local: LocalNode) -> None:
    await agents.ensure_loaded(local, any_node.name)
    data = await agents.collect(local, any_node.name, {"startup_files": True})
    files = data["startup_files"]
    took = data["timings"]["startup_files"]
    print(f"\n{any_node.runtime}: {files['checked']} startup files checked in {took} us")
    assert files["errors"] == [] and files["truncated"] is False
    assert files["checked"] >= 3  # boot file, kernel.app, stdlib.app at least


async def test_corrupt_sys_config_reported(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    config = tmp_path / "x.config"
    config.write_text("[{kernel, [{logger_level, notice}]}].\n")
    # Without the suffix, as releases pass it: the node reads x.config.
    node = node_factory("otp25", extra_args=["-config", str(tmp_path / "x")])
    await agents.ensure_loaded(local, node.name)
    clean = (await agents.collect(local, node.name, {"startup_files": True}))["startup_files"]
    assert clean["errors"] == []

    config.write_text("[{kernel, [{logger_level, notice}]}\n garbage ((( \n")
    files = (await agents.collect(local, node.name, {"startup_files": True}))["startup_files"]
    assert files["checked"] == clean["checked"]
    assert len(files["errors"]) == 1
    error = files["errors"][0]
    assert error["file"] == str(config).encode() and error["kind"] == "config"
    assert error["reason"].startswith(b"line ")

    config.write_text("{a, tuple}.\n")
    files = (await agents.collect(local, node.name, {"startup_files": True}))["startup_files"]
    assert [e["reason"] for e in files["errors"]] == [b"not_a_list"]

    config.unlink()
    files = (await agents.collect(local, node.name, {"startup_files": True}))["startup_files"]
    assert [e["reason"] for e in files["errors"]] == [b"enoent"]


# --------------------------------------------------------------------------- env, time, dist


async def test_env_keys(elixir_node: ErlangNode, local: LocalNode) -> None:
    node = elixir_node
    node.eval(
        'application:set_env(myapp, db_url, "http://example/db"),'
        ' application:set_env(myapp, secret_url, "http://u:hunter2@example/db"), ok.'
    )
    await agents.ensure_loaded(local, node.name)
    keys = [("myapp", "db_url"), ("myapp", "unset"), ["kernel", "logger_level"], "bogus"]
    keys.append(("myapp", "secret_url"))
    data = await agents.collect(local, node.name, {"sections": [], "env_keys": keys})
    env = data["env"]
    assert set(env) == {
        (A("myapp"), A("db_url")),
        (A("myapp"), A("unset")),
        (A("kernel"), A("logger_level")),
        (A("myapp"), A("secret_url")),
    }
    value = env[(A("myapp"), A("db_url"))]
    assert value["text"] == b'"http://example/db"'
    assert str(value["hash"]) == node.eval('erlang:phash2("http://example/db").')
    assert env[(A("myapp"), A("unset"))] == "undefined"
    # a key that names a secret: the hash compares values, the text hides it
    secret = env[(A("myapp"), A("secret_url"))]
    assert b"hunter2" not in secret["text"] and secret["text"].startswith(b"<redacted ")
    assert str(secret["hash"]) == node.eval('erlang:phash2("http://u:hunter2@example/db").')
    hashes = await agents.collect(
        local, node.name, {"sections": [], "env_keys": keys[:1], "env_text": False}
    )
    assert hashes["env"][(A("myapp"), A("db_url"))] == {"hash": value["hash"]}


async def test_time_and_dist_nodes(node_factory: NodeFactory, local: LocalNode) -> None:
    a, b = node_factory.many(2, "otp25")
    a.eval(f"true = net_kernel:connect_node('{b.name}').")
    await agents.ensure_loaded(local, a.name)
    data = await agents.collect(local, a.name, {"sections": ["time", "dist_nodes", "limits"]})
    assert data["dist_nodes"] == [b.name]  # visible only: not us (hidden)
    assert data["limits"]["dist_visible"] == 1
    t = data["time"]
    assert abs(t["system_time_us"] / 1e6 - time.time()) < 60
    assert abs(t["erlang_system_time_us"] - t["system_time_us"]) < 5_000_000
    assert t["utc_offset_s"] == time.localtime().tm_gmtoff
    a.eval(f"true = erlang:disconnect_node('{b.name}').")
    data = await agents.collect(local, a.name, {"sections": ["dist_nodes"]})
    assert data["dist_nodes"] == []


async def test_shell_history_size(
    node_factory: NodeFactory, local: LocalNode, tmp_path: Path
) -> None:
    history = tmp_path / "history"
    history.mkdir()
    (history / "erlang-shell-log.1").write_bytes(b"x" * 1000)
    (history / "erlang-shell-log.idx").write_bytes(b"y" * 24)
    node = node_factory(
        "otp25",
        extra_args=["-kernel", "shell_history", "enabled",
                    "-kernel", "shell_history_path", f'"{history}"'],
    )  # fmt: skip
    await agents.ensure_loaded(local, node.name)
    shell = (await _alarms(local, node))["shell_history"]
    assert shell["path"] == str(history).encode()
    assert (shell["files"], shell["bytes"], shell["truncated"]) == (2, 1024, False)
