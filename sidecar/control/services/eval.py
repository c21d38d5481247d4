"""``beamside.v1.Eval``: an Erlang expression evaluated on a node.

Off unless ``grpc.eval_enabled: true`` (``FAILED_PRECONDITION`` otherwise),
admin only, always audited (the expression is in the record).  The node
parses it (a syntax error is ``INVALID_ARGUMENT``) and evaluates it in a
spawned process with a time limit and a heap limit; what it prints is
captured, the value comes back as bounded text.
"""

from __future__ import annotations

from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import precondition, text
from sidecar.control.gen.beamside.v1 import eval_pb2 as pb
from sidecar.erldist.term import Atom

OPS: OpsModule = "beamside_ops_eval"  # erl_agents/beamside_ops_eval.erl


class EvalService:
    def __init__(self, deps: Deps, enabled: bool) -> None:
        self.enabled = enabled
        self.calls = NodeCalls(deps.manager)

    async def Evaluate(self, request: pb.EvaluateRequest, context: Context) -> pb.EvaluateResponse:
        if not self.enabled:
            raise precondition("Evaluate is disabled: set grpc.eval_enabled: true to allow it")
        expression = validate.expression(request.expression)
        timeout_ms = validate.limit(request.timeout_ms, "timeout_ms", 5000, 60000)
        reply = await self.calls.ops(
            request.node,
            OPS,
            "eval",
            [expression, {Atom("timeout_ms"): timeout_ms}],
            timeout_ms / 1000 + 2.0,
        )
        took = reply.get("duration_us")
        return pb.EvaluateResponse(
            result=text(reply.get("result")),
            exception=text(reply.get("exception")),
            output=text(reply.get("output")),
            duration_us=took if type(took) is int else 0,
        )
