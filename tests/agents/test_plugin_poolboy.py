"""The poolboy plugin against real poolboy 1.5 (Debian's erlang-poolboy, on
the OTP 25 node's code path): a pool with every worker lent out and a caller
waiting, as the section, the metrics and the ``poolboy_waiters`` alarm show
it; nothing when poolboy is not loaded; off when the collect asks only for
other plugins."""

from __future__ import annotations

import asyncio

from sidecar import agents
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import render_text
from sidecar.model import PoolboyPool
from tests.agents.conftest import (  # noqa: F401  (local: the fixture)
    load_source,
    local,
    snapshot,
)
from tests.conftest import NodeFactory
from tests.support.nodes import ErlangNode

# A poolboy worker, compiled on the node (Debian's OTP 25 has the compiler).
WORKER = [
    "-module(bs_test_pool_worker).",
    "-behaviour(poolboy_worker).",
    "-export([start_link/1, init/1, handle_call/3, handle_cast/2]).",
    "start_link(Args) -> gen_server:start_link(bs_test_pool_worker, Args, []).",
    "init(Args) -> {ok, Args}.",
    "handle_call(_, _, S) -> {reply, ok, S}.",
    "handle_cast(_, S) -> {noreply, S}.",
]


def start_busy_pool(node: ErlangNode) -> None:
    """``bs_pool``: size 2, max_overflow 1, three workers lent to holders that
    never give them back, and a fourth caller blocked in checkout."""
    load_source(node, WORKER)
    node.eval(
        "ok = application:start(poolboy),"  # a library application, as a release starts it
        " {ok, _} = poolboy:start([{name, {local, bs_pool}}, {worker_module, bs_test_pool_worker},"
        " {size, 2}, {max_overflow, 1}], []),"
        " [spawn(fun() -> _ = poolboy:checkout(bs_pool, true, infinity),"
        " receive never -> ok end end) || _ <- lists:seq(1, 4)], ok"
    )


async def wait_waiting(node: ErlangNode) -> None:
    for _ in range(100):
        state = await node.aeval("element(4, sys:get_state(bs_pool))")
        if state != "{[],[]}":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("nobody waits on bs_pool")


async def test_a_pool_with_every_worker_out_and_a_caller_waiting(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    start_busy_pool(node)
    await wait_waiting(node)
    info = await agents.ensure_loaded(local, node.name)
    assert info.plugins["poolboy"] is True

    snap = await snapshot(local, node)
    assert snap.poolboy is not None and snap.poolboy.version == "1.5.2"
    assert dict(snap.poolboy.pools) == {
        "bs_pool": PoolboyPool(
            size=2.0, max_overflow=1.0, overflow=1.0, available=0.0, checked_out=3.0, waiting=1.0
        )
    }
    assert not snap.poolboy.truncated

    text = b"".join(render_text(snap).blocks).decode()
    assert "erlang_poolboy_pools{" in text
    for metric, value in (
        ("erlang_poolboy_size", 2),
        ("erlang_poolboy_checked_out_workers", 3),
        ("erlang_poolboy_overflow_workers", 1),
        ("erlang_poolboy_waiting_callers", 1),
    ):
        line = next(x for x in text.splitlines() if x.startswith(metric + "{"))
        assert 'pool="bs_pool"' in line and line.endswith(f" {value}.0"), line

    # Raised once the wait has lasted the alarm's delay (0 here), naming the pool.
    engine = AlarmEngine("c")
    AlarmChecker(engine, {"poolboy_waiters": {"delay": 0}}).on_snapshot(snap)
    (alarm,) = [a for a in engine.active() if a.id == "poolboy_waiters"]
    assert alarm.node == node.name and alarm.info == {"waiting": {"bs_pool": 1.0}}
    assert "1 callers wait for a worker of poolboy pool bs_pool" in alarm.cause
    # With the default delay (30 s) one snapshot is not enough.
    engine = AlarmEngine("c")
    AlarmChecker(engine).on_snapshot(snap)
    assert not [a for a in engine.active() if a.id == "poolboy_waiters"]

    # Switched off: a collect that asks only for other plugins.
    off = await snapshot(local, node, {"plugins": ["os_mon", "mnesia"]})
    assert off.poolboy is None and "poolboy" not in off.plugin_names


async def test_nothing_without_poolboy_and_the_pool_state_read_by_position(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    info = await agents.ensure_loaded(local, node.name)
    assert info.plugins["poolboy"] is False
    snap = await snapshot(local, node)
    assert snap.poolboy is None and "poolboy" not in snap.plugin_names
    # poolboy loaded, no pool: an empty section.
    node.eval("{module, poolboy} = code:ensure_loaded(poolboy), ok")
    snap = await snapshot(local, node)
    assert snap.poolboy is not None and snap.poolboy.pools == ()
    assert b"erlang_poolboy_pools{" in b"".join(render_text(snap).blocks)
