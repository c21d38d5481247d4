"""beamside.v1.Config and beamside.v1.Eval against real nodes."""

from __future__ import annotations

import asyncio

import grpc

from sidecar.alarms.catalogue import GlobalParam
from sidecar.control.gen.beamside.v1 import config_pb2, eval_pb2
from sidecar.redact import marker
from tests.conftest import NodeFactory
from tests.control.conftest import ControlFactory
from tests.support.nodes import ErlangNode


async def test_env_on_one_node_and_global_on_a_family(
    control_factory: ControlFactory, node_factory: NodeFactory
) -> None:
    first, second = node_factory.many(2, "otp25")
    plane = await control_factory([first, second], family="payments")
    node = first.name

    got = await plane.call(
        plane.config.GetEnv, config_pb2.GetEnvRequest(node=node, app="kernel", key="net_ticktime")
    )
    assert got.loaded and [(e.key, e.value) for e in got.entries] == [("net_ticktime", "60")]
    unset = await plane.call(
        plane.config.GetEnv, config_pb2.GetEnvRequest(node=node, app="kernel", key="no_key_xyz")
    )
    assert list(unset.entries) == []

    changed = await plane.call(
        plane.config.SetEnv,
        config_pb2.SetEnvRequest(
            node=node, app="kernel", key="ctl_limit", value='{max, 10, <<"x">>}'
        ),
    )
    assert not changed.was_set and changed.value == '{max,10,<<"x">>}'
    assert await first.aeval("application:get_env(kernel, ctl_limit).") == '{ok,{max,10,<<"x">>}}'
    again = await plane.call(
        plane.config.SetEnv,
        config_pb2.SetEnvRequest(node=node, app="kernel", key="ctl_limit", value="20."),
    )
    assert again.was_set and again.previous == '{max,10,<<"x">>}' and again.value == "20"
    # The value never reaches the audit trail, only its marker.
    (record, _) = [a for a in plane.audits if a.action == "Config/SetEnv"]
    assert record.details["request"]["value"] == marker('{max, 10, <<"x">>}')

    bad = await plane.status_of(
        plane.config.SetEnv,
        config_pb2.SetEnvRequest(node=node, app="kernel", key="k", value="{unclosed"),
    )
    assert bad == grpc.StatusCode.INVALID_ARGUMENT
    # A value is parsed, never evaluated.
    not_evaluated = await plane.status_of(
        plane.config.SetEnv,
        config_pb2.SetEnvRequest(node=node, app="kernel", key="k", value="erlang:halt()"),
    )
    assert not_evaluated == grpc.StatusCode.INVALID_ARGUMENT
    unknown_app = await plane.status_of(
        plane.config.SetEnv,
        config_pb2.SetEnvRequest(node=node, app="no_such_app_xyz", key="k", value="1"),
    )
    assert unknown_app == grpc.StatusCode.NOT_FOUND

    # SetGlobal: both nodes' application:get_env agree, and the parameter is global.
    result = await plane.call(
        plane.config.SetGlobal,
        config_pb2.SetGlobalRequest(
            family="payments", app="kernel", key="ctl_rate", value="[{a, 1}]"
        ),
    )
    assert sorted(r.node for r in result.results) == sorted([first.name, second.name])
    assert all(r.ok for r in result.results) and result.value == "[{a,1}]"
    values = await asyncio.gather(
        first.aeval("application:get_env(kernel, ctl_rate)."),
        second.aeval("application:get_env(kernel, ctl_rate)."),
    )
    assert values == ["{ok,[{a,1}]}", "{ok,[{a,1}]}"]
    assert GlobalParam("kernel", "ctl_rate", "payments") in plane.checker.global_params

    marked = await plane.call(
        plane.config.MarkGlobal,
        config_pb2.MarkGlobalRequest(app="kernel", key="ctl_limit", family="payments"),
    )
    assert ("kernel", "ctl_limit", "payments") in {(g.app, g.key, g.family) for g in marked.globals}
    assert plane.checker.collect_options(first.name, "payments")["env_keys"] == [
        ("kernel", "ctl_rate"),
        ("kernel", "ctl_limit"),
    ]

    # ctl_limit is set on the first node only: DiffConfig shows it.
    diff = await plane.call(
        plane.config.DiffConfig, config_pb2.DiffConfigRequest(family="payments", app="kernel")
    )
    differing = {(d.app, d.key): dict(d.values) for d in diff.differences}
    assert differing == {("kernel", "ctl_limit"): {first.name: "20", second.name: ""}}
    everything = await plane.call(
        plane.config.DiffConfig, config_pb2.DiffConfigRequest(family="payments")
    )
    assert ("kernel", "ctl_limit") in {(d.app, d.key) for d in everything.differences}

    syntax = await plane.status_of(
        plane.config.SetGlobal,
        config_pb2.SetGlobalRequest(family="payments", app="kernel", key="k", value="[1,"),
    )
    assert syntax == grpc.StatusCode.INVALID_ARGUMENT
    no_family = await plane.status_of(
        plane.config.SetGlobal,
        config_pb2.SetGlobalRequest(family="nobody", app="kernel", key="k", value="1"),
    )
    assert no_family == grpc.StatusCode.NOT_FOUND


async def test_evaluate_refused_by_default(
    control_factory: ControlFactory, otp25_node: ErlangNode
) -> None:
    plane = await control_factory([otp25_node])
    request = eval_pb2.EvaluateRequest(node=otp25_node.name, expression="1 + 1.")
    assert (
        await plane.status_of(plane.eval.Evaluate, request) == grpc.StatusCode.FAILED_PRECONDITION
    )
    (record,) = plane.audits
    assert record.action == "Eval/Evaluate" and not record.ok


async def test_evaluate_when_enabled(
    control_factory: ControlFactory, otp28_node: ErlangNode
) -> None:
    plane = await control_factory([otp28_node], auth=True, eval_enabled=True)
    node = otp28_node.name
    done = await plane.call(
        plane.eval.Evaluate,
        eval_pb2.EvaluateRequest(
            node=node,
            expression='X = lists:sum([1, 2, 3]), io:format("sum ~p~n", [X]), {X, node()}',
        ),
    )
    assert done.result == f"{{6,'{node}'}}" and done.output == "sum 6\n" and done.exception == ""
    raised = await plane.call(
        plane.eval.Evaluate, eval_pb2.EvaluateRequest(node=node, expression="1 / 0.")
    )
    assert raised.result == "" and raised.exception.startswith("{error,badarith,")
    big = await plane.call(
        plane.eval.Evaluate,
        eval_pb2.EvaluateRequest(node=node, expression="lists:seq(1, 200000)."),
    )
    assert big.result.endswith(",49|...]")  # depth-bounded
    wide = await plane.call(
        plane.eval.Evaluate,
        eval_pb2.EvaluateRequest(node=node, expression='binary:copy(<<"x">>, 200000).'),
    )
    assert wide.result.startswith('<<"xxx') and wide.result.endswith('"...>>')
    assert len(wide.result) < 1000
    huge = await plane.call(
        plane.eval.Evaluate,
        eval_pb2.EvaluateRequest(node=node, expression="lists:seq(1, 10000000)."),
    )
    assert huge.result == "" and "heap limit" in huge.exception
    for malformed in ("1 +", "foo(.", '"unterminated', "   "):
        status = await plane.status_of(
            plane.eval.Evaluate, eval_pb2.EvaluateRequest(node=node, expression=malformed)
        )
        assert status == grpc.StatusCode.INVALID_ARGUMENT, malformed
    slow = await plane.status_of(
        plane.eval.Evaluate,
        eval_pb2.EvaluateRequest(node=node, expression="timer:sleep(5000).", timeout_ms=200),
    )
    assert slow == grpc.StatusCode.DEADLINE_EXCEEDED
    # The evaluation was killed, the node is fine.
    assert await otp28_node.aeval("1 + 1.") == "2"
    evaluations = [a for a in plane.audits if a.action == "Eval/Evaluate"]
    assert len(evaluations) == 10 and all(a.who == "alice" for a in evaluations)
    assert evaluations[0].details["response"] == {"raised": False}
