"""A hostile peer cannot hurt the sidecar (issue 14).

Each misbehaviour of :class:`tests.support.hostile_peer.HostilePeer` against
a :class:`LocalNode`: the connection is closed with a specific reason, the
memory it costs stays bounded (RSS of this process, peak reset through
``/proc/self/clear_refs``), and a real OTP 25 node managed at the same time
keeps answering on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator

import pytest
import yaml

from sidecar.config import ConfigError, parse_config
from sidecar.erldist.errors import (
    BufferOverflow,
    DistError,
    DistTimeout,
    FrameTooLarge,
    HandshakeError,
    HandshakeProtocolError,
    InflationRefused,
    MemoryBudgetExceeded,
    PeerSilent,
    RemoteProtocolError,
)
from sidecar.erldist.limits import DistLimits, MemoryBudget
from sidecar.erldist.node import LocalNode
from sidecar.erldist.protocol import PASS_THROUGH, REG_SEND, DistProtocol
from sidecar.erldist.term import Atom, Pid, encode
from tests.conftest import NodeFactory
from tests.support.hostile_peer import (
    BOMB_INFLATED,
    HUGE_FRAME,
    HostilePeer,
    Mode,
    compressed_bomb_term,
)

MiB = 1 << 20
THEM = Pid(Atom("them@127.0.0.1"), 1, 0, 1)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset VmHWM to the current RSS; return that RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


class Lost:
    """The first node-down of each peer, as the manager would see it."""

    def __init__(self, node: LocalNode) -> None:
        self.errors: dict[str, asyncio.Future[BaseException | None]] = {}
        self.times: dict[str, float] = {}
        node.on_node_down(self._on_down)

    def _future(self, peer: str) -> asyncio.Future[BaseException | None]:
        if peer not in self.errors:
            self.errors[peer] = asyncio.get_running_loop().create_future()
        return self.errors[peer]

    def _on_down(self, peer: str, error: BaseException | None) -> None:
        future = self._future(peer)
        if not future.done():
            self.times[peer] = time.monotonic()
            future.set_result(error)

    async def wait(self, peer: str, timeout: float = 15.0) -> BaseException | None:
        return await asyncio.wait_for(self._future(peer), timeout)


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-hostile@127.0.0.1", cookie, epmd_port=epmd_port, connect_timeout=3)
    yield node
    await node.close()


def hostile(mode: Mode, cookie: str, epmd_port: int, **kw: float) -> HostilePeer:
    return HostilePeer(mode, cookie, epmd_port=epmd_port, **kw)  # type: ignore[arg-type]


async def lost_after_connect(local: LocalNode, peer: HostilePeer) -> BaseException | None:
    lost = Lost(local)
    await local.connect(peer.node_name)
    return await lost.wait(peer.node_name)


# ------------------------------------------------------------------ sans-I/O core


def test_huge_frame_refused_from_its_header_alone() -> None:
    budget = MemoryBudget(64 * MiB)
    proto = DistProtocol(peer="evil@host", budget=budget)
    with pytest.raises(FrameTooLarge) as info:
        proto.receive_data(struct.pack(">I", HUGE_FRAME))
    assert info.value.metric_reason == "frame_too_large"
    message = str(info.value)
    assert "evil@host" in message and str(HUGE_FRAME) in message and str(8 * MiB) in message
    assert proto.buffered == 0 and budget.used == 0 and budget.peak == 0


def test_frame_at_the_limit_is_accepted() -> None:
    limits = DistLimits(max_frame=MiB, max_buffered_per_peer=2 * MiB)
    payload = b"x" * (MiB - 200)
    body = (
        bytes((PASS_THROUGH,)) + encode((REG_SEND, THEM, Atom(""), Atom("box"))) + encode(payload)
    )
    assert len(body) <= MiB
    events = DistProtocol(limits=limits).receive_data(struct.pack(">I", len(body)) + body)
    assert len(events) == 1
    with pytest.raises(FrameTooLarge):
        DistProtocol(limits=limits).receive_data(struct.pack(">I", MiB + 1))


def bomb_frame() -> bytes:
    control = encode((REG_SEND, THEM, Atom(""), Atom("nobody")))
    body = bytes((PASS_THROUGH,)) + control + compressed_bomb_term()
    return struct.pack(">I", len(body)) + body


def test_compressed_bomb_refused_before_inflating() -> None:
    frame = bomb_frame()
    assert len(frame) < 0.6 * MiB  # 0.5 MB on the wire for 512 MiB inflated
    before = reset_peak_rss()
    with pytest.raises(InflationRefused) as info:
        DistProtocol(peer="evil@host").receive_data(frame)
    assert info.value.metric_reason == "inflation"
    assert "evil@host" in str(info.value) and str(BOMB_INFLATED) in str(info.value)
    assert peak_rss() - before < 16 * MiB


def test_inflation_ratio_is_enforced_below_max_uncompressed() -> None:
    # 4 MiB of zeros: under max_uncompressed (64 MiB) but ~1000x its wire size.
    term = encode(bytes(4 * MiB), compressed=9)
    control = encode((REG_SEND, THEM, Atom(""), Atom("nobody")))
    body = bytes((PASS_THROUGH,)) + control + term
    with pytest.raises(InflationRefused, match="ratio limit 100"):
        DistProtocol().receive_data(struct.pack(">I", len(body)) + body)
    # Allowed with a looser ratio: the same frame decodes.
    loose = DistLimits(max_inflation_ratio=10_000)
    events = DistProtocol(limits=loose).receive_data(struct.pack(">I", len(body)) + body)
    assert len(events) == 1


def test_buffer_overflow_when_fed_past_the_per_peer_bound() -> None:
    limits = DistLimits(max_frame=MiB, max_buffered_per_peer=MiB + 4)
    proto = DistProtocol(limits=limits)
    assert proto.read_size(4 * MiB) == MiB + 4
    with pytest.raises(BufferOverflow) as info:
        proto.receive_data(bytes(MiB + 5))
    assert info.value.metric_reason == "buffer_overflow"


def test_process_budget_refuses_the_connection_that_would_exceed_it() -> None:
    total = MiB + 4
    limits = DistLimits(
        max_frame=MiB, max_buffered_per_peer=total, max_buffered_total=total, max_uncompressed=MiB
    )
    budget = MemoryBudget(limits.max_buffered_total)
    a = DistProtocol(limits=limits, peer="a@h", budget=budget)
    b = DistProtocol(limits=limits, peer="b@h", budget=budget)
    partial = struct.pack(">I", MiB) + bytes(MiB - 100)  # an unfinished 1 MiB frame
    a.receive_data(partial)
    assert budget.used == len(partial)
    room = total - len(partial)
    assert b.read_size(4 * MiB) == room
    b.receive_data(partial[:room])
    assert budget.used == total
    with pytest.raises(MemoryBudgetExceeded) as info:
        b.receive_data(b"x")
    assert info.value.metric_reason == "memory_budget" and "b@h" in str(info.value)
    assert budget.used == len(partial)  # b gave its bytes back, a keeps its own
    assert budget.peak == total and budget.refusals == 1
    a.release()
    assert budget.used == 0


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_buffered_per_peer"):
        DistLimits(max_frame=8 * MiB, max_buffered_per_peer=8 * MiB)
    with pytest.raises(ValueError, match="max_uncompressed"):
        DistLimits(max_uncompressed=512 * MiB, max_buffered_total=256 * MiB)
    with pytest.raises(ValueError, match="net_ticktime"):
        DistLimits(net_ticktime=0)
    with pytest.raises(ValueError, match="max_inflation_ratio"):
        DistLimits(max_inflation_ratio=0.5)


# ------------------------------------------------------------------ against LocalNode


async def test_garbage_closes_with_reason_protocol(
    local: LocalNode, cookie: str, epmd_port: int
) -> None:
    with hostile(Mode.GARBAGE, cookie, epmd_port) as peer:
        error = await lost_after_connect(local, peer)
        assert isinstance(error, RemoteProtocolError)
        assert error.metric_reason == "protocol"
        assert peer.handshakes == 1
        assert not local.is_connected(peer.node_name)


async def test_huge_frame_refused_from_the_header_without_buffering(
    local: LocalNode, cookie: str, epmd_port: int
) -> None:
    # Streams as fast as the socket takes it: 1 MiB chunks, no pause.
    with hostile(Mode.HUGE_FRAME, cookie, epmd_port, stream_chunk=MiB, stream_interval=0) as peer:
        before = reset_peak_rss()
        error = await lost_after_connect(local, peer)
        assert isinstance(error, FrameTooLarge)
        assert error.metric_reason == "frame_too_large"
        assert peer.node_name in str(error) and str(HUGE_FRAME) in str(error)
        await asyncio.sleep(0.5)  # the peer keeps pushing into a closed socket
        assert local.memory.peak < MiB
        assert local.memory.used == 0
        assert peak_rss() - before < 32 * MiB


async def test_compressed_bomb_refused_with_reason_inflation(
    local: LocalNode, cookie: str, epmd_port: int
) -> None:
    with hostile(Mode.COMPRESSED_BOMB, cookie, epmd_port) as peer:
        before = reset_peak_rss()
        error = await lost_after_connect(local, peer)
        assert isinstance(error, InflationRefused)
        assert error.metric_reason == "inflation"
        assert peak_rss() - before < 80 * MiB
        assert local.memory.used == 0


async def test_silent_peer_is_down_within_net_ticktime_bound(cookie: str, epmd_port: int) -> None:
    ticktime = 4.0
    local = LocalNode(
        "beamside-silent@127.0.0.1",
        cookie,
        epmd_port=epmd_port,
        limits=DistLimits(net_ticktime=ticktime),
    )
    try:
        with hostile(Mode.SILENT, cookie, epmd_port) as peer:
            lost = Lost(local)
            started = time.monotonic()
            conn = await local.connect(peer.node_name)
            assert conn.net_ticktime == ticktime
            error = await lost.wait(peer.node_name)
            silent_for = lost.times[peer.node_name] - started
            assert isinstance(error, PeerSilent)
            assert error.metric_reason == "net_tick_timeout"
            # Erlang's rule: down after net_ticktime +- 25 % of silence.
            assert 0.75 * ticktime <= silent_for <= 1.25 * ticktime + 0.5
    finally:
        await local.close()


async def test_we_tick_every_quarter_of_net_ticktime(cookie: str, epmd_port: int) -> None:
    local = LocalNode(
        "beamside-ticks@127.0.0.1",
        cookie,
        epmd_port=epmd_port,
        limits=DistLimits(net_ticktime=2.0),
    )
    try:
        with hostile(Mode.SILENT, cookie, epmd_port) as peer:
            # connect() waits for the peer's net_ticktime, which a silent
            # peer never gives: watch the connection meanwhile.
            connecting = asyncio.create_task(local.connect(peer.node_name))
            while (conn := local.connection(peer.node_name)) is None:
                await asyncio.sleep(0.01)
            sent = conn.bytes_out  # the handshake is done, the rpc request sent
            await asyncio.sleep(1.65)
            ticks = (conn.bytes_out - sent) // 4
            assert 2 <= ticks <= 4  # every 0.5 s
            await connecting
    finally:
        await local.close()


@pytest.mark.parametrize(
    ("mode", "error_class", "reason"),
    [
        (Mode.REFUSE, HandshakeError, "handshake"),
        (Mode.BAD_HANDSHAKE, HandshakeProtocolError, "handshake"),
        (Mode.SLOW_HANDSHAKE, DistTimeout, "timeout"),
    ],
)
async def test_handshake_misbehaviour_fails_the_connect(
    local: LocalNode,
    cookie: str,
    epmd_port: int,
    mode: Mode,
    error_class: type[DistError],
    reason: str,
) -> None:
    with hostile(mode, cookie, epmd_port) as peer:
        with pytest.raises(error_class) as info:
            await local.connect(peer.node_name)
        assert info.value.metric_reason == reason
        assert peer.accepted >= 1 and peer.handshakes == 0


async def test_wrong_cookie_never_reaches_the_misbehaviour(
    local: LocalNode, epmd_port: int
) -> None:
    with hostile(Mode.GARBAGE, "another-cookie", epmd_port) as peer:
        with pytest.raises(HandshakeError) as info:
            await local.connect(peer.node_name)
        assert info.value.metric_reason == "cookie"
        assert peer.handshakes == 0


async def test_real_node_keeps_answering_during_an_attack(
    local: LocalNode, cookie: str, epmd_port: int, node_factory: NodeFactory
) -> None:
    node = node_factory("otp25")
    assert await local.rpc(node.name, "erlang", "node", []) == Atom(node.name)
    modes = [Mode.GARBAGE, Mode.HUGE_FRAME, Mode.COMPRESSED_BOMB, Mode.REFUSE, Mode.BAD_HANDSHAKE]
    peers = [hostile(mode, cookie, epmd_port).start() for mode in modes * 2]
    stop = asyncio.Event()

    async def attack(peer: HostilePeer) -> None:
        while not stop.is_set():
            with contextlib.suppress(DistError):
                await local.connect(peer.node_name, timeout=2)
            await asyncio.sleep(0.05)

    latencies: list[float] = []
    before = reset_peak_rss()
    attackers = [asyncio.create_task(attack(peer)) for peer in peers]
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            started = time.monotonic()
            reply = await local.rpc(node.name, "erlang", "system_info", [Atom("process_count")])
            latencies.append(time.monotonic() - started)
            assert type(reply) is int and reply > 0
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*attackers)
        for peer in peers:
            peer.stop()
    assert sum(p.accepted for p in peers) >= 30  # the attack really ran
    assert local.is_connected(node.name)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.1 and latencies[-1] < 1.0, latencies
    assert peak_rss() - before < 100 * MiB
    assert local.memory.used < MiB


# ------------------------------------------------------------------ config

CONFIG = """
cluster: prod
targets:
  - nodes: [app@127.0.0.1]
    cookie_env: APP_COOKIE
"""


def test_distribution_config_defaults_and_sizes() -> None:
    assert parse_config(yaml.safe_load(CONFIG)).distribution == DistLimits()
    text = CONFIG + (
        "distribution: {max_frame: 2MiB, max_inflation_ratio: 50, max_uncompressed: 16MiB,\n"
        "  max_buffered_per_peer: 4MiB, max_buffered_total: 64MiB, net_ticktime: 20s}\n"
    )
    limits = parse_config(yaml.safe_load(text)).distribution
    assert limits == DistLimits(
        max_frame=2 * MiB,
        max_inflation_ratio=50,
        max_uncompressed=16 * MiB,
        max_buffered_per_peer=4 * MiB,
        max_buffered_total=64 * MiB,
        net_ticktime=20,
    )


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("{max_frame: lots}", "distribution.max_frame: expected a size"),
        ("{max_frame: 0}", "distribution.max_frame: expected a positive size"),
        ("{max_inflation_ratio: 0.5}", "distribution.max_inflation_ratio: expected a number"),
        ("{net_ticktime: 60}", "distribution.net_ticktime: duration 60 needs a unit"),
        ("{colour: blue}", "distribution.colour: unknown key"),
        ("{max_frame: 32MiB}", "distribution: max_buffered_per_peer (16777216) must hold"),
    ],
)
def test_distribution_config_problems_name_the_key(section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_load(CONFIG + f"distribution: {section}\n"))
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems
