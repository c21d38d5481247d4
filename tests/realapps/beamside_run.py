"""The real ``beamside run`` daemon attached to one application node.

Like :class:`tests.support.daemon_proc.BeamsideProcess` (whose reading helpers it
inherits), with the application's private EPMD in the daemon's environment,
a Loki double and the gRPC port in its config, and grpcurl to drive it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon_proc import BeamsideProcess
from tests.support.nodes import free_port, grpcurl_path

_counter = itertools.count()


class Target(Protocol):
    """What beamside needs of a node (an :class:`~tests.realapps.apps.AppNode`)."""

    @property
    def name(self) -> str: ...

    @property
    def epmd_port(self) -> int: ...

    @property
    def cookie_file(self) -> Path: ...


@dataclass
class GrpcReply:
    code: int
    stdout: str
    stderr: str

    @property
    def status(self) -> str:
        """The gRPC status name grpcurl printed ("OK" on success)."""
        if self.code == 0:
            return "OK"
        for line in self.stderr.splitlines():
            if line.strip().startswith("Code:"):
                return line.split(":", 1)[1].strip()
        return f"exit {self.code}: {self.stderr.strip()[:300]}"

    @property
    def message(self) -> str:
        for line in self.stderr.splitlines():
            if line.strip().startswith("Message:"):
                return line.split(":", 1)[1].strip()
        return ""

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else {}


class Beamside(BeamsideProcess):
    """``beamside run`` for one node, usually an :class:`AppNode` (1 s collects)."""

    def __init__(
        self,
        node: Target,
        workdir: Path,
        *,
        loki_url: str | None = None,
        name: str = "rt",
    ) -> None:
        self.node = node
        n = next(_counter)
        workdir.mkdir(parents=True, exist_ok=True)
        self.grpc_port = free_port()
        http_port = free_port()
        config: dict[str, Any] = {
            "cluster": "realapps",
            "node_name": f"beamside-{name}-{os.getpid()}-{n}@localhost",
            "targets": [{"nodes": [node.name], "cookie_file": str(node.cookie_file)}],
            "intervals": {"metrics": "1s"},
            "http": {"listen": f"127.0.0.1:{http_port}"},
            "grpc": {"listen": f"127.0.0.1:{self.grpc_port}"},
            "logs": {"level": "warning"},
            # Both VM-wide switches on, so the residue check sees them turned off again.
            "agents": {"scheduler_wall_time": True, "microstate_accounting": True},
        }
        if loki_url is not None:
            config["loki"] = {"url": loki_url, "batch_wait": "200ms"}
        self.node_name = str(config["node_name"])
        path = workdir / f"beamside-{name}-{n}.yaml"
        path.write_text(yaml.safe_dump(config))
        logs = workdir / f"beamside-{name}-{n}"
        logs.mkdir(exist_ok=True)
        super().__init__(path, http_port, logs, env={"ERL_EPMD_PORT": str(node.epmd_port)})

    def last_collect(self) -> float:
        """Unix time of the last successful collect on the node (0 before the first)."""
        return (
            self.value("beamside_collect_last_success_timestamp_seconds", node=self.node.name)
            or 0.0
        )

    def wait_attached(self, collects: int = 2, timeout: float = 60) -> float:
        """Wait until the node is up and ``collects`` collects went through; returns seconds."""
        started = time.monotonic()
        self.wait_until(
            lambda: self.value("beamside_node_up", node=self.node.name) == 1, timeout, "node up"
        )
        seen: set[float] = set()

        def enough() -> bool:
            if (ts := self.last_collect()) > 0:
                seen.add(ts)
            return len(seen) > collects

        self.wait_until(enough, timeout, f"{collects} collects on {self.node.name}")
        return time.monotonic() - started

    def families(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Metric family name -> samples (labels, value) of the last exposition."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(self.exposition().decode()):
            out[family.name] = [(dict(s.labels), float(s.value)) for s in family.samples]
        return out

    def grpcurl(
        self, method: str, data: dict[str, Any] | None = None, timeout: float = 60
    ) -> GrpcReply:
        args = [grpcurl_path(), "-plaintext", "-max-time", str(int(timeout))]
        if data is not None:
            args += ["-d", json.dumps(data)]
        args += [f"127.0.0.1:{self.grpc_port}", method]
        res = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            env={**os.environ, "NO_COLOR": "1"},
        )
        return GrpcReply(res.returncode, res.stdout, res.stderr)

    def local_name(self) -> str:
        """beamside's own (hidden) node name."""
        return self.node_name

    def detach(self) -> None:
        """SIGTERM (a clean detach), SIGKILL if it does not exit in 30 s."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def sigkill(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=10)

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None
