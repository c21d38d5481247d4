"""Fixtures of the real-application tests.

``real_app`` (session scope, one parameter per application) starts each
application ONCE per test session; pytest orders the tests so that all the
tests of one application run while it is up, and stops it before starting the
next one. Tests take ``app`` (function scope), which restarts the application
if an earlier test brought it down (the failure of that test says why).

``plain_families`` is the set of metric families beamside exports for a plain
OTP 25 node, measured once per session, to compare each application with.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.realapps.apps import APP_KINDS, AppKind, AppNode, Probe, RealApp, launcher
from tests.realapps.beamside_run import Beamside
from tests.support.nodes import Epmd, ErlangNode

# Seconds each application took to start / stop in this session (printed at the end).
TIMINGS: list[tuple[str, str, float]] = []


@dataclass
class RunningApp:
    kind: AppKind
    launcher: RealApp
    node: AppNode
    probe: Probe
    workdir: Path
    restarts: int = 0
    beamsides: list[Beamside] = field(default_factory=list)

    def ensure_running(self) -> None:
        """Restart the application (and its probe) if it is down."""
        if self.launcher.running() and self.probe.alive():
            return
        self.probe.stop()
        self.launcher.stop()
        self.restarts += 1
        self.node = self.launcher.start()
        TIMINGS.append((self.kind, f"restart #{self.restarts}", self.node.start_seconds))
        self.probe = self.launcher.probe(self.workdir)

    def beamside(self, *, loki_url: str | None = None, name: str = "rt") -> Beamside:
        """A started ``beamside run`` on this node (killed at teardown of ``app``)."""
        proc = Beamside(self.node, self.workdir / "beamside", loki_url=loki_url, name=name)
        self.beamsides.append(proc)
        return proc.start()

    def kill_beamsides(self) -> None:
        """Detach every beamside still running (SIGTERM), so the next test starts clean."""
        for proc in self.beamsides:
            proc.detach()
        self.beamsides.clear()

    def is_up(self) -> bool:
        return self.launcher.running() and self.probe.alive()


@pytest.fixture(scope="session", params=APP_KINDS)
def real_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    kind: AppKind = request.param
    workdir = tmp_path_factory.mktemp(f"realapp-{kind}")
    app = launcher(kind)
    node = app.start()
    TIMINGS.append((kind, "start", node.start_seconds))
    running = RunningApp(kind, app, node, app.probe(workdir), workdir)
    try:
        yield running
    finally:
        running.kill_beamsides()
        running.probe.stop()
        started = time.monotonic()
        app.stop()
        TIMINGS.append((kind, "stop", time.monotonic() - started))


@pytest.fixture
def app(real_app: RunningApp) -> Iterator[RunningApp]:
    real_app.ensure_running()
    try:
        yield real_app
    finally:
        real_app.kill_beamsides()


@dataclass
class PlainTarget:
    name: str
    epmd_port: int
    cookie_file: Path


def _cookie_file(workdir: Path, cookie: str) -> Path:
    path = workdir / "cookie"
    path.write_text(cookie + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def plain_families(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Metric families of a plain OTP 25 node (short name, as the applications)."""
    workdir = tmp_path_factory.mktemp("plain")
    with Epmd(log_path=workdir / "epmd.log") as epmd:
        node = ErlangNode(
            "otp25", longnames=False, epmd_port=epmd.port, log_dir=workdir / "node"
        ).start()
        try:
            proc = Beamside(
                PlainTarget(node.name, epmd.port, _cookie_file(workdir, node.cookie)),
                workdir / "beamside",
                name="plain",
            ).start()
            try:
                proc.wait_attached(collects=2)
                return set(proc.families())
            finally:
                proc.detach()
        finally:
            node.kill()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach the tails of the application's logs and of beamside's stderr."""
    report = yield
    running = getattr(item, "funcargs", {}).get("app")
    if report.failed and report.when == "call" and isinstance(running, RunningApp):
        tails = []
        for path in running.node.log_files:
            with contextlib.suppress(OSError):
                tails.append(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}")
        for proc in running.beamsides:
            tails.append(f"--- beamside {proc.config.name}\n{proc.stderr()[-4000:]}")
        report.sections.append(("real application logs", "\n".join(tails)))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "real applications: start/stop seconds")
        for kind, what, seconds in TIMINGS:
            terminalreporter.write_line(f"{kind:10} {what:12} {seconds:6.1f}")
