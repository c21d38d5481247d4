"""Real applications (RabbitMQ, ejabberd, Yaws, an Elixir app) started on loopback.

Each launcher starts its application the way its own scripts do (the Debian
packages' ``rabbitmq-server``, ``ejabberdctl``, ``yaws``, ``elixir``), with:

* a private EPMD on a free port (``ERL_EPMD_PORT``) and the node's distribution
  bound to 127.0.0.1;
* every directory (data, logs, config, pid files, ``HOME``) in a fresh
  temporary directory, removed after;
* a random cookie the launcher controls;
* every listener of the application on 127.0.0.1 and a free port.

``start()`` returns an :class:`AppNode` (node name, cookie, the application's
own log files, OS pid, seconds the start took). ``stop()`` stops the
application its own way (``rabbitmqctl stop``, ``ejabberdctl stop``, ``yaws
--stop``, ``init:stop()``), then kills whatever is left (the BEAM and every
process it started), stops the EPMD and removes the directory. It is
idempotent and safe to call after a failed start.

:class:`Probe` is a plain hidden Erlang node with the application's cookie
(started from :mod:`tests.support.nodes`, no beamside code involved) that evaluates
Erlang expressions *on the application's node* through ``erpc`` and
``erl_eval``: what the tests use to look at the node independently of
beamside. This module is also imported by the benchmarks.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Literal, get_args

from tests.support.nodes import Epmd, ErlangNode, epmd_names, free_port, pid_alive, random_cookie

AppKind = Literal["rabbitmq", "ejabberd", "yaws", "elixir"]
APP_KINDS: tuple[AppKind, ...] = get_args(AppKind)

INSTALL = (
    "apt-get install -y rabbitmq-server ejabberd yaws elixir "
    "(Debian's policy-rc.d keeps the services from starting)"
)

# The top supervisor of each application's main application (its registered name).
TOP_SUPERVISOR: dict[AppKind, str] = {
    "rabbitmq": "rabbit_sup",
    "ejabberd": "ejabberd_sup",
    "yaws": "yaws_sup",
    "elixir": "Elixir.Shop.Supervisor",
}

# erl flags: no EPMD of its own (the private one runs), distribution on loopback.
DIST_ON_LOOPBACK = "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"

RABBITMQ_SBIN = Path("/usr/lib/rabbitmq/bin")
EJABBERDCTL = "/usr/sbin/ejabberdctl"
EJABBERD_USER = "ejabberd"


class AppStartError(RuntimeError):
    """The application did not come up; the message carries its log tail."""


def _require(path: str, what: str) -> str:
    found = shutil.which(path) if "/" not in path else (path if os.access(path, os.X_OK) else None)
    if found is None:
        raise AppStartError(f"{what}: {path} not found; install: {INSTALL}")
    return found


def _tail(paths: Iterable[Path], chars: int = 3000) -> str:
    out = []
    for p in paths:
        try:
            text = p.read_text(errors="replace")
        except OSError:
            continue
        out.append(f"--- {p} (tail) ---\n{text[-chars:]}")
    return "\n".join(out)


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on (IPv4 and IPv6)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found: list[tuple[str, int]] = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr[:width])
            # /proc prints each 32-bit word in host (little-endian) order.
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
            packed = b"".join(words)
            family = socket.AF_INET if table == "tcp" else socket.AF_INET6
            found.append((socket.inet_ntop(family, packed), int(hex_port, 16)))
    return found


def _children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (erl_child_setup, inet_gethost, port programs)."""
    tree = _children_of()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def erlang_string(text: str) -> str:
    """``text`` as an Erlang expression giving the same string (base64: no quoting issues)."""
    encoded = base64.b64encode(text.encode()).decode()
    return f'unicode:characters_to_list(base64:decode("{encoded}"))'


# A process that outlives nothing: if the test run dies (SIGKILL, a crash) it
# kills what the launcher started (detached BEAMs are no children of ours) and
# removes the directory. Lines on stdin: "pids N ..." adds pids, "done" ends it
# (after a normal stop); EOF without "done" is the test run gone.
REAPER_SRC = r"""
import os, shutil, signal, sys
pids = set()
for line in sys.stdin:
    words = line.split()
    if words[:1] == ["done"]:
        sys.exit(0)
    if words[:1] == ["pids"]:
        pids |= {int(w) for w in words[1:]}
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class Reaper:
    def __init__(self, workdir: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", REAPER_SRC, str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _send(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(line.encode() + b"\n")
                stdin.flush()

    def watch(self, pids: Iterable[int]) -> None:
        self._send("pids " + " ".join(str(p) for p in pids if p > 1))

    def done(self) -> None:
        self._send("done")
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)


# --------------------------------------------------------------------------- probe


class Probe:
    """A hidden plain ``erl`` node (short names, the application's cookie and
    EPMD) that runs Erlang expressions on the application's node with
    ``erpc:call(Node, erl_eval, exprs, ...)``: the expression is parsed on the
    probe and evaluated by ``erl_eval`` on the target (so it may call any
    module of the target, but define no named functions)."""

    def __init__(self, target: str, cookie: str, epmd_port: int, log_dir: Path) -> None:
        self.target = target
        self.node = ErlangNode(
            "otp25",
            name=f"probe_{secrets.token_hex(3)}",
            cookie=cookie,
            longnames=False,
            epmd_port=epmd_port,
            log_dir=log_dir,
            hidden=True,
        )

    def start(self) -> Probe:
        self.node.start(timeout=30)
        return self

    def stop(self) -> None:
        self.node.kill()

    def eval(self, expr: str, timeout: float = 30.0) -> str:
        """Evaluate ``expr`` (Erlang expressions; a trailing ``.`` optional) on
        the target; returns the value printed with ``~0tp``."""
        src = expr.strip()
        if not src.endswith("."):
            src += "."
        ms = int(timeout * 1000)
        return self.node.eval(
            f"{{ok, ProbeToks, _}} = erl_scan:string({erlang_string(src)}),"
            " {ok, ProbeExprs} = erl_parse:parse_exprs(ProbeToks),"
            f" {{value, ProbeV, _}} = erpc:call('{self.target}', erl_eval, exprs,"
            f" [ProbeExprs, erl_eval:new_bindings()], {ms}),"
            " ProbeV.",
            timeout=timeout + 5,
        )

    def text(self, expr: str, timeout: float = 30.0) -> str:
        """Like :meth:`eval` for an expression giving iodata: the text itself
        (carried base64-encoded, so no Erlang quoting to undo)."""
        src = expr.strip().rstrip(".")
        printed = self.eval(
            f"base64:encode(unicode:characters_to_binary(begin {src} end))", timeout
        )
        m = re.fullmatch(r'<<"([A-Za-z0-9+/=]*)">>', printed)
        if m is None:
            raise AssertionError(f"unexpected reply from the probe: {printed[:300]}")
        return base64.b64decode(m.group(1)).decode("utf-8", "replace")

    def alive(self) -> bool:
        try:
            return self.eval("ok", timeout=5) == "ok"
        except Exception:
            return False


# --------------------------------------------------------------------------- app node


@dataclass
class AppNode:
    """A running application node, as a launcher returns it."""

    kind: AppKind
    name: str
    cookie: str
    epmd_port: int
    log_files: list[Path]
    os_pid: int
    start_seconds: float
    workdir: Path
    main_app: str
    # Where the application listens, e.g. {"amqp": 5672, "prometheus": 15692}.
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def cookie_file(self) -> Path:
        path = self.workdir / "beamside-cookie"
        if not path.exists():
            path.write_text(self.cookie + "\n")
            path.chmod(0o600)
        return path

    def log_offsets(self) -> dict[Path, int]:
        """Current size of each log file (to read only what comes after)."""
        return {p: (p.stat().st_size if p.exists() else 0) for p in self.log_files}

    def log_since(self, offsets: Mapping[Path, int]) -> dict[Path, str]:
        out: dict[Path, str] = {}
        for p in self.log_files:
            try:
                with open(p, "rb") as f:
                    f.seek(offsets.get(p, 0))
                    out[p] = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                out[p] = ""
        return out


class RealApp(ABC):
    """Start/stop one application node; see the module docstring."""

    kind: ClassVar[AppKind]
    main_app: ClassVar[str]

    def __init__(self, base_dir: Path | None = None) -> None:
        self._base_dir = base_dir
        self.workdir: Path | None = None
        self.epmd: Epmd | None = None
        self.cookie = random_cookie()
        self.node: AppNode | None = None
        self._launcher: subprocess.Popen[bytes] | None = None
        self._launcher_log: IO[bytes] | None = None
        self._known_children: set[int] = set()
        self._reaper: Reaper | None = None

    # -- to implement --------------------------------------------------------

    @property
    @abstractmethod
    def node_name(self) -> str: ...

    @abstractmethod
    def _launch(self) -> None:
        """Start the application (not waiting for it)."""

    @abstractmethod
    def _wait_started(self, timeout: float) -> int:
        """Wait until the application reports itself started; return the BEAM's OS pid."""

    @abstractmethod
    def _stop_own_way(self, timeout: float) -> None:
        """Ask the application to stop the way its operators do."""

    @abstractmethod
    def log_files(self) -> list[Path]: ...

    def _ports(self) -> dict[str, int]:
        return {}

    # -- common ----------------------------------------------------------------

    @property
    def dir(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS", "ELIXIR_ERL_OPTIONS", "ERL_LIBS")
            and not k.startswith("RABBITMQ_")
        }
        assert self.epmd is not None
        env["ERL_EPMD_PORT"] = str(self.epmd.port)
        return env

    def start(self, timeout: float = 90.0) -> AppNode:
        started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"beamside-{self.kind}-", dir=self._base_dir))
        self.workdir.chmod(0o755)
        self._reaper = Reaper(self.workdir)
        try:
            self.epmd = Epmd(log_path=self.workdir / "epmd.log").start()
            self._reaper.watch([self.epmd.os_pid or 0])
            self._launch()
            if self._launcher is not None:
                self._reaper.watch([self._launcher.pid])
            os_pid = self._wait_started(timeout)
            self._reaper.watch([os_pid, *descendants(os_pid)])
            alive = self.node_name.split("@")[0]
            if alive not in epmd_names(self.epmd.port):
                raise AppStartError(f"{self.node_name} is not registered in the private EPMD")
        except BaseException:
            self.stop(timeout=5)
            raise
        self.node = AppNode(
            kind=self.kind,
            name=self.node_name,
            cookie=self.cookie,
            epmd_port=self.epmd.port,
            log_files=self.log_files(),
            os_pid=os_pid,
            start_seconds=time.monotonic() - started,
            workdir=self.workdir,
            main_app=self.main_app,
            ports=self._ports(),
        )
        self._known_children = descendants(os_pid)
        return self.node

    def running(self) -> bool:
        return self.node is not None and pid_alive(self.node.os_pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the application its own way, then kill leftovers; idempotent."""
        node = self.node
        try:
            if node is not None and pid_alive(node.os_pid):
                self._known_children |= descendants(node.os_pid)
                with contextlib.suppress(Exception):
                    self._stop_own_way(timeout)
                if not wait_dead(node.os_pid, timeout):
                    kill_pids([node.os_pid])
                    wait_dead(node.os_pid, 5)
            elif node is None:
                # A failed start: the BEAM may be up without us knowing its pid.
                self._kill_unknown_beam()
            kill_pids(self._known_children)
            self._known_children = set()
            if self._launcher is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._launcher.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._launcher.wait(5)
                self._launcher = None
            if self._launcher_log is not None:
                self._launcher_log.close()
                self._launcher_log = None
        finally:
            self.node = None
            if self.epmd is not None:
                self.epmd.stop()
                self.epmd = None
            if self.workdir is not None and not os.environ.get("BEAMSIDE_KEEP_APP_DIRS"):
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            if self._reaper is not None:
                self._reaper.done()
                self._reaper = None

    def _kill_unknown_beam(self) -> None:
        """After a failed start: kill any BEAM whose command line names our directory."""
        if self.workdir is None:
            return
        marker = str(self.workdir).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"beam" in cmdline and marker in cmdline:
                pid = int(entry)
                kill_pids([pid, *descendants(pid)])

    def _run(
        self, args: list[str], timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            env=dict(env) if env is not None else self.env(),
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _spawn(self, args: list[str], env: Mapping[str, str] | None = None) -> None:
        self._launcher_log = open(self.dir / "launcher.log", "ab")  # noqa: SIM115
        self._launcher = subprocess.Popen(
            args,
            env=dict(env) if env is not None else self.env(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._launcher_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _fail(self, what: str) -> AppStartError:
        return AppStartError(
            f"{self.kind}: {what}\n{_tail([*self.log_files(), self.dir / 'launcher.log'])}"
        )

    def probe(self, log_dir: Path | None = None) -> Probe:
        """A started :class:`Probe` on this application's node (stop it after)."""
        assert self.node is not None and self.epmd is not None
        return Probe(self.node.name, self.cookie, self.epmd.port, log_dir or self.dir).start()


def _read_pid(path: Path, deadline: float) -> int | None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.1)
    return None


# --------------------------------------------------------------------------- RabbitMQ


class RabbitMQ(RealApp):
    """RabbitMQ 3.10 (Debian ``rabbitmq-server``) with ``rabbitmq_prometheus``."""

    kind = "rabbitmq"
    main_app = "rabbit"

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.prometheus_port = free_port()
        self.ctl_port = free_port()

    @property
    def node_name(self) -> str:
        return "rabbit@localhost"

    def log_files(self) -> list[Path]:
        return [self.dir / "log" / "rabbit@localhost.log"]

    def _ports(self) -> dict[str, int]:
        return {"amqp": self.amqp_port, "dist": self.dist_port, "prometheus": self.prometheus_port}

    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    def env(self) -> dict[str, str]:
        env = super().env()
        d = self.dir
        env.update(
            HOME=str(d / "home"),
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            RABBITMQ_CTL_DIST_PORT_MIN=str(self.ctl_port),
            RABBITMQ_CTL_DIST_PORT_MAX=str(self.ctl_port + 10),
        )
        return env

    def _launch(self) -> None:
        server = _require(str(RABBITMQ_SBIN / "rabbitmq-server"), "RabbitMQ")
        d = self.dir
        for sub in ("home", "mnesia", "log"):
            (d / sub).mkdir()
        cookie = d / "home" / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (d / "rabbitmq-env.conf").write_text("")
        (d / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
        (d / "rabbitmq.conf").write_text(
            textwrap.dedent(
                f"""\
                listeners.tcp.default = 127.0.0.1:{self.amqp_port}
                prometheus.tcp.ip = 127.0.0.1
                prometheus.tcp.port = {self.prometheus_port}
                log.file.level = info
                log.console = false
                """
            )
        )
        self._spawn([server, "-detached"])

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        ctl = _require(str(RABBITMQ_SBIN / "rabbitmqctl"), "RabbitMQ")
        return self._run([ctl, "-n", self.node_name, *args], timeout)

    def _wait_started(self, timeout: float) -> int:
        try:
            res = self._ctl(
                "wait", str(self.pid_file), "--timeout", str(int(timeout)), timeout=timeout + 10
            )
        except subprocess.TimeoutExpired:
            raise self._fail("rabbitmqctl wait timed out") from None
        if res.returncode != 0:
            raise self._fail(f"rabbitmqctl wait failed: {res.stdout}{res.stderr}")
        pid = _read_pid(self.pid_file, time.monotonic() + 5)
        if pid is None:
            raise self._fail("no pid file")
        return pid

    def _stop_own_way(self, timeout: float) -> None:
        self._ctl("stop", timeout=timeout)


# --------------------------------------------------------------------------- ejabberd


EJABBERD_YML = """\
loglevel: info
log_rotate_count: 0
hosts:
  - localhost
listen:
  -
    port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    access: c2s
  -
    port: {s2s}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
  -
    port: {http}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
      /bosh: mod_bosh
      /ws: ejabberd_http_ws
      /admin: ejabberd_web_admin
  -
    port: {mqtt}
    ip: "127.0.0.1"
    module: mod_mqtt
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: local
  c2s:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
modules:
  mod_adhoc: {{}}
  mod_admin_extra: {{}}
  mod_bosh: {{}}
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_disco: {{}}
  mod_http_api: {{}}
  mod_last: {{}}
  mod_mqtt: {{}}
  mod_muc: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_privacy: {{}}
  mod_private: {{}}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_roster: {{}}
  mod_stream_mgmt: {{}}
  mod_vcard: {{}}
  mod_version: {{}}
"""


class Ejabberd(RealApp):
    """ejabberd 23.01 (Debian) started by ``ejabberdctl``, as user ``ejabberd``."""

    kind = "ejabberd"
    main_app = "ejabberd"

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.ports = {
            "c2s": free_port(),
            "s2s": free_port(),
            "http": free_port(),
            "mqtt": free_port(),
        }

    @property
    def node_name(self) -> str:
        return "ejabberd@localhost"

    def log_files(self) -> list[Path]:
        return [self.dir / "log" / "ejabberd.log", self.dir / "log" / "error.log"]

    def _ports(self) -> dict[str, int]:
        return dict(self.ports)

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        d = self.dir
        return self._run(
            [
                EJABBERDCTL,
                "--config",
                str(d / "ejabberd.yml"),
                "--ctl-config",
                str(d / "ejabberdctl.cfg"),
                "--spool",
                str(d / "spool"),
                "--logs",
                str(d / "log"),
                "--node",
                self.node_name,
                *args,
            ],
            timeout,
        )

    def _launch(self) -> None:
        _require(EJABBERDCTL, "ejabberd")
        if os.geteuid() != 0:
            raise AppStartError(
                "ejabberdctl runs ejabberd as user `ejabberd`: the tests must run as root"
            )
        user = pwd.getpwnam(EJABBERD_USER)
        d = self.dir
        for sub in ("spool", "log", "run"):
            (d / sub).mkdir()
            os.chown(d / sub, user.pw_uid, user.pw_gid)
        (d / "ejabberd.yml").write_text(EJABBERD_YML.format(**self.ports))
        (d / "ejabberdctl.cfg").write_text(
            textwrap.dedent(
                f"""\
                ERLANG_NODE={self.node_name}
                ERL_OPTIONS="-setcookie {self.cookie} {DIST_ON_LOOPBACK}"
                EJABBERD_PID_PATH={d / "run" / "ejabberd.pid"}
                """
            )
        )
        for f in ("ejabberd.yml", "ejabberdctl.cfg"):
            (d / f).chmod(0o644)
        res = self._ctl("start", timeout=60)
        if res.returncode != 0:
            raise self._fail(f"ejabberdctl start: {res.returncode} {res.stdout}{res.stderr}")

    def _wait_started(self, timeout: float) -> int:
        # `ejabberdctl started` polls `status` every 2 s; the pid file comes first.
        deadline = time.monotonic() + timeout
        pid = _read_pid(self.dir / "run" / "ejabberd.pid", deadline)
        if pid is None:
            raise self._fail("no pid file")
        while time.monotonic() < deadline:
            res = self._ctl("status", timeout=30)
            if res.returncode == 0:
                return pid
            if not pid_alive(pid):
                raise self._fail("ejabberd exited during start")
            time.sleep(0.3)
        raise self._fail(f"not started in {timeout}s")

    def _stop_own_way(self, timeout: float) -> None:
        self._ctl("stop", timeout=timeout)


# --------------------------------------------------------------------------- Yaws


class Yaws(RealApp):
    """Yaws 2.1 (Debian) as a daemon with one server on 127.0.0.1."""

    kind = "yaws"
    main_app = "yaws"

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.http_port = free_port()
        self.id = f"bs{secrets.token_hex(3)}"

    @property
    def node_name(self) -> str:
        return "yaws@localhost"

    def log_files(self) -> list[Path]:
        return [self.dir / "log" / "report.log", self.dir / "launcher.log"]

    def _ports(self) -> dict[str, int]:
        return {"http": self.http_port}

    def env(self) -> dict[str, str]:
        env = super().env()
        env["HOME"] = str(self.dir / "home")
        return env

    def _yaws(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self._run([_require("yaws", "Yaws"), "--id", self.id, *args], timeout)

    def _launch(self) -> None:
        yaws = _require("yaws", "Yaws")
        d = self.dir
        for sub in ("home", "log", "www"):
            (d / sub).mkdir()
        (d / "www" / "index.html").write_text("<html><body>yaws here</body></html>\n")
        (d / "yaws.conf").write_text(
            textwrap.dedent(
                f"""\
                logdir = {d / "log"}
                max_connections = nolimit
                keepalive_timeout = 30000
                copy_error_log = true
                <server localhost>
                        port = {self.http_port}
                        listen = 127.0.0.1
                        docroot = {d / "www"}
                </server>
                """
            )
        )
        self._spawn(
            [
                yaws,
                "--daemon",
                "--id",
                self.id,
                "--conf",
                str(d / "yaws.conf"),
                "--sname",
                "yaws@localhost",
                "--setcookie",
                self.cookie,
                "--erlarg",
                DIST_ON_LOOPBACK,
            ]
        )

    def _wait_started(self, timeout: float) -> int:
        res = self._yaws(f"--wait-started={int(timeout)}", timeout=timeout + 10)
        if res.returncode != 0:
            raise self._fail(f"yaws --wait-started: {res.stdout}{res.stderr}")
        return _os_pid_of(self.dir, "yaws")

    def _stop_own_way(self, timeout: float) -> None:
        self._yaws("--stop", timeout=timeout)


def _os_pid_of(marker_dir: Path, sname: str) -> int:
    """The OS pid of the BEAM with ``-sname NAME`` and ``marker_dir`` in its command line."""
    marker = str(marker_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"beam.smp")
            and any(marker in a for a in argv)
            and b"-sname" in argv
            and argv[argv.index(b"-sname") + 1] in (sname.encode(), f"{sname}@localhost".encode())
            and pid_alive(int(entry))
        ):
            return int(entry)
    raise AppStartError(f"no BEAM with -sname {sname} running from {marker_dir}")


# --------------------------------------------------------------------------- Elixir

ELIXIR_APP_VSN = "0.1.0"
ELIXIR_APP_SRC = """\
defmodule Shop.Application do
  @moduledoc "A small supervised Elixir application: an Agent, a Task.Supervisor, a worker."
  use Application
  require Logger

  @impl true
  def start(_type, _args) do
    children = [
      %{
        id: Shop.Counter,
        start: {Agent, :start_link, [fn -> %{hits: 0} end, [name: Shop.Counter]]}
      },
      {Task.Supervisor, name: Shop.TaskSupervisor},
      Shop.Ticker
    ]

    Logger.info("shop starting")
    Supervisor.start_link(children, strategy: :one_for_one, name: Shop.Supervisor)
  end
end

defmodule Shop.Ticker do
  @moduledoc "Counts hits in the Agent, from a task, every second."
  use GenServer
  require Logger

  def start_link(_), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @impl true
  def init(nil) do
    :timer.send_interval(1000, :tick)
    {:ok, 0}
  end

  @impl true
  def handle_info(:tick, n) do
    Task.Supervisor.async_nolink(Shop.TaskSupervisor, fn ->
      Agent.update(Shop.Counter, fn s -> Map.update!(s, :hits, &(&1 + 1)) end)
    end)
    |> Task.await()

    Logger.debug("tick #{n}")
    {:noreply, n + 1}
  end
end

defmodule Shop do
  @moduledoc "What the tests call on the node."
  require Logger

  def hits, do: Agent.get(Shop.Counter, & &1.hits)

  def log_error(marker), do: Logger.error("demo error #{marker}")

  def crash_task do
    Task.Supervisor.start_child(Shop.TaskSupervisor, fn ->
      :ets.delete(:no_such_table, :from_task)
    end)
  end

  def crash_agent do
    Agent.cast(Shop.Counter, fn _ -> :ets.delete(:no_such_table, :from_agent) end)
  end
end
"""


class ElixirApp(RealApp):
    """An Elixir 1.14 node (Debian ``elixir``) running the small supervised
    application ``shop`` (compiled with ``elixirc`` at start), its
    Logger writing to the console, which goes to the node's log file."""

    kind = "elixir"
    main_app = "shop"

    @property
    def node_name(self) -> str:
        return "shop@localhost"

    def log_files(self) -> list[Path]:
        return [self.dir / "launcher.log"]

    def _launch(self) -> None:
        elixir = _require("elixir", "Elixir")
        elixirc = _require("elixirc", "Elixir")
        d = self.dir
        ebin = d / "ebin"
        ebin.mkdir()
        (d / "shop.ex").write_text(ELIXIR_APP_SRC)
        res = self._run([elixirc, "-o", str(ebin), str(d / "shop.ex")], 120)
        if res.returncode != 0:
            raise AppStartError(f"elixirc failed:\n{res.stdout}{res.stderr}")
        modules = sorted(p.stem for p in ebin.glob("*.beam"))
        mods = ", ".join(f"'{m}'" for m in modules)
        (ebin / "shop.app").write_text(
            "{application, shop,\n"
            f' [{{description, "demo shop"}}, {{vsn, "{ELIXIR_APP_VSN}"}},\n'
            f"  {{modules, [{mods}]}}, {{registered, []}},\n"
            "  {applications, [kernel, stdlib, elixir, logger]},\n"
            "  {mod, {'Elixir.Shop.Application', []}}]}.\n"
        )
        self._spawn(
            [
                elixir,
                "--sname",
                self.node_name,
                "--cookie",
                self.cookie,
                "--erl",
                DIST_ON_LOOPBACK,
                "-pa",
                str(ebin),
                "--no-halt",
                "-e",
                "{:ok, _} = Application.ensure_all_started(:shop)",
            ]
        )

    def _wait_started(self, timeout: float) -> int:
        assert self._launcher is not None and self.epmd is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._launcher.poll() is not None:
                raise self._fail(f"elixir exited with {self._launcher.returncode}")
            if "shop starting" in _tail(self.log_files(), 100000) and "shop" in (
                epmd_names(self.epmd.port)
            ):
                # `elixir` execs erl, which execs the BEAM: same pid.
                return self._launcher.pid
            time.sleep(0.1)
        raise self._fail(f"not started in {timeout}s")

    def _stop_own_way(self, timeout: float) -> None:
        # What a release's `stop` does: init:stop() (the BEAM does it on SIGTERM).
        if self.node is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.node.os_pid, signal.SIGTERM)
        if self._launcher is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._launcher.wait(timeout)


LAUNCHERS: dict[AppKind, type[RealApp]] = {
    "rabbitmq": RabbitMQ,
    "ejabberd": Ejabberd,
    "yaws": Yaws,
    "elixir": ElixirApp,
}


def launcher(kind: AppKind, base_dir: Path | None = None) -> RealApp:
    return LAUNCHERS[kind](base_dir)
