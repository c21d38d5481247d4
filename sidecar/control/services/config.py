"""``beamside.v1.Config``: application env on a node; global parameters of a family.

A *global* parameter (``app.key``) must hold the same value on every node
of its family: the alarm checks compare it at every collect
(``global_config_missing`` / ``global_config_inconsistent``).  ``MarkGlobal``
adds one at run time; ``SetGlobal`` sets the value on every up node of the
family and marks it global.

Secrets: every value shown goes through the one rule (:mod:`sidecar.redact`)
- a key naming a secret shows only its marker, secrets inside a value (PEM
blocks, URL passwords, nested secret keys) theirs - except in ``GetEnv`` with
``reveal_secrets``, which needs the operator role, asks the agent for clear
values (``reveal => true``) and is audited.  ``SetEnv``/``SetGlobal`` show
the previous and new values redacted too, and never quote back a value that
did not parse when its key names a secret.
"""

from __future__ import annotations

from typing import Any

import grpc

from sidecar.alarms.catalogue import GlobalParam
from sidecar.control import validate
from sidecar.control.auth import REVEAL_ROLE, require_role
from sidecar.control.base import Context, Deps, NodeCalls, OpsModule
from sidecar.control.errors import RpcFailure, invalid, text
from sidecar.control.gen.beamside.v1 import config_pb2 as pb
from sidecar.erldist.term import Atom
from sidecar.redact import is_secret_key, marker, redact_named, redact_text

OPS: OpsModule = "beamside_ops_env"  # erl_agents/beamside_ops_env.erl

MAX_VALUE_BYTES = 65536


def _value(text_value: str) -> bytes:
    if not text_value.strip():
        raise invalid('value is required (an Erlang term, e.g. 42, info or <<"text">>)')
    data = text_value.encode()
    if len(data) > MAX_VALUE_BYTES:
        raise invalid(f"value is longer than {MAX_VALUE_BYTES} bytes")
    return data


def _label(value: str, field: str) -> str:
    if value and (len(value) > 128 or not all(c.isalnum() or c in "_.-" for c in value)):
        raise invalid(f"{field} must be 1-128 letters, digits, '_', '.' or '-'")
    return value


class ConfigService:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.calls = NodeCalls(deps.manager)

    async def GetEnv(self, request: pb.GetEnvRequest, context: Context) -> pb.GetEnvResponse:
        reveal = request.reveal_secrets
        if reveal:
            require_role(REVEAL_ROLE, "reveal_secrets")
        app = validate.atom(request.app, "app").encode()
        key: bytes | Atom = (
            validate.atom(request.key, "key").encode() if request.key else Atom("all")
        )
        opts = {Atom("reveal"): True} if reveal else {}
        reply = await self.calls.ops(request.node, OPS, "get_env", [app, key, opts], 5.0)
        return pb.GetEnvResponse(
            app=text(reply.get("app")),
            loaded=reply.get("loaded") is True,
            entries=[_entry(e, reveal) for e in reply.get("entries", [])],
        )

    async def _set(self, node: str, app: str, key: str, value: bytes, persistent: bool) -> Any:
        opts = {Atom("persistent"): persistent}
        try:
            return await self.calls.ops(
                node, OPS, "set_env", [app.encode(), key.encode(), value, opts], 6.0
            )
        except RpcFailure as exc:
            raise _unquoted(exc, app, key, value) from None

    async def SetEnv(self, request: pb.SetEnvRequest, context: Context) -> pb.SetEnvResponse:
        app = validate.atom(request.app, "app")
        key = validate.atom(request.key, "key")
        reply = await self._set(request.node, app, key, _value(request.value), request.persistent)
        previous = reply.get("previous")
        return pb.SetEnvResponse(
            previous=redact_named(key, text(previous)),
            was_set=isinstance(previous, bytes),
            value=redact_named(key, text(reply.get("value"))),
        )

    def _globals(self) -> pb.MarkGlobalResponse:
        return pb.MarkGlobalResponse(
            globals=[
                pb.GlobalParameter(app=p.app, key=p.key, family=p.family or "")
                for p in self.deps.checker.global_params
            ]
        )

    async def MarkGlobal(
        self, request: pb.MarkGlobalRequest, context: Context
    ) -> pb.MarkGlobalResponse:
        app = validate.atom(request.app, "app")
        key = validate.atom(request.key, "key")
        family = _label(request.family, "family")
        self.deps.checker.mark_global(GlobalParam(app, key, family or None))
        return self._globals()

    async def SetGlobal(
        self, request: pb.SetGlobalRequest, context: Context
    ) -> pb.SetGlobalResponse:
        members = self.calls.family(request.family)
        app = validate.atom(request.app, "app")
        key = validate.atom(request.key, "key")
        value = _value(request.value)
        results, failures = await self.calls.on_family(
            members, lambda node: self._set(node, app, key, value, request.persistent)
        )
        out: list[pb.NodeResult] = []
        printed = ""
        for status in members:
            if (failure := failures.get(status.node)) is not None:
                out.append(pb.NodeResult(node=status.node, ok=False, error=str(failure)))
            else:
                result = results[status.node]
                printed = redact_named(key, text(result.get("value")))
                previous = redact_named(key, text(result.get("previous")))
                out.append(pb.NodeResult(node=status.node, ok=True, previous=previous))
        if failures and len(failures) == len(members):
            # The same refusal everywhere (a value that does not parse, say): say so.
            first = failures[members[0].node]
            if len({f.code for f in failures.values()}) == 1:
                raise RpcFailure(first.code, f"on every node of the family: {first}")
        self.deps.checker.mark_global(GlobalParam(app, key, request.family))
        return pb.SetGlobalResponse(results=out, value=printed)

    async def DiffConfig(
        self, request: pb.DiffConfigRequest, context: Context
    ) -> pb.DiffConfigResponse:
        members = self.calls.family(request.family)
        apps: list[bytes] | Atom = (
            [validate.atom(request.app, "app").encode()] if request.app else Atom("all")
        )

        async def dump(node: str) -> dict[tuple[str, str], tuple[Any, str]]:
            reply = await self.calls.ops(node, OPS, "env_dump", [apps, {}], 10.0)
            return {
                (text(app), text(k)): (v.get("hash"), text(v.get("text")))
                for app, env in reply.items()
                for k, v in env.items()
            }

        envs, failures = await self.calls.on_family(members, dump)
        unavailable = {node: str(f) for node, f in failures.items()}
        nodes = sorted(envs)
        keys = sorted(set().union(*envs.values())) if envs else []
        differences = []
        for app_key in keys:
            seen = {node: envs[node].get(app_key) for node in nodes}
            if len({v[0] if v is not None else None for v in seen.values()}) > 1:
                differences.append(
                    pb.ConfigDiff(
                        app=app_key[0],
                        key=app_key[1],
                        values={
                            n: (redact_named(app_key[1], v[1]) if v is not None else "")
                            for n, v in seen.items()
                        },
                    )
                )
        return pb.DiffConfigResponse(nodes=nodes, unavailable=unavailable, differences=differences)


def _entry(entry: Any, reveal: bool) -> pb.EnvEntry:
    """An env entry as shown: redacted (whatever the agent did) unless revealed."""
    key = text(entry.get("key"))
    value = text(entry.get("value"))
    if reveal:
        return pb.EnvEntry(key=key, value=value)
    shown = redact_named(key, value)
    return pb.EnvEntry(
        key=key, value=shown, redacted=entry.get("redacted") is True or shown != value
    )


def _unquoted(exc: RpcFailure, app: str, key: str, value: bytes) -> RpcFailure:
    """A refusal of ``set_env`` that never quotes the value back: the agent's
    parse error may show part of it, which for a secret key is the secret."""
    value_text = value.decode("utf-8", "replace").strip()
    if exc.code is grpc.StatusCode.INVALID_ARGUMENT and is_secret_key(key):
        return RpcFailure(
            exc.code,
            f"set_env: the value for {app}.{key} is not an Erlang term "
            f"(not quoted back: the key names a secret; value {marker(value_text)})",
        )
    message = redact_text(exc.message)
    if len(value_text) >= 4 and value_text in message:
        message = message.replace(value_text, marker(value_text))
    return RpcFailure(exc.code, message)
