"""Bearer-token authentication and role checks, as a server interceptor.

Every ``beamside.v1`` method needs a role (:data:`METHOD_ROLES`; a method
missing from the table needs ``admin``).  The token comes as
``authorization: Bearer <token>`` metadata:

* no token, a malformed header or an unknown token -> ``UNAUTHENTICATED``
* a known token whose role is below the method's -> ``PERMISSION_DENIED``

Health checks and server reflection need no token (probes and ``grpcurl``
discovery; neither reveals anything about the nodes).  Without a token file
every caller is :data:`~sidecar.control.config.ANONYMOUS` (admin): the
config only allows that on loopback.

Some refusals depend on the request, and are the servicer's
(:func:`require_role`): ``GetEnv`` with ``reveal_secrets`` needs
:data:`REVEAL_ROLE` (operator) and is audited even though it only reads
(:func:`is_audited`); ``ReadTable`` of a table that holds credentials needs
:data:`CREDENTIAL_TABLE_ROLE` (admin) - see ``services/tables.py``.  What a
viewer may see is redacted by the servicers (:mod:`sidecar.redact`).

A refused call to a mutating method is audited (who tried what); the calls
that pass are audited by the dispatcher with their result.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from grpc import aio

from .config import ANONYMOUS, Identity, Role
from .errors import RpcFailure
from .identity import current_caller

PACKAGE = "beamside.v1"

# /beamside.v1.Service/Method -> the least role that may call it.
METHOD_ROLES: Mapping[str, Role] = {
    f"/{PACKAGE}.{name}": role
    for name, role in {
        "Nodes/ListNodes": Role.VIEWER,
        "Nodes/GetNode": Role.VIEWER,
        "Nodes/AddNode": Role.OPERATOR,
        "Nodes/RemoveNode": Role.OPERATOR,
        "Processes/ListProcesses": Role.VIEWER,
        "Processes/Top": Role.VIEWER,
        "Nodes/ApplicationTree": Role.VIEWER,
        "Ports/ListPorts": Role.VIEWER,
        "Memory/Allocators": Role.VIEWER,
        "Processes/GetProcess": Role.VIEWER,
        "Processes/TerminateProcess": Role.OPERATOR,
        "Processes/GarbageCollect": Role.OPERATOR,
        "Processes/TerminateShells": Role.OPERATOR,
        "Tables/ListTables": Role.VIEWER,
        "Tables/ReadTable": Role.OPERATOR,  # rows are data; credential tables: admin
        "Code/ListModules": Role.VIEWER,
        "Code/SoftPurge": Role.OPERATOR,
        "Code/DiffModules": Role.VIEWER,
        "Config/GetEnv": Role.VIEWER,
        "Config/SetEnv": Role.OPERATOR,
        "Config/MarkGlobal": Role.OPERATOR,
        "Config/SetGlobal": Role.OPERATOR,
        "Config/DiffConfig": Role.VIEWER,
        "Eval/Evaluate": Role.ADMIN,
        "Alarms/ListAlarms": Role.VIEWER,
        "Alarms/Acknowledge": Role.OPERATOR,
        "Alarms/Clear": Role.OPERATOR,
        "Alarms/Comment": Role.OPERATOR,
        "Metrics/Live": Role.VIEWER,
        "Trace/Start": Role.OPERATOR,  # audited by the service: start and end
    }.items()
}


#: GetEnv with reveal_secrets (secrets in clear, audited).
REVEAL_ROLE = Role.OPERATOR
#: ReadTable of a table that holds credentials (services/tables.py).
CREDENTIAL_TABLE_ROLE = Role.ADMIN


def required_role(method: str) -> Role | None:
    """The role ``method`` needs; None for methods outside ``beamside.v1``."""
    if not method.startswith(f"/{PACKAGE}."):
        return None
    return METHOD_ROLES.get(method, Role.ADMIN)


def is_mutating(method: str) -> bool:
    """Methods that change something (every one above viewer): always audited."""
    role = required_role(method)
    return role is not None and role > Role.VIEWER


def is_audited(method: str, request: object) -> bool:
    """Calls the dispatcher audits: every mutating one, and a read that
    reveals secrets (``GetEnv`` with ``reveal_secrets``)."""
    if is_mutating(method):
        return True
    return (
        method == f"/{PACKAGE}.Config/GetEnv" and getattr(request, "reveal_secrets", False) is True
    )


def require_role(needed: Role, what: str) -> Identity:
    """The caller of the request being served, if at least ``needed``;
    ``PERMISSION_DENIED`` saying ``what`` needs it otherwise."""
    caller = current_caller()
    if caller.role < needed:
        raise RpcFailure(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{what} needs the {needed} role; {caller.name} has {caller.role}",
        )
    return caller


class AuthError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Authenticator:
    """Token -> :class:`Identity`; ``None`` tokens means no auth (all anonymous)."""

    def __init__(self, tokens: Mapping[str, Identity] | None) -> None:
        # Keyed by digest, compared in constant time: the look-up does not
        # leak how much of a guessed token was right.
        self._by_digest: dict[bytes, Identity] | None = (
            None if tokens is None else {_digest(t): i for t, i in tokens.items()}
        )

    @property
    def enabled(self) -> bool:
        return self._by_digest is not None

    def identify(self, metadata: Any) -> Identity:
        """The caller of a request with this metadata, or :class:`AuthError`."""
        if self._by_digest is None:
            return ANONYMOUS
        header = _header(metadata, "authorization")
        if header is None:
            raise AuthError(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing token: send 'authorization: Bearer <token>' metadata",
            )
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(
                grpc.StatusCode.UNAUTHENTICATED,
                "malformed authorization metadata: expected 'Bearer <token>'",
            )
        wanted = _digest(token.strip())
        found: Identity | None = None
        for digest, identity in self._by_digest.items():
            if hmac.compare_digest(digest, wanted):
                found = identity
        if found is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        return found

    def authorize(self, method: str, metadata: Any) -> Identity:
        """The caller, if allowed to call ``method``; :class:`AuthError` otherwise."""
        identity = self.identify(metadata)
        needed = required_role(method)
        if needed is not None and identity.role < needed:
            raise AuthError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} needs the {needed} role; "
                f"{identity.name} has {identity.role}",
            )
        return identity


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _header(metadata: Any, key: str) -> str | None:
    for item in metadata or ():
        k, v = item[0], item[1]
        if k == key:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return None


Denied = Callable[[str, Identity | None, AuthError], None]


class AuthInterceptor(aio.ServerInterceptor):
    """Refuses calls without the role their method needs, before any work."""

    def __init__(self, authenticator: Authenticator, on_denied: Denied | None = None) -> None:
        self._auth = authenticator
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if required_role(method) is None or handler is None:
            return handler
        try:
            self._auth.authorize(method, handler_call_details.invocation_metadata)
        except AuthError as exc:
            if self._on_denied is not None and is_mutating(method):
                identity: Identity | None = None
                if exc.code is grpc.StatusCode.PERMISSION_DENIED:
                    identity = self._auth.identify(handler_call_details.invocation_metadata)
                self._on_denied(method, identity, exc)
            return _refusal(handler, exc)
        return handler


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any], exc: AuthError
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that only aborts with ``exc``."""

    async def abort_unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(exc.code, exc.message)

    async def abort_stream(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(exc.code, exc.message)
        yield  # pragma: no cover - makes this an async generator

    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            abort_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        abort_unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
