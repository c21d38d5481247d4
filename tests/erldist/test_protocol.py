"""Framing and control messages of a connected stream, sans I/O."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from sidecar.erldist.errors import DecodeError, RemoteProtocolError
from sidecar.erldist.protocol import (
    DistProtocol,
    Exit,
    Link,
    MonitorExit,
    MonitorRequest,
    RegSend,
    Send,
    Tick,
    UnknownControl,
    UnlinkId,
)
from sidecar.erldist.term import Atom, Pid, Reference, encode

A = Atom
US = Pid(A("beamside@127.0.0.1"), 1, 0, 9)
THEM = Pid(A("app@127.0.0.1"), 80, 0, 3)
REF = Reference(A("app@127.0.0.1"), 3, (1, 2, 3))


def frame(control: tuple[Any, ...], *payload: Any) -> bytes:
    body = b"p" + encode(control) + b"".join(encode(p) for p in payload)
    return struct.pack(">I", len(body)) + body


def feed_all(data: bytes, bytewise: bool) -> list[Any]:
    proto = DistProtocol()
    if not bytewise:
        return list(proto.receive_data(data))
    events: list[Any] = []
    for i in range(len(data)):
        events.extend(proto.receive_data(data[i : i + 1]))
    return events


STREAM = (
    b"\0\0\0\0"
    + frame((22, THEM, US), (A("hello"), 1))
    + frame((2, A(""), US), b"plain")
    + frame((6, THEM, A(""), A("box")), [1, 2])
    + frame((21, THEM, US, REF, A("normal")))
    + frame((28, A("rex"), US, REF), A("noproc"))
    + frame((24, THEM, US), A("killed"))
    + frame((1, THEM, US))
    + frame((35, 7, THEM, US))
    + frame((19, THEM, US, REF))
    + frame((99, A("x")))
    + b"\0\0\0\0"
)

EXPECTED = [
    Tick(),
    Send(THEM, US, (A("hello"), 1)),
    Send(None, US, b"plain"),
    RegSend(THEM, A("box"), [1, 2]),
    MonitorExit(THEM, US, REF, A("normal")),
    MonitorExit(A("rex"), US, REF, A("noproc")),
    Exit(THEM, US, A("killed")),
    Link(THEM, US),
    UnlinkId(7, THEM, US),
    MonitorRequest(THEM, US, REF),
    UnknownControl((99, A("x"))),
    Tick(),
]


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_stream_of_events(bytewise: bool) -> None:
    assert feed_all(STREAM, bytewise) == EXPECTED


def test_builders_round_trip_through_parser() -> None:
    proto = DistProtocol()
    out = (
        proto.send(US, THEM, {A("k"): 1})
        + proto.reg_send(US, A("rex"), (A("x"),))
        + proto.monitor(US, A("rex"), REF)
        + proto.demonitor(US, THEM, REF)
        + proto.unlink_id_ack(7, US, THEM)
        + proto.exit(US, THEM, A("normal"))
        + proto.monitor_exit(US, THEM, REF, A("noproc"))
        + proto.tick()
    )
    events = DistProtocol().receive_data(out)
    assert [type(e).__name__ for e in events] == [
        "Send",
        "RegSend",
        "MonitorRequest",
        "DemonitorRequest",
        "UnlinkIdAck",
        "Exit",
        "MonitorExit",
        "Tick",
    ]
    assert events[0] == Send(US, THEM, {A("k"): 1})
    assert events[1] == RegSend(US, A("rex"), (A("x"),))


def test_large_frame_in_chunks_is_parsed_once() -> None:
    big = b"x" * 10_000_000
    data = frame((22, THEM, US), big)
    proto = DistProtocol(max_frame=16 << 20)  # over the 8 MiB default
    events: list[Any] = []
    for i in range(0, len(data), 65536):
        events.extend(proto.receive_data(data[i : i + 65536]))
    assert events == [Send(THEM, US, big)]


def test_frame_over_limit_is_refused() -> None:
    proto = DistProtocol(max_frame=1000)
    with pytest.raises(RemoteProtocolError, match="limit"):
        proto.receive_data(struct.pack(">I", 5000) + b"p")


def test_not_pass_through() -> None:
    with pytest.raises(RemoteProtocolError, match="pass-through"):
        DistProtocol().receive_data(struct.pack(">I", 3) + b"\x83D\x00")


def test_bad_term_in_frame() -> None:
    body = b"p\x83h\x03a\x01"  # tuple of 3 with one element
    with pytest.raises(DecodeError):
        DistProtocol().receive_data(struct.pack(">I", len(body)) + body)


@pytest.mark.parametrize(
    "control",
    [
        (A("send"), THEM),  # op not an int
        (22, A("notapid"), US),
        (19, THEM, US, A("notaref")),
        (22, THEM),  # too short
    ],
)
def test_malformed_control_messages(control: tuple[Any, ...]) -> None:
    with pytest.raises(RemoteProtocolError):
        DistProtocol().receive_data(frame(control, A("msg")))


def test_send_without_payload() -> None:
    with pytest.raises(RemoteProtocolError, match="payload"):
        DistProtocol().receive_data(frame((22, THEM, US)))
