"""beamside's Erlang agents: load them into a node, attach, collect, detach.

The agents are the ``beamside_*`` modules compiled from ``erl_agents/`` by
``scripts/build_agents.sh`` (``erlc +deterministic`` on OTP 25) into
``sidecar/agents/ebin/``, which ships inside this package: a sidecar host needs
no Erlang.  ``ebin/manifest.json`` carries the agent protocol version (from
``-define(VERSION, N)`` in ``beamside_agent.erl``, the one source of truth)
and the md5 of every module.

Everything here is one or a few ``rpc`` calls through the node's ``rex``:

* :func:`ensure_loaded` -- loads the agents with ``code:atomic_load/1`` when
  they are missing, older, or differ in any module's md5 from ours (a newer
  one too, unless another connected beamside uses it: :class:`AgentConflict`
  with ``allow_downgrade=False``); an agent already there is first detached
  and its modules deleted and purged (soft purge first; hard after a grace
  period, which kills whatever still runs the old agent's code).  Returns
  the node's :class:`AgentInfo`.
* :func:`attach` / :func:`detach` -- the long-lived ``beamside_sysmon``
  process, tied to our connection; detach also unloads every ``beamside_*``
  module (soft purges only: it never kills a process), so nothing of ours is
  left on the node.
* The node-side watchdog (``erl_agents/beamside_watchdog.erl``) does what
  detach would have done when we die without it (SIGKILL, network cut):
  started at load (watching us until we attach) and by ``beamside_sysmon``,
  cancelled by the next :func:`ensure_loaded` when no agent process runs
  and by :func:`detach` once the modules are gone.
* :func:`collect` -- one call per tick, the whole snapshot (a ``dict`` with
  :class:`~sidecar.erldist.term.Atom` keys; binaries stay ``bytes``; a section
  that failed on the node is an ``(Atom('error'), reason)`` tuple).
* :func:`live` -- a cheap subset for the 1 s live stream.

Logs and notifications: :func:`attach` with event options (build them with
:class:`EventOptions`) makes the node push batches to the mailbox registered
as ``beamside_events`` on our node (register it with
``local.mailbox(EVENTS_MAILBOX)`` before attaching); decode them with
:func:`sidecar.agents.events.decode_batch`.  Module load/reload/purge events
come in the ``code_events`` collect section (``collect(..., {"code_events":
True})``), decoded with the rest of the reply by
:func:`sidecar.model.decode_snapshot`.

Options are given as Python mappings with ``str`` keys; ``str`` values are
sent as atoms (see :func:`to_opts_term`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

from sidecar.agents.config import UserPlugin
from sidecar.agents.events import EVENTS_MAILBOX, LEVELS
from sidecar.agents.terms import is_error, shown, text
from sidecar.erldist.errors import DistError, DistTimeout, RpcError
from sidecar.erldist.node import LocalNode
from sidecar.erldist.term import Atom, Charlist, Pid

__all__ = [
    "AGENT_MODULES",
    "AGENT_VERSION",
    "EVENTS_MAILBOX",
    "AgentConflict",
    "AgentError",
    "AgentInfo",
    "Beam",
    "EventOptions",
    "attach",
    "beams",
    "collect",
    "detach",
    "ensure_loaded",
    "is_error",
    "live",
    "to_opts_term",
    "unload",
]

log = logging.getLogger(__name__)

PREFIX: Final = "beamside_"
_OK = Atom("ok")
_ERROR = Atom("error")
_AGENT = "beamside_agent"


class AgentError(DistError):
    """An agent call answered ``{error, Reason}`` (or the agent is unusable)."""

    def __init__(self, message: str, reason: object = None) -> None:
        super().__init__(message)
        self.reason = reason


class AgentConflict(AgentError):
    """The node runs a newer agent that another connected beamside is using:
    left alone (the node is up, it is just not ours to collect from)."""

    metric_reason: ClassVar[str] = "agent_conflict"


@dataclass(frozen=True, slots=True)
class Beam:
    """One compiled agent module shipped in this package."""

    module: str
    md5: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Manifest:
    version: int
    modules: Mapping[str, str]


def _ebin() -> Traversable:
    return resources.files(__name__).joinpath("ebin")


@functools.cache
def _manifest() -> _Manifest:
    raw = json.loads(_ebin().joinpath("manifest.json").read_text(encoding="utf-8"))
    version = raw["version"]
    modules = raw["modules"]
    if type(version) is not int or not isinstance(modules, dict):
        raise RuntimeError("sidecar/agents/ebin/manifest.json is malformed")
    return _Manifest(version, MappingProxyType({str(k): str(v) for k, v in modules.items()}))


@functools.cache
def beams() -> tuple[Beam, ...]:
    """The agent beams in this package, with the md5 the manifest gives."""
    manifest = _manifest()
    out = []
    for module, md5 in sorted(manifest.modules.items()):
        data = _ebin().joinpath(f"{module}.beam").read_bytes()
        out.append(Beam(module, md5, data))
    return tuple(out)


AGENT_VERSION: Final[int] = _manifest().version
AGENT_MODULES: Final[Mapping[str, str]] = _manifest().modules


Action = Literal["kept", "loaded", "replaced"]


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """``beamside_agent:info()`` of a node, plus what :func:`ensure_loaded` did."""

    node: str
    agent_version: int
    otp_release: str
    erts_version: str
    system_architecture: str
    emulator_flavor: str
    wordsize: int
    os_pid: int | None
    uptime_ms: int
    family_hint: str
    family_source: str
    release_version: str | None
    applications: Mapping[str, str]
    plugins: Mapping[str, bool]
    modules: Mapping[str, str]
    attached: bool
    #: the sidecar nodes the agent's beamside_sysmon watches (agent >= 4);
    #: None when the agent does not say (older agents)
    sidecars: tuple[str, ...] | None = None
    action: Action = "kept"

    @property
    def version(self) -> int:
        """The agent protocol version (``agent_version``)."""
        return self.agent_version

    @classmethod
    def from_term(cls, term: Any, action: Action = "kept") -> AgentInfo:
        if not isinstance(term, dict):
            raise AgentError(f"beamside_agent:info() returned {term!r}", term)
        apps = term.get("applications")
        plugins = term.get("plugins")
        modules = term.get("modules")
        os_pid = term.get("os_pid")
        release = term.get("release_version")
        return cls(
            node=str(term.get("node", "")),
            agent_version=int(term.get("agent_version", 0)),
            otp_release=text(term.get("otp_release")),
            erts_version=text(term.get("erts_version")),
            system_architecture=text(term.get("system_architecture")),
            emulator_flavor=text(term.get("emulator_flavor")),
            wordsize=int(term.get("wordsize", 8)),
            os_pid=os_pid if type(os_pid) is int else None,
            uptime_ms=int(term.get("uptime_ms", 0)),
            family_hint=text(term.get("family_hint")) or "erlang",
            family_source=text(term.get("family_source")) or "default",
            release_version=None if release is None else text(release),
            applications=MappingProxyType(
                {str(k): text(v) for k, v in apps.items()} if isinstance(apps, dict) else {}
            ),
            plugins=MappingProxyType(
                {str(k): v is True for k, v in plugins.items()} if isinstance(plugins, dict) else {}
            ),
            modules=MappingProxyType(
                {str(k): text(v) for k, v in modules.items()} if isinstance(modules, dict) else {}
            ),
            attached=term.get("attached") is True,
            sidecars=(
                tuple(str(n) for n in term["sidecars"])
                if isinstance(term.get("sidecars"), list)
                else None
            ),
            action=action,
        )


@dataclass(frozen=True, slots=True)
class EventOptions:
    """The event options of :func:`attach` (see ``erl_agents/beamside_events.erl``).

    ``log_level``: logger (and lager) events at or above it are forwarded;
    ``None`` forwards no logs.  Logger's primary level still applies: events
    below it never reach any handler.  A second :func:`attach` with other
    options updates the node (level changes included).
    """

    log_level: str | None = "warning"
    max_bytes: int = 8192
    depth: int = 30
    single_line: bool = False
    lager: bool = True
    shell_events: bool = True
    sysmon_events: bool = False
    sysmon_events_rate: int = 10
    max_rate: int = 2000
    batch_size: int = 500
    batch_ms: int = 200
    batch_bytes: int = 262144
    max_queue: int = 5000
    shell_poll_ms: int = 1000
    shell_scan_s: int = 0
    grace_s: int = 120

    def __post_init__(self) -> None:
        if self.log_level is not None and self.log_level not in LEVELS:
            raise ValueError(f"log_level must be one of {LEVELS} or None, not {self.log_level!r}")
        for name in (
            "max_bytes",
            "depth",
            "sysmon_events_rate",
            "max_rate",
            "batch_size",
            "batch_ms",
            "batch_bytes",
            "max_queue",
            "shell_poll_ms",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name in ("shell_scan_s", "grace_s"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be >= 0, not {value!r}")

    def to_attach_opts(self) -> dict[str, Any]:
        """The options as :func:`attach` sends them (merge with other attach options)."""
        return {
            "logs": {
                "level": self.log_level or "none",
                "max_bytes": self.max_bytes,
                "depth": self.depth,
                "single_line": self.single_line,
                "lager": self.lager,
            },
            "shell_events": self.shell_events,
            "sysmon_events": self.sysmon_events,
            "sysmon_events_rate": self.sysmon_events_rate,
            "events": {
                "max_rate": self.max_rate,
                "batch_size": self.batch_size,
                "batch_ms": self.batch_ms,
                "batch_bytes": self.batch_bytes,
                "max_queue": self.max_queue,
                "shell_poll_ms": self.shell_poll_ms,
                "shell_scan_s": self.shell_scan_s,
                "grace_s": self.grace_s,
            },
        }


# --------------------------------------------------------------------------- helpers


def to_opts_term(opts: Mapping[str, Any] | None) -> dict[Atom, Any]:
    """Options for the agents: keys become atoms, ``str`` values atoms,
    lists, tuples (sent as tuples, e.g. ``env_keys=[("kernel", "logger_level")]``)
    and nested mappings are converted the same way."""
    return {Atom(k): _opt_value(v) for k, v in (opts or {}).items()}


def _opt_value(value: Any) -> Any:
    if isinstance(value, bool | int | float | bytes | Atom):
        return value
    if isinstance(value, str):
        return Atom(value)
    if isinstance(value, Mapping):
        return {Atom(str(k)): _opt_value(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_opt_value(v) for v in value)
    if isinstance(value, list):
        return [_opt_value(v) for v in value]
    raise TypeError(f"cannot send option value {value!r} to an agent")


@asynccontextmanager
async def _deadline(what: str, node: str, timeout: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as exc:
        if isinstance(exc, DistError):
            raise
        raise DistTimeout(f"{what} on {node} timed out after {timeout:g}s") from None


async def _call(
    local: LocalNode, node: str, function: str, args: Sequence[Any], timeout: float
) -> Any:
    """``beamside_agent:Function(Args)``; an rpc failure becomes :class:`AgentError`."""
    try:
        return await local.rpc(node, _AGENT, function, args, timeout=timeout)
    except RpcError as exc:
        raise AgentError(
            f"beamside_agent:{function}/{len(args)} failed on {node}: {exc.reason!r}", exc.reason
        ) from exc


def _ok(reply: Any, what: str, node: str) -> Any:
    if type(reply) is tuple and len(reply) == 2 and reply[0] == _OK:
        return reply[1]
    if is_error(reply):
        raise AgentError(f"{what} on {node}: {reply[1]!r}", reply[1])
    raise AgentError(f"{what} on {node}: unexpected reply {reply!r}", reply)


# --------------------------------------------------------------------------- loading


async def loaded_agent_modules(local: LocalNode, node: str, *, timeout: float = 10.0) -> list[str]:
    """Every ``beamside_*`` module loaded on the node."""
    mods = await local.rpc(node, "erlang", "loaded", [], timeout=timeout)
    return sorted(str(m) for m in mods if isinstance(m, str) and m.startswith(PREFIX))


async def ensure_loaded(
    local: LocalNode,
    node: str,
    *,
    timeout: float = 15.0,
    allow_downgrade: bool = True,
) -> AgentInfo:
    """Make sure the node runs exactly our agents; return its :class:`AgentInfo`.

    Nothing is loaded when every module is there with our md5.  Otherwise
    the agent present (older, newer or different) is detached, its modules
    deleted and purged, and ours loaded with ``code:atomic_load/1`` (all or
    nothing).  With ``allow_downgrade=False`` a newer agent than ours that
    another connected beamside is using (a sidecar other than us in its
    watched set, see :func:`_used_by_other`) raises :class:`AgentConflict`
    and is left alone; a newer agent nobody uses (orphaned by a sidecar that
    died) is replaced like any other.

    When no agent process runs on the node, a node-side watchdog left by a
    sidecar that died is cancelled first (it would otherwise delete the
    modules we are about to use), and once our agent is there a watchdog
    watching us is started (``beamside_watchdog:guard/1``): should we die
    before :func:`attach`, the node unloads the agent by itself.
    """
    async with _deadline("loading agents", node, timeout):
        await _cancel_orphan_watchdog(local, node, timeout)
        present = await loaded_agent_modules(local, node, timeout=timeout)
        action: Action = "loaded"
        if present:
            info: AgentInfo | None = None
            if _AGENT in present:
                try:
                    info = AgentInfo.from_term(await _call(local, node, "info", [], timeout))
                except AgentError as exc:
                    log.info("agent on %s does not answer info(): %s", node, exc)
            if info is not None and _same(info, present):
                if not info.attached:
                    await _guard(local, node, timeout)
                return info
            if info is not None and info.agent_version > AGENT_VERSION and not allow_downgrade:
                users = await _used_by_other(local, node, info, timeout)
                if users:
                    raise AgentConflict(
                        f"{node} runs agent version {info.agent_version}, newer than ours "
                        f"({AGENT_VERSION}), in use by {', '.join(users)}; not downgrading"
                    )
                log.info(
                    "agent version %s on %s is newer than ours (%s) but unused: replacing it",
                    info.agent_version,
                    node,
                    AGENT_VERSION,
                )
            log.info(
                "replacing agent on %s (version %s, modules %s)",
                node,
                info.agent_version if info else "?",
                present,
            )
            if _AGENT in present:
                await _stop_agent(local, node, timeout)
            # its watchdog would clean up after the stop, our modules too
            await _cancel_watchdog(local, node, timeout)
            await unload(local, node, timeout=timeout)
            action = "replaced"
        await _load(local, node, timeout)
        await _guard(local, node, timeout)
        return AgentInfo.from_term(await _call(local, node, "info", [], timeout), action)


async def _used_by_other(local: LocalNode, node: str, info: AgentInfo, timeout: float) -> list[str]:
    """The connected sidecars, other than us, using the node's agent.

    Agents since version 4 name the sidecars their ``beamside_sysmon``
    watches (``info().sidecars``); those still connected count.  An older
    agent without that key is in use when its ``beamside_sysmon`` runs (it
    stops when its last sidecar goes): its users are unknown, reported as
    ``"another beamside"``.
    """
    if info.sidecars is None:
        sysmon = await local.rpc(node, "erlang", "whereis", [Atom("beamside_sysmon")])
        return ["another beamside"] if isinstance(sysmon, Pid) else []
    connected = await local.rpc(node, "erlang", "nodes", [Atom("connected")], timeout=timeout)
    alive = {str(n) for n in connected} if isinstance(connected, list) else set()
    return sorted(n for n in info.sidecars if n != str(local.name) and n in alive)


WATCHDOG: Final = "beamside_watchdog"


async def _cancel_watchdog(local: LocalNode, node: str, timeout: float) -> None:
    """Stop the node's watchdog (``beamside_watchdog:cancel/1``, by the OTP
    calls it is made of, so that this works whatever agent is loaded): it
    answers between two of its steps and exits, so no deletion is under way
    once this returns."""
    wd = await local.rpc(node, "erlang", "whereis", [Atom(WATCHDOG)], timeout=timeout)
    if not isinstance(wd, Pid):
        return
    try:
        await local.rpc(node, "gen_server", "call", [wd, Atom("cancel"), 3000], timeout=timeout)
    except RpcError as exc:  # gone meanwhile, or stuck (then killed below)
        log.debug("cancelling the watchdog on %s: %r", node, exc.reason)
    loop = asyncio.get_running_loop()
    end = loop.time() + 2.0
    while await local.rpc(node, "erlang", "is_process_alive", [wd], timeout=timeout):
        if loop.time() >= end:
            await local.rpc(node, "erlang", "exit", [wd, Atom("kill")], timeout=timeout)
            end = loop.time() + 2.0
        await asyncio.sleep(0.02)


async def _guard(local: LocalNode, node: str, timeout: float) -> None:
    """Loaded, not attached yet: a watchdog watching us only
    (``beamside_watchdog:guard/1``), so that our death before the attach
    leaves no modules either; the attach replaces it."""
    try:
        await local.rpc(node, WATCHDOG, "guard", [local.atom], timeout=timeout)
    except RpcError as exc:
        log.info("no watchdog on %s before attach: %r", node, exc.reason)


async def _cancel_orphan_watchdog(local: LocalNode, node: str, timeout: float) -> None:
    """Cancel the watchdog when no agent process runs (left by a sidecar
    that died: our attach takes over from it)."""
    sysmon = await local.rpc(node, "erlang", "whereis", [Atom("beamside_sysmon")], timeout=timeout)
    if not isinstance(sysmon, Pid):
        await _cancel_watchdog(local, node, timeout)


def _same(info: AgentInfo, present: Iterable[str]) -> bool:
    return (
        info.agent_version == AGENT_VERSION
        and set(AGENT_MODULES) <= set(present)
        and all(info.modules.get(m) == md5 for m, md5 in AGENT_MODULES.items())
    )


async def _stop_agent(local: LocalNode, node: str, timeout: float) -> None:
    """Ask whatever agent is there to stop its processes (best effort)."""
    try:
        await _call(local, node, "detach", [], timeout)
    except AgentError as exc:
        log.info("old agent on %s did not detach cleanly: %s", node, exc)


async def _load(local: LocalNode, node: str, timeout: float) -> None:
    entries = [(Atom(b.module), Charlist(f"{b.module}.beam"), b.data) for b in beams()]
    reply = await local.rpc(node, "code", "atomic_load", [entries], timeout=timeout)
    if reply != _OK:
        raise AgentError(f"loading agents on {node} failed: {reply!r}", reply)


async def unload(
    local: LocalNode,
    node: str,
    *,
    timeout: float = 10.0,
    grace: float = 2.0,
    hard: bool = True,
) -> list[str]:
    """Delete and purge every ``beamside_*`` module on the node.

    Soft purge first.  If old code is still in use after ``grace`` seconds
    (a walker of a timed-out collect, say): with ``hard`` it is purged
    hard, which kills the processes running that code (replacing an agent
    must succeed); without, it is left as old code (see :func:`detach`).
    Returns the modules unloaded.
    """
    async with _deadline("unloading agents", node, timeout):
        mods = await loaded_agent_modules(local, node, timeout=timeout)
        for mod in mods:
            # any old code first: code:delete/1 with old code still there
            # fails and logs an error on the node
            if await _purge(local, node, mod, grace, timeout, hard):
                await local.rpc(node, "code", "delete", [Atom(mod)], timeout=timeout)
                await _purge(local, node, mod, grace, timeout, hard)
        return mods


async def _purge(
    local: LocalNode, node: str, mod: str, grace: float, timeout: float, hard: bool
) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + grace
    while True:
        if await local.rpc(node, "code", "soft_purge", [Atom(mod)], timeout=timeout):
            return True
        if loop.time() >= end:
            if not hard:
                return False
            log.warning("old code of %s on %s still in use after %gs: purging", mod, node, grace)
            await local.rpc(node, "code", "purge", [Atom(mod)], timeout=timeout)
            return True
        await asyncio.sleep(0.05)


async def load_user_plugins(
    local: LocalNode,
    node: str,
    plugins: Sequence[UserPlugin],
    loaded: Mapping[str, str],
    *,
    timeout: float = 10.0,
) -> list[str]:
    """Load the operator's plugins (``plugins.directory``) on the node, after
    :func:`ensure_loaded`: each one the node does not already run with the
    same code (``loaded``: the md5 of its ``beamside_*`` modules, as
    :attr:`AgentInfo.modules`).  Like the agents, they are ``beamside_*``
    modules: detach, the watchdog and :func:`unload` remove them.  Returns
    a problem per plugin that did not load (the node said why); the others
    are loaded."""
    problems = []
    async with _deadline("loading plugins", node, timeout):
        for plugin in plugins:
            reply = await local.rpc(node, "beam_lib", "md5", [plugin.beam], timeout=timeout)
            if not (type(reply) is tuple and len(reply) == 2 and reply[0] == _OK):
                problems.append(f"{plugin.path}: the node cannot read it: {shown(reply, 200)}")
                continue
            module, md5 = reply[1]
            if str(module) != plugin.module:
                problems.append(f"{plugin.path}: holds module {module}, not {plugin.module}")
                continue
            if loaded.get(plugin.module) == bytes(md5).hex():
                continue
            # old code of an earlier version first: load_binary refuses while it is there
            await local.rpc(node, "code", "soft_purge", [Atom(plugin.module)], timeout=timeout)
            reply = await local.rpc(
                node,
                "code",
                "load_binary",
                [Atom(plugin.module), Charlist(plugin.path), plugin.beam],
                timeout=timeout,
            )
            if reply != (Atom("module"), Atom(plugin.module)):
                problems.append(f"{plugin.path}: loading failed on {node}: {shown(reply, 200)}")
    return problems


# --------------------------------------------------------------------------- calls


async def attach(
    local: LocalNode,
    node: str,
    opts: Mapping[str, Any] | None = None,
    *,
    timeout: float = 10.0,
) -> Pid:
    """Start (idempotent) the agent process tied to our connection; its pid.

    ``opts``: ``system_monitor`` (bool), ``long_gc`` / ``long_schedule`` (ms),
    ``large_heap`` (words), ``busy_port`` / ``busy_dist_port`` (bool),
    ``scheduler_wall_time`` / ``msacc`` (bool, off unless asked), and the
    event options (``logs``, ``shell_events``, ``sysmon_events``,
    ``sysmon_events_rate``, ``events``: :meth:`EventOptions.to_attach_opts`);
    with any of those the node sends event batches to our
    :data:`EVENTS_MAILBOX`.  An attach without them takes this sidecar out
    of the event stream.
    """
    reply = await _call(local, node, "attach", [local.atom, to_opts_term(opts)], timeout)
    pid = _ok(reply, "attach", node)
    if not isinstance(pid, Pid):
        raise AgentError(f"attach on {node}: unexpected reply {reply!r}", reply)
    return pid


async def detach(local: LocalNode, node: str, *, timeout: float = 10.0) -> list[str]:
    """Stop the agent process and unload every ``beamside_*`` module.

    Returns the modules unloaded.  Safe to call when nothing is loaded.
    Never kills a process: old code some process still runs after a grace
    period (a user process blocked in a call into beamside, say) is left to
    the node's watchdog, which purges it softly once it is released (after
    we disconnect); otherwise the watchdog is cancelled, and nothing of
    beamside is left when this returns.
    """
    async with _deadline("detaching", node, timeout):
        present = await loaded_agent_modules(local, node, timeout=timeout)
        if _AGENT in present:
            await _stop_agent(local, node, timeout)
        unloaded = await unload(local, node, timeout=timeout, hard=False)
        left = await loaded_agent_modules(local, node, timeout=timeout)
        if left:
            log.info(
                "old code of %s on %s still in use: left to the node's watchdog",
                ", ".join(left),
                node,
            )
        else:
            # it would end by itself once the modules are gone (within 250 ms)
            await _cancel_watchdog(local, node, timeout)
        return unloaded


async def collect(
    local: LocalNode,
    node: str,
    opts: Mapping[str, Any] | None = None,
    *,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """``beamside_agent:collect(Opts)``: the snapshot, as decoded.

    Raises :class:`AgentError` when the node answers ``{error, _}`` as a
    whole (a failed section is an ``{error, _}`` value inside the dict).
    The sections and options are documented in ``erl_agents/beamside_agent.erl``;
    the costlier ones are opt-in, for every N ticks: ``startup_files=True``,
    ``modules_md5=True``, ``env_keys=[("app", "key"), ...]``; and
    ``code_events=True`` (every tick, when attached) for the modules loaded,
    reloaded, purged and deleted since this sidecar's previous such collect.
    """
    reply = await _call(local, node, "collect", [to_opts_term(opts)], timeout)
    snapshot = _ok(reply, "collect", node)
    if not isinstance(snapshot, dict):
        raise AgentError(f"collect on {node}: unexpected reply {reply!r}", reply)
    return snapshot


async def live(
    local: LocalNode,
    node: str,
    keys: Sequence[str],
    opts: Mapping[str, Any] | None = None,
    *,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """``beamside_agent:live(Keys, Opts)``: the chosen values (``{error, _}``
    for an unknown key)."""
    reply = await _call(local, node, "live", [[Atom(k) for k in keys], to_opts_term(opts)], timeout)
    values = _ok(reply, "live", node)
    if not isinstance(values, dict):
        raise AgentError(f"live on {node}: unexpected reply {reply!r}", reply)
    return values
