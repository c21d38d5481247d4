"""The simulated nodes of bench/bench_scale.py stay believable to the real daemon.

Replies are recorded from a real OTP 25 node running the current agents
(tests/support/fake_nodes.py), 20 fakes serve them, and ``beamside run``
attaches to all of them, collects, and reports them up with their VM series.
Any rpc the daemon makes that the recording does not hold is counted by the
fakes and fails this test: then :func:`record` must learn it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.daemon_proc import BeamsideProcess, write_config
from tests.support.fake_nodes import FakeCluster, record
from tests.support.nodes import ErlangNode

FAKES = 20


def test_daemon_manages_fake_nodes(
    otp25_node: ErlangNode,
    cookie: str,
    epmd_port: int,
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    recording = asyncio.run(record(cookie, otp25_node.name, epmd_port=epmd_port))
    assert recording.otp_release == "25"
    assert recording.collect_variants()  # at least the plain tick
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o400)
    with FakeCluster(recording, cookie, count=FAKES) as cluster:
        config, port = write_config(
            tmp_path / "beamside.yaml",
            [],
            cookie_file=cookie_file,
            interval="1s",
            extra_targets=[{"nodes": cluster.names, "cookie_file": str(cookie_file)}],
        )
        proc = BeamsideProcess(
            config, port, tmp_path, env={"ERL_EPMD_PORT": str(cluster.epmd_port)}
        ).start()
        beamside_procs.append(proc)

        def all_up() -> bool:
            up = {labels["node"]: v for _, labels, v in proc.samples("beamside_node_up")}
            return len(up) == FAKES and all(v == 1.0 for v in up.values())

        proc.wait_until(all_up, 30, f"{FAKES} fake nodes up")
        first = {
            labels["node"]: v
            for _, labels, v in proc.samples("beamside_collect_last_success_timestamp_seconds")
        }
        collects = cluster.stats.collects
        proc.wait_until(
            lambda: cluster.stats.collects >= collects + 2 * FAKES, 15, "two more ticks each"
        )

        def advanced() -> bool:
            now = {
                labels["node"]: v
                for _, labels, v in proc.samples("beamside_collect_last_success_timestamp_seconds")
            }
            return set(now) == set(cluster.names) and all(now[n] > first[n] for n in now)

        proc.wait_until(advanced, 10, "every fake's last success to advance")
        errors = proc.samples("beamside_collect_errors_total")
        assert sum(v for _, _, v in errors) == 0, errors
        processes = {labels["node"]: v for _, labels, v in proc.samples("erlang_vm_processes")}
        assert set(processes) == set(cluster.names)
        assert all(v > 10 for v in processes.values())
        stats = cluster.stats
        assert stats.handshakes == FAKES  # one connection each, never lost
        assert stats.rpcs["code:atomic_load"] == FAKES  # a fresh node gets the agents
        assert stats.rpcs["beamside_agent:attach"] == FAKES
        assert stats.cookie_refused == 0
        assert not stats.unknown, f"rpcs the recording does not hold: {dict(stats.unknown)}"
        assert proc.terminate() == 0  # a clean detach: every agent module deleted
        assert stats.rpcs["beamside_agent:detach"] == FAKES
        assert all(not node.loaded for node in cluster.server.nodes)  # type: ignore[union-attr]
