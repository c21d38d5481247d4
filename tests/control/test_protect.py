"""TerminateProcess never stops a node or an application (issue 11, item 1).

On real OTP 25, OTP 28 and Elixir nodes running a small permanent
application of the test's own (``protapp``: a top supervisor, a supervisor
with room for three restarts and one with none, a worker under each), the
operator asks beamside to kill the application master, the top supervisor, a
supervisor in the tree, kernel's and logger's processes, ``init``, group
leaders and a worker whose supervisor has no room left: each answer is
FAILED_PRECONDITION saying why, and the node and the application are still
up afterwards.  An ordinary worker (spawned by the test, or the child of a
supervisor with room) is still killed -- until that supervisor's room is used
up.  With the Python client on every runtime, and with grpcurl on OTP 25.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc import aio

from sidecar.control.gen.beamside.v1 import processes_pb2 as pb
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory, ControlPlane
from tests.support.nodes import ErlangNode, Runtime

APP_ERL = """
-module(protapp).
-behaviour(application).
-behaviour(supervisor).
-export([start/2, stop/1, init/1, start_worker/1, worker/1]).

start(_, _) -> supervisor:start_link({local, protapp_sup}, ?MODULE, top).
stop(_) -> ok.

init(top) ->
    {ok, {#{strategy => one_for_one, intensity => 5, period => 60},
          [#{id => roomy, type => supervisor,
             start => {supervisor, start_link, [{local, protapp_roomy_sup}, ?MODULE, roomy]}},
           #{id => strict, type => supervisor,
             start => {supervisor, start_link, [{local, protapp_strict_sup}, ?MODULE, strict]}}]}};
init(roomy) ->
    {ok, {#{strategy => one_for_one, intensity => 3, period => 60},
          [#{id => w, start => {?MODULE, start_worker, [protapp_roomy_worker]}}]}};
init(strict) ->
    {ok, {#{strategy => one_for_one, intensity => 0, period => 60},
          [#{id => w, start => {?MODULE, start_worker, [protapp_strict_worker]}}]}}.

start_worker(Name) -> {ok, proc_lib:spawn_link(?MODULE, worker, [Name])}.

worker(Name) -> register(Name, self()), receive stop -> ok end.
"""

APP_FILE = """{application, protapp,
 [{description, "beamside protection test"}, {vsn, "1.0"}, {modules, [protapp]},
  {registered, [protapp_sup]}, {applications, [kernel, stdlib]},
  {mod, {protapp, []}}]}.
"""


def build_app(tmp_path: Path) -> Path:
    ebin = tmp_path / "protapp" / "ebin"
    ebin.mkdir(parents=True)
    src = tmp_path / "protapp.erl"
    src.write_text(APP_ERL)
    # OTP 25's erlc: its beams load on OTP 28 and on Elixir's OTP too.
    subprocess.run(["erlc", "-o", str(ebin), str(src)], check=True, timeout=60)
    (ebin / "protapp.app").write_text(APP_FILE)
    return ebin


async def start_app(node: ErlangNode, ebin: Path) -> None:
    await node.aeval(f'true = code:add_patha("{ebin}"), ok.')
    assert await node.aeval("application:start(protapp, permanent).") == "ok"


async def pid_of(node: ErlangNode, expr: str) -> str:
    return (await node.aeval(f"pid_to_list({expr}).")).strip('"')


async def refusal(plane: ControlPlane, node: str, pid: str) -> str:
    """The message of a TerminateProcess that must be refused."""
    try:
        reply = await plane.call(
            plane.processes.TerminateProcess, pb.TerminateProcessRequest(node=node, pid=pid)
        )
    except aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, (pid, exc.details())
        details = exc.details() or ""
        assert details.startswith("terminate: refused: "), details
        return details
    raise AssertionError(f"{pid} was terminated ({reply}), expected a refusal")


async def kill(plane: ControlPlane, node: str, pid: str) -> None:
    reply = await plane.call(
        plane.processes.TerminateProcess, pb.TerminateProcessRequest(node=node, pid=pid)
    )
    assert reply.terminated and reply.pid.startswith("<0.")


async def still_up(node: ErlangNode) -> None:
    running = await node.aeval("[A || {A, _, _} <- application:which_applications()].")
    assert "protapp" in running and "kernel" in running
    assert await node.aeval("is_pid(whereis(protapp_sup)).") == "true"


@pytest.mark.parametrize("runtime", ["otp25", "otp28", "elixir"])
async def test_refuses_what_would_stop_the_node_or_the_app(
    runtime: Runtime, node_factory: NodeFactory, control_factory: ControlFactory, tmp_path: Path
) -> None:
    node = node_factory(runtime)
    await start_app(node, build_app(tmp_path))
    plane = await control_factory([node])
    name = node.name

    master = await pid_of(node, "application_controller:get_master(protapp)")
    # The master's other process (application_master:start_it), parent of the top supervisor.
    loop = await pid_of(
        node,
        "hd([P || P <- element(2, process_info(application_controller:get_master(protapp),"
        " links)), is_pid(P),"
        " element(2, process_info(P, initial_call)) =:= {application_master, start_it, 4}])",
    )
    # A process the test spawns as the group leader of another.
    leader = await pid_of(
        node,
        "begin GL = spawn(fun() -> receive stop -> ok end end),"
        " W = spawn(fun() -> receive stop -> ok end end), group_leader(GL, W), GL end",
    )
    # Linked to the worker of the supervisor without room (and not trapping exits).
    buddy = await pid_of(
        node,
        "spawn(fun() -> link(whereis(protapp_strict_worker)), receive stop -> ok end end)",
    )

    cases = {
        "init": "is init",
        "application_controller": "is the system process application_controller",
        "code_server": "is the system process code_server",
        "kernel_sup": "is the system process kernel_sup",
        "logger_proxy": "is the system process logger_proxy",
        "user": "is the system process user",
        "standard_error": "is the system process standard_error",
        master: "is the application master of protapp (permanent)",
        loop: "is the application master of protapp (permanent)",
        "protapp_sup": "is the top supervisor of application protapp (permanent)",
        "protapp_roomy_sup": "is a supervisor of application protapp (permanent)",
        "protapp_strict_worker": "its supervisor <0.",
        leader: "is the group leader (I/O server) of",
        buddy: "and does not trap exits, so it would die too; ",
    }
    if runtime == "elixir":
        cases["Elixir.Logger.Supervisor"] = "belongs to logger, a system application"
    else:
        cases["global_name_server"] = "is the system process global_name_server"
    for target, why in cases.items():
        message = await refusal(plane, name, target)
        assert why in message, (target, message)
    strict = await refusal(plane, name, "protapp_strict_worker")
    assert "(protapp_strict_sup) allows 0 restart(s) in 60 s and has used 0" in strict
    assert "application protapp (permanent)" in strict
    buddy_why = await refusal(plane, name, buddy)
    assert "(protapp_strict_worker)" in buddy_why and "allows 0 restart(s)" in buddy_why
    await still_up(node)
    assert await node.aeval('is_process_alive(list_to_pid("' + master + '")).') == "true"

    # What may go: a process of the test's own, and a worker whose supervisor has room --
    # three times (its intensity), not a fourth.
    loose = await pid_of(node, "spawn(fun() -> receive stop -> ok end end)")
    await kill(plane, name, loose)
    for used in range(3):
        worker = await pid_of(node, "whereis(protapp_roomy_worker)")
        await kill(plane, name, worker)
        # Restarted by its supervisor, under the same name.
        await node.aeval(
            f'Old = list_to_pid("{worker}"),'
            " Wait = fun W(0) -> timeout; W(N) -> case whereis(protapp_roomy_worker) of"
            " P when is_pid(P), P =/= Old -> true; _ -> timer:sleep(20), W(N - 1) end"
            " end, true = Wait(100)."
        )
        assert used < 3
    full = await refusal(plane, name, "protapp_roomy_worker")
    assert "(protapp_roomy_sup) allows 3 restart(s) in 60 s and has used 3" in full
    await still_up(node)
    assert node.is_running


async def test_dynamic_supervisor_children_on_elixir(
    node_factory: NodeFactory, control_factory: ControlFactory, tmp_path: Path
) -> None:
    """An Agent under an Elixir DynamicSupervisor (max_restarts 1) of the app:
    killed once, refused the second time; the DynamicSupervisor itself refused."""
    node = node_factory("elixir")
    await start_app(node, build_app(tmp_path))
    await node.aeval(
        "{ok, _} = supervisor:start_child(protapp_sup, #{id => dyn, type => supervisor,"
        " start => {'Elixir.DynamicSupervisor', start_link, [[{strategy, one_for_one},"
        " {max_restarts, 1}, {max_seconds, 60}, {name, protapp_dyn}]]}}),"
        " {ok, _} = 'Elixir.DynamicSupervisor':start_child(protapp_dyn,"
        " {'Elixir.Agent', fun() -> 0 end}), ok."
    )
    plane = await control_factory([node])
    agent = "hd([P || {_, P, _, _} <- 'Elixir.DynamicSupervisor':which_children(protapp_dyn)])"
    first = await pid_of(node, agent)
    await kill(plane, node.name, first)
    await node.aeval(
        f'Old = list_to_pid("{first}"),'
        " Wait = fun W(0) -> timeout; W(N) -> case 'Elixir.DynamicSupervisor':"
        "which_children(protapp_dyn) of [{_, P, _, _}] when is_pid(P), P =/= Old -> true;"
        " _ -> timer:sleep(20), W(N - 1) end end, true = Wait(100)."
    )
    second = await pid_of(node, agent)
    message = await refusal(plane, node.name, second)
    assert "(protapp_dyn) allows 1 restart(s) in 60 s and has used 1" in message, message
    assert "a supervisor of application protapp" in await refusal(plane, node.name, "protapp_dyn")
    await still_up(node)
    assert await node.aeval(f'is_process_alive(list_to_pid("{second}")).') == "true"


async def test_refusals_with_grpcurl(
    otp25_node: ErlangNode, control_factory: ControlFactory, tmp_path: Path
) -> None:
    await start_app(otp25_node, build_app(tmp_path))
    plane = await control_factory([otp25_node], auth=True)
    name = otp25_node.name
    master = await pid_of(otp25_node, "application_controller:get_master(protapp)")
    method = "beamside.v1.Processes/TerminateProcess"
    for target, why in [
        (master, "is the application master of protapp (permanent)"),
        ("protapp_sup", "is the top supervisor of application protapp (permanent)"),
        ("protapp_strict_sup", "is a supervisor of application protapp"),
        ("protapp_strict_worker", "allows 0 restart(s) in 60 s"),
        ("rex", "is the system process rex"),
        ("user", "is the system process user"),
    ]:
        result = await plane.grpcurl(method, {"node": name, "pid": target})
        assert result.status == "FailedPrecondition", (target, result.stderr)
        assert "Message: terminate: refused: " in result.stderr and why in result.stderr, (
            result.stderr
        )
    await still_up(otp25_node)
    worker = await pid_of(otp25_node, "whereis(protapp_roomy_worker)")
    killed = await plane.grpcurl(method, {"node": name, "pid": "protapp_roomy_worker"})
    assert killed.status == "OK", killed.stderr
    assert killed.json == {"pid": worker, "reason": "kill", "terminated": True}
    await still_up(otp25_node)


async def test_unanswering_supervisor_is_a_bounded_refusal(
    otp25_node: ErlangNode, control_factory: ControlFactory, tmp_path: Path
) -> None:
    """The supervisor of the worker does not answer (suspended): its restart
    intensity cannot be read within a second, so the kill is refused -- quickly."""
    await start_app(otp25_node, build_app(tmp_path))
    plane = await control_factory([otp25_node])
    # Suspended by a process of its own (a suspension ends with its suspender).
    await otp25_node.aeval(
        "Self = self(), H = spawn(fun() -> true = erlang:suspend_process("
        "whereis(protapp_roomy_sup)), Self ! held, receive resume -> ok end end),"
        " register(protapp_holder, H), receive held -> ok end."
    )
    try:
        started = time.monotonic()
        message = await refusal(plane, otp25_node.name, "protapp_roomy_worker")
        took = time.monotonic() - started
        assert "the restart intensity of its supervisor" in message, message
        assert "(protapp_roomy_sup) could not be read" in message, message
        assert 0.9 < took < 3.5
        assert await otp25_node.aeval("is_pid(whereis(protapp_roomy_worker)).") == "true"
    finally:
        await otp25_node.aeval("protapp_holder ! resume, ok.")
    await still_up(otp25_node)
    await kill(plane, otp25_node.name, "protapp_roomy_worker")
