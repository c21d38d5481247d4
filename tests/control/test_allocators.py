"""Memory/Allocators on real OTP 25, OTP 28 and Elixir nodes: carriers against
blocks per allocator, per instance, mseg_alloc's cache, and the sum of blocks
against erlang:memory(total)."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from sidecar.control.gen.beamside.v1 import memory_pb2 as pb
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory
from tests.support.nodes import Runtime

# erlang:memory(total) = the blocks of every allocator + the JIT's code
# (erlang:memory(code) - literal_alloc's blocks), 0.4-0.65 MB measured on
# OTP 25 and 28, 1.6 MB on RabbitMQ (erl_agents/beamside_ops_alloc.erl).
MAX_DIFFERENCE_BYTES = 4 * 1024 * 1024
BIG_BINARY = 4 * 1024 * 1024  # above the singleblock threshold (sbct, 512 KB)


def consistent(entry: pb.AllocatorUsage) -> None:
    for kind in (entry.mbcs, entry.sbcs, entry.mbcs_pool):
        assert kind.blocks_bytes <= kind.carriers_bytes, entry
        assert kind.blocks > 0 or kind.blocks_bytes == 0, entry
    assert entry.blocks_bytes == sum(
        k.blocks_bytes for k in (entry.mbcs, entry.sbcs, entry.mbcs_pool)
    )
    assert entry.carriers_bytes == sum(
        k.carriers_bytes for k in (entry.mbcs, entry.sbcs, entry.mbcs_pool)
    )
    assert 0.0 <= entry.usage <= 1.0
    if entry.carriers_bytes:
        assert entry.usage == pytest.approx(entry.blocks_bytes / entry.carriers_bytes)
    blocks = entry.mbcs.blocks + entry.sbcs.blocks + entry.mbcs_pool.blocks
    average = entry.blocks_bytes / blocks if blocks else 0.0
    assert entry.average_block_bytes == pytest.approx(average)


@pytest.mark.parametrize("runtime", ["otp25", "otp28", "elixir"])
async def test_allocators(
    runtime: Runtime, node_factory: NodeFactory, control_factory: ControlFactory
) -> None:
    node = node_factory(runtime)
    # A binary far above the singleblock carrier threshold, held by a process.
    await node.aeval(
        f"register(big_holder, spawn(fun() -> B = binary:copy(<<1>>, {BIG_BINARY}),"
        " receive stop -> byte_size(B) end end))."
    )
    plane = await control_factory([node])
    schedulers = int(await node.aeval("erlang:system_info(schedulers)."))

    async def allocators(**kw: object) -> pb.AllocatorsResponse:
        request = pb.AllocatorsRequest(node=node.name, **kw)
        return await plane.call(plane.memory.Allocators, request)

    every = await allocators()
    names = [e.allocator for e in every.allocators]
    assert {"binary_alloc", "eheap_alloc", "ets_alloc", "ll_alloc"} <= set(names)
    assert len(names) == len(set(names)) and not every.truncated
    for entry in every.allocators:
        assert entry.instance == -1 and entry.instances >= 1
        consistent(entry)
    # sorted by usage, the most fragmented first
    assert [e.usage for e in every.allocators] == sorted(e.usage for e in every.allocators)
    assert every.blocks_bytes == sum(e.blocks_bytes for e in every.allocators)
    assert every.carriers_bytes == sum(e.carriers_bytes for e in every.allocators)
    assert every.blocks_bytes < every.carriers_bytes
    # erlang:memory(total) counts blocks, plus the JIT's code outside alloc_util
    (literal,) = [e for e in every.allocators if e.allocator == "literal_alloc"]
    jit_code = every.memory_code_bytes - literal.blocks_bytes
    assert every.memory_code_bytes > literal.blocks_bytes > 0
    difference = every.memory_total_bytes - every.blocks_bytes - jit_code
    print(f"\n{runtime}: memory(total) - blocks - JIT code: {difference} bytes")
    assert abs(difference) <= MAX_DIFFERENCE_BYTES, (every.memory_total_bytes, every.blocks_bytes)

    binary = (await allocators(allocators=["binary_alloc"])).allocators
    assert [e.allocator for e in binary] == ["binary_alloc"]
    (summed,) = binary
    assert summed.sbcs.carriers >= 1 and summed.sbcs.blocks_bytes >= BIG_BINARY
    assert summed.instances == schedulers + 1

    # per instance: one entry per scheduler plus one, adding up to the sum
    # (of the same moment: the node is alive, a carrier may come or go
    # between two calls, so both are read again until none did)
    for _ in range(10):
        per = (
            await allocators(allocators=["binary_alloc"], per_instance=True, sort="name")
        ).allocators
        (summed,) = (await allocators(allocators=["binary_alloc"])).allocators
        carriers = [sum(e.sbcs.carriers for e in per), sum(e.mbcs.carriers for e in per)]
        if carriers == [summed.sbcs.carriers, summed.mbcs.carriers]:
            break
    assert carriers == [summed.sbcs.carriers, summed.mbcs.carriers]
    assert [e.instance for e in per] == list(range(schedulers + 1))
    for entry in per:
        assert entry.allocator == "binary_alloc" and entry.instances == 1
        consistent(entry)

    by_size = await allocators(sort="carriers_size", limit=2)
    assert len(by_size.allocators) == 2 and by_size.truncated
    largest = sorted((e.carriers_bytes for e in every.allocators), reverse=True)[:2]
    assert by_size.allocators[0].carriers_bytes >= by_size.allocators[1].carriers_bytes
    assert by_size.allocators[0].carriers_bytes >= largest[1]

    # mseg_alloc's segment cache: one per instance, hits within calls
    assert len(every.segment_cache) == schedulers + 1
    assert sum(c.calls for c in every.segment_cache) > 0
    for cache in every.segment_cache:
        assert cache.hits <= cache.calls
        expected = cache.hits / cache.calls if cache.calls else 1.0
        assert cache.hit_rate == pytest.approx(expected)

    for bad, field in (
        ({"allocators": ["no_such_alloc"]}, "no_such_alloc"),
        ({"allocators": ["mseg_alloc"]}, "mseg_alloc"),  # not an alloc_util one
        ({"allocators": ["Not An Atom"]}, "allocators"),
        ({"sort": "biggest"}, "sort"),
        ({"limit": 6000}, "limit"),
    ):
        with pytest.raises(aio.AioRpcError) as raised:
            await allocators(**bad)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert field in (raised.value.details() or ""), raised.value.details()
    await node.aeval("big_holder ! stop.")
