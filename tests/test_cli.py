"""``beamside probe`` and ``beamside demo`` as a user runs them (real processes, real nodes)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from sidecar.cli import EXIT_COOKIE, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode, free_port, pid_alive


def beamside(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_probe_prints_summary(any_node: ErlangNode, tmp_path: Path) -> None:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(any_node.cookie + "\n")
    cookie_file.chmod(0o400)
    proc = beamside("probe", any_node.name, "--cookie-file", str(cookie_file))
    assert proc.returncode == 0, proc.stderr
    fields = dict(
        (key.strip(), value.strip())
        for key, value in (line.split(":", 1) for line in proc.stdout.splitlines())
    )
    assert fields["node"] == any_node.name
    assert fields["otp release"] == any_node.eval("erlang:system_info(otp_release).").strip('"')
    assert fields["erts version"] == any_node.eval("erlang:system_info(version).").strip('"')
    assert int(fields["processes"]) > 20
    assert "kernel" in fields["applications"] and "stdlib" in fields["applications"]
    assert fields["uptime"].endswith("s")
    # The probe is hidden and gone afterwards.
    assert any_node.eval("nodes().") == "[]"


def piped(command: list[str], reader: str, redirect: str = "") -> tuple[str, str, int]:
    """``command | reader`` through bash: (the reader's output, our stderr, our exit status)."""
    shell = f'{shlex.join(command)} {redirect} | {reader}; echo "status=${{PIPESTATUS[0]}}" >&2'
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=90)
    *ours, status = proc.stderr.rstrip("\n").split("\n")
    assert status.startswith("status="), proc.stderr
    return proc.stdout, "\n".join(ours), int(status.removeprefix("status="))


def test_probe_into_a_reader_that_stops_early(otp25_node: ErlangNode, tmp_path: Path) -> None:
    """`beamside probe ... | head -1`: no BrokenPipeError traceback, exit status 0
    (a reader that stops early is not an error), whether the reader leaves
    before our first write (head -n 0) or after its first line (head -1)."""
    probe = [sys.executable, "-m", "sidecar.cli", "probe", otp25_node.name]
    probe += ["--cookie", otp25_node.cookie]
    out, err, status = piped(probe, "head -1")
    assert out == f"node:          {otp25_node.name}\n"
    assert (err, status) == ("", 0)
    out, err, status = piped(probe, "head -n 0")
    assert (out, err, status) == ("", "", 0)
    # Every command that prints behaves the same.
    config = tmp_path / "beamside.yaml"
    config.write_text(f"cluster: t\ntargets: [{{nodes: [{otp25_node.name}], cookie: c}}]\n")
    for args in (["check-config", str(config)], ["--help"], ["--version"], ["probe", "--help"]):
        command = [sys.executable, "-m", "sidecar.cli", *args]
        assert piped(command, "head -n 0") == ("", "", 0), args
    # ...and a failure keeps its exit status when its reader is gone too.
    wrong = [*probe[:-1], "wrong-cookie"]
    assert piped(wrong, "head -n 0")[2] == EXIT_COOKIE
    assert piped(wrong, "head -n 0", "2>&1")[1:] == ("", EXIT_COOKIE)


def test_probe_short_name(node_factory: NodeFactory) -> None:
    node = node_factory("otp25", longnames=False)
    proc = beamside("probe", node.name, "--cookie", node.cookie)
    assert proc.returncode == 0, proc.stderr
    assert f"node:          {node.name}" in proc.stdout


def test_probe_cookie_env(otp25_node: ErlangNode) -> None:
    proc = beamside(
        "probe", otp25_node.name, "--cookie-env", "MY_COOKIE", env={"MY_COOKIE": otp25_node.cookie}
    )
    assert proc.returncode == 0, proc.stderr


def test_probe_wrong_cookie(otp25_node: ErlangNode) -> None:
    proc = beamside("probe", otp25_node.name, "--cookie", "definitely-wrong")
    assert_one_line_error(proc, EXIT_COOKIE, "cookie was refused", otp25_node.name)
    assert "definitely-wrong" not in proc.stderr


def test_probe_name_not_registered(epmd_port: int) -> None:
    proc = beamside("probe", "ghost@127.0.0.1", "--cookie", "c")
    assert_one_line_error(proc, EXIT_UNREACHABLE, "'ghost' is not registered")


def test_probe_epmd_unreachable() -> None:
    port = free_port()
    proc = beamside("probe", "app@127.0.0.1", "--cookie", "c", env={"ERL_EPMD_PORT": str(port)})
    assert_one_line_error(proc, EXIT_UNREACHABLE, "EPMD", f"127.0.0.1:{port}", "unreachable")


def test_probe_host_unresolvable() -> None:
    proc = beamside("probe", "app@no-such-host.invalid", "--cookie", "c")
    assert_one_line_error(proc, EXIT_UNREACHABLE, "does not resolve", "no-such-host.invalid")


@pytest.fixture
def silent_epmd() -> Iterator[int]:
    """A loopback listener that accepts and never answers: a hung EPMD."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for sock in accepted:
        sock.close()
    server.close()


def test_probe_timeout(silent_epmd: int) -> None:
    started = time.monotonic()
    proc = beamside(
        "probe",
        "app@127.0.0.1",
        "--cookie",
        "c",
        "--timeout",
        "1",
        env={"ERL_EPMD_PORT": str(silent_epmd)},
    )
    assert_one_line_error(proc, EXIT_TIMEOUT, "timed out after 1s", "asking EPMD")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["probe", "no-at-sign", "--cookie", "c"], "no '@host' part"),
        (["probe", "a@b", "--cookie", "c", "--cookie-env", "X"], "only one of"),
        (["probe", "a@b", "--cookie-file", "/nonexistent/cookie"], "cannot read cookie file"),
        (["probe", "a@b", "--cookie", "c", "--timeout", "0"], "--timeout must be positive"),
    ],
)
def test_probe_usage_errors(args: list[str], needle: str) -> None:
    assert_one_line_error(beamside(*args), EXIT_USAGE, needle)


# What each command the demo prints must show when pasted into a shell: a
# fragment that picks the command, then a check of its output given the demo
# node's name. A printed command that matches none of these fails the test.
DemoCheck = Callable[[str, str], bool]
DEMO_COMMANDS: dict[str, DemoCheck] = {
    "/metrics": lambda out, node: (
        out.startswith(f'erlang_vm_processes{{cluster="demo",family="demo",node="{node}"}} ')
        and f'beamside_node_up{{cluster="demo",family="demo",node="{node}"}} 1.0\n' in out
    ),
    " probe ": lambda out, node: (
        out.startswith(f"node:          {node}\n") and " os_mon " in out and " mnesia " in out
    ),
    " list": lambda out, node: (
        {
            "beamside.v1.Processes",
            "beamside.v1.Tables",
            "beamside.v1.Alarms",
            "grpc.health.v1.Health",
        }
        <= set(out.split())
    ),
    "Nodes/ListNodes": lambda out, node: (
        [(n["name"], n["state"]) for n in json.loads(out)["nodes"]] == [(node, "up")]
    ),
    "Processes/ListProcesses": lambda out, node: (
        len(procs := json.loads(out)["processes"]) == 5
        and all(p["pid"].startswith("<0.") for p in procs)
    ),
    "Tables/ListTables": lambda out, node: (
        "ac_tab" in {t.get("name") for t in json.loads(out)["tables"]}
    ),
}


def demo_commands(banner: str) -> list[str]:
    """The commands the demo prints: the indented lines under "try these"."""
    lines = banner.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("try these")]
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        commands.append(line.strip())
    return commands


def run_demo_and_every_command(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, wait: float = 60
) -> str:
    """Start the demo with ``argv``, run every command it prints through bash
    (the shell's environment is ``env``) and check each one's output, then
    Ctrl-C it and check that it stopped its node. Returns what it printed."""
    # stderr to a file: a long install must never block on a full pipe.
    with tempfile.TemporaryFile("w+") as errors:
        return _demo_and_every_command(argv, cwd, env, wait, errors)


def _demo_and_every_command(
    argv: list[str], cwd: Path | None, env: dict[str, str] | None, wait: float, errors: IO[str]
) -> str:
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=errors, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "processes" in line and "memory" in line and "reductions/s" in line:
            break
    text = "".join(lines)
    if "attached to demo-" not in text:
        proc.kill()
        proc.wait()
        errors.seek(0)
        raise AssertionError(text + errors.read())
    assert "otp release:" in text, text
    node = text.split("attached to ", 1)[1].split()[0]
    node_pids = subprocess.run(
        ["pgrep", "-f", "--", f"-name {node} "], capture_output=True, text=True
    ).stdout.split()
    assert node_pids, "the demo node should be running"
    commands = demo_commands(text)
    assert len(commands) == len(DEMO_COMMANDS), text
    for command in commands:
        matches = [f for f in DEMO_COMMANDS if f in command]
        assert len(matches) == 1, (command, matches)
        ran = subprocess.run(
            ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
        assert DEMO_COMMANDS[matches[0]](ran.stdout, node), (command, ran.stdout)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0]
    errors.seek(0)
    assert proc.returncode == 0, errors.read()
    assert "demo stopped" in out
    time.sleep(0.5)
    assert not any(pid_alive(int(pid)) for pid in node_pids), "demo left its node running"
    return text + out


def test_demo_runs_and_cleans_up() -> None:
    """The demo as the README's user meets it: every command it prints works
    when pasted into a shell; Ctrl-C stops everything it started."""
    run_demo_and_every_command([sys.executable, "-m", "sidecar.cli", "demo", "--interval", "1"])


@pytest.mark.timeout(660)  # a first pip install into the new venv
def test_demo_script_on_a_fresh_copy(tmp_path: Path) -> None:
    """The README's `bash scripts/demo.sh` on a copy of this tree, with the
    system's python3 first on PATH (Debian 12's is "externally managed",
    PEP 668): it makes .venv/ (which git ignores), installs beamside and
    grpcurl there, and every command the demo prints works from a shell that
    has not activated that venv."""
    repo = Path(__file__).resolve().parent.parent
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "beamside"
    for name in filter(None, (f.decode() for f in files)):
        if (repo / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, copy / name)
    env = dict(os.environ)
    system = Path("/usr/bin/python3")
    if system.exists():
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "python3").symlink_to(system)
        env["PATH"] = f"{shim}:{env['PATH']}"
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "BEAMSIDE_VENV"):
        env.pop(var, None)
    text = run_demo_and_every_command(
        ["bash", "scripts/demo.sh", "--interval", "1"], cwd=copy, env=env, wait=600
    )
    venv = copy / ".venv"
    assert "ERL_EPMD_PORT=" in text and f" {venv}/bin/beamside probe " in text, text
    assert f"  {venv}/bin/grpcurl -plaintext " in text, text
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".venv/bin/python"], cwd=repo, check=False
    )
    assert ignored.returncode == 0, ".venv/ must be ignored by git"


def test_demo_into_a_reader_that_stops_early() -> None:
    """`beamside demo | head -n 0`: the demo notices, stops what it started,
    and exits 0 without a traceback."""
    before = set(
        subprocess.run(
            ["pgrep", "-f", "demo-.*@127.0.0.1"], capture_output=True, text=True
        ).stdout.split()
    )
    command = [sys.executable, "-m", "sidecar.cli", "demo", "--interval", "1"]
    out, err, status = piped(command, "head -n 0")
    assert (out, status) == ("", 0), err
    assert "Traceback" not in err and "Error" not in err, err
    after = set(
        subprocess.run(
            ["pgrep", "-f", "demo-.*@127.0.0.1"], capture_output=True, text=True
        ).stdout.split()
    )
    assert not after - before, "demo left its node running"


def test_demo_without_erlang_says_why(tmp_path: Path) -> None:
    """No `erl` on PATH: one line saying what to install, exit 1, no traceback."""
    python_only = tmp_path / "bin"
    python_only.mkdir()
    (python_only / "python3").symlink_to(sys.executable)
    proc = beamside("demo", env={"PATH": str(python_only)}, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("beamside demo: erl not found")


def test_demo_over_tls_runs_and_cleans_up() -> None:
    """``demo --tls``: a node with TLS distribution that takes only clients with
    a certificate from the demo's throwaway CA; the printed probe command
    carries the certificates and works as printed."""
    text = run_demo_and_every_command(
        [sys.executable, "-m", "sidecar.cli", "demo", "--tls", "--interval", "1"]
    )
    assert " over TLS (verify_peer both ways" in text
    (probe,) = [c for c in demo_commands(text) if " probe " in c]
    assert " --cacertfile " in probe and " --certfile " in probe and " --keyfile " in probe
