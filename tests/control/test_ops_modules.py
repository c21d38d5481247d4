"""Each service calls its own agent module, and the package ships it (no nodes needed)."""

from __future__ import annotations

from typing import get_args

from sidecar.agents import AGENT_MODULES
from sidecar.control.base import OpsModule
from sidecar.control.services import (
    code,
    config,
    eval,
    memory,
    nodes,
    ports,
    processes,
    tables,
    trace,
)


def test_every_service_calls_a_shipped_module_of_its_own() -> None:
    modules = set(get_args(OpsModule))
    assert modules <= set(AGENT_MODULES)
    # the shared helpers are no service's module
    assert "beamside_ops" in AGENT_MODULES and "beamside_ops" not in modules
    services = [code, config, eval, memory, nodes, ports, processes, tables, trace]
    # OPS, and APPS for the Nodes service's application trees: each module one service's
    used = [getattr(s, name) for s in services for name in ("OPS", "APPS") if hasattr(s, name)]
    assert sorted(used) == sorted(modules)
