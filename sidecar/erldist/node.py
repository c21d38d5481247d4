"""Our hidden node: connections by peer, local pids, mailboxes, rpc, monitors.

A :class:`LocalNode` connects on demand (one connection per peer, concurrent
callers share the attempt), never registers in EPMD and never announces
itself as published, so it stays out of ``nodes()`` on the peers.

``rpc`` goes through the peer's ``rex`` server, like ``rpc:call/5``; the
called function's group leader is one of our pids that answers io requests,
so ``io:format`` on the node does not hang or crash the call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .connection import Connection, open_connection
from .errors import DistError, DistTimeout, LocalProtocolError, NodeDown, RpcError
from .handshake import new_creation
from .limits import DEFAULT_DIST_LIMITS, DistLimits, MemoryBudget
from .names import NodeName, parse_node_name
from .protocol import (
    AliasSend,
    DemonitorRequest,
    Event,
    Exit,
    GroupLeader,
    Link,
    MonitorExit,
    MonitorRequest,
    RegSend,
    Send,
    Tick,
    UnknownControl,
    UnlinkId,
    UnlinkIdAck,
)
from .term import Atom, ImproperList, Pid, Reference
from .tls import TlsConfig

log = logging.getLogger(__name__)

NodeDownCallback = Callable[[str, BaseException | None], None]
OutputCallback = Callable[[str, str], None]

_A = Atom
_DOWN = _A("DOWN")
_PROCESS = _A("process")
_NOCONNECTION = _A("noconnection")
_NOPROC = _A("noproc")
_NORMAL = _A("normal")


@dataclass(frozen=True, slots=True)
class Down:
    """A monitored process went down (Erlang's ``{'DOWN', Ref, process, Who, Reason}``)."""

    ref: Reference
    who: Pid | tuple[Atom, Atom]
    reason: Any


MessageCallback = Callable[[Any], None]


class Mailbox:
    """A local Erlang process stand-in: a pid and its received messages.

    Messages go to ``callback`` when one is given, else into a queue read with
    :meth:`receive`; a bounded queue (``maxsize``) drops and counts overflow
    rather than grow without limit.
    """

    def __init__(
        self,
        node: LocalNode,
        pid: Pid,
        name: Atom | None,
        maxsize: int,
        callback: MessageCallback | None = None,
    ) -> None:
        self.node = node
        self.pid = pid
        self.name = name
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self._callback = callback
        self.dropped = 0

    def deliver(self, message: Any) -> None:
        if self._callback is not None:
            try:
                self._callback(message)
            except Exception:
                log.exception("message callback of %s failed", self.pid)
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message; :class:`DistTimeout` if none arrives in time."""
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            raise DistTimeout(f"no message for {self.pid} within {timeout}s") from None

    def receive_nowait(self) -> Any:
        return self._queue.get_nowait()

    def empty(self) -> bool:
        return self._queue.empty()

    def close(self) -> None:
        self.node._close_mailbox(self)


class LocalNode:
    def __init__(
        self,
        name: str | NodeName,
        cookie: str,
        *,
        net_ticktime: float | None = None,
        connect_timeout: float = 10.0,
        epmd_port: int | None = None,
        tls: TlsConfig | None = None,
        limits: DistLimits = DEFAULT_DIST_LIMITS,
    ) -> None:
        """``limits`` is the ``distribution:`` config (memory budget and
        net_ticktime); ``net_ticktime``, when given, overrides its own."""
        self.name = name if isinstance(name, NodeName) else parse_node_name(name)
        self.atom = Atom(str(self.name))
        self.creation = new_creation()
        self._cookie = cookie
        self._cookies: dict[str, str] = {}
        self._tls = tls
        self._peer_tls: dict[str, TlsConfig] = {}
        self.limits = limits
        self.net_ticktime = limits.net_ticktime if net_ticktime is None else net_ticktime
        self.memory = MemoryBudget(limits.max_buffered_total)
        """Bytes buffered by all connections, against ``max_buffered_total``."""
        self.connect_timeout = connect_timeout
        self.epmd_port = epmd_port
        self._pid_ids = itertools.count(1)
        self._ref_ids = itertools.count(1)
        self._ref_salt = (secrets.randbits(32), secrets.randbits(32))
        self._conns: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Task[Connection]] = {}
        self._mailboxes: dict[Pid, Mailbox] = {}
        self._registered: dict[Atom, Mailbox] = {}
        self._pending: dict[Reference, tuple[str, asyncio.Future[Any]]] = {}
        # ref -> (watcher pid, peer node, target): monitors we hold on remote processes
        self._monitors: dict[Reference, tuple[Pid, str, Pid | tuple[Atom, Atom]]] = {}
        self._down_callbacks: list[NodeDownCallback] = []
        self._output_callbacks: list[OutputCallback] = []
        self._unlink_ids = itertools.count(1)
        self._rpc_pid = self._new_pid()
        self._group_leader = self._new_pid()
        self._closed = False

    def __repr__(self) -> str:
        return f"<LocalNode {self.name} peers={sorted(self._conns)}>"

    # ------------------------------------------------------------ identities

    def _new_pid(self) -> Pid:
        n = next(self._pid_ids)
        return Pid(self.atom, n & 0x7FFF_FFFF, n >> 31, self.creation)

    def make_ref(self) -> Reference:
        n = next(self._ref_ids)
        return Reference(
            self.atom, self.creation, (n & 0x3FFFF, self._ref_salt[0], self._ref_salt[1])
        )

    def set_cookie(self, peer: str, cookie: str) -> None:
        """Use ``cookie`` for ``peer`` instead of the node's default."""
        self._cookies[peer] = cookie

    def set_tls(self, peer: str, tls: TlsConfig) -> None:
        """Connect to ``peer`` over TLS with ``tls`` (instead of the node's default)."""
        self._peer_tls[peer] = tls

    def tls_for(self, peer: str) -> TlsConfig | None:
        return self._peer_tls.get(peer, self._tls)

    # ------------------------------------------------------------ callbacks

    def on_node_down(self, callback: NodeDownCallback) -> None:
        self._down_callbacks.append(callback)

    def on_output(self, callback: OutputCallback) -> None:
        """``callback(peer, text)`` for io output written by remote calls."""
        self._output_callbacks.append(callback)

    # ------------------------------------------------------------ connections

    def is_connected(self, peer: str) -> bool:
        conn = self._conns.get(peer)
        return conn is not None and not conn.closed

    @property
    def peers(self) -> list[str]:
        return sorted(p for p, c in self._conns.items() if not c.closed)

    def connection(self, peer: str) -> Connection | None:
        conn = self._conns.get(peer)
        return None if conn is None or conn.closed else conn

    async def connect(
        self,
        peer: str,
        *,
        cookie: str | None = None,
        tls: TlsConfig | None = None,
        timeout: float | None = None,
    ) -> Connection:
        """The connection to ``peer``, opened if needed (shared by concurrent
        callers); over TLS when ``tls`` (or :meth:`set_tls`, or the node's
        default) says so."""
        if self._closed:
            raise LocalProtocolError("the local node is closed")
        if cookie is not None:
            self.set_cookie(peer, cookie)
        if tls is not None:
            self.set_tls(peer, tls)
        conn = self._conns.get(peer)
        if conn is not None and not conn.closed:
            return conn
        task = self._connecting.get(peer)
        if task is None:
            task = asyncio.create_task(self._open(peer, timeout), name=f"dist-connect {peer}")
            self._connecting[peer] = task
            task.add_done_callback(lambda _t: self._forget_attempt(peer, task))
        return await asyncio.shield(task)

    def _forget_attempt(self, peer: str, task: asyncio.Task[Connection]) -> None:
        if self._connecting.get(peer) is task:
            del self._connecting[peer]

    async def _open(self, peer: str, timeout: float | None) -> Connection:
        peer_name = parse_node_name(peer)
        reader, writer, done = await open_connection(
            peer_name,
            self.name,
            self._cookies.get(peer, self._cookie),
            timeout=self.connect_timeout if timeout is None else timeout,
            epmd_port=self.epmd_port,
            tls=self.tls_for(peer),
            creation=self.creation,
        )
        conn = Connection(
            reader,
            writer,
            done,
            on_event=self._on_event,
            on_lost=self._on_lost,
            net_ticktime=self.net_ticktime,
            limits=self.limits,
            budget=self.memory,
        )
        self._conns[peer] = conn
        conn.start()
        log.debug("connected to %s", peer)  # the manager logs state changes
        # Tick in time for the peer's net_ticktime, whatever ours is.
        try:
            peer_tick = await self.rpc(peer, "net_kernel", "get_net_ticktime", [], timeout=5)
        except DistError as exc:
            log.debug("could not read net_ticktime of %s: %s", peer, exc)
        else:
            if type(peer_tick) is tuple:  # {ongoing_change_to, T}
                peer_tick = peer_tick[-1]
            if type(peer_tick) is int and peer_tick > 0:
                conn.set_peer_ticktime(float(peer_tick))
        return conn

    def _on_lost(self, conn: Connection, error: BaseException | None) -> None:
        peer = conn.peer_name
        if self._conns.get(peer) is conn:
            del self._conns[peer]
        reason = error or NodeDown(f"connection to {peer} closed")
        for ref, (node, fut) in list(self._pending.items()):
            if node == peer and not fut.done():
                fut.set_exception(NodeDown(f"{peer} went down during the call: {reason}"))
                del self._pending[ref]
        for ref, (watcher, node, who) in list(self._monitors.items()):
            if node == peer:
                del self._monitors[ref]
                box = self._mailboxes.get(watcher)
                if box is not None:
                    box.deliver(Down(ref, who, _NOCONNECTION))
        log.debug("connection to %s lost: %s", peer, error or "closed")
        for callback in list(self._down_callbacks):
            try:
                callback(peer, error)
            except Exception:
                log.exception("node-down callback failed")

    async def disconnect(self, peer: str) -> None:
        conn = self._conns.get(peer)
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        """Close every connection gracefully; the node cannot be used after."""
        self._closed = True
        for task in list(self._connecting.values()):
            task.cancel()
        await asyncio.gather(*(c.close() for c in list(self._conns.values())))

    # ------------------------------------------------------------ processes

    def mailbox(
        self,
        name: str | None = None,
        *,
        maxsize: int = 0,
        callback: MessageCallback | None = None,
    ) -> Mailbox:
        """A new local pid with a message queue (or ``callback``), optionally
        registered as ``name`` so the peers can send to ``{Name, OurNode}``."""
        atom = Atom(name) if name is not None else None
        if atom is not None and atom in self._registered:
            raise LocalProtocolError(f"name {name!r} is already registered")
        box = Mailbox(self, self._new_pid(), atom, maxsize, callback)
        self._mailboxes[box.pid] = box
        if atom is not None:
            self._registered[atom] = box
        return box

    def _close_mailbox(self, box: Mailbox) -> None:
        self._mailboxes.pop(box.pid, None)
        if box.name is not None and self._registered.get(box.name) is box:
            del self._registered[box.name]
        for ref, (watcher, _peer, _who) in list(self._monitors.items()):
            if watcher == box.pid:
                self.demonitor(ref)

    async def send(self, to: Pid, message: Any, *, sender: Pid | None = None) -> None:
        """Send ``message`` to a remote pid (connects if needed)."""
        conn = await self.connect(str(to.node))
        conn.send_bytes(conn.protocol.send(sender or self._rpc_pid, to, message))
        await conn.drain()

    async def send_to_name(
        self, peer: str, name: str, message: Any, *, sender: Pid | None = None
    ) -> None:
        """``{Name, Node} ! Message``."""
        conn = await self.connect(peer)
        conn.send_bytes(conn.protocol.reg_send(sender or self._rpc_pid, Atom(name), message))
        await conn.drain()

    async def monitor(self, watcher: Mailbox, target: Pid | tuple[str, str]) -> Reference:
        """Monitor a remote process (pid, or ``(name, node)``); a :class:`Down`
        arrives in ``watcher`` when it exits or the connection is lost."""
        wire_target: Pid | Atom
        who: Pid | tuple[Atom, Atom]
        if isinstance(target, Pid):
            peer, wire_target, who = str(target.node), target, target
        else:
            name, peer = target
            wire_target = Atom(name)
            who = (Atom(name), Atom(peer))
        conn = await self.connect(peer)
        ref = self.make_ref()
        self._monitors[ref] = (watcher.pid, peer, who)
        conn.send_bytes(conn.protocol.monitor(watcher.pid, wire_target, ref))
        return ref

    def demonitor(self, ref: Reference) -> None:
        entry = self._monitors.pop(ref, None)
        if entry is None:
            return
        watcher, peer, who = entry
        conn = self.connection(peer)
        if conn is not None:
            target = who if isinstance(who, Pid) else who[0]
            conn.send_bytes(conn.protocol.demonitor(watcher, target, ref))

    # ------------------------------------------------------------ rpc

    async def rpc(
        self,
        peer: str,
        module: str,
        function: str,
        args: Sequence[Any] = (),
        *,
        timeout: float = 10.0,
    ) -> Any:
        """``rpc:call(Peer, Module, Function, Args, Timeout)`` through ``rex``.

        Raises :class:`RpcError` for ``{badrpc, Reason}``, :class:`DistTimeout`
        when no answer comes in time and :class:`NodeDown` if the peer goes.
        As with ``rex``, a timeout does not stop the call on the node: what
        we call there must bound its own work (our agents all do).
        """
        try:
            async with asyncio.timeout(timeout):
                conn = await self.connect(peer)
                ref = self.make_ref()
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._pending[ref] = (peer, future)
                request = (
                    Atom("$gen_call"),
                    (self._rpc_pid, ref),
                    (Atom("call"), Atom(module), Atom(function), list(args), self._group_leader),
                )
                try:
                    conn.send_bytes(conn.protocol.reg_send(self._rpc_pid, Atom("rex"), request))
                    await conn.drain()
                    reply = await future
                finally:
                    self._pending.pop(ref, None)
        except TimeoutError:
            raise DistTimeout(
                f"rpc {module}:{function}/{len(args)} on {peer} timed out after {timeout:g}s"
            ) from None
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "badrpc":
            raise RpcError(
                f"rpc {module}:{function}/{len(args)} on {peer} failed: {reply[1]!r}", reply[1]
            )
        return reply

    # ------------------------------------------------------------ dispatch

    def _on_event(self, conn: Connection, event: Event) -> None:
        match event:
            case Send(to=to, message=message):
                self._deliver(conn, to, message)
            case RegSend(to_name=name, message=message):
                box = self._registered.get(name)
                if box is not None:
                    box.deliver(message)
                else:
                    log.debug("message to unregistered name %s dropped", name)
            case MonitorExit(ref=ref, reason=reason):
                entry = self._monitors.pop(ref, None)
                if entry is not None:
                    watcher, _peer, who = entry
                    box = self._mailboxes.get(watcher)
                    if box is not None:
                        box.deliver(Down(ref, who, reason))
            case MonitorRequest(sender=sender, target=target, ref=ref):
                # Our pids never exit while the connection lives, so a monitor
                # on one of them needs no bookkeeping; one on a pid we do not
                # have is answered at once, or the peer would wait forever.
                if not self._exists(target):
                    conn.send_bytes(conn.protocol.monitor_exit(target, sender, ref, _NOPROC))
            case UnlinkId(id=unlink_id, sender=sender, to=to):
                conn.send_bytes(conn.protocol.unlink_id_ack(unlink_id, to, sender))
            case Link(sender=sender, to=to):
                if not self._exists(to):
                    conn.send_bytes(conn.protocol.exit(to, sender, _NOPROC))
            case Exit(sender=sender, to=to, reason=reason):
                box = self._mailboxes.get(to)
                if box is not None:
                    box.deliver((Atom("EXIT"), sender, reason))
            case UnknownControl():
                log.debug("ignoring control message from %s: %r", conn.peer_name, event)
            case AliasSend() | GroupLeader() | DemonitorRequest() | UnlinkIdAck() | Tick():
                pass

    def _exists(self, target: Pid | Atom) -> bool:
        if isinstance(target, Pid):
            return (
                target in self._mailboxes or target == self._group_leader or target == self._rpc_pid
            )
        return target in self._registered

    def _deliver(self, conn: Connection, to: Pid, message: Any) -> None:
        if to == self._rpc_pid:
            self._on_rpc_reply(message)
        elif to == self._group_leader:
            self._on_io_request(conn, message)
        else:
            box = self._mailboxes.get(to)
            if box is not None:
                box.deliver(message)

    def _on_rpc_reply(self, message: Any) -> None:
        if type(message) is tuple and len(message) == 2 and type(message[0]) is Reference:
            entry = self._pending.get(message[0])
            if entry is not None and not entry[1].done():
                entry[1].set_result(message[1])

    # ------------------------------------------------------------ group leader

    def _on_io_request(self, conn: Connection, message: Any) -> None:
        """Answer the io protocol so remote io calls complete (output is logged)."""
        if not (type(message) is tuple and len(message) == 4 and message[0] == "io_request"):
            return
        _, sender, reply_as, request = message
        if type(sender) is not Pid:
            return
        reply = self._io_reply(conn.peer_name, request)
        conn.send_bytes(
            conn.protocol.send(self._group_leader, sender, (Atom("io_reply"), reply_as, reply))
        )

    def _io_reply(self, peer: str, request: Any) -> Any:
        if type(request) is not tuple or not request:
            return (Atom("error"), Atom("request"))
        op = request[0]
        if op == "put_chars":
            if len(request) in (2, 3):
                text = _chardata_to_str(request[-1])
            elif len(request) == 5 and type(request[4]) is list:
                # {put_chars, Enc, M, F, A}: we cannot run io_lib here, so
                # log the format call itself rather than lose it.
                text = f"{request[2]}:{request[3]}{request[4]!r}"
            else:
                return (Atom("error"), Atom("request"))
            for callback in self._output_callbacks:
                callback(peer, text)
            return Atom("ok")
        if op in ("get_chars", "get_line", "get_until", "get_password"):
            return Atom("eof")
        if op == "getopts":
            return []
        if op == "setopts":
            return Atom("ok")
        if op == "get_geometry":
            return (Atom("error"), Atom("enotsup"))
        if op == "requests" and len(request) == 2 and type(request[1]) is list:
            reply: Any = Atom("ok")
            for sub in request[1]:
                reply = self._io_reply(peer, sub)
            return reply
        return (Atom("error"), Atom("request"))


def _chardata_to_str(data: Any, depth: int = 0) -> str:
    """Flatten Erlang chardata (binaries, code points, nested lists) to text."""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    if type(data) is int:
        return chr(data) if 0 <= data < 0x110000 else ""
    if isinstance(data, list) and depth < 100:
        return "".join(_chardata_to_str(item, depth + 1) for item in data)
    if isinstance(data, ImproperList) and depth < 100:
        return "".join(_chardata_to_str(item, depth + 1) for item in data.elements) + (
            _chardata_to_str(data.tail, depth + 1)
        )
    return ""


def charlist(value: Any) -> str:
    """An Erlang string (list of code points, or binary) as ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and all(type(c) is int for c in value):
        return "".join(chr(c) for c in value)
    raise TypeError(f"not an Erlang string: {value!r}")


__all__ = ["Down", "LocalNode", "Mailbox", "charlist"]
