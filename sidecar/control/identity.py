"""The caller of the request being served (set by the dispatcher in ``server.py``)."""

from __future__ import annotations

from contextvars import ContextVar

from .config import ANONYMOUS, Identity

CALLER: ContextVar[Identity] = ContextVar("beamside_grpc_caller", default=ANONYMOUS)


def current_caller() -> Identity:
    return CALLER.get()
