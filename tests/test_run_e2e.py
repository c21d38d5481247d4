"""``beamside run`` end to end: real nodes, real Prometheus, real promtool."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NodeFactory
from tests.support.daemon_proc import BeamsideProcess, write_config
from tests.support.nodes import ErlangNode
from tests.support.prometheus import Prometheus, promtool_check_metrics

RESIDUE = (
    '{[M || {M, _} <- code:all_loaded(), lists:prefix("beamside", atom_to_list(M))],'
    ' [N || N <- registered(), lists:prefix("beamside", atom_to_list(N)),'
    "  N =/= beamside_test_control],"
    " erlang:system_monitor(), nodes(hidden)}."
)
NO_RESIDUE = "{[],[],undefined,[]}"


@pytest.fixture
def cookie_file(tmp_path: Path, cookie: str) -> Path:
    path = tmp_path / "cookie"
    path.write_text(cookie + "\n")
    path.chmod(0o600)
    return path


def start_beamside(
    started: list[BeamsideProcess],
    tmp_path: Path,
    nodes: list[ErlangNode],
    cookie_file: Path,
    *,
    extra_targets: Sequence[dict[str, Any]] = (),
    discover: str = "none",
    extra: dict[str, Any] | None = None,
) -> BeamsideProcess:
    config, port = write_config(
        tmp_path / "beamside.yaml",
        nodes,
        cookie_file=cookie_file,
        extra_targets=extra_targets,
        discover=discover,
        extra=extra,
    )
    proc = BeamsideProcess(config, port, tmp_path)
    started.append(proc)
    return proc.start()


def test_prometheus_scrapes_two_runtimes(
    node_factory: NodeFactory,
    cookie_file: Path,
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    otp25 = node_factory("otp25")
    otp28 = node_factory("otp28")
    beamside = start_beamside(beamside_procs, tmp_path, [otp25, otp28], cookie_file)
    beamside.wait_until(beamside.ready, 30, "/readyz 200")
    beamside.wait_until(
        lambda: len([s for s in beamside.samples("erlang_vm_processes")]) == 2,
        30,
        "both nodes collected",
    )

    prometheus = Prometheus(tmp_path, [beamside.address]).start()
    try:
        names = {otp25.name, otp28.name}
        for metric in ("beamside_node_up", "erlang_vm_processes", "erlang_vm_memory_bytes"):
            selector = f'{metric}{{cluster="test"}}'
            if metric == "erlang_vm_memory_bytes":
                selector = f'{metric}{{cluster="test", kind="total"}}'
            result = prometheus.wait_for(selector, lambda r: len(r) == 2, timeout=30)
            assert {r["metric"]["node"] for r in result} == names, result
            for series in result:
                assert series["metric"]["family"], series
                assert float(series["value"][1]) > 0
        up = prometheus.query("beamside_node_up")
        assert all(float(r["value"][1]) == 1 for r in up)
        assert prometheus.targets_health() == ["up"]
    finally:
        prometheus.stop()

    lint = promtool_check_metrics(beamside.exposition())
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # SIGTERM: a clean exit, and nothing of beamside left on either node.
    assert beamside.terminate() == 0
    for node in (otp25, otp28):
        assert node.eval(RESIDUE) == NO_RESIDUE


def test_node_killed_and_restarted(
    node_factory: NodeFactory,
    cookie_file: Path,
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    node = node_factory("otp25")
    other = node_factory("otp28")
    beamside = start_beamside(beamside_procs, tmp_path, [node, other], cookie_file)
    beamside.wait_until(
        lambda: beamside.value("beamside_node_up", node=node.name) == 1, 30, "node up"
    )
    attaches = beamside.value("beamside_node_attaches_total", node=node.name)
    assert attaches == 1

    node.kill()
    took = beamside.wait_until(
        lambda: beamside.value("beamside_node_up", node=node.name) == 0, 10, "node_up 0"
    )
    assert took < 5, f"node down noticed after {took:.1f}s"
    assert beamside.value("beamside_node_up", node=other.name) == 1

    node.restart()
    took = beamside.wait_until(
        lambda: beamside.value("beamside_node_up", node=node.name) == 1, 10, "node_up back to 1"
    )
    assert took < 5, f"node return noticed after {took:.1f}s"
    assert beamside.value("beamside_node_attaches_total", node=node.name) == 2
    # The agents were loaded again on the fresh node.
    beamside.wait_until(
        lambda: "beamside_agent" in node.eval("code:all_loaded()."), 5, "agent reloaded"
    )


def test_wrong_cookie_on_one_target(
    node_factory: NodeFactory,
    cookie_file: Path,
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    good = node_factory("otp25")
    stranger = node_factory("otp25", cookie="another-cookie-entirely")
    wrong = tmp_path / "wrong-cookie"
    wrong.write_text("not-the-right-one\n")
    wrong.chmod(0o600)  # erl refuses a cookie others can read
    beamside = start_beamside(
        beamside_procs,
        tmp_path,
        [good],
        cookie_file,
        extra_targets=[{"nodes": [stranger.name], "cookie_file": str(wrong)}],
    )
    beamside.wait_until(
        lambda: (
            beamside.value("beamside_node_state", node=stranger.name, state="cookie_refused") == 1
        ),
        30,
        "cookie_refused state",
    )
    assert beamside.value("beamside_node_up", node=good.name) == 1
    assert beamside.value("beamside_node_up", node=stranger.name) == 0
    assert (
        beamside.value("beamside_node_connect_failures_total", node=stranger.name, reason="cookie")
        or 0
    ) >= 1
    errors = [
        r
        for r in beamside.log_records()
        if r.get("node") == stranger.name and r.get("level") == "error"
    ]
    assert errors and "cookie" in errors[0]["msg"], beamside.stderr()
    assert "not-the-right-one" not in beamside.stderr()


def test_discover_connected_follows_the_mesh(
    node_factory: NodeFactory,
    cookie_file: Path,
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    seed = node_factory("otp25")
    beamside = start_beamside(beamside_procs, tmp_path, [seed], cookie_file, discover="connected")
    beamside.wait_until(
        lambda: beamside.value("beamside_node_up", node=seed.name) == 1, 30, "seed up"
    )
    joiner = node_factory("otp28")
    assert seed.eval(f"net_kernel:connect_node('{joiner.name}').") == "true"
    beamside.wait_until(
        lambda: beamside.value("beamside_node_up", node=joiner.name) == 1,
        30,
        "joiner discovered and attached",
    )
    # beamside itself stays hidden: the mesh does not see it.
    assert seed.eval("nodes().") == f"['{joiner.name}']"
    # The joiner leaves the mesh for good: it is dropped.
    joiner.stop()
    beamside.wait_until(
        lambda: beamside.value("beamside_node_up", node=joiner.name) is None,
        30,
        "joiner dropped",
    )


def test_series_budget_from_the_config_caps_a_nodes_plugin_series(
    node_factory: NodeFactory,
    cookie_file: Path,
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    """``metrics.series_budget`` reaches the exporter: a node with 40 mnesia
    tables (2 series each) under a budget of 30 keeps 30 plugin series and
    the rest is counted per family in ``beamside_series_dropped_total``."""
    node = node_factory("otp25")
    node.eval(
        "ok = mnesia:start(), [{atomic, ok} = mnesia:create_table(list_to_atom("
        '"budget_t" ++ integer_to_list(I)), []) || I <- lists:seq(1, 40)], ok.'
    )
    beamside = start_beamside(
        beamside_procs, tmp_path, [node], cookie_file, extra={"metrics": {"series_budget": 30}}
    )
    beamside.wait_until(
        lambda: beamside.value("beamside_series_dropped_total", node=node.name), 30, "drops"
    )
    body = beamside.exposition().decode()
    tables = [line for line in body.splitlines() if "budget_t" in line]
    scalars = [
        line
        for line in body.splitlines()
        if line.startswith("erlang_mnesia_")
        and "table=" not in line
        and not line.startswith("erlang_mnesia_system_events")  # core section, no budget
    ]
    assert len(tables) + len(scalars) <= 30 and tables, (len(tables), scalars)
    dropped = {
        labels["metric_family"]: value
        for _, labels, value in beamside.samples("beamside_series_dropped_total")
    }
    assert set(dropped) >= {"erlang_mnesia_tablewise_size"}, dropped
    lint = promtool_check_metrics(body.encode())
    assert lint.returncode == 0, lint.stdout + lint.stderr
