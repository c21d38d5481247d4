"""The daemon's collector thresholds (sidecar/gc_policy.py): applied by
`beamside run` only, following the number of nodes."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar import gc_policy
from sidecar.cli import EXIT_USAGE


@pytest.fixture
def thresholds() -> Iterator[None]:
    """The test process's own thresholds, put back after."""
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_first_threshold_follows_the_nodes_within_bounds() -> None:
    assert gc_policy.threshold_for(0) == gc_policy.FIRST_MIN
    assert gc_policy.threshold_for(50) == gc_policy.FIRST_MIN  # small fleets: cycles found soon
    assert gc_policy.threshold_for(5_000) == 5_000 * gc_policy.PER_NODE
    assert gc_policy.threshold_for(10_000) == gc_policy.FIRST_MAX
    assert gc_policy.threshold_for(10**6) == gc_policy.FIRST_MAX


async def test_keep_tuned_follows_the_count_until_cancelled(thresholds: None) -> None:
    nodes = [10]
    task = asyncio.create_task(gc_policy.keep_tuned(lambda: nodes[0], every=0.01))
    await asyncio.sleep(0.05)
    assert gc.get_threshold() == (gc_policy.FIRST_MIN, *gc_policy.OLDER)
    nodes[0] = 4_000
    await asyncio.sleep(0.05)
    assert gc.get_threshold() == (4_000 * gc_policy.PER_NODE, *gc_policy.OLDER)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_tune_at_start_in_the_daemons_own_process() -> None:
    code = (
        "import gc; from sidecar import gc_policy as p; p.tune_at_start(); "
        "print(gc.get_threshold() == (p.threshold_for(0), *p.OLDER), gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "True"]


def test_run_tunes_the_collector_before_the_daemon_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`beamside run` tunes (and asks the daemon to keep tuning) before
    anything is built: checked with the port taken, so the daemon stops at
    its first step, after the tuning."""
    from sidecar import daemon, own_logging

    tuned: list[bool] = []
    asked: list[bool] = []
    monkeypatch.setattr(gc_policy, "tune_at_start", lambda: tuned.append(True))
    # the test process keeps its own logging
    monkeypatch.setattr(own_logging, "setup_json_logging", lambda: None)
    real_init = daemon.Daemon.__init__

    def init(self: daemon.Daemon, *args: object, gc_tuning: bool = False, **kwargs: object) -> None:
        asked.append(gc_tuning)
        real_init(self, *args, gc_tuning=gc_tuning, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon.Daemon, "__init__", init)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "beamside.yaml"
        config.write_text(
            f'cluster: t\nhttp: {{listen: "127.0.0.1:{port}"}}\ngrpc: {{listen: "127.0.0.1:0"}}\n'
            'targets: [{nodes: ["a@127.0.0.1"], cookie: "c"}]\n'
        )
        from sidecar.cli import main

        assert main(["run", "--config", str(config)]) == EXIT_USAGE
    assert tuned == [True] and asked == [True]
