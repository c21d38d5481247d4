"""The allocator families and mseg_alloc's segment cache (the allocators
section's ``mseg_alloc``, agent v11), collected from real OTP 25 and OTP 28
nodes."""

from __future__ import annotations

from collections import defaultdict

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.vm_metrics import vm_metric_families
from tests.agents.conftest import collect_reply
from tests.conftest import NodeFactory
from tests.support.golden import exposition
from tests.support.nodes import Runtime
from tests.support.prometheus import promtool_check_metrics

# erlang:memory(total) = the blocks of every allocator + the JIT's code
# (erlang:memory(code) - literal_alloc's blocks), 0.4-0.65 MB measured on
# OTP 25 and 28, 1.6 MB on RabbitMQ (erl_agents/beamside_ops_alloc.erl).
MAX_DIFFERENCE_BYTES = 4 * 1024 * 1024

MSEG_TOTALS = (
    "lists:foldl(fun({instance, _, P}, {C, H}) ->"
    " K = proplists:get_value(memkind, P),"
    " {mseg_alloc, G, U} = lists:keyfind(mseg_alloc, 1, proplists:get_value(calls, K)),"
    " {cache_hits, X} = lists:keyfind(cache_hits, 1, proplists:get_value(status, K)),"
    " {C + G * 1000000000 + U, H + X} end, {0, 0},"
    " erlang:system_info({allocator, mseg_alloc}))."
)


@pytest.mark.parametrize("runtime", ["otp25", "otp28"])
async def test_allocator_and_segment_cache_families(
    runtime: Runtime, node_factory: NodeFactory, local: LocalNode
) -> None:
    node = node_factory(runtime)
    await agents.ensure_loaded(local, node.name)
    # carriers come and go: some segments for the cache to serve (each process
    # waited for, so memory is steady while the sections are read one by one)
    await node.aeval(
        "[begin {P, R} = spawn_monitor(fun() -> _ = binary:copy(<<1>>, 3000000),"
        " receive stop -> ok end end), P ! stop, receive {'DOWN', R, _, _, _} -> ok end"
        " end || _ <- lists:seq(1, 20)], ok."
    )
    before = await node.aeval(MSEG_TOTALS)
    snap, reply = await collect_reply(local, node)
    after = await node.aeval(MSEG_TOTALS)
    section = reply["allocators"]["mseg_alloc"]
    schedulers = int(await node.aeval("erlang:system_info(schedulers)."))
    assert section["instances"] == schedulers + 1
    low = tuple(int(x) for x in before.strip("{}").split(","))
    high = tuple(int(x) for x in after.strip("{}").split(","))
    assert low[0] <= section["cache_calls"] <= high[0]
    assert low[1] <= section["cache_hits"] <= high[1]
    assert 0 < section["cache_hits"] <= section["cache_calls"]
    print(f"\n{runtime}: collect timings (us) {reply['timings']}")

    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in vm_metric_families([snap]):
        for s in family.samples:
            samples[s.name].append((s.labels, s.value))

    def one(name: str) -> float:
        ((_, value),) = samples[name]
        return value

    calls = one("erlang_vm_mseg_alloc_calls_total")
    hits = one("erlang_vm_mseg_alloc_cache_hits_total")
    assert (calls, hits) == (section["cache_calls"], section["cache_hits"])
    assert one("erlang_vm_mseg_alloc_cache_hit_ratio") == pytest.approx(hits / calls)
    assert 0 <= one("erlang_vm_mseg_alloc_cached_segments") <= 10 * (schedulers + 1)

    blocks: dict[str, float] = defaultdict(float)
    carriers: dict[str, float] = defaultdict(float)
    for labels, value in samples["erlang_vm_allocator_blocks_bytes"]:
        blocks[labels["alloc"]] += value
    for labels, value in samples["erlang_vm_allocator_carriers_bytes"]:
        carriers[labels["alloc"]] += value
    assert {"binary_alloc", "eheap_alloc", "ets_alloc"} <= set(blocks)
    for alloc, size in blocks.items():
        assert size <= carriers[alloc], alloc
    ratios = {labels["alloc"]: v for labels, v in samples["erlang_vm_allocator_usage_ratio"]}
    for alloc, ratio in ratios.items():
        assert 0 <= ratio <= 1 and ratio == pytest.approx(blocks[alloc] / carriers[alloc])
    memory = {labels["kind"]: v for labels, v in samples["erlang_vm_memory_bytes"]}
    jit_code = memory["code"] - blocks["literal_alloc"]
    difference = memory["total"] - sum(blocks.values()) - jit_code
    assert abs(difference) <= MAX_DIFFERENCE_BYTES, (memory, blocks)
    assert one("erlang_vm_allocated_bytes") == sum(carriers.values())

    lint = promtool_check_metrics(exposition([snap]))
    assert lint.returncode == 0, lint.stdout + lint.stderr
