"""A fake Erlang node that misbehaves: the attacker of issue 14, in-repo.

:class:`HostilePeer` listens on ``127.0.0.1``, registers its name in an EPMD
(``ALIVE2_REQ``; the socket stays open as long as the peer runs, as a node's
does), accepts distribution connections and, depending on its
:class:`Mode`, runs the server side of the handshake correctly (with the
right cookie: digests from :mod:`sidecar.erldist.handshake`) before it
misbehaves, or breaks the handshake itself.

It runs its own event loop in a thread, so sync and async tests (and a bench
process) use it alike::

    with HostilePeer(Mode.GARBAGE, cookie, epmd_port=epmd_port) as peer:
        ...  # connect to peer.node_name
        assert peer.accepted >= 1

``accept_times`` (``time.monotonic()`` of every accepted connection) lets a
test assert a reconnect schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import secrets
import struct
import threading
import time
import zlib
from types import TracebackType
from typing import Final, Self

from sidecar.erldist.flags import OUR_FLAGS, DFlag
from sidecar.erldist.handshake import gen_digest, new_creation
from sidecar.erldist.protocol import PASS_THROUGH, REG_SEND
from sidecar.erldist.term import COMPRESSED, VERSION, Atom, Pid, encode
from tests.support.nodes import LOOPBACK, unique_node_name

ALIVE2_REQ: Final = 120
ALIVE2_RESP: Final = 121
ALIVE2_X_RESP: Final = 118
NODE_TYPE_NORMAL: Final = 77

HUGE_FRAME: Final = (1 << 30) - 16
"""What ``huge_frame`` declares: just under 1 GiB (the old ``DEFAULT_MAX_FRAME``)."""
BOMB_INFLATED: Final = 512 * 1024 * 1024
"""What the ``compressed_bomb`` payload inflates to (a 512 MiB binary)."""

_BINARY_EXT: Final = 109
_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")


class Mode(enum.Enum):
    GARBAGE = "garbage"
    """Handshake, then a frame of random bytes (not a pass-through frame)."""
    HUGE_FRAME = "huge_frame"
    """Handshake, then a header declaring :data:`HUGE_FRAME` bytes, streamed slowly."""
    COMPRESSED_BOMB = "compressed_bomb"
    """Handshake, then one valid frame whose payload is a compressed term
    (tag 80) of ~0.5 MB inflating to :data:`BOMB_INFLATED` bytes."""
    SILENT = "silent"
    """Handshake, then nothing: never ticks, never answers."""
    REFUSE = "refuse"
    """Closes every connection as soon as it is accepted."""
    BAD_HANDSHAKE = "bad_handshake"
    """Answers the name message with random bytes (a message that is not a status)."""
    SLOW_HANDSHAKE = "slow_handshake"
    """Never answers the name message."""


@functools.cache
def compressed_bomb_term() -> bytes:
    """``131, 80, Size:32, zlib(BINARY_EXT of 512 MiB of zeros)``: ~0.5 MB,
    built in 1 MiB steps (never holds the inflated form)."""
    deflate = zlib.compressobj(9)
    header = bytes((_BINARY_EXT,)) + _u32.pack(BOMB_INFLATED - 5)
    body = [deflate.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range((BOMB_INFLATED >> 20) - 1):
        body.append(deflate.compress(chunk))
    body.append(deflate.compress(chunk[: len(chunk) - len(header)]))
    body.append(deflate.flush())
    return bytes((VERSION, COMPRESSED)) + _u32.pack(BOMB_INFLATED) + b"".join(body)


class HostilePeer:
    """One misbehaving fake node; see the module docstring."""

    def __init__(
        self,
        mode: Mode,
        cookie: str,
        *,
        epmd_port: int,
        name: str | None = None,
        stream_chunk: int = 64 * 1024,
        stream_interval: float = 0.05,
    ) -> None:
        self.mode = mode
        self.alive = name or unique_node_name(f"hostile_{mode.value}")
        self.node_name = f"{self.alive}@{LOOPBACK}"
        self.epmd_port = epmd_port
        self.accepted = 0
        """Connections accepted so far."""
        self.handshakes = 0
        """Handshakes completed (the client proved the cookie)."""
        self.accept_times: list[float] = []
        self.bytes_sent = 0
        self._cookie = cookie
        self._creation = new_creation()
        self._stream_chunk = stream_chunk
        self._stream_interval = stream_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    def __repr__(self) -> str:
        return f"<HostilePeer {self.node_name} {self.mode.value} accepted={self.accepted}>"

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> Self:
        if self.mode is Mode.COMPRESSED_BOMB:
            compressed_bomb_term()  # built here, not inside a test's timing
        self._thread = threading.Thread(target=self._run, name=f"hostile {self.alive}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self} did not register in EPMD within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"{self} failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = server.sockets[0].getsockname()[1]
        epmd_reader, epmd_writer = await self._register()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            epmd_writer.transport.abort()
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.sleep(0)
            del epmd_reader

    async def _register(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """ALIVE2_REQ; EPMD keeps the name while this socket stays open."""
        reader, writer = await asyncio.open_connection(LOOPBACK, self.epmd_port)
        name = self.alive.encode()
        body = (
            struct.pack(">BHBBHHH", ALIVE2_REQ, self.port, NODE_TYPE_NORMAL, 0, 6, 6, len(name))
            + name
            + _u16.pack(0)
        )
        writer.write(_u16.pack(len(body)) + body)
        answer = await reader.readexactly(2)
        if answer[0] not in (ALIVE2_RESP, ALIVE2_X_RESP) or answer[1] != 0:
            raise RuntimeError(f"EPMD refused to register {self.alive}: {answer!r}")
        await reader.readexactly(4 if answer[0] == ALIVE2_X_RESP else 2)
        return reader, writer

    # ------------------------------------------------------------ one connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.accept_times.append(time.monotonic())
        self._writers.add(writer)
        try:
            if self.mode is Mode.REFUSE:
                return
            await self._misbehave(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass  # the sidecar closed on us: what we want it to do
        except asyncio.CancelledError:
            pass  # stop(): asyncio.run cancels the connections still open
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _misbehave(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._read_message(reader)  # the client's name
        if self.mode is Mode.SLOW_HANDSHAKE:
            await _drain_forever(reader)
            return
        if self.mode is Mode.BAD_HANDSHAKE:
            self._send_message(writer, b"X" + secrets.token_bytes(63))  # not 's'
            await _drain_forever(reader)
            return
        if not await self._handshake(reader, writer):
            return
        self.handshakes += 1
        if self.mode is Mode.GARBAGE:
            junk = b"\x00" + secrets.token_bytes(255)  # 0 is not pass-through (112)
            self._write(writer, _u32.pack(len(junk)) + junk)
        elif self.mode is Mode.COMPRESSED_BOMB:
            self._write(writer, _bomb_frame(self.node_name, self._creation))
        elif self.mode is Mode.HUGE_FRAME:
            self._write(writer, _u32.pack(HUGE_FRAME))
            chunk = bytes(self._stream_chunk)
            sent = 0
            while sent < HUGE_FRAME and not writer.is_closing():
                self._write(writer, chunk)
                sent += len(chunk)
                await writer.drain()
                await asyncio.sleep(self._stream_interval)
        await writer.drain()
        await _drain_forever(reader)

    def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.bytes_sent += len(data)

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes:
        (n,) = _u16.unpack(await reader.readexactly(2))
        return await reader.readexactly(n)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """The server side of handshake version 6 (after the name message)."""
        self._send_message(writer, b"sok")
        challenge = secrets.randbits(32)
        name = self.node_name.encode()
        flags = OUR_FLAGS | DFlag.PUBLISHED
        self._send_message(
            writer,
            struct.pack(">BQIIH", ord("N"), flags, challenge, self._creation, len(name)) + name,
        )
        reply = await self._read_message(reader)
        if len(reply) != 21 or reply[0] != ord("r"):
            return False
        (their_challenge,) = _u32.unpack_from(reply, 1)
        if reply[5:] != gen_digest(challenge, self._cookie):
            return False  # a wrong cookie: close without a word, as a node does
        self._send_message(writer, b"a" + gen_digest(their_challenge, self._cookie))
        await writer.drain()
        return True

    def _send_message(self, writer: asyncio.StreamWriter, msg: bytes) -> None:
        self._write(writer, _u16.pack(len(msg)) + msg)


def _bomb_frame(node_name: str, creation: int) -> bytes:
    """A REG_SEND to ``nobody`` on the sidecar with the bomb as payload."""
    sender = Pid(Atom(node_name), 1, 0, creation)
    control = encode((REG_SEND, sender, Atom(""), Atom("nobody")))
    frame = bytes((PASS_THROUGH,)) + control + compressed_bomb_term()
    return _u32.pack(len(frame)) + frame


async def _drain_forever(reader: asyncio.StreamReader) -> None:
    """Read and discard until the other side closes."""
    while await reader.read(65536):
        pass


__all__ = ["BOMB_INFLATED", "HUGE_FRAME", "HostilePeer", "Mode", "compressed_bomb_term"]
