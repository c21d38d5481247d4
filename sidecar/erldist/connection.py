"""One established distribution connection: asyncio transport over the sans-I/O core.

:func:`open_connection` resolves the host, asks EPMD for the port, connects
and runs the handshake under ONE deadline shared by all those steps.  The
returned :class:`Connection` reads frames, hands events to its owner, keeps
the link alive with ticks both ways and notices a silent peer.

The byte stream comes from ``asyncio.open_connection``; for a node that runs
TLS distribution (``-proto_dist inet_tls``) the same stream is upgraded to
TLS right after the TCP connect (:mod:`.tls`: SNI and name check as Erlang's
own client), under the same deadline: the sans-I/O core never knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from . import epmd
from .errors import (
    DistError,
    DistTimeout,
    EpmdUnreachable,
    HostUnresolvable,
    MemoryBudgetExceeded,
    NodeDown,
    NodeUnreachable,
    PeerClosed,
    PeerSilent,
    ProtocolError,
    RemoteProtocolError,
    TlsError,
    TlsNotSpoken,
    TlsRequired,
)
from .handshake import ClientHandshake, HandshakeComplete
from .limits import DEFAULT_DIST_LIMITS, DistLimits, MemoryBudget
from .names import NodeName
from .protocol import DistProtocol, Event, Tick
from .tls import (
    HandshakeFraming,
    TlsConfig,
    check_server_name,
    classify,
    client_hello,
    name_mismatch,
    refused_after_handshake,
)

log = logging.getLogger(__name__)

READ_CHUNK: Final = 256 * 1024
"""Largest read, and the stream's own buffer limit (it pauses reading at
twice this): what a peer can make us hold outside :class:`DistProtocol`."""
DEFAULT_NET_TICKTIME: Final = DEFAULT_DIST_LIMITS.net_ticktime

EventHandler = Callable[["Connection", Event], None]
LostHandler = Callable[["Connection", BaseException | None], None]


async def resolve(host: str, loop: asyncio.AbstractEventLoop) -> str:
    """The first IPv4 (else IPv6) address of ``host``."""
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostUnresolvable(f"host {host!r} does not resolve: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


async def lookup_port(address: str, alive: str, epmd_port: int) -> epmd.NodeAddress:
    """Ask EPMD at ``address:epmd_port`` where node ``alive`` listens."""
    try:
        reader, writer = await asyncio.open_connection(address, epmd_port)
    except OSError as exc:
        raise EpmdUnreachable(
            f"EPMD at {address}:{epmd_port} is unreachable: {exc.strerror or exc}"
        ) from None
    try:
        writer.write(epmd.port_please2_request(alive))
        await writer.drain()
        parser = epmd.PortPleaseParser(alive)
        while True:
            data = await reader.read(4096)
            if not data:
                return parser.eof()
            result = parser.feed(data)
            if result is not None:
                return result
    except OSError as exc:
        raise EpmdUnreachable(f"EPMD at {address}:{epmd_port} failed: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def open_connection(
    peer: NodeName,
    local: NodeName,
    cookie: str,
    *,
    timeout: float = 10.0,
    epmd_port: int | None = None,
    tls: TlsConfig | None = None,
    creation: int | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, HandshakeComplete]:
    """Connect to ``peer`` (over TLS when ``tls`` is given) and complete the
    handshake, all within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    port_of_epmd = epmd.epmd_port() if epmd_port is None else epmd_port
    # Made before the clock starts: a bad file is a config error, not a timeout.
    context = tls.context() if tls is not None else None
    step = "resolving the host"
    try:
        async with asyncio.timeout(timeout):
            address = await resolve(peer.host, loop)
            step = "asking EPMD"
            node_addr = await lookup_port(address, peer.alive, port_of_epmd)
            step = "connecting to the node"
            try:
                reader, writer = await asyncio.open_connection(
                    address, node_addr.port, limit=READ_CHUNK
                )
            except OSError as exc:
                raise NodeUnreachable(
                    f"distribution port {address}:{node_addr.port} refused us: "
                    f"{exc.strerror or exc}"
                ) from None
            try:
                if tls is not None and context is not None:
                    step = "in the TLS handshake"
                    await _start_tls(writer, context, peer, tls)
                step = "handshaking"
                done = await _handshake(reader, writer, peer, local, cookie, creation, tls)
            except BaseException:
                writer.transport.abort()
                raise
            return reader, writer, done
    except TimeoutError:
        if step == "in the TLS handshake":
            # A TLS node answers a ClientHello at once; a plain one waits in
            # silence for a name message (net_setuptime, 7 s) and then closes.
            raise DistTimeout(
                f"timed out after {timeout:g}s in the TLS handshake: {peer} sent nothing "
                "back (a plain TCP node, not -proto_dist inet_tls, waits like this)"
            ) from None
        raise DistTimeout(f"timed out after {timeout:g}s while {step}") from None


async def _start_tls(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, peer: NodeName, tls: TlsConfig
) -> None:
    """Upgrade the connected stream to TLS and check the node's name as
    ``inet_tls_dist`` does (:func:`.tls.check_server_name`)."""
    host = tls.server_name(peer.host)
    try:
        # ssl_handshake_timeout: the caller's deadline bounds it.
        await writer.start_tls(context, server_hostname=host or "", ssl_handshake_timeout=3600)
    except (OSError, EOFError) as exc:
        error = classify(exc, str(peer), tls)
        # Closed without a word: a plain node (after net_setuptime), or a TLS
        # 1.3 node refusing our certificate (its alert lost with the close).
        if isinstance(error, TlsNotSpoken) and await _speaks_tls(writer):
            error = refused_after_handshake(str(peer), tls)
        raise error from None
    if host is not None and tls.checks_name:
        ssl_object = writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        if not cert or not check_server_name(cert, host):
            raise name_mismatch(str(peer), host, cert or {})


# A TLS record of type alert (21) or handshake (22), TLS 1.x: what a node
# running -proto_dist inet_tls answers to plain bytes.
_TLS_RECORD_START = (b"\x15\x03", b"\x16\x03")


async def _speaks_tls(writer: asyncio.StreamWriter) -> bool:
    """Does the port ``writer`` is connected to answer a TLS ClientHello?  A
    TLS node does at once; a plain node waits in silence for a name message.
    Only asked when a node closed on us without a word."""
    address, port = writer.get_extra_info("peername")[:2]
    try:
        reader, probe = await asyncio.open_connection(address, port)
    except OSError:
        return False
    try:
        probe.write(client_hello())
        answer = await asyncio.wait_for(reader.read(5), timeout=1.0)
    except (OSError, TimeoutError):
        return False
    finally:
        probe.transport.abort()
    return answer.startswith(_TLS_RECORD_START)


async def _handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer: NodeName,
    local: NodeName,
    cookie: str,
    creation: int | None,
    tls: TlsConfig | None = None,
) -> HandshakeComplete:
    hs = ClientHandshake(str(local), cookie, expected_peer=str(peer), creation=creation)
    # Over TLS the handshake messages have 4-byte length prefixes.
    framing = HandshakeFraming() if tls is not None else None

    def send() -> None:
        out = hs.data_to_send()
        if out:
            writer.write(out if framing is None else framing.outgoing(out))

    send()
    first = True
    while True:
        try:
            data = await reader.read(4096)
        except ssl.SSLError as exc:
            # TLS 1.3: the node checks our client certificate after our side
            # of the TLS handshake is done, so its refusal arrives here.
            raise classify(exc, str(peer), tls or TlsConfig(verify="verify_none")) from None
        except OSError:
            data = b""
        # A TLS node answers plain bytes with an alert, or (TLS 1.3) closes.
        if (
            first
            and tls is None
            and (data.startswith(_TLS_RECORD_START) or (not data and await _speaks_tls(writer)))
        ):
            raise TlsRequired(
                f"{peer} runs TLS distribution (-proto_dist inet_tls) and we spoke "
                "plain TCP: give its target a tls: section"
            )
        first = False
        if not data:
            if tls is not None and hs.state.value == "await_status":
                raise TlsError(
                    f"{peer} closed the TLS connection before the distribution handshake"
                )
            hs.connection_lost()
        if framing is None:
            done = hs.receive_data(data)
            send()
            if done is not None:
                return done
            continue
        framing.feed(data)
        while (message := framing.next_message()) is not None:
            done = hs.receive_data(message)
            send()
            if done is not None:
                return replace(done, leftover=done.leftover + framing.rest())


def _detached(exc: BaseException) -> BaseException:
    """``exc`` without its traceback, nor those of the exceptions chained to
    it: their frames hold the bytes that were refused."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    exc.__context__ = None
    return exc


class Connection:
    """An established connection; its owner supplies the event handlers."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: HandshakeComplete,
        *,
        on_event: EventHandler,
        on_lost: LostHandler,
        net_ticktime: float | None = None,
        limits: DistLimits = DEFAULT_DIST_LIMITS,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.peer_name = handshake.peer_name
        self.peer_flags = handshake.peer_flags
        self.peer_creation = handshake.peer_creation
        self.protocol = DistProtocol(limits=limits, peer=self.peer_name, budget=budget)
        if net_ticktime is None:
            net_ticktime = limits.net_ticktime
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._on_lost = on_lost
        self._leftover = handshake.leftover
        self.net_ticktime = net_ticktime
        self._tick_interval = net_ticktime / 4
        now = time.monotonic()
        self.last_received = now
        self._last_sent = now
        self.bytes_out = 0
        self._closed = False
        self._lost_reported = False
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<Connection to {self.peer_name}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"dist-read {self.peer_name}"),
            asyncio.create_task(self._tick_loop(), name=f"dist-tick {self.peer_name}"),
        ]

    def set_peer_ticktime(self, peer_ticktime: float) -> None:
        """Tick often enough for the stricter of the two net_ticktimes."""
        self._tick_interval = max(0.1, min(self.net_ticktime, peer_ticktime) / 4)

    # -- sending

    def send_bytes(self, data: bytes) -> None:
        if self._closed:
            raise NodeDown(f"connection to {self.peer_name} is closed")
        self._writer.write(data)
        self._last_sent = time.monotonic()
        self.bytes_out += len(data)

    async def drain(self) -> None:
        """Wait while the socket's send buffer is over its high-water mark."""
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise NodeDown(f"connection to {self.peer_name} lost: {exc}") from None

    # -- loops

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            if self._leftover:
                self._dispatch(self.protocol.receive_data(self._leftover))
                self._leftover = b""
            while True:
                # Never more than the budgets leave room for.
                data = await self._reader.read(self.protocol.read_size(READ_CHUNK))
                if not data:
                    error = PeerClosed(f"{self.peer_name} closed the connection")
                    break
                self.last_received = time.monotonic()
                self._dispatch(self.protocol.receive_data(data))
                # Not kept while the next read waits: up to READ_CHUNK bytes
                # a connection, idle between collects (9 KB a node measured).
                del data
        except asyncio.CancelledError:
            raise
        except ProtocolError as exc:
            # Without its traceback: whoever keeps the error (a log record,
            # a node-down callback) must not keep the refused frame alive.
            error = _detached(exc)
            # DEBUG: the node manager logs the state change once, with this
            # error as its reason; a peer failing on every attempt must not
            # cost a warning per attempt.
            log.debug("protocol error from %s (%s side): %s", self.peer_name, exc.who, exc)
        except MemoryBudgetExceeded as exc:
            error = _detached(exc)
            log.debug("closing the connection to %s: %s", self.peer_name, exc)
        except (ConnectionError, OSError) as exc:
            error = NodeDown(f"connection to {self.peer_name} lost: {exc}")
        finally:
            if not self._closed:
                self._shutdown(error, hard=True)

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is Tick:
                # Answer the peer's tick: it may have a much shorter
                # net_ticktime than ours and must hear from us in time.
                self.send_bytes(DistProtocol.tick())
                continue
            try:
                self._on_event(self, event)
            except DistError as exc:
                log.warning("event %r from %s not handled: %s", event, self.peer_name, exc)

    async def _tick_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._tick_interval)
            now = time.monotonic()
            if now - self.last_received > self.net_ticktime:
                self._shutdown(
                    PeerSilent(
                        f"{self.peer_name} silent for more than {self.net_ticktime:g}s "
                        "(net_tick_timeout)"
                    ),
                    hard=True,
                )
                return
            if now - self._last_sent >= self._tick_interval * 0.9:
                try:
                    self.send_bytes(DistProtocol.tick())
                except NodeDown:
                    return

    # -- ending

    def _shutdown(self, error: BaseException | None, *, hard: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self.protocol.release()
        if hard:
            self._writer.transport.abort()
        else:
            self._writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if not self._lost_reported:
            self._lost_reported = True
            self._on_lost(self, error)

    async def close(self) -> None:
        """Graceful: flush what is queued, then close the socket."""
        if self._closed:
            return
        with contextlib.suppress(NodeDown):
            await asyncio.wait_for(self.drain(), timeout=5)
        self._shutdown(None, hard=False)
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), timeout=5)
        await self._join()

    def abort(self) -> None:
        """Hard: drop the socket now, unsent data is lost."""
        self._shutdown(None, hard=True)

    async def _join(self) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


__all__ = ["Connection", "RemoteProtocolError", "lookup_port", "open_connection", "resolve"]
