"""``beamside run`` as a real process for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.nodes import ErlangNode, free_port

Sample = tuple[str, dict[str, str], float]


def write_config(
    path: Path,
    nodes: Sequence[ErlangNode],
    *,
    cookie_file: Path,
    interval: str = "1s",
    cluster: str = "test",
    extra_targets: Sequence[dict[str, Any]] = (),
    discover: str = "none",
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, int]:
    """A config for ``nodes`` sharing one cookie file (``extra``: more
    top-level sections); returns (path, http port)."""
    port = free_port()
    targets: list[dict[str, Any]] = []
    if nodes:
        targets.append(
            {
                "nodes": [n.name for n in nodes],
                "cookie_file": str(cookie_file),
                "discover": discover,
            }
        )
    targets.extend(extra_targets)
    config = {
        "cluster": cluster,
        "node_name": f"beamside-e2e-{os.getpid()}@127.0.0.1",
        "targets": targets,
        "intervals": {"metrics": interval},
        "http": {"listen": f"127.0.0.1:{port}"},
        "grpc": {"listen": f"127.0.0.1:{free_port()}"},
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump(config))
    return path, port


class BeamsideProcess:
    def __init__(
        self, config: Path, port: int, log_dir: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self._env = None if env is None else {**os.environ, **env}
        self.url = f"http://127.0.0.1:{port}"
        self.address = f"127.0.0.1:{port}"
        self._stderr_path = log_dir / "beamside.stderr"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Self:
        if self._stderr_path.exists():  # an earlier beamside's log: kept for a post-mortem
            with self._stderr_path.with_suffix(".earlier").open("ab") as earlier:
                earlier.write(self._stderr_path.read_bytes())
        stderr = self._stderr_path.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=self._env,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"beamside exited early:\n{self.stderr()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"beamside did not serve /healthz in {timeout}s:\n{self.stderr()}")

    @property
    def os_pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stderr(self) -> str:
        return self._stderr_path.read_text(errors="replace") if self._stderr_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.stderr().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"unparsed": line})
        return records

    def exposition(self) -> bytes:
        reply = httpx.get(f"{self.url}/metrics", timeout=10)
        reply.raise_for_status()
        return reply.content

    def samples(self, name: str) -> list[Sample]:
        found: list[Sample] = []
        for family in text_string_to_metric_families(self.exposition().decode()):
            for sample in family.samples:
                if sample.name == name:
                    found.append((sample.name, dict(sample.labels), float(sample.value)))
        return found

    def value(self, name: str, **labels: str) -> float | None:
        for _, sample_labels, value in self.samples(name):
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return value
        return None

    def wait_until(
        self, check: Callable[[], bool], timeout: float, what: str, poll: float = 0.2
    ) -> float:
        """Poll ``check``; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(poll)
        raise AssertionError(f"{what} not within {timeout}s; stderr:\n{self.stderr()[-3000:]}")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def terminate(self, timeout: float = 30) -> int:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
