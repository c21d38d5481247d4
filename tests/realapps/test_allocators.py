"""Memory/Allocators and the allocator families on the real applications
(RabbitMQ sets its own allocator strategies, ejabberd, Yaws, an Elixir app):
blocks within carriers, the sum of blocks against erlang:memory(total), the
segment cache figures agreeing with the periodic families."""

from __future__ import annotations

from tests.realapps.beamside_run import Beamside
from tests.realapps.conftest import RunningApp

# erlang:memory(total) = the blocks of every allocator + the JIT's code
# (erlang:memory(code) - literal_alloc's blocks), 0.4-1.6 MB measured
# (erl_agents/beamside_ops_alloc.erl): without the code term RabbitMQ is
# 30 MB off.
MAX_DIFFERENCE_BYTES = 4 * 1024 * 1024


def test_allocators_on_a_real_application(app: RunningApp) -> None:
    node = app.node.name
    proc = Beamside(app.node, app.workdir / "beamside", name="alloc")
    app.beamsides.append(proc)
    proc.start()
    proc.wait_attached(collects=2)

    reply = proc.grpcurl("beamside.v1.Memory/Allocators", {"node": node, "sort": "name"})
    assert reply.status == "OK", reply.stderr
    body = reply.json
    entries = body["allocators"]
    names = [e["allocator"] for e in entries]
    assert names == sorted(names) and {"binary_alloc", "eheap_alloc", "ets_alloc"} <= set(names)
    for e in entries:
        for kind in ("mbcs", "sbcs", "mbcsPool"):
            sizes = e.get(kind, {})
            blocks, carriers = int(sizes.get("blocksBytes", 0)), int(sizes.get("carriersBytes", 0))
            assert blocks <= carriers, (e["allocator"], kind, sizes)
        assert 0 <= e.get("usage", 0) <= 1
    blocks = int(body["blocksBytes"])
    total = int(body["memoryTotalBytes"])
    assert blocks < int(body["carriersBytes"])
    (literal,) = [e for e in entries if e["allocator"] == "literal_alloc"]
    jit_code = int(body["memoryCodeBytes"]) - int(literal["blocksBytes"])
    difference = total - blocks - jit_code
    print(f"\n{app.kind}: memory(total) {total}, blocks {blocks}, JIT code {jit_code}")
    assert abs(difference) <= MAX_DIFFERENCE_BYTES, (total, blocks, jit_code)

    caches = body["segmentCache"]
    assert caches and all(int(c.get("hits", 0)) <= int(c.get("calls", 0)) for c in caches)
    families = proc.families()
    calls = [v for labels, v in families["erlang_vm_mseg_alloc_calls"] if labels["node"] == node]
    hits = [
        v for labels, v in families["erlang_vm_mseg_alloc_cache_hits"] if labels["node"] == node
    ]
    # the counters only grow: the periodic ones (collected before) are at most the tool's
    assert len(calls) == len(hits) == 1
    assert 0 < calls[0] <= sum(int(c.get("calls", 0)) for c in caches)
    assert hits[0] <= sum(int(c.get("hits", 0)) for c in caches)
    usage = {
        labels["alloc"]: v
        for labels, v in families["erlang_vm_allocator_usage_ratio"]
        if labels["node"] == node
    }
    assert set(usage) <= set(names) and all(0 <= v <= 1 for v in usage.values())
