"""beamside.v1.Processes with the Python client, against real nodes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from sidecar.control.gen.beamside.v1 import processes_pb2 as pb
from tests.control.conftest import ControlFactory, ControlPlane
from tests.support.nodes import ErlangNode, shell_node


@pytest.fixture
async def plane(control_factory: ControlFactory, otp25_node: ErlangNode) -> ControlPlane:
    return await control_factory([otp25_node])


async def test_top_by_each_key_and_filters(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    node = otp25_node.name
    # A busy process (reductions), a big one (memory), a named one for the filters.
    await otp25_node.aeval(
        "Busy = spawn(fun() -> Loop = fun L(N) -> L(N + 1) end, Loop(0) end),"
        " register(busy_loop, Busy),"
        " Self = self(),"
        " Big = spawn(fun() -> L = lists:seq(1, 400000), Self ! built,"
        "                      receive stop -> length(L) end end),"
        " register(big_heap, Big), receive built -> ok end."
    )
    try:
        by_memory = await plane.call(
            plane.processes.ListProcesses, pb.ListProcessesRequest(node=node, limit=3)
        )
        assert by_memory.processes[0].registered_name == "big_heap"
        assert by_memory.processes[0].memory > 400000 * 16
        assert [p.memory for p in by_memory.processes] == sorted(
            (p.memory for p in by_memory.processes), reverse=True
        )
        assert by_memory.walked >= by_memory.process_count - 5 and not by_memory.truncated

        rate = await plane.call(
            plane.processes.ListProcesses,
            pb.ListProcessesRequest(node=node, sort_by="reductions_rate", limit=2, sample_ms=300),
        )
        assert rate.processes[0].registered_name == "busy_loop"
        assert rate.processes[0].reductions_delta > 100000
        # Neither the walker nor the rpc process shows up as the busiest.
        assert all("beamside_ops" not in p.current_function for p in rate.processes)

        named = await plane.call(
            plane.processes.ListProcesses,
            pb.ListProcessesRequest(node=node, name_filter="code_", limit=10),
        )
        assert {p.registered_name for p in named.processes} == {"code_server", "erts_code_purger"}

        by_module = await plane.call(
            plane.processes.ListProcesses,
            pb.ListProcessesRequest(node=node, module_filter="application_master", limit=50),
        )
        assert by_module.processes  # kernel's and stdlib's masters
        assert all(
            "application_master" in p.initial_call or "application_master" in p.current_function
            for p in by_module.processes
        )
        nothing = await plane.call(
            plane.processes.ListProcesses,
            pb.ListProcessesRequest(node=node, module_filter="no_such_module_at_all"),
        )
        assert list(nothing.processes) == []
    finally:
        await otp25_node.aeval("exit(whereis(busy_loop), kill), exit(whereis(big_heap), kill).")


async def test_processes_exiting_during_the_walk_are_skipped(
    plane: ControlPlane, otp25_node: ErlangNode
) -> None:
    # A churn of short-lived processes while the walk runs.
    await otp25_node.aeval(
        "C = spawn(fun() -> Loop = fun L() ->"
        "  [spawn(fun() -> receive after rand:uniform(3) -> ok end end)"
        "   || _ <- lists:seq(1, 300)],"
        "  receive stop -> ok after 1 -> L() end end, Loop() end),"
        " register(churn, C), ok."
    )
    try:
        vanished = 0
        for _ in range(8):
            reply = await plane.call(
                plane.processes.ListProcesses, pb.ListProcessesRequest(node=otp25_node.name)
            )
            assert 0 < len(reply.processes) <= 20
            vanished += reply.vanished
            if vanished:
                break
        assert vanished > 0
    finally:
        await otp25_node.aeval("churn ! stop.")


async def test_get_process_details_and_state(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    node = otp25_node.name
    sup = await plane.call(
        plane.processes.GetProcess, pb.GetProcessRequest(node=node, pid="kernel_sup")
    )
    assert sup.registered_name == "kernel_sup" and sup.pid.startswith("<0.")
    assert sup.initial_call == "supervisor:kernel/1"
    assert sup.state.startswith("{state,{local,kernel_sup}")
    assert sup.links and sup.links_count >= len(sup.links)
    assert sup.trap_exit and sup.stacktrace and sup.status == "waiting"
    assert any(e.key == "'$initial_call'" for e in sup.dictionary)
    assert sup.sys_status == "" and sup.sys_status_error == ""  # not asked
    status = await plane.call(
        plane.processes.GetProcess,
        pb.GetProcessRequest(node=node, pid="kernel_sup", sys_status=True),
    )
    # sys:get_status: {status, Pid, {module, gen_server}, [Dict, running, Parent, Debug, Misc]}
    assert status.sys_status.startswith("{status,<") and "gen_server" in status.sys_status
    assert "kernel_sup" in status.sys_status and status.sys_status_error == ""

    # An OTP process that never answers system messages: sys:get_state times
    # out cleanly, the rest of the answer is there, and nothing is left waiting.
    await otp25_node.aeval(
        "register(stuck, proc_lib:spawn(fun() -> receive never_sent -> ok end end)), ok."
    )
    before = int(await otp25_node.aeval("erlang:system_info(process_count)."))
    started = time.monotonic()
    stuck = await plane.call(
        plane.processes.GetProcess,
        pb.GetProcessRequest(node=node, pid="stuck", state_timeout_ms=300),
    )
    took = time.monotonic() - started
    assert stuck.state == "" and "timed out after 300 ms" in stuck.state_error
    stuck_status = await plane.call(
        plane.processes.GetProcess,
        pb.GetProcessRequest(
            node=node, pid="stuck", skip_state=True, sys_status=True, state_timeout_ms=300
        ),
    )
    assert stuck_status.sys_status == "" and "timed out" in stuck_status.sys_status_error
    assert stuck.registered_name == "stuck" and 0.3 <= took < 3
    after = int(await otp25_node.aeval("erlang:system_info(process_count)."))
    assert after <= before + 1  # no helper left behind (the rpc process may linger)
    skipped = await plane.call(
        plane.processes.GetProcess,
        pb.GetProcessRequest(node=node, pid="stuck", skip_state=True, messages=0),
    )
    # the two system messages it never read: get_state's and get_status's
    assert skipped.state_error == "not asked" and skipped.message_queue_len == 2
    assert list(skipped.messages) == []


async def test_terminate(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    node = otp25_node.name
    pid = (
        await otp25_node.aeval(
            "P = spawn(fun() -> receive never -> ok end end), register(victim, P), pid_to_list(P)."
        )
    ).strip('"')
    done = await plane.call(
        plane.processes.TerminateProcess, pb.TerminateProcessRequest(node=node, pid=pid)
    )
    assert done.terminated and done.reason == "kill" and done.pid == pid
    assert await otp25_node.aeval("whereis(victim).") == "undefined"
    assert (
        await plane.status_of(
            plane.processes.TerminateProcess, pb.TerminateProcessRequest(node=node, pid=pid)
        )
        == grpc.StatusCode.NOT_FOUND
    )
    # A process trapping exits survives a soft reason: said so, not an error.
    await otp25_node.aeval(
        "register(trapper, spawn(fun() -> process_flag(trap_exit, true),"
        " receive never -> ok end end)), ok."
    )
    soft = await plane.call(
        plane.processes.TerminateProcess,
        pb.TerminateProcessRequest(node=node, pid="trapper", reason="shutdown"),
    )
    assert not soft.terminated and soft.reason == "shutdown"
    for system in ("init", "code_server", "application_controller", "rex"):
        status = await plane.status_of(
            plane.processes.TerminateProcess, pb.TerminateProcessRequest(node=node, pid=system)
        )
        assert status == grpc.StatusCode.FAILED_PRECONDITION
    assert await otp25_node.aeval("is_pid(whereis(code_server)).") == "true"
    assert [a.ok for a in plane.audits if a.action == "Processes/TerminateProcess"] == [
        True,
        False,
        True,
        False,
        False,
        False,
        False,
    ]


async def test_gc_all_in_batches_frees_memory(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    # 200 processes, each with a dead 100,000-element list on its heap.
    await otp25_node.aeval(
        "[spawn(fun() -> _ = length(lists:seq(1, 100000)), receive stop -> ok end end)"
        " || _ <- lists:seq(1, 200)], ok."
    )
    reply = await plane.call(
        plane.processes.GarbageCollect,
        pb.GarbageCollectRequest(node=otp25_node.name, batch_size=25, pause_ms=5),
    )
    count = int(await otp25_node.aeval("erlang:system_info(process_count)."))
    assert reply.collected >= 200 and reply.collected >= count - 10
    assert reply.batches >= reply.collected // 25
    assert not reply.truncated
    assert reply.bytes_freed > 200 * 100000 * 8  # most of 200 x 1.6 MB
    assert reply.processes_memory_after < reply.processes_memory_before - 100_000_000
    # Every batch pauses 5 ms: the run cannot have been faster than that.
    assert reply.duration_us >= (reply.batches - 1) * 5000


async def test_gc_time_limit_truncates(plane: ControlPlane, otp25_node: ErlangNode) -> None:
    reply = await plane.call(
        plane.processes.GarbageCollect,
        pb.GarbageCollectRequest(node=otp25_node.name, batch_size=1, pause_ms=50, timeout_ms=200),
    )
    assert reply.truncated and 1 <= reply.batches <= 6


async def test_terminate_remote_shells(
    plane: ControlPlane, otp25_node: ErlangNode, epmd_port: int, tmp_path: Path
) -> None:
    """A real remote shell (``erl -remsh`` on a pty) is found and killed."""
    shells = (
        "[pid_to_list(P) || P <- processes(),"
        " {current_function, {shell, _, _}} <- [process_info(P, current_function)]]."
    )
    with shell_node(
        "otp25", otp25_node.cookie, epmd_port, tmp_path, remsh=otp25_node.name, hidden=True
    ) as client:
        remsh_name = client.name
        deadline = time.monotonic() + 20
        while (found := await otp25_node.aeval(shells)) == "[]":
            assert time.monotonic() < deadline, "the remote shell did not start"
            await asyncio.sleep(0.1)
        reply = await plane.call(
            plane.processes.TerminateShells,
            pb.TerminateShellsRequest(node=otp25_node.name),
        )
        killed = {s.pid: s for s in reply.terminated}
        assert {s.kind for s in reply.terminated} == {"server", "evaluator"}
        assert all(s.remote and s.group_leader_node == remsh_name for s in reply.terminated)
        assert set(killed) >= set(found.strip("[]").replace('"', "").split(","))
        for pid in killed:
            assert await otp25_node.aeval(f'is_process_alive(list_to_pid("{pid}")).') == "false"
        (record,) = [a for a in plane.audits if a.action == "Processes/TerminateShells"]
        assert record.ok and len(record.details["response"]["terminated"]) == len(killed)
