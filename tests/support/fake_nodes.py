"""Simulated Erlang nodes by the thousand: enough of a node for beamside to manage it.

A fake node listens on its own port, is known to a :class:`FakeEpmd`, runs
the server side of the distribution handshake (version 6, the cookie's
digests from :mod:`sidecar.erldist.handshake`, as
:mod:`tests.support.hostile_peer` does for one peer), ticks every 15 s and
answers every rpc beamside makes on attach, per collect and on detach, from
a :class:`Recording` of a real node running the current agents.  Nothing is
hard-coded about the agents' replies: :func:`record` runs the calls the
daemon makes (load, attach, info, collect with the options the alarm checks
ask for, detach) against a real node through a recording
:class:`~sidecar.erldist.node.LocalNode` and keeps each reply by module,
function and (for ``collect``) which opt-in sections were asked.  A new
agent changes nothing here: record again.

What a fake keeps itself (the calls whose answer depends on the node's
state): which ``beamside_*`` modules are loaded (``code:atomic_load``,
``code:delete``, ``erlang:loaded``), whether the agent process runs
(``beamside_agent:attach/detach``, ``erlang:whereis(beamside_sysmon)``), and
what its watchdog does when beamside's connection ends (everything unloaded).
A call to an agent module that is not loaded gets ``{badrpc, {'EXIT',
{undef, ...}}}`` as from a node; a call nobody recorded too, and it is counted
(:attr:`FakeStats.unknown`), so a bench notices that the daemon asked
something new.

Collect replies are encoded once per variant (:class:`CollectTemplate`); a
few counters and clocks in them (uptime, reductions, io, GC, memory, process
count, the node's wall clock) are rewritten in place at every tick, so each
snapshot differs from the last as a real node's does and the node's clock
stays right (no ``clock_skew``, no ``node_restarted``), at the cost of a
copy of the template.

Many fakes share one asyncio loop (:class:`FakeNodeServer`); a
:class:`FakeEpmd` answers ``PORT_PLEASE2_REQ`` for all of them.  Unlike a
real EPMD (one connection per registered name) it takes any number of
``ALIVE2_REQ`` on one connection, and it can pass the names it does not know
on to a real EPMD (``fallback_port``), so real and simulated nodes are found
through one port.

In a test, :class:`FakeCluster` runs an EPMD and N fakes in a thread::

    recording = await record(local, real_node.name)
    with FakeCluster(recording, cookie, count=20) as cluster:
        ...  # ERL_EPMD_PORT=cluster.epmd_port, targets cluster.names

A bench runs them as processes (``python3 -m tests.support.fake_nodes epmd|serve``,
see :func:`main`), each ending when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from sidecar import agents
from sidecar.agents.config import AgentsConfig
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.errors import DistError
from sidecar.erldist.flags import OUR_FLAGS, DFlag
from sidecar.erldist.handshake import gen_digest, new_creation
from sidecar.erldist.node import LocalNode
from sidecar.erldist.protocol import PASS_THROUGH, SEND_SENDER, DistProtocol, RegSend
from sidecar.erldist.term import Atom, Pid, Reference, decode, encode, encode_into

LOOPBACK: Final = "127.0.0.1"
TICK_INTERVAL: Final = 15.0  # a node's net_ticktime (60 s) / 4
NET_TICKTIME: Final = 60

# EPMD messages (erl_dist_protocol, "EPMD Protocol")
ALIVE2_REQ: Final = 120
ALIVE2_X_RESP: Final = 118
PORT_PLEASE2_REQ: Final = 122
PORT2_RESP: Final = 119
NAMES_REQ: Final = 110
NODE_TYPE_NORMAL: Final = 77

_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_A = Atom
_OK = _A("ok")
_UNDEFINED = _A("undefined")
_AGENT_PREFIX = "beamside_"
#: collect options that change what the reply holds (the others only tune it)
COLLECT_FLAGS: Final = ("modules_md5", "startup_files", "code_events", "config_events", "env_keys")

Key = tuple[str, str, str]  # module, function, variant


def collect_variant(args: Sequence[Any]) -> str:
    """Which opt-in sections a collect asks for (``""``: none)."""
    opts = args[0] if args and isinstance(args[0], dict) else {}
    return "+".join(k for k in COLLECT_FLAGS if opts.get(_A(k)) not in (None, False, []))


def variant_of(module: str, function: str, args: Sequence[Any]) -> str:
    if module == "beamside_agent" and function == "collect":
        return collect_variant(args)
    return ""


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Recording:
    """The replies of one real node to what beamside asks, by (module, function, variant).

    ``erlang:loaded`` is kept twice, ``"plain"`` (before our agents) and
    ``"agents"`` (with them); ``beamside_agent:info`` as ``""`` (loaded, not
    attached) and ``"attached"``."""

    source: str
    otp_release: str
    mesh_peers: int
    replies: Mapping[Key, Any]

    def get(self, module: str, function: str, variant: str = "") -> Any:
        return self.replies[(module, function, variant)]

    def has(self, module: str, function: str, variant: str = "") -> bool:
        return (module, function, variant) in self.replies

    def collect_variants(self) -> list[str]:
        return sorted(v for m, f, v in self.replies if (m, f) == ("beamside_agent", "collect"))

    def agent_modules(self) -> list[str]:
        plain = {str(m) for m in self.get("erlang", "loaded", "plain")}
        return sorted(
            str(m)
            for m in self.get("erlang", "loaded", "agents")
            if str(m).startswith(_AGENT_PREFIX) and str(m) not in plain
        )

    def save(self, path: Path) -> None:
        term = {
            _A("source"): self.source.encode(),
            _A("otp_release"): self.otp_release.encode(),
            _A("mesh_peers"): self.mesh_peers,
            _A("replies"): {
                (m.encode(), f.encode(), v.encode()): reply
                for (m, f, v), reply in self.replies.items()
            },
        }
        path.write_bytes(encode(term))

    @classmethod
    def load(cls, path: Path) -> Recording:
        term = decode(path.read_bytes())
        replies = {
            (m.decode(), f.decode(), v.decode()): reply
            for (m, f, v), reply in term[_A("replies")].items()
        }
        return cls(
            term[_A("source")].decode(),
            term[_A("otp_release")].decode(),
            int(term[_A("mesh_peers")]),
            replies,
        )


class _RecordingNode(LocalNode):
    """A LocalNode that keeps the last reply to each (module, function, variant)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replies: dict[Key, Any] = {}

    async def rpc(
        self,
        peer: str,
        module: str,
        function: str,
        args: Sequence[Any] = (),
        *,
        timeout: float = 10.0,
    ) -> Any:
        try:
            reply = await super().rpc(peer, module, function, args, timeout=timeout)
        except DistError as exc:
            reason = getattr(exc, "reason", None)
            if reason is not None:  # {badrpc, Reason}: replayed as such
                self.replies[(module, function, variant_of(module, function, args))] = (
                    _A("badrpc"),
                    reason,
                )
            raise
        self.replies[(module, function, variant_of(module, function, args))] = reply
        return reply


def daemon_collect_options(
    node: str, family: str = "erlang"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collect options of the daemon's first tick (the alarm checks ask for
    module md5s and startup files then, and every so many ticks) and of a
    plain tick: from the real :class:`AlarmChecker`, so that they follow it."""
    first = AlarmChecker(AlarmEngine("record"), interval=15.0).collect_options(node, family)
    plain = {k: v for k, v in first.items() if k not in ("modules_md5", "startup_files")}
    return first, plain


async def record(
    cookie: str, node: str, *, epmd_port: int | None = None, mesh_peers: int = 0
) -> Recording:
    """Attach to the real ``node`` as the daemon does, collect, detach; every
    reply recorded.  Leaves nothing on the node."""
    local = _RecordingNode(
        f"beamside-recorder-{os.getpid()}-{secrets.token_hex(2)}@{LOOPBACK}",
        cookie,
        epmd_port=epmd_port,
    )
    try:
        await local.connect(node)
        plain = await local.rpc(node, "erlang", "loaded", [])
        if any(str(m).startswith(_AGENT_PREFIX) for m in plain):
            raise RuntimeError(f"{node} already runs beamside agents: record from a fresh node")
        info = await agents.ensure_loaded(local, node, allow_downgrade=False)
        await agents.attach(local, node, AgentsConfig().attach_options())
        with_agents = await local.rpc(node, "erlang", "loaded", [])
        attached = await local.rpc(node, "beamside_agent", "info", [])
        first, later = daemon_collect_options(node)
        for opts in (first, later, first, later):  # the second of each is kept: warm
            await agents.collect(local, node, opts, timeout=30)
        await local.rpc(node, "erlang", "nodes", [])
        await local.rpc(node, "erlang", "nodes", [_A("connected")])
        await agents.detach(local, node)
        replies = dict(local.replies)
        replies[("erlang", "loaded", "plain")] = plain
        replies[("erlang", "loaded", "agents")] = with_agents
        replies[("beamside_agent", "info", "attached")] = attached
        replies.pop(("erlang", "loaded", ""), None)
        return Recording(node, info.otp_release, mesh_peers, replies)
    finally:
        await local.close()


# --------------------------------------------------------------------------- collect template


#: counters and clocks rewritten at every tick: path -> how
_PATCHES: Final[Mapping[tuple[str, ...], str]] = {
    ("uptime_ms",): "uptime_ms",
    ("statistics", "wall_clock_ms"): "uptime_ms",
    ("statistics", "runtime_ms"): "runtime_ms",
    ("statistics", "reductions"): "reductions",
    ("statistics", "exact_reductions"): "reductions",
    ("statistics", "context_switches"): "counter",
    ("statistics", "gc_count"): "counter",
    ("statistics", "gc_words_reclaimed"): "big_counter",
    ("statistics", "io_input"): "big_counter",
    ("statistics", "io_output"): "big_counter",
    ("system_time_us",): "now_us",
    ("time", "system_time_us"): "now_us",
    ("time", "erlang_system_time_us"): "now_us",
    ("memory", "total"): "jitter",
    ("memory", "processes"): "jitter",
    ("memory", "processes_used"): "jitter",
    ("limits", "process_count"): "small_jitter",
    ("processes", "process_count"): "small_jitter",
    ("duration_us",): "small_jitter",
}
_SENTINEL_BASE: Final = 0x5EA1_0000_0000_0000  # 8 bytes: SMALL_BIG_EXT with n = 8
_BIG8: Final = b"n\x08\x00"


@dataclass(frozen=True)
class CollectTemplate:
    """``{ok, Reply}`` of one collect variant, encoded (without the version
    byte), with where each patched integer's 8 little-endian bytes are."""

    body: bytes
    patches: tuple[tuple[int, str, int], ...]  # (offset, how, recorded value)

    @classmethod
    def build(cls, reply: Any) -> CollectTemplate:
        if not (type(reply) is tuple and len(reply) == 2 and reply[0] == _OK):
            raise ValueError(f"not a collect reply: {reply!r:.200}")
        data = _copy_maps(reply[1])
        # the sections an agent of version 12 or later packs: patched inside
        # the packed binary (a binary of the same size: the offsets hold)
        packed = data.get(_A("packed"))
        inner = _copy_maps(decode(packed)) if type(packed) is bytes else None
        planted: list[tuple[int, str, int]] = []
        for i, (path, how) in enumerate(_PATCHES.items()):
            parent = inner if isinstance(inner, dict) and _A(path[0]) in inner else data
            for key in path[:-1]:
                parent = parent.get(_A(key)) if isinstance(parent, dict) else None
            leaf = _A(path[-1])
            if isinstance(parent, dict) and type(parent.get(leaf)) is int and parent[leaf] >= 0:
                planted.append((_SENTINEL_BASE + i, how, parent[leaf]))
                parent[leaf] = _SENTINEL_BASE + i
        if inner is not None:
            data[_A("packed")] = encode(inner)
        body = encode((_OK, data))[1:]
        patches = []
        for sentinel, how, value in planted:
            needle = _BIG8 + sentinel.to_bytes(8, "little")
            at = body.find(needle)
            if at < 0 or body.find(needle, at + 1) >= 0:
                raise ValueError(f"sentinel {sentinel:#x} not found exactly once")
            patches.append((at + len(_BIG8), how, value))
        return cls(body, tuple(patches))

    def render(self, tick: int, uptime_ms: int, now_us: int) -> bytearray:
        out = bytearray(self.body)
        for at, how, value in self.patches:
            if how == "uptime_ms":
                new = value + uptime_ms
            elif how == "now_us":
                new = now_us
            elif how == "runtime_ms":
                new = value + uptime_ms // 100
            elif how == "reductions":
                new = value + tick * 48_611
            elif how == "counter":
                new = value + tick * 37
            elif how == "big_counter":
                new = value + tick * 9_973
            elif how == "jitter":
                new = value + (tick % 7) * 4096
            else:  # small_jitter
                new = value + tick % 3
            out[at : at + 8] = new.to_bytes(8, "little")
        return out


def _copy_maps(term: Any) -> Any:
    """Maps copied all the way down (the template's leaves are replaced)."""
    if isinstance(term, dict):
        return {k: _copy_maps(v) for k, v in term.items()}
    return term


# --------------------------------------------------------------------------- one fake node


@dataclass
class FakeStats:
    connections: int = 0
    handshakes: int = 0
    cookie_refused: int = 0
    open: int = 0
    rpcs: Counter[str] = field(default_factory=Counter)
    collects: int = 0
    unknown: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "handshakes": self.handshakes,
            "cookie_refused": self.cookie_refused,
            "open": self.open,
            "collects": self.collects,
            "rpcs": dict(self.rpcs),
            "unknown": dict(self.unknown),
        }


class FakeNode:
    """One simulated node: its name, port and the state beamside changes."""

    def __init__(self, server: FakeNodeServer, alive: str) -> None:
        self.server = server
        self.alive = alive
        self.name = f"{alive}@{LOOPBACK}"
        self.atom = _A(self.name)
        self.creation = new_creation()
        self.port = 0
        self.started = time.monotonic()
        self.loaded: set[str] = set()  # beamside_* modules loaded
        self.attached_at: float | None = None
        self.ticks = 0
        self.rex = Pid(self.atom, 33, 0, self.creation)
        self.sysmon = Pid(self.atom, 4711, 0, self.creation)
        self.connection: _FakeConnection | None = None

    def lost(self) -> None:
        """beamside's connection ended: the node's watchdog unloads our agents."""
        self.loaded.clear()
        self.attached_at = None
        self.connection = None

    def answer(self, module: str, function: str, args: list[Any]) -> tuple[Any, bytes | None]:
        """(reply term, or None and the encoded ``{ok, Reply}`` body of a collect)."""
        rec = self.server.recording
        stats = self.server.stats
        stats.rpcs[f"{module}:{function}"] += 1
        if module.startswith(_AGENT_PREFIX) and module not in self.loaded:
            return _undef(module, function, args), None
        key = (module, function)
        if key == ("beamside_agent", "collect"):
            stats.collects += 1
            self.ticks += 1
            template = self.server.template(collect_variant(args))
            uptime = int((time.monotonic() - self.started) * 1000)
            body = template.render(self.ticks, uptime, time.time_ns() // 1000)
            return None, bytes(body)
        if key == ("net_kernel", "get_net_ticktime"):
            return NET_TICKTIME, None
        if key == ("erlang", "loaded"):
            return list(rec.get("erlang", "loaded", "plain")) + [_A(m) for m in self.loaded], None
        if key == ("erlang", "whereis"):
            running = self.attached_at is not None and args == [_A("beamside_sysmon")]
            return (self.sysmon if running else _UNDEFINED), None
        if key == ("erlang", "is_process_alive"):
            return False, None
        if key == ("code", "atomic_load"):
            self.loaded.update(str(entry[0]) for entry in args[0])
            return _OK, None
        if key == ("code", "delete"):
            self.loaded.discard(str(args[0]))
            return True, None
        if key == ("code", "soft_purge"):
            return True, None
        if key == ("beamside_agent", "attach"):
            self.attached_at = time.monotonic()
            return (_OK, self.sysmon), None
        if key == ("beamside_agent", "detach"):
            self.attached_at = None
            return _OK, None
        if key == ("beamside_agent", "info"):
            variant = "attached" if self.attached_at is not None else ""
            info = dict(rec.get("beamside_agent", "info", variant))
            info[_A("node")] = self.atom
            info[_A("attached")] = self.attached_at is not None
            return info, None
        variant = variant_of(module, function, args)
        if rec.has(module, function, variant):
            return rec.get(module, function, variant), None
        stats.unknown[f"{module}:{function}"] += 1
        return _undef(module, function, args), None


def _undef(module: str, function: str, args: list[Any]) -> Any:
    return (_A("badrpc"), (_A("EXIT"), (_A("undef"), [(_A(module), _A(function), args, [])])))


# --------------------------------------------------------------------------- connections


class _FakeConnection(asyncio.Protocol):
    """The server side of one distribution connection to a fake node."""

    def __init__(self, node: FakeNode) -> None:
        self.node = node
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._phase = "name"  # name -> reply -> framed
        self._challenge = 0
        self._dist: DistProtocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.node.server.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.node.server
        if self._phase == "framed":
            server.stats.open -= 1
            server.connections.discard(self)
            if self.node.connection is self:
                self.node.lost()

    def data_received(self, data: bytes) -> None:
        try:
            if self._phase == "framed":
                assert self._dist is not None
                for event in self._dist.receive_data(data):
                    if type(event) is RegSend and event.to_name == "rex":
                        self._rpc(event.message)
                return
            self._buf += data
            self._handshake()
        except Exception as exc:  # a bug or a bad peer: drop it as a node would
            print(f"fake {self.node.name}: closing: {exc!r}", file=sys.stderr)
            if self.transport is not None:
                self.transport.abort()

    # -- handshake (server side, version 6)

    def _message(self) -> bytes | None:
        if len(self._buf) < 2:
            return None
        (n,) = _u16.unpack_from(self._buf)
        if len(self._buf) < 2 + n:
            return None
        msg = bytes(self._buf[2 : 2 + n])
        del self._buf[: 2 + n]
        return msg

    def _send_message(self, msg: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_u16.pack(len(msg)) + msg)

    def _handshake(self) -> None:
        assert self.transport is not None
        node = self.node
        if self._phase == "name":
            msg = self._message()
            if msg is None:
                return
            if not msg or msg[0] != ord("N"):
                self.transport.abort()
                return
            self._send_message(b"sok")
            self._challenge = secrets.randbits(32)
            name = node.name.encode()
            flags = OUR_FLAGS | DFlag.PUBLISHED
            self._send_message(
                struct.pack(">BQIIH", ord("N"), flags, self._challenge, node.creation, len(name))
                + name
            )
            self._phase = "reply"
        if self._phase == "reply":
            msg = self._message()
            if msg is None:
                return
            cookie = node.server.cookie
            if (
                len(msg) != 21
                or msg[0] != ord("r")
                or msg[5:] != gen_digest(self._challenge, cookie)
            ):
                node.server.stats.cookie_refused += 1
                self.transport.abort()  # a wrong cookie: closed without a word, as a node does
                return
            (theirs,) = _u32.unpack_from(msg, 1)
            self._send_message(b"a" + gen_digest(theirs, cookie))
            self._phase = "framed"
            server = node.server
            server.stats.handshakes += 1
            server.stats.open += 1
            server.connections.add(self)
            if node.connection is not None and node.connection.transport is not None:
                node.connection.transport.abort()  # a newer connection replaces it
            node.lost()
            node.connection = self
            self._dist = DistProtocol(peer=f"beamside via {node.name}")
            rest, self._buf = bytes(self._buf), bytearray()
            if rest:
                self.data_received(rest)

    # -- rpc through rex

    def _rpc(self, message: Any) -> None:
        """``{'$gen_call', {From, Ref}, {call, M, F, A, GroupLeader}}``: answer
        ``{Ref, Reply}`` to ``From``, as rex does."""
        if not (type(message) is tuple and len(message) == 3 and message[0] == "$gen_call"):
            return
        (caller, ref), request = message[1], message[2]
        if not (type(request) is tuple and len(request) == 5 and request[0] == "call"):
            return
        _, module, function, args, _gl = request
        reply, body = self.node.answer(str(module), str(function), list(args))
        self._send_reply(caller, ref, reply, body)

    def _send_reply(self, caller: Pid, ref: Reference, reply: Any, body: bytes | None) -> None:
        out = bytearray(b"\0\0\0\0")
        out.append(PASS_THROUGH)
        encode_into(out, (SEND_SENDER, self.node.rex, caller))
        if body is None:
            encode_into(out, (ref, reply))
        else:  # {Ref, {ok, Collected}}, the second element pre-encoded
            ref_term = encode(ref)
            out += b"\x83h\x02"
            out += ref_term[1:]
            out += body
        _u32.pack_into(out, 0, len(out) - 4)
        assert self.transport is not None
        self.transport.write(out)

    def tick(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\0\0\0\0")


# --------------------------------------------------------------------------- server


class FakeNodeServer:
    """Many fake nodes in one asyncio loop, registered in one EPMD connection."""

    def __init__(
        self,
        recording: Recording,
        cookie: str,
        names: Iterable[str],
        *,
        port_base: int = 0,
    ) -> None:
        self.recording = recording
        self.cookie = cookie
        self.stats = FakeStats()
        self.nodes = [FakeNode(self, alive) for alive in names]
        self.connections: set[_FakeConnection] = set()
        self.port_base = port_base
        self._templates: dict[str, CollectTemplate] = {}
        self._servers: list[asyncio.Server] = []
        self._epmd: asyncio.StreamWriter | None = None
        self._ticker: asyncio.Task[None] | None = None
        for variant in recording.collect_variants():  # built now, not in the first tick
            self.template(variant)

    def template(self, variant: str) -> CollectTemplate:
        found = self._templates.get(variant)
        if found is None:
            rec = self.recording
            key = variant if rec.has("beamside_agent", "collect", variant) else ""
            found = self._templates.get(key)
            if found is None:
                found = CollectTemplate.build(rec.get("beamside_agent", "collect", key))
                self._templates[key] = found
            self._templates[variant] = found
        return found

    async def start(self, epmd_port: int) -> None:
        loop = asyncio.get_running_loop()
        port = self.port_base
        for node in self.nodes:
            while True:
                try:
                    server = await loop.create_server(
                        lambda n=node: _FakeConnection(n),  # type: ignore[misc]
                        LOOPBACK,
                        port,
                        reuse_address=True,
                        backlog=64,
                    )
                    break
                except OSError:
                    if not port:
                        raise
                    port += 1  # taken: the next one
            node.port = server.sockets[0].getsockname()[1]
            if port:
                port = node.port + 1
            self._servers.append(server)
        self._epmd = await register(epmd_port, [(n.alive, n.port) for n in self.nodes])
        self._ticker = asyncio.create_task(self._tick_forever(), name="fake ticks")

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            for conn in list(self.connections):
                conn.tick()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._epmd is not None:
            self._epmd.transport.abort()
        await asyncio.sleep(0)


async def register(epmd_port: int, names: Sequence[tuple[str, int]]) -> asyncio.StreamWriter:
    """ALIVE2_REQ for every (alive, port) on one connection to a :class:`FakeEpmd`
    (which keeps them while the connection lives)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, epmd_port)
    for alive, port in names:
        name = alive.encode()
        body = (
            struct.pack(">BHBBHHH", ALIVE2_REQ, port, NODE_TYPE_NORMAL, 0, 6, 6, len(name))
            + name
            + _u16.pack(0)
        )
        writer.write(_u16.pack(len(body)) + body)
    await writer.drain()
    for alive, _ in names:
        answer = await reader.readexactly(6)
        if answer[0] != ALIVE2_X_RESP or answer[1] != 0:
            raise RuntimeError(f"the fake EPMD refused {alive}: {answer!r}")
    return writer


# --------------------------------------------------------------------------- EPMD


class FakeEpmd:
    """An EPMD for fake nodes: PORT_PLEASE2_REQ for every registered name,
    ALIVE2_REQ (many per connection), NAMES_REQ; names it does not know are
    asked of the real EPMD at ``fallback_port``, if any."""

    def __init__(self, port: int = 0, *, fallback_port: int | None = None) -> None:
        self.port = port
        self.fallback_port = fallback_port
        self.names: dict[str, int] = {}
        self.lookups = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine: list[str] = []
        try:
            while True:
                try:
                    (n,) = _u16.unpack(await reader.readexactly(2))
                    body = await reader.readexactly(n)
                except asyncio.IncompleteReadError:
                    return
                if not body:
                    return
                if body[0] == ALIVE2_REQ:
                    port = _u16.unpack_from(body, 1)[0]
                    nlen = _u16.unpack_from(body, 9)[0]
                    alive = body[11 : 11 + nlen].decode()
                    self.names[alive] = port
                    mine.append(alive)
                    writer.write(bytes((ALIVE2_X_RESP, 0)) + _u32.pack(1))
                    continue  # registrations live as long as the connection
                if body[0] == PORT_PLEASE2_REQ:
                    self.lookups += 1
                    await self._port_please(body, writer)
                elif body[0] == NAMES_REQ:
                    lines = "".join(f"name {a} at port {p}\n" for a, p in self.names.items())
                    writer.write(_u32.pack(self.port) + lines.encode())
                return  # one request per connection, as EPMD does
        except (OSError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for alive in mine:
                self.names.pop(alive, None)
            writer.close()

    async def _port_please(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        alive = body[1:].decode("utf-8", "replace")
        port = self.names.get(alive)
        if port is not None:
            name = alive.encode()
            writer.write(
                struct.pack(">BBHBBHHH", PORT2_RESP, 0, port, NODE_TYPE_NORMAL, 0, 6, 6, len(name))
                + name
                + _u16.pack(0)
            )
        elif self.fallback_port is not None:
            try:
                r, w = await asyncio.open_connection(LOOPBACK, self.fallback_port)
                w.write(_u16.pack(len(body)) + body)
                writer.write(await r.read())
                w.close()
            except OSError:
                writer.write(bytes((PORT2_RESP, 1)))
        else:
            writer.write(bytes((PORT2_RESP, 1)))
        with contextlib.suppress(OSError, ConnectionError):
            await writer.drain()


# --------------------------------------------------------------------------- in a thread


class FakeCluster:
    """A :class:`FakeEpmd` and ``count`` fake nodes in a background thread."""

    def __init__(
        self,
        recording: Recording,
        cookie: str,
        *,
        count: int,
        prefix: str | None = None,
        fallback_epmd: int | None = None,
    ) -> None:
        prefix = prefix or f"fake_{os.getpid()}_{secrets.token_hex(2)}"
        self.names = [f"{prefix}_{i:05d}@{LOOPBACK}" for i in range(count)]
        self._alive = [n.split("@")[0] for n in self.names]
        self._recording = recording
        self._cookie = cookie
        self._fallback = fallback_epmd
        self.epmd_port = 0
        self.server: FakeNodeServer | None = None
        self.epmd: FakeEpmd | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> Self:
        self._thread = threading.Thread(target=self._run, name="fake nodes", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"fake nodes not ready within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"fake nodes failed to start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.epmd = FakeEpmd(fallback_port=self._fallback)
        await self.epmd.start()
        self.epmd_port = self.epmd.port
        self.server = FakeNodeServer(self._recording, self._cookie, self._alive)
        await self.server.start(self.epmd.port)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()
            await self.epmd.stop()

    @property
    def stats(self) -> FakeStats:
        assert self.server is not None
        return self.server.stats

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- as processes


async def _until_stdin_closes() -> None:
    """Return when our parent goes (stdin EOF) or SIGTERM/SIGINT arrives."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def eof() -> None:
        while await reader.read(4096):
            pass
        done.set()

    watcher = asyncio.create_task(eof())
    await done.wait()
    watcher.cancel()


async def _epmd_main(args: argparse.Namespace) -> None:
    epmd = FakeEpmd(args.port, fallback_port=args.fallback)
    await epmd.start()
    print(json.dumps({"port": epmd.port}), flush=True)
    await _until_stdin_closes()
    await epmd.stop()


async def _serve_main(args: argparse.Namespace) -> None:
    recording = Recording.load(Path(args.recording))
    cookie = Path(args.cookie_file).read_text().strip()
    names = [f"{args.prefix}_{i:05d}" for i in range(args.first, args.first + args.count)]
    server = FakeNodeServer(recording, cookie, names, port_base=args.port_base)
    await server.start(args.epmd_port)
    print(json.dumps({"ready": len(server.nodes)}), flush=True)
    stats_path = Path(args.stats) if args.stats else None

    async def write_stats() -> None:
        while stats_path is not None:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(server.stats.as_json()))
            tmp.replace(stats_path)
            await asyncio.sleep(0.5)

    writer = asyncio.create_task(write_stats())
    await _until_stdin_closes()
    writer.cancel()
    await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python3 -m tests.support.fake_nodes", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("epmd", help='a fake EPMD; prints {"port": N}')
    e.add_argument("--port", type=int, default=0)
    e.add_argument("--fallback", type=int, default=None, help="a real EPMD for other names")
    s = sub.add_parser("serve", help='fake nodes; prints {"ready": N}')
    s.add_argument("--recording", required=True)
    s.add_argument("--cookie-file", required=True)
    s.add_argument("--epmd-port", type=int, required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--port-base", type=int, default=0)
    s.add_argument("--stats", default="", help="write FakeStats here as JSON, twice a second")
    args = ap.parse_args(argv)
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(_epmd_main(args) if args.cmd == "epmd" else _serve_main(args))


__all__ = [
    "CollectTemplate",
    "FakeCluster",
    "FakeEpmd",
    "FakeNode",
    "FakeNodeServer",
    "FakeStats",
    "Recording",
    "daemon_collect_options",
    "record",
    "register",
]

if __name__ == "__main__":
    main()
