"""Fixtures and helpers for the agent tests (real nodes, see tests/support/nodes.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.vm_metrics import vm_metric_families
from sidecar.model import NodeSnapshot, decode_snapshot
from tests.support.golden import unpacked
from tests.support.nodes import ErlangNode


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-agents@127.0.0.1", cookie, epmd_port=epmd_port)
    yield node
    await node.close()


async def collect_reply(
    local: LocalNode, node: ErlangNode, opts: dict[str, Any] | None = None, family: str = "test"
) -> tuple[NodeSnapshot, dict[str, Any]]:
    """One collect: the typed snapshot the manager would store, and the raw
    reply (its packed sections also at the top level: :func:`unpacked`)."""
    taken = time.time()
    t0 = time.perf_counter()
    data = await agents.collect(local, node.name, opts, timeout=30)
    snap = decode_snapshot(
        data,
        node=node.name,
        family=family,
        cluster="agents-test",
        taken_at=taken,
        duration=time.perf_counter() - t0,
    )
    return snap, unpacked(data)


async def snapshot(
    local: LocalNode, node: ErlangNode, opts: dict[str, Any] | None = None, family: str = "test"
) -> NodeSnapshot:
    """One collect, decoded as the node manager does."""
    return (await collect_reply(local, node, opts, family))[0]


def family_names(snapshots: Iterable[NodeSnapshot]) -> set[str]:
    return {f.name for f in vm_metric_families(snapshots)}


def section_errors(data: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in data.items() if agents.is_error(v)}


async def wait_for(node: ErlangNode, expr: str, expected: str, timeout: float = 5.0) -> str:
    """Poll ``node.aeval(expr)`` until it prints ``expected``; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await node.aeval(expr)
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


# Everything beamside could leave on a node, as one printed term.  Run through
# the node's own control channel, never through the client under test (whose
# control server is registered as beamside_test_control: not ours).
RESIDUE_EXPR = """
Beamside = fun(A) -> S = atom_to_list(A),
                     lists:prefix("beamside_", S) andalso not lists:prefix("beamside_test_", S)
           end,
Mods = [M || M <- erlang:loaded(), Beamside(M)],
Names = [N || N <- registered(), Beamside(N)],
Tabs = [T || T <- ets:all(), is_atom(T) andalso Beamside(T)],
Procs = [P || P <- processes(),
              case process_info(P, [current_function, initial_call, dictionary]) of
                  [{current_function, {CM, _, _}}, {initial_call, {IM, _, _}}, {dictionary, D}] ->
                      Beamside(CM) orelse Beamside(IM) orelse
                          case lists:keyfind('$initial_call', 1, D) of
                              {_, {DM, _, _}} -> Beamside(DM);
                              _ -> false
                          end;
                  _ -> false
              end],
Msacc = erlang:system_flag(microstate_accounting, false),
Handlers = case whereis(alarm_handler) of
               undefined -> [];
               _ -> [H || H <- gen_event:which_handlers(alarm_handler),
                          Beamside(case H of {HM, _} -> HM; HM -> HM end)]
           end,
Subscribers = case whereis(mnesia_subscr) of
                  undefined -> [];
                  _ -> [S || S <- mnesia:system_info(subscribers), not is_process_alive(S)]
              end,
{Mods, Names, Tabs, Procs, erlang:system_monitor(),
 erlang:statistics(scheduler_wall_time), Msacc, Handlers, Subscribers}.
"""

NO_RESIDUE = "{[],[],[],[],undefined,undefined,false,[],[]}"


def load_source(node: ErlangNode, forms: list[str]) -> None:
    """Compile a module from its forms (one per string, no macros) on the node
    and load it: a test's own callback module (Debian's OTP 25 has the compiler)."""
    parsed = ", ".join(
        f'begin {{ok, T{i}, _}} = erl_scan:string("{f}"),'
        f" {{ok, F{i}}} = erl_parse:parse_form(T{i}), F{i} end"
        for i, f in enumerate(forms)
    )
    node.eval(
        f"{{ok, M, B}} = compile:forms([{parsed}]),"
        ' {module, M} = code:load_binary(M, "test", B), ok'
    )
