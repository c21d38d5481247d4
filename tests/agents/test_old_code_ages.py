"""How long each module has had its old code (alarms.old_code.ages_ms): a
module an application regenerates (as RabbitMQ regenerates
rabbit_ff_registry) stays young, a module loaded twice and left grows old."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.alarms.model import Alarm, AlarmKey, Severity
from sidecar.config import parse_config
from sidecar.erldist.node import LocalNode
from tests.support.nodes import ErlangNode
from tests.support.snapshots import node_snapshot

# On the node: a process that regenerates `regen_mod` every 100 ms the way
# rabbit_feature_flags regenerates its registry (forms compiled at run time, a
# new version each time, soft purge then code:load_binary with a fake file).
REGENERATOR = """
register(h5_regen, spawn(fun() ->
    Gen = fun(N) ->
        Forms = [{attribute, 1, module, regen_mod},
                 {attribute, 1, vsn, [N]},
                 {attribute, 1, export, [{v, 0}]},
                 {function, 1, v, 0, [{clause, 1, [], [], [{integer, 1, N}]}]}],
        {ok, regen_mod, Bin} = compile:forms(Forms, []),
        _ = code:soft_purge(regen_mod),
        {module, regen_mod} = code:load_binary(regen_mod, "Generated at run time", Bin)
    end,
    (fun Loop(N) -> Gen(N), receive stop -> ok after 100 -> Loop(N + 1) end end)(1)
end)), ok.
"""


async def _old_code(local: LocalNode, node: ErlangNode) -> dict[str, Any]:
    data = await agents.collect(local, node.name, {"sections": ["alarms"]}, timeout=30)
    old: dict[str, Any] = data["alarms"]["old_code"]
    return old


# Loaded twice from files: the operator's module, one the config ignores, one
# the built-in list ignores (RabbitMQ's feature flag registry's name).
LOADED = ("twice_mod", "ignored_gen", "rabbit_ff_registry")


def _twice_mod(tmp_path: Path) -> Path:
    """The LOADED beams in a directory of their own, for `c:l/1` from the path."""
    out = tmp_path / "twice"
    out.mkdir()
    for name in LOADED:
        src = out / f"{name}.erl"
        src.write_text(f"-module({name}).\n-export([v/0]).\nv() -> 1.\n")
        subprocess.run(["erlc", "-o", str(out), str(src)], check=True)
    return out


async def test_old_code_ages(otp25_node: ErlangNode, local: LocalNode, tmp_path: Path) -> None:
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    assert (await _old_code(local, node))["ages_ms"] == {}

    # The operator's case: the same module loaded twice from a shell, left.
    ebin = _twice_mod(tmp_path)
    await node.aeval(
        f'true = code:add_patha("{ebin}"), {{module, twice_mod}} = c:l(twice_mod), '
        "{module, twice_mod} = c:l(twice_mod), ok."
    )
    await node.aeval(REGENERATOR)
    # regen_mod has old code from its second load on: 100 ms after the
    # first, plus the first compile (the compiler's modules load then).
    deadline = asyncio.get_running_loop().time() + 10
    while (first := await _old_code(local, node))["count"] < 2:
        assert asyncio.get_running_loop().time() < deadline, first
        await asyncio.sleep(0.1)
    assert first["count"] == 2 and first["modules"] == ["regen_mod", "twice_mod"]
    assert set(first["ages_ms"]) == {"regen_mod", "twice_mod"}

    await asyncio.sleep(2.0)
    second = await _old_code(local, node)
    ages = second["ages_ms"]
    # twice_mod: counted from the first collect that saw it, across collects.
    assert ages["twice_mod"] >= first["ages_ms"]["twice_mod"] + 1900, (first, second)
    # regen_mod: new code since the previous collect, so its old code is new.
    assert ages["regen_mod"] < 500, second

    # A third load of the very same code: the old code is replaced by an
    # identical one; the age goes on (documented: not seen between collects).
    await node.aeval("{module, twice_mod} = c:l(twice_mod), ok.")
    third = await _old_code(local, node)
    assert third["ages_ms"]["twice_mod"] >= ages["twice_mod"], third

    # Purged: gone from the view; loaded twice again: a new age from zero.
    await node.aeval("h5_regen ! stop, true = code:soft_purge(twice_mod), ok.")
    await asyncio.sleep(0.3)
    await node.aeval("true = code:soft_purge(regen_mod), ok.")
    assert (await _old_code(local, node))["ages_ms"] == {}
    await node.aeval("{module, twice_mod} = c:l(twice_mod), ok.")
    await asyncio.sleep(0.5)
    again = await _old_code(local, node)
    assert set(again["ages_ms"]) == {"twice_mod"} and again["ages_ms"]["twice_mod"] < 400

    # The ages live in beamside_sysmon's table: after a detach (a sidecar
    # restart) they start again from the next attach; not attached: unknown.
    await agents.detach(local, node.name)
    await agents.ensure_loaded(local, node.name)
    detached = await _old_code(local, node)
    assert detached["count"] == 1 and detached["ages_ms"] == "not_attached"
    await agents.attach(local, node.name)
    await asyncio.sleep(0.2)
    restarted = await _old_code(local, node)
    assert restarted["ages_ms"]["twice_mod"] < 150, restarted
    await agents.detach(local, node.name)


async def test_old_code_alarm_age_and_ignore(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    """The alarm on real collects: only the module loaded twice and left,
    once older than `age`; not the regenerated one, not the ignored ones."""
    config = parse_config(
        {
            "cluster": "c",
            "targets": [{"nodes": [otp25_node.name], "cookie_env": "X"}],
            "alarms": {"old_code": {"age": "1500ms", "ignore": ["ignored_*"]}},
        }
    )
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine, config.alarms.overrides, interval=0.3)
    node = otp25_node
    await agents.ensure_loaded(local, node.name)
    await agents.attach(local, node.name)
    ebin = _twice_mod(tmp_path)
    twice = "{module, M} = c:l(M), {module, M} = c:l(M)"
    await node.aeval(
        f'true = code:add_patha("{ebin}"), '
        + "".join(f"M{i} = {m}, {twice.replace('M', f'M{i}')}, " for i, m in enumerate(LOADED))
        + "ok."
    )
    await node.aeval(REGENERATOR)

    async def tick() -> Alarm | None:
        data = await agents.collect(local, node.name, {"sections": ["alarms"]}, timeout=30)
        checker.on_snapshot(node_snapshot(node.name, "f", "c", time.time(), 0.01, data))
        return engine.get(AlarmKey("old_code", node.name))

    started = time.monotonic()
    alarm = await tick()
    while alarm is None and time.monotonic() - started < 10:
        await asyncio.sleep(0.3)
        alarm = await tick()
    took = time.monotonic() - started
    assert alarm is not None, "old_code not raised"
    assert 1.5 <= took < 3.0, took
    assert alarm.severity is Severity.WARNING
    assert alarm.info["modules"] == ["twice_mod"], alarm.info
    assert "1 module(s) have had old code for more than 1.5 s: twice_mod" in alarm.cause
    # Regenerated all along, ignored (by config, by default): still not counted.
    await asyncio.sleep(1.0)
    alarm = await tick()
    assert alarm is not None and alarm.info["modules"] == ["twice_mod"], alarm
    # Purged: cleared.
    await node.aeval("true = code:soft_purge(twice_mod), ok.")
    assert await tick() is None
    await node.aeval("h5_regen ! stop, ok.")
    await agents.detach(local, node.name)
