"""``beamside.v1.Code``: loaded modules, soft purge, module versions across a family."""

from __future__ import annotations

from typing import Any

from sidecar.control import validate
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import invalid, text
from sidecar.control.gen.beamside.v1 import code_pb2 as pb
from sidecar.erldist.term import Atom

OPS: OpsModule = "beamside_ops_code"  # erl_agents/beamside_ops_code.erl

MAX_MODULES = 20000


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def _prefix(value: str) -> bytes:
    if len(value) > validate.MAX_ATOM_CHARS:
        raise invalid("prefix is longer than a module name can be")
    return value.encode()


class CodeService:
    def __init__(self, deps: Deps) -> None:
        self.calls = NodeCalls(deps.manager)

    async def ListModules(
        self, request: pb.ListModulesRequest, context: Context
    ) -> pb.ListModulesResponse:
        opts = {
            Atom("limit"): validate.limit(request.limit, "limit", 1000, MAX_MODULES),
            Atom("prefix"): _prefix(request.prefix),
            Atom("only_old_code"): request.only_old_code,
            Atom("timeout_ms"): 10000,
        }
        reply = await self.calls.ops(request.node, OPS, "modules", [opts], 10.0)
        return pb.ListModulesResponse(
            modules=[
                pb.ModuleInfo(
                    name=text(m.get("name")),
                    md5=text(m.get("md5")),
                    old_code=m.get("old_code") is True,
                    path=text(m.get("path")),
                )
                for m in reply.get("modules", [])
            ],
            total=_int(reply.get("total")),
            matching=_int(reply.get("matching")),
        )

    async def SoftPurge(
        self, request: pb.SoftPurgeRequest, context: Context
    ) -> pb.SoftPurgeResponse:
        target: bytes | Atom = (
            validate.atom(request.module, "module").encode() if request.module else Atom("all")
        )
        reply = await self.calls.ops(
            request.node, OPS, "soft_purge", [target, {Atom("timeout_ms"): 30000}], 30.0
        )
        return pb.SoftPurgeResponse(
            purged=[text(m) for m in reply.get("purged", [])],
            in_use=[text(m) for m in reply.get("in_use", [])],
        )

    async def DiffModules(
        self, request: pb.DiffModulesRequest, context: Context
    ) -> pb.DiffModulesResponse:
        members = self.calls.family(request.family)
        limit = validate.limit(request.limit, "limit", 1000, MAX_MODULES)
        opts = {
            Atom("limit"): MAX_MODULES,
            Atom("prefix"): _prefix(request.prefix),
            Atom("timeout_ms"): 10000,
        }

        async def md5s(node: str) -> dict[str, str]:
            reply = await self.calls.ops(node, OPS, "modules", [opts], 10.0)
            return {text(m.get("name")): text(m.get("md5")) for m in reply.get("modules", [])}

        tables, failures = await self.calls.on_family(members, md5s)
        unavailable = {node: str(f) for node, f in failures.items()}
        nodes = sorted(tables)
        names = sorted(set().union(*tables.values())) if tables else []
        differences = []
        identical = 0
        for name in names:
            versions = {node: tables[node].get(name, "") for node in nodes}
            if len(set(versions.values())) > 1:
                differences.append(pb.ModuleDiff(module=name, md5=versions))
            else:
                identical += 1
        return pb.DiffModulesResponse(
            nodes=nodes,
            unavailable=unavailable,
            differences=differences[:limit],
            identical=identical,
        )
