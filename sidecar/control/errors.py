"""One exception for every refusal, carrying the gRPC status it becomes.

Servicers raise :class:`RpcFailure`; the dispatcher (``server.py``) turns it
into ``context.abort(code, message)`` and into the audit record.  The helpers
map what the distribution layer and the agent answer to statuses:

* unknown node -> ``NOT_FOUND``; node not up / connection lost -> ``UNAVAILABLE``
* the node did not answer in time -> ``DEADLINE_EXCEEDED``
* ``{error, {Kind, Message}}`` from a ``beamside_ops_*`` module -> the status of ``Kind``
"""

from __future__ import annotations

from typing import Any

import grpc

from sidecar.agents import terms
from sidecar.erldist.term import Atom


class RpcFailure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid(message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.UNAVAILABLE, message)


def precondition(message: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, message)


_AGENT_KINDS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "internal": grpc.StatusCode.INTERNAL,
}


def text(value: Any) -> str:
    """An agent value as ``str`` (:func:`sidecar.agents.terms.text`), ``undefined`` as ``""``."""
    return "" if value == "undefined" else terms.text(value)


def agent_reply(reply: Any, what: str) -> Any:
    """The ``V`` of ``{ok, V}``; :class:`RpcFailure` for ``{error, {Kind, Msg}}``."""
    if type(reply) is tuple and len(reply) == 2:
        tag, body = reply
        if tag == "ok":
            return body
        if tag == "error":
            if type(body) is tuple and len(body) == 2 and isinstance(body[0], Atom):
                code = _AGENT_KINDS.get(str(body[0]), grpc.StatusCode.INTERNAL)
                return _raise(code, f"{what}: {text(body[1]) or repr(body[1])}")
            return _raise(grpc.StatusCode.INTERNAL, f"{what}: {body!r}")
    return _raise(grpc.StatusCode.INTERNAL, f"{what}: unexpected reply {reply!r:.200}")


def _raise(code: grpc.StatusCode, message: str) -> Any:
    raise RpcFailure(code, message)
