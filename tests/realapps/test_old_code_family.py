"""On each real application: its family is its main application, os_mon's
switched-off servers are no section error, and the code the application
regenerates itself (RabbitMQ's stop_app/start_app, ejabberd's reload_config,
Yaws' HUP) never raises old_code -- even with a 2 s `age` -- while a module
loaded twice and left on the same node does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.alarms.model import Alarm, AlarmKey
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist
from tests.realapps.conftest import RunningApp
from tests.support.snapshots import node_snapshot

FAMILY = {"rabbitmq": "rabbitmq", "ejabberd": "ejabberd", "yaws": "yaws", "elixir": "shop"}
AGE = 2.0
PROBE_MOD = "oc_probe_twice"  # the operator's module, loaded twice and left


def _reload(app: RunningApp) -> None:
    """The application reloads its own code/config its own way."""
    launcher = app.launcher
    if app.kind == "rabbitmq":
        for cmd in ("stop_app", "start_app"):
            res = launcher._ctl(cmd, timeout=120)  # type: ignore[attr-defined]
            assert res.returncode == 0, res.stdout + res.stderr
    elif app.kind == "ejabberd":
        for _ in range(2):
            res = launcher._ctl("reload_config")  # type: ignore[attr-defined]
            assert res.returncode == 0, res.stdout + res.stderr
    elif app.kind == "yaws":
        res = launcher._yaws("--hup")  # type: ignore[attr-defined]
        assert res.returncode == 0, res.stdout + res.stderr


def _beam(tmp_path: Path, version: int) -> bytes:
    out = tmp_path / f"v{version}"
    out.mkdir(exist_ok=True)
    src = out / f"{PROBE_MOD}.erl"
    src.write_text(f"-module({PROBE_MOD}).\n-export([v/0]).\nv() -> {version}.\n")
    subprocess.run(["erlc", "-o", str(out), str(src)], check=True)
    return (out / f"{PROBE_MOD}.beam").read_bytes()


async def _scenario(app: RunningApp, tmp_path: Path) -> None:
    node = app.node.name
    local = LocalNode(
        f"beamside-oc{os.getpid()}@localhost", app.node.cookie, epmd_port=app.node.epmd_port
    )
    engine = AlarmEngine("realapps")
    checker = AlarmChecker(engine, {"old_code": {"age": AGE}}, interval=0.5)
    try:
        info = await agents.ensure_loaded(local, node)
        assert (info.family_hint, info.family_source) == (FAMILY[app.kind], "application")
        await agents.attach(local, node)

        async def tick() -> Alarm | None:
            data = await agents.collect(
                local, node, {"sections": ["alarms", "plugins"]}, timeout=30
            )
            old = data["alarms"]["old_code"]
            assert isinstance(old["ages_ms"], dict), old
            os_mon = data["plugins"].get("os_mon", {})
            assert not [k for k, v in os_mon.items() if agents.is_error(v)], os_mon
            checker.on_snapshot(node_snapshot(node, "f", "c", time.time(), 0.01, data))
            return engine.get(AlarmKey("old_code", node))

        await tick()
        await asyncio.to_thread(_reload, app)
        deadline = time.monotonic() + AGE + 2.0
        while time.monotonic() < deadline:
            alarm = await tick()
            assert alarm is None, (alarm.cause, alarm.info)
            await asyncio.sleep(0.5)

        # The operator's case on the same node: loaded twice, left.
        for version in (1, 2):
            beam = _beam(tmp_path, version)
            reply = await local.rpc(
                node, "code", "load_binary", [Atom(PROBE_MOD), Charlist(f"{PROBE_MOD}.erl"), beam]
            )
            assert reply == (Atom("module"), Atom(PROBE_MOD))
        started = time.monotonic()
        alarm = await tick()
        while alarm is None and time.monotonic() - started < AGE + 5:
            await asyncio.sleep(0.5)
            alarm = await tick()
        assert alarm is not None and alarm.info["modules"] == [PROBE_MOD], alarm
        assert time.monotonic() - started >= AGE - 0.6
        for fn in ("soft_purge", "delete", "purge"):
            await local.rpc(node, "code", fn, [Atom(PROBE_MOD)])
        assert await tick() is None
    finally:
        await agents.detach(local, node)
        await local.close()


async def test_family_os_mon_and_old_code(app: RunningApp, tmp_path: Path) -> None:
    await _scenario(app, tmp_path)
