"""Agent lifecycle when the sidecar goes without a goodbye: no residue within
10 s (modules included), nothing in the node's log above info, nothing
reaching other handlers of the shared event managers, and an orphaned newer
agent replaced by whatever beamside attaches next.  Real nodes throughout;
the sidecars that get killed are real child processes
(tests/agents/sidecar_child.py)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidecar import agents
from sidecar.agents import AGENT_VERSION, AgentConflict
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.config import parse_config
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist
from sidecar.manager import NodeManager
from sidecar.model import NodeState
from tests.agents.conftest import NO_RESIDUE, RESIDUE_EXPR
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode, Runtime, unique_node_name
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
CLEANUP_S = 10.0

# What RESIDUE_EXPR does not cover: logger handlers and the handlers of the
# shared event managers beamside may add itself to.
HANDLERS_EXPR = """
Ours = fun(A) -> S = atom_to_list(A),
                 lists:prefix("beamside", S) andalso not lists:prefix("beamside_test_", S)
       end,
Logger = [H || H <- logger:get_handler_ids(), Ours(H)],
GenEv = [{M, H} || M <- [alarm_handler, erl_signal_server, lager_event], whereis(M) =/= undefined,
                   H <- gen_event:which_handlers(M),
                   Ours(case H of {HM, _} -> HM; HM -> HM end)],
{Logger, GenEv}.
"""
NO_HANDLERS = "{[],[]}"

# A user handler in the shared managers that records every info message
# it gets (gen_event hands a linked process's exit to all handlers).
RECORDER_SRC = """
-module(bs_recorder_h).
-behaviour(gen_event).
-export([init/1, handle_event/2, handle_call/2, handle_info/2, terminate/2]).
init(_) -> {ok, []}.
handle_event(_, S) -> {ok, S}.
handle_call(get, S) -> {ok, lists:reverse(S), S};
handle_call(get_loglevel, S) -> {ok, {mask, 0}, S}.  % asked by lager of every backend
handle_info(I, S) -> {ok, [{info, I} | S]}.
terminate(_, _) -> ok.
"""

FAKE_AGENT_SRC = """
-module(beamside_agent).
-export([version/0, info/0, detach/0, start/0, loop/0]).
version() -> {version}.
info() -> #{{agent_version => {version}, modules => #{{}},
            attached => whereis(beamside_sysmon) =/= undefined,
            sidecars => {sidecars}}}.
start() -> register(beamside_sysmon, spawn(fun ?MODULE:loop/0)), ok.
loop() -> receive stop -> ok; _ -> ?MODULE:loop() end.
detach() -> catch beamside_sysmon ! stop, ok.
"""

LEVEL_RE = re.compile(r"^(emergency|alert|critical|error|warning|notice|info|debug) ", re.M)


def compile_module(tmp_path: Path, name: str, source: str) -> bytes:
    """Compiled with the OTP 25 erlc (loads on OTP 25 and 28)."""
    src = tmp_path / f"{name}.erl"
    src.write_text(source)
    subprocess.run(["erlc", "-o", str(tmp_path), str(src)], check=True, timeout=60)
    return (tmp_path / f"{name}.beam").read_bytes()


def prepare(node: ErlangNode, tmp_path: Path) -> Path:
    """SASL running, the recorder in alarm_handler, erl_signal_server and
    lager_event, a logger file handler taking everything from info up; the
    log file.

    The OTP 28 runtime here has no SASL: a plain gen_event manager
    registered as alarm_handler stands in (beamside adds its handler to
    whatever runs under that name)."""
    beam = compile_module(tmp_path, "bs_recorder_h", RECORDER_SRC)
    node.eval(f"{{module, _}} = code:load_binary(bs_recorder_h, \"bs_recorder_h.beam\", "
              f"<<{','.join(str(b) for b in beam)}>>), ok.")  # fmt: skip
    node.eval(
        "case code:lib_dir(sasl) of"
        " {error, _} -> {ok, _} = gen_event:start({local, alarm_handler});"
        " _ -> {ok, _} = application:ensure_all_started(sasl) end, ok."
    )
    node.eval("ok = gen_event:add_handler(alarm_handler, bs_recorder_h, []).")
    node.eval("ok = gen_event:add_handler(erl_signal_server, bs_recorder_h, []).")
    # a plain manager stands in for lager's sink on every runtime (OTP 28 here
    # has no lager); real lager: test_real_lager_sees_nothing_of_beamside_going
    node.eval("{ok, _} = gen_event:start({local, lager_event}), ok.")
    node.eval("ok = gen_event:add_handler(lager_event, bs_recorder_h, []).")
    log = tmp_path / f"{node.alive_name}.logger.log"
    node.eval(
        "ok = logger:add_handler(bs_test_file, logger_std_h, #{level => all, "
        f'config => #{{file => "{log}"}}, formatter => {{logger_formatter, '
        '#{single_line => true, template => [level, " ", msg, "\\n"]}}}), '
        "ok = logger:set_primary_config(level, info)."
    )
    return log


def recorded(node: ErlangNode) -> tuple[str, str, str]:
    return (
        node.eval("gen_event:call(alarm_handler, bs_recorder_h, get)."),
        node.eval("gen_event:call(erl_signal_server, bs_recorder_h, get)."),
        node.eval("gen_event:call(lager_event, bs_recorder_h, get)."),
    )


def loud_lines(log: Path) -> list[str]:
    """Lines of the node's logger file above info."""
    if not log.exists():
        return []
    text = log.read_text(errors="replace")
    out = []
    for line in text.splitlines():
        m = LEVEL_RE.match(line)
        if m is None or m.group(1) not in ("info", "debug"):
            out.append(line)
    return out


async def residue(node: ErlangNode) -> tuple[str, str]:
    return await node.aeval(RESIDUE_EXPR), await node.aeval(HANDLERS_EXPR)


async def wait_clean(node: ErlangNode, timeout: float = CLEANUP_S) -> float:
    """Seconds until nothing of beamside is left; fails after ``timeout``."""
    t0 = time.monotonic()
    last = ("", "")
    while time.monotonic() - t0 < timeout:
        last = await residue(node)
        if last == (NO_RESIDUE, NO_HANDLERS):
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    watchdog = await node.aeval(
        "case whereis(beamside_watchdog) of undefined -> none; W -> "
        "{process_info(W, [current_function, message_queue_len]), nodes(connected)} end."
    )
    pytest.fail(f"beamside residue on {node.name} after {timeout}s: {last}; watchdog {watchdog}")


class Child:
    """A sidecar in a child process (tests/agents/sidecar_child.py)."""

    def __init__(self, node: ErlangNode, epmd_port: int, mode: str) -> None:
        self.name = f"{unique_node_name('bschild')}@127.0.0.1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.agents.sidecar_child", node.name, node.cookie,
             self.name, str(epmd_port), mode],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def wait_attached(self, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == b"ATTACHED" or not line:
                break
        if line.strip() != b"ATTACHED":
            self.kill()
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            pytest.fail(f"child sidecar did not attach: {line!r}\n{err}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for c in made:
        c.kill()


RUNTIMES: list[Runtime] = ["otp25", "otp28", "elixir"]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_sidecar_killed_leaves_nothing_and_logs_nothing(
    runtime: Runtime,
    node_factory: NodeFactory,
    epmd_port: int,
    tmp_path: Path,
    children: list[Child],
) -> None:
    node = node_factory(runtime)
    log = prepare(node, tmp_path)
    before = await residue(node)
    assert before == (NO_RESIDUE, NO_HANDLERS)
    stdout_offset = len(node.log_text())
    timings = []
    for mode in ["collect", "detach_race", "idle", "collect", "detach_race", "collect"]:
        child = Child(node, epmd_port, mode)
        children.append(child)
        child.wait_attached()
        if mode != "detach_race":  # that one detaches right after attaching
            assert await node.aeval("whereis(beamside_sysmon) =/= undefined.") == "true"
        await asyncio.sleep(random.uniform(0.0, 0.4))
        child.kill()
        killed = time.monotonic()
        await wait_clean(node)
        timings.append(time.monotonic() - killed)
    print(f"\n{runtime}: clean {max(timings):.2f}s at most after SIGKILL ({timings})")
    assert loud_lines(log) == []
    stdout = node.log_text()[stdout_offset:]
    assert "beamside" not in stdout, stdout
    assert recorded(node) == ("[]", "[]", "[]")
    assert await node.aeval("erlang:system_flag(microstate_accounting, false).") == "false"


async def test_sidecar_killed_before_attach_leaves_nothing(
    otp25_node: ErlangNode, epmd_port: int, tmp_path: Path, children: list[Child]
) -> None:
    """Loaded, killed before attaching: the guard watchdog unloads."""
    node = otp25_node
    log = prepare(node, tmp_path)
    for _ in range(2):
        child = Child(node, epmd_port, "loaded")
        children.append(child)
        child.wait_attached()
        assert await node.aeval("is_pid(whereis(beamside_watchdog)).") == "true"
        assert await node.aeval("whereis(beamside_sysmon).") == "undefined"
        # a second, attaching sidecar replaces the guard and is not disturbed
        other = Child(node, epmd_port, "idle")
        children.append(other)
        other.wait_attached()
        child.kill()
        await asyncio.sleep(1.0)
        assert await node.aeval("is_pid(whereis(beamside_sysmon)).") == "true"
        assert await node.aeval("code:is_loaded(beamside_agent) =/= false.") == "true"
        other.kill()
        await wait_clean(node)
        child = Child(node, epmd_port, "loaded")
        children.append(child)
        child.wait_attached()
        child.kill()
        took = await wait_clean(node)
        print(f"\nclean {took:.2f}s after a SIGKILL before attach")
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


@pytest.mark.parametrize("runtime", ["otp25", "otp28"])
async def test_node_side_disconnect_leaves_nothing(
    runtime: Runtime,
    node_factory: NodeFactory,
    epmd_port: int,
    tmp_path: Path,
    children: list[Child],
) -> None:
    node = node_factory(runtime)
    log = prepare(node, tmp_path)
    # idle: a collecting child would connect again at once (and rightly
    # keep the watchdog waiting, being a connected beamside)
    child = Child(node, epmd_port, "idle")
    children.append(child)
    child.wait_attached()
    await asyncio.sleep(0.3)
    assert await node.aeval(f"net_kernel:disconnect('{child.name}').") == "true"
    took = await wait_clean(node)
    print(f"\n{runtime}: clean {took:.2f}s after net_kernel:disconnect")
    child.kill()
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_clean_detach_leaves_nothing_and_reaches_no_other_handler(
    runtime: Runtime, node_factory: NodeFactory, epmd_port: int, cookie: str, tmp_path: Path
) -> None:
    node = node_factory(runtime)
    log = prepare(node, tmp_path)
    local = LocalNode("beamside-clean@127.0.0.1", cookie, epmd_port=epmd_port)
    try:
        for _ in range(2):
            box = local.mailbox(agents.EVENTS_MAILBOX)
            await agents.ensure_loaded(local, node.name)
            opts = agents.EventOptions(log_level="info").to_attach_opts()
            await agents.attach(local, node.name, {**opts, "msacc": True})
            data = await agents.collect(local, node.name)
            assert data[Atom("sysmon")][Atom("alarm_handler")] == Atom("installed")
            await agents.detach(local, node.name)
            # still connected: nothing left right after detach returns
            assert await residue(node) == (NO_RESIDUE, NO_HANDLERS)
            box.close()
    finally:
        await local.close()
    await asyncio.sleep(1.0)
    assert await residue(node) == (NO_RESIDUE, NO_HANDLERS)
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


async def test_watchdog_waits_while_a_sidecar_is_connected(
    otp25_node: ErlangNode, epmd_port: int, cookie: str, tmp_path: Path, children: list[Child]
) -> None:
    """Two sidecars attached: killing one leaves the agent to the other."""
    node = otp25_node
    log = prepare(node, tmp_path)
    local = LocalNode("beamside-stays@127.0.0.1", cookie, epmd_port=epmd_port)
    try:
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name)
        child = Child(node, epmd_port, "idle")
        children.append(child)
        child.wait_attached()
        child.kill()
        await asyncio.sleep(CLEANUP_S / 2)
        data = await agents.collect(local, node.name)
        assert data[Atom("sysmon")][Atom("sidecars")] == 1
        assert await node.aeval("whereis(beamside_watchdog) =/= undefined.") == "true"
    finally:
        await local.close()
    await wait_clean(node)
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


# --------------------------------------------------------------------------- versions


async def load_fake_agent(
    local: LocalNode, node: ErlangNode, tmp_path: Path, sidecars: str
) -> None:
    beam = compile_module(
        tmp_path,
        "beamside_agent",
        FAKE_AGENT_SRC.format(version=AGENT_VERSION + 1, sidecars=sidecars),
    )
    mod = Atom("beamside_agent")
    loaded = await local.rpc(
        node.name, "code", "load_binary", [mod, Charlist("beamside_agent.beam"), beam]
    )
    assert loaded == (Atom("module"), mod)


async def test_orphaned_newer_agent_is_replaced(
    otp25_node: ErlangNode, local: LocalNode, tmp_path: Path
) -> None:
    node = otp25_node
    await load_fake_agent(local, node, tmp_path, "[]")
    assert node.eval("beamside_agent:version().") == str(AGENT_VERSION + 1)
    info = await agents.ensure_loaded(local, node.name, allow_downgrade=False)
    assert info.action == "replaced" and info.agent_version == AGENT_VERSION
    await agents.attach(local, node.name)
    data = await agents.collect(local, node.name)
    assert data[Atom("agent_version")] == AGENT_VERSION
    await agents.detach(local, node.name)
    assert await residue(node) == (NO_RESIDUE, NO_HANDLERS)


@pytest.fixture
async def other_sidecar(otp25_node: ErlangNode, epmd_port: int) -> AsyncIterator[LocalNode]:
    other = LocalNode("beamside-newer@127.0.0.1", otp25_node.cookie, epmd_port=epmd_port)
    await other.connect(otp25_node.name)
    yield other
    await other.close()


async def test_newer_agent_in_use_is_left_alone_and_the_node_is_not_down(
    otp25_node: ErlangNode,
    local: LocalNode,
    other_sidecar: LocalNode,
    tmp_path: Path,
    epmd_port: int,
) -> None:
    node = otp25_node
    await load_fake_agent(local, node, tmp_path, f"['{other_sidecar.name}']")
    node.eval("beamside_agent:start().")
    with pytest.raises(AgentConflict, match="in use"):
        await agents.ensure_loaded(local, node.name, allow_downgrade=False)
    assert node.eval("beamside_agent:version().") == str(AGENT_VERSION + 1)

    config = parse_config(
        {
            "cluster": "unit",
            "node_name": "beamside-older@127.0.0.1",
            "targets": [{"nodes": [node.name], "cookie": node.cookie}],
            "intervals": {"metrics": "1s"},
        }
    )
    engine = AlarmEngine("unit")
    checker = AlarmChecker(engine, {"node_down": {"delay": 0}}, interval=1)
    local = LocalNode(config.node_name, "unused", epmd_port=epmd_port)
    manager = NodeManager(config.manager_config(), local)
    await manager.start()
    try:
        await eventually(
            lambda: (
                (s := manager.status(node.name)) is not None and s.state is NodeState.AGENT_CONFLICT
            ),
            20,
            "agent conflict",
        )
        status = manager.status(node.name)
        assert status is not None and "in use" in status.last_error
        checker.on_statuses(manager.statuses())
        assert [a.id for a in engine.active()] == []
        # the newer beamside's agent is untouched
        assert node.eval("beamside_agent:version().") == str(AGENT_VERSION + 1)
        # once that beamside is gone, the older one takes the node over
        await other_sidecar.close()
        await eventually(
            lambda: (s := manager.status(node.name)) is not None and s.state is NodeState.UP,
            40,
            "up after the newer beamside left",
        )
    finally:
        await manager.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_user_process_inside_beamside_code_is_never_killed(
    runtime: Runtime,
    node_factory: NodeFactory,
    epmd_port: int,
    tmp_path: Path,
    children: list[Child],
) -> None:
    """A user process blocked in a call into beamside holds the old code:
    the watchdog leaves it running and purges once it lets go."""
    node = node_factory(runtime)
    log = prepare(node, tmp_path)
    child = Child(node, epmd_port, "idle")
    children.append(child)
    child.wait_attached()
    node.eval(
        "register(user_in_beamside, spawn(fun() -> "
        "beamside_agent:safe(fun() -> receive stop -> ok end end) end)), ok."
    )
    child.kill()
    others = (
        '[M || M <- erlang:loaded(), lists:prefix("beamside_", atom_to_list(M)),'
        " M =/= beamside_agent]."
    )
    t0 = time.monotonic()
    while await node.aeval(others) != "[]":
        assert time.monotonic() - t0 < CLEANUP_S, await node.aeval(others)
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    assert await node.aeval("is_process_alive(whereis(user_in_beamside)).") == "true"
    assert await node.aeval("erlang:check_old_code(beamside_agent).") == "true"
    assert await node.aeval("code:is_loaded(beamside_agent).") == "false"
    node.eval("user_in_beamside ! stop, ok.")
    took = await wait_clean(node, 5.0)
    print(f"\nold code purged {took:.2f}s after the user process let go")
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


async def test_a_new_attach_during_the_cleanup_wins(
    otp25_node: ErlangNode,
    local: LocalNode,
    epmd_port: int,
    tmp_path: Path,
    children: list[Child],
) -> None:
    """A beamside attaching while the watchdog cleans up after a dead one
    (here: right after the SIGKILL) ends with a working agent, all modules
    loaded, nothing deleted under it."""
    node = otp25_node
    log = prepare(node, tmp_path)
    for delay in (0.0, 0.02, 0.05, 0.1):
        child = Child(node, epmd_port, "idle")
        children.append(child)
        child.wait_attached()
        child.kill()
        await asyncio.sleep(delay)
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name)
        await asyncio.sleep(1.0)
        info = await agents.ensure_loaded(local, node.name)
        assert info.action == "kept" and info.attached
        assert dict(info.modules) == dict(agents.AGENT_MODULES)
        data = await agents.collect(local, node.name)
        assert data[Atom("sysmon")][Atom("state")] == Atom("owner")
        assert await node.aeval("is_pid(whereis(beamside_watchdog)).") == "true"
        await agents.detach(local, node.name)
        assert await residue(node) == (NO_RESIDUE, NO_HANDLERS)
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


async def test_clean_detach_never_kills_a_user_process_inside_beamside_code(
    otp25_node: ErlangNode, epmd_port: int, cookie: str, tmp_path: Path
) -> None:
    """The sidecar's own unload purges softly only: the old code a user
    process runs is left to the watchdog, which purges it once released."""
    node = otp25_node
    log = prepare(node, tmp_path)
    local = LocalNode("beamside-soft@127.0.0.1", cookie, epmd_port=epmd_port)
    try:
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name)
        node.eval(
            "register(user_in_beamside, spawn(fun() -> "
            "beamside_agent:safe(fun() -> receive stop -> ok end end) end)), ok."
        )
        await agents.detach(local, node.name)
        assert await node.aeval("is_process_alive(whereis(user_in_beamside)).") == "true"
        assert await node.aeval("code:is_loaded(beamside_agent).") == "false"
        assert await node.aeval("is_pid(whereis(beamside_watchdog)).") == "true"
    finally:
        await local.close()
    await asyncio.sleep(4.0)  # the watchdog's own attempts: it never kills
    assert await node.aeval("is_process_alive(whereis(user_in_beamside)).") == "true"
    node.eval("user_in_beamside ! stop, ok.")
    await wait_clean(node, 5.0)
    assert loud_lines(log) == []
    assert recorded(node) == ("[]", "[]", "[]")


async def test_real_lager_sees_nothing_of_beamside_going(
    otp25_node: ErlangNode, epmd_port: int, tmp_path: Path, children: list[Child]
) -> None:
    """lager itself (Debian's erlang-lager) running: beamside's backend
    comes and goes with no trace in lager_event's other handlers or logs."""
    node = otp25_node
    beam = compile_module(tmp_path, "bs_recorder_h", RECORDER_SRC)
    node.eval(f"{{module, _}} = code:load_binary(bs_recorder_h, \"bs_recorder_h.beam\", "
              f"<<{','.join(str(b) for b in beam)}>>), ok.")  # fmt: skip
    lager_dir = tmp_path / "lager"
    node.eval(
        f'application:load(lager), application:set_env(lager, log_root, "{lager_dir}"), '
        "{ok, _} = application:ensure_all_started(lager), "
        "ok = gen_event:add_handler(lager_event, bs_recorder_h, [])."
    )
    for mode in ("collect", "detach_race", "idle"):
        child = Child(node, epmd_port, mode)
        children.append(child)
        child.wait_attached()
        await asyncio.sleep(0.3)
        if mode != "detach_race":
            handlers = await node.aeval("gen_event:which_handlers(lager_event).")
            assert "beamside_lager" in handlers
        child.kill()
        await wait_clean(node)
    assert node.eval("gen_event:call(lager_event, bs_recorder_h, get).") == "[]"
    logs = {p.name: p.read_text(errors="replace") for p in lager_dir.glob("*.log")}
    assert logs, "lager wrote no log files"
    assert not [name for name, text in logs.items() if "beamside" in text], logs
