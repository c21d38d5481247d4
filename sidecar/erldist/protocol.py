"""The connected distribution stream, sans I/O: framing and control messages.

After the handshake every packet has a 4-byte length.  A zero-length packet
is a tick (keep-alive).  Otherwise we use the "pass through" form (we do not
announce an atom cache): ``112, ControlTerm, [Payload]``, each term in
external format with its own 131 version byte.

:class:`DistProtocol` turns received bytes into frozen event objects, and
builds the bytes for what we send.  It never touches a socket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from .errors import (
    BufferOverflow,
    DecodeError,
    FrameTooLarge,
    InflationRefused,
    MemoryBudgetExceeded,
    RemoteProtocolError,
)
from .limits import DEFAULT_DIST_LIMITS, FRAME_HEADER, DistLimits, MemoryBudget
from .term import Atom, Pid, Reference, decode_from, encode_into

PASS_THROUGH: Final = 112

# Control message operations (erl_dist_protocol, "Protocol between Connected Nodes").
LINK: Final = 1
SEND: Final = 2
EXIT: Final = 3
UNLINK: Final = 4
REG_SEND: Final = 6
GROUP_LEADER: Final = 7
EXIT2: Final = 8
SEND_TT: Final = 12
EXIT_TT: Final = 13
REG_SEND_TT: Final = 16
EXIT2_TT: Final = 18
MONITOR_P: Final = 19
DEMONITOR_P: Final = 20
MONITOR_P_EXIT: Final = 21
SEND_SENDER: Final = 22
SEND_SENDER_TT: Final = 23
PAYLOAD_EXIT: Final = 24
PAYLOAD_EXIT_TT: Final = 25
PAYLOAD_EXIT2: Final = 26
PAYLOAD_EXIT2_TT: Final = 27
PAYLOAD_MONITOR_P_EXIT: Final = 28
ALIAS_SEND: Final = 33
ALIAS_SEND_TT: Final = 34
UNLINK_ID: Final = 35
UNLINK_ID_ACK: Final = 36

_u32 = struct.Struct(">I")


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Tick:
    """The peer's keep-alive."""


@dataclass(frozen=True, slots=True)
class Send:
    """A message to one of our pids.  ``sender`` is None for plain SEND."""

    sender: Pid | None
    to: Pid
    message: Any


@dataclass(frozen=True, slots=True)
class RegSend:
    """A message to a name registered on our node."""

    sender: Pid
    to_name: Atom
    message: Any


@dataclass(frozen=True, slots=True)
class AliasSend:
    sender: Pid
    alias: Reference
    message: Any


@dataclass(frozen=True, slots=True)
class Link:
    sender: Pid
    to: Pid


@dataclass(frozen=True, slots=True)
class UnlinkId:
    """The peer unlinks; we must answer with :meth:`DistProtocol.unlink_id_ack`."""

    id: int
    sender: Pid
    to: Pid


@dataclass(frozen=True, slots=True)
class UnlinkIdAck:
    id: int
    sender: Pid
    to: Pid


@dataclass(frozen=True, slots=True)
class Exit:
    """A link broke (``exit2=False``) or ``exit/2`` was called on our pid."""

    sender: Pid
    to: Pid
    reason: Any
    exit2: bool = False


@dataclass(frozen=True, slots=True)
class MonitorRequest:
    """The peer monitors one of our processes (by pid or registered name)."""

    sender: Pid
    target: Pid | Atom
    ref: Reference


@dataclass(frozen=True, slots=True)
class DemonitorRequest:
    sender: Pid
    target: Pid | Atom
    ref: Reference


@dataclass(frozen=True, slots=True)
class MonitorExit:
    """A process we monitor went down (the 'DOWN' message)."""

    sender: Pid | Atom
    to: Pid
    ref: Reference
    reason: Any


@dataclass(frozen=True, slots=True)
class GroupLeader:
    sender: Pid
    to: Pid


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A control message we do not act on; kept for logging."""

    control: Any


Event = (
    Tick
    | Send
    | RegSend
    | AliasSend
    | Link
    | UnlinkId
    | UnlinkIdAck
    | Exit
    | MonitorRequest
    | DemonitorRequest
    | MonitorExit
    | GroupLeader
    | UnknownControl
)


# ---------------------------------------------------------------- protocol


class DistProtocol:
    """Framing and control messages of one established connection.

    Memory stays within ``limits`` (:class:`~.limits.DistLimits`): a frame
    header declaring more than ``max_frame`` is refused at once
    (:class:`FrameTooLarge`), never more than ``max_buffered_per_peer``
    bytes wait (:class:`BufferOverflow`), compressed terms are refused
    before they inflate too far (:class:`InflationRefused`), and with a
    shared ``budget`` the bytes waiting here count against the whole
    process (:class:`MemoryBudgetExceeded`).  After any of these errors the
    connection must be closed; :meth:`release` gives the budget back.
    """

    def __init__(
        self,
        *,
        limits: DistLimits = DEFAULT_DIST_LIMITS,
        max_frame: int | None = None,
        peer: str = "peer",
        budget: MemoryBudget | None = None,
    ) -> None:
        self.limits = limits
        self.max_frame = limits.max_frame if max_frame is None else max_frame
        self.max_buffered = max(limits.max_buffered_per_peer, self.max_frame + FRAME_HEADER)
        self.peer = peer
        self._decode_limits = limits.decode_limits()
        self._budget = budget
        self._accounted = 0  # bytes of _buf counted in the budget
        self._buf = bytearray()
        self._want = FRAME_HEADER  # bytes needed before the next parse can make progress
        self.bytes_in = 0
        self.frames_in = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed."""
        return len(self._buf)

    def read_size(self, chunk: int) -> int:
        """How much the transport may read next (at most ``chunk``) without
        going over the per-connection or the process budget."""
        room = self.max_buffered - len(self._buf)
        if self._budget is not None:
            room = min(room, self._budget.available + self._accounted - len(self._buf))
        return max(1, min(chunk, room))

    def release(self) -> None:
        """The connection is gone: give its bytes back to the budget."""
        self._buf.clear()
        self._account()

    # -- receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; return the complete events they finish."""
        self._buf += data
        self.bytes_in += len(data)
        events: list[Event] = []
        buf = self._buf
        try:
            # The transport reads at most read_size(): this only trips when
            # a caller feeds more than that.
            if len(buf) > self.max_buffered:
                raise BufferOverflow(
                    f"{len(buf)} bytes from {self.peer} wait to be parsed; the limit "
                    f"(distribution.max_buffered_per_peer) is {self.max_buffered}"
                )
            while len(buf) >= self._want:
                (n,) = _u32.unpack_from(buf)
                if n == 0:
                    del buf[:FRAME_HEADER]
                    events.append(Tick())
                    continue
                if n > self.max_frame:
                    raise FrameTooLarge(
                        f"{self.peer} declared a frame of {n} bytes; "
                        f"the limit (distribution.max_frame) is {self.max_frame}"
                    )
                if len(buf) < FRAME_HEADER + n:
                    self._want = FRAME_HEADER + n
                    break
                frame = bytes(buf[FRAME_HEADER : FRAME_HEADER + n])
                del buf[: FRAME_HEADER + n]
                self._want = FRAME_HEADER
                self.frames_in += 1
                events.append(self._parse_frame(frame))
            self._account()
        except BaseException:
            self.release()
            raise
        return events

    def _account(self) -> None:
        if self._budget is None:
            return
        wanted = len(self._buf)
        if not self._budget.resize(self._accounted, wanted):
            self._budget.resize(self._accounted, 0)
            self._accounted = 0
            self._buf.clear()
            raise MemoryBudgetExceeded(
                f"buffering {wanted} bytes from {self.peer} would exceed the process "
                f"budget (distribution.max_buffered_total: {self._budget.limit}, "
                f"{self._budget.used} in use by other connections)"
            )
        self._accounted = wanted

    def _parse_frame(self, frame: bytes) -> Event:
        if frame[0] != PASS_THROUGH:
            raise RemoteProtocolError(
                f"frame starts with {frame[0]}, not pass-through (112): "
                "the peer uses a header we did not negotiate"
            )
        limits = self._decode_limits
        try:
            control, pos = decode_from(frame, 1, limits)
            message: Any = None
            has_payload = pos < len(frame)
            if has_payload:
                message, pos = decode_from(frame, pos, limits)
                if pos != len(frame):
                    raise DecodeError("trailing bytes after the payload", pos)
        except InflationRefused as exc:
            raise InflationRefused(
                f"{self.peer} sent a compressed term over budget: {exc}"
            ) from None
        except DecodeError as exc:
            raise DecodeError(f"bad term in distribution frame: {exc}") from None
        if not isinstance(control, tuple) or not control or type(control[0]) is not int:
            raise RemoteProtocolError(f"control message is not a tuple with an op: {control!r}")
        try:
            return _control_event(control, message, has_payload)
        except (ValueError, TypeError, IndexError) as exc:
            raise RemoteProtocolError(f"malformed control message {control!r}: {exc}") from None

    # -- sending

    @staticmethod
    def tick() -> bytes:
        return b"\0\0\0\0"

    @staticmethod
    def _frame(control: tuple[Any, ...], message: Any = None, has_payload: bool = False) -> bytes:
        out = bytearray(b"\0\0\0\0")
        out.append(PASS_THROUGH)
        encode_into(out, control)
        if has_payload:
            encode_into(out, message)
        _u32.pack_into(out, 0, len(out) - 4)
        return bytes(out)

    def send(self, sender: Pid, to: Pid, message: Any) -> bytes:
        return self._frame((SEND_SENDER, sender, to), message, True)

    def reg_send(self, sender: Pid, to_name: Atom, message: Any) -> bytes:
        return self._frame((REG_SEND, sender, Atom(""), to_name), message, True)

    def link(self, sender: Pid, to: Pid) -> bytes:
        return self._frame((LINK, sender, to))

    def unlink_id(self, unlink_id: int, sender: Pid, to: Pid) -> bytes:
        return self._frame((UNLINK_ID, unlink_id, sender, to))

    def unlink_id_ack(self, unlink_id: int, sender: Pid, to: Pid) -> bytes:
        return self._frame((UNLINK_ID_ACK, unlink_id, sender, to))

    def exit(self, sender: Pid, to: Pid, reason: Any) -> bytes:
        return self._frame((PAYLOAD_EXIT, sender, to), reason, True)

    def exit2(self, sender: Pid, to: Pid, reason: Any) -> bytes:
        return self._frame((PAYLOAD_EXIT2, sender, to), reason, True)

    def monitor(self, sender: Pid, target: Pid | Atom, ref: Reference) -> bytes:
        return self._frame((MONITOR_P, sender, target, ref))

    def demonitor(self, sender: Pid, target: Pid | Atom, ref: Reference) -> bytes:
        return self._frame((DEMONITOR_P, sender, target, ref))

    def monitor_exit(self, sender: Pid | Atom, to: Pid, ref: Reference, reason: Any) -> bytes:
        return self._frame((PAYLOAD_MONITOR_P_EXIT, sender, to, ref), reason, True)


def _pid(value: Any) -> Pid:
    if type(value) is not Pid:
        raise TypeError(f"expected a pid, got {value!r}")
    return value


def _ref(value: Any) -> Reference:
    if type(value) is not Reference:
        raise TypeError(f"expected a reference, got {value!r}")
    return value


def _pid_or_name(value: Any) -> Pid | Atom:
    if type(value) is Pid or type(value) is Atom:
        return value
    raise TypeError(f"expected a pid or a registered name, got {value!r}")


def _control_event(c: tuple[Any, ...], message: Any, has_payload: bool) -> Event:
    op = c[0]

    def payload() -> Any:
        if not has_payload:
            raise ValueError("payload missing")
        return message

    if op in (SEND_SENDER, SEND_SENDER_TT):
        return Send(_pid(c[1]), _pid(c[2]), payload())
    if op in (SEND, SEND_TT):
        return Send(None, _pid(c[2]), payload())
    if op in (REG_SEND, REG_SEND_TT):
        if type(c[3]) is not Atom:
            raise TypeError("REG_SEND target is not an atom")
        return RegSend(_pid(c[1]), c[3], payload())
    if op in (ALIAS_SEND, ALIAS_SEND_TT):
        return AliasSend(_pid(c[1]), _ref(c[2]), payload())
    if op == MONITOR_P_EXIT:
        return MonitorExit(_pid_or_name(c[1]), _pid(c[2]), _ref(c[3]), c[4])
    if op == PAYLOAD_MONITOR_P_EXIT:
        return MonitorExit(_pid_or_name(c[1]), _pid(c[2]), _ref(c[3]), payload())
    if op in (EXIT, EXIT_TT):
        return Exit(_pid(c[1]), _pid(c[2]), c[3])
    if op in (PAYLOAD_EXIT, PAYLOAD_EXIT_TT):
        return Exit(_pid(c[1]), _pid(c[2]), payload())
    if op in (EXIT2, EXIT2_TT):
        return Exit(_pid(c[1]), _pid(c[2]), c[3], exit2=True)
    if op in (PAYLOAD_EXIT2, PAYLOAD_EXIT2_TT):
        return Exit(_pid(c[1]), _pid(c[2]), payload(), exit2=True)
    if op == LINK:
        return Link(_pid(c[1]), _pid(c[2]))
    if op == UNLINK_ID:
        return UnlinkId(c[1], _pid(c[2]), _pid(c[3]))
    if op == UNLINK_ID_ACK:
        return UnlinkIdAck(c[1], _pid(c[2]), _pid(c[3]))
    if op == MONITOR_P:
        return MonitorRequest(_pid(c[1]), _pid_or_name(c[2]), _ref(c[3]))
    if op == DEMONITOR_P:
        return DemonitorRequest(_pid(c[1]), _pid_or_name(c[2]), _ref(c[3]))
    if op == GROUP_LEADER:
        return GroupLeader(_pid(c[1]), _pid(c[2]))
    return UnknownControl(c)
