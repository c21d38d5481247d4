"""Alarms end to end: real nodes misbehave, a real Alertmanager shows the alert,
the fix resolves it.  beamside runs as `beamside run` with a 1 s interval, so
the target is: visible within 1 s + 5 s of the condition (node_down: 5 s)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import NodeFactory
from tests.support.alertmanager import Alertmanager
from tests.support.daemon_proc import BeamsideProcess
from tests.support.nodes import ErlangNode, free_port

TARGET = 1.0 + 5.0  # one metrics interval + 5 s


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path / "am").start()
    yield am
    am.stop()


def run_beamside(
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
    nodes: list[ErlangNode],
    am: Alertmanager,
    *,
    alarms: dict[str, Any] | None = None,
    global_config: list[dict[str, str]] | None = None,
) -> BeamsideProcess:
    cookie_file = tmp_path / "cookie"
    cookie_file.write_text(nodes[0].cookie)
    cookie_file.chmod(0o600)  # erl refuses a cookie others can read
    port = free_port()
    config: dict[str, Any] = {
        "cluster": "e2e",
        "node_name": "beamside-alarms@127.0.0.1",
        "targets": [
            {"nodes": [n.name for n in nodes], "cookie_file": str(cookie_file), "family": "app"}
        ],
        "intervals": {"metrics": "1s"},
        "http": {"listen": f"127.0.0.1:{port}"},
        "grpc": {"listen": f"127.0.0.1:{free_port()}"},
        "alertmanager": {"urls": [am.url], "resend_interval": "10s"},
        "alarms": alarms or {},
    }
    if global_config:
        config["global_config"] = global_config
    path = tmp_path / "beamside.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = BeamsideProcess(path, port, tmp_path)
    beamside_procs.append(proc)
    proc.start()
    proc.wait_until(proc.ready, 30, "ready")
    proc.wait_until(
        lambda: all(proc.value("beamside_node_up", node=n.name) == 1 for n in nodes), 30, "up"
    )
    return proc


def wait(check: Callable[[], Any], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


def firing(am: Alertmanager, **labels: str) -> list[dict[str, Any]]:
    return [a for a in am.find(**labels) if a.get("status", {}).get("state") == "active"]


def assert_raised(am: Alertmanager, timeout: float = TARGET, **labels: str) -> dict[str, Any]:
    took = wait(lambda: firing(am, **labels), timeout, f"alert {labels}")
    alert = firing(am, **labels)[0]
    assert took <= timeout, f"{labels} took {took:.1f}s"
    return alert


def assert_resolved(am: Alertmanager, timeout: float = TARGET, **labels: str) -> None:
    wait(lambda: not firing(am, **labels), timeout, f"resolution of {labels}")


def test_message_queue_node_down_and_limits(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    node = node_factory("otp25")
    atoms = int(node.eval("erlang:system_info(atom_count)."))
    atom_limit = int(node.eval("erlang:system_info(atom_limit)."))
    tables = int(node.eval("erlang:system_info(ets_count)."))
    ets_limit = int(node.eval("erlang:system_info(ets_limit)."))
    alarms = {
        "process_message_queue": {"minor": 1000, "major": 50000},
        "atom_limit": {"minor": (atoms + 5000) / atom_limit},
        "ets_limit": {"minor": (tables + 100) / ets_limit},
    }
    beamside = run_beamside(beamside_procs, tmp_path, [node], alertmanager, alarms=alarms)

    # 100,000 messages to one process, then drained.
    node.eval(
        "register(slow, spawn(fun Loop() -> receive drain -> "
        "(fun F() -> receive _ -> F() after 0 -> ok end end)(), Loop() end end)), "
        "[slow ! {msg, N} || N <- lists:seq(1, 100000)], ok."
    )
    alert = assert_raised(alertmanager, alertname="process_message_queue", node=node.name)
    assert alert["labels"]["severity"] == "major"
    assert alert["labels"]["family"] == "app" and alert["labels"]["cluster"] == "e2e"
    assert "100000 messages" in alert["annotations"]["cause"]
    assert "slow" in alert["annotations"]["additional_info"]
    node.eval("slow ! drain, ok.")
    assert_resolved(alertmanager, alertname="process_message_queue", node=node.name)

    # ETS tables past the threshold, then their owner exits.
    node.eval(
        "register(owner, spawn(fun() -> [ets:new(t, []) || _ <- lists:seq(1, 150)], "
        "receive stop -> ok end end)), ok."
    )
    assert_raised(alertmanager, alertname="ets_limit", node=node.name)
    node.eval("owner ! stop, ok.")
    assert_resolved(alertmanager, alertname="ets_limit", node=node.name)

    # Atoms past the threshold: only a restart gets rid of them.
    node.eval(
        '[list_to_atom("beamside_e2e_" ++ integer_to_list(N)) || N <- lists:seq(1, 6000)], ok.'
    )
    assert_raised(alertmanager, alertname="atom_limit", node=node.name)

    # The node goes down (node_down within 5 s) and comes back fresh.
    node.stop()
    assert_raised(alertmanager, 5.0, alertname="node_down", node=node.name)
    assert beamside.value("beamside_alarm_active", alarm="node_down", node=node.name) == 1
    node.start()
    assert_resolved(alertmanager, 10.0, alertname="node_down", node=node.name)
    assert_resolved(alertmanager, 10.0, alertname="atom_limit", node=node.name)


def compile_module(tmp_path: Path, name: str, version: int) -> bytes:
    src = tmp_path / f"v{version}" / f"{name}.erl"
    src.parent.mkdir(exist_ok=True)
    src.write_text(f"-module({name}).\n-export([v/0]).\nv() -> {version}.\n")
    subprocess.run(["erlc", "-o", str(src.parent), str(src)], check=True)
    return (src.parent / f"{name}.beam").read_bytes()


def load_expr(name: str, beam: bytes) -> str:
    return f'code:load_binary({name}, "{name}.erl", <<{",".join(str(b) for b in beam)}>>).'


def test_code_and_application_consistency(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    a, b = node_factory("otp25"), node_factory("otp25")
    # Module md5s are re-read every `window` (default 60 s) and on code changes
    # the counts show; a reload-and-purge within one tick needs the window.
    # Old code counts once it is `age` old (default 10 min): 1 s here.
    run_beamside(
        beamside_procs,
        tmp_path,
        [a, b],
        alertmanager,
        alarms={"different_module_versions": {"window": "1s"}, "old_code": {"age": "1s"}},
    )
    v1 = compile_module(tmp_path, "e2e_probe_mod", 1)
    v2 = compile_module(tmp_path, "e2e_probe_mod", 2)

    # old_code: the module loaded twice on one node, then soft-purged.
    a.eval(load_expr("e2e_probe_mod", v1))
    a.eval(load_expr("e2e_probe_mod", v2))
    assert_raised(alertmanager, alertname="old_code", node=a.name)
    assert a.eval("code:soft_purge(e2e_probe_mod).") == "true"
    assert_resolved(alertmanager, alertname="old_code", node=a.name)

    # Different module versions across the family (a has v2, b gets v1), then equal.
    b.eval(load_expr("e2e_probe_mod", v1))
    alert = assert_raised(alertmanager, alertname="different_module_versions", family="app")
    assert "e2e_probe_mod" in alert["annotations"]["cause"]
    b.eval(load_expr("e2e_probe_mod", v2))
    b.eval("code:soft_purge(e2e_probe_mod).")
    assert_resolved(alertmanager, alertname="different_module_versions", family="app")

    # Different application versions, then the same.
    def start_app(node: ErlangNode, vsn: str) -> None:
        node.eval(
            "application:stop(beamside_e2e_app), application:unload(beamside_e2e_app), "
            f'ok = application:load({{application, beamside_e2e_app, [{{vsn, "{vsn}"}}, '
            "{modules, []}, {registered, []}, {applications, [kernel, stdlib]}]}), "
            "ok = application:start(beamside_e2e_app)."
        )

    start_app(a, "1.0")
    start_app(b, "2.0")
    alert = assert_raised(alertmanager, alertname="different_application_versions", family="app")
    assert "beamside_e2e_app" in alert["annotations"]["cause"]
    start_app(b, "1.0")
    assert_resolved(alertmanager, alertname="different_application_versions", family="app")


def test_global_config_sasl_and_startup_files(
    node_factory: NodeFactory,
    alertmanager: Alertmanager,
    beamside_procs: list[BeamsideProcess],
    tmp_path: Path,
) -> None:
    sys_config = tmp_path / "sys.config"
    sys_config.write_text("[{kernel, []}].\n")
    a = node_factory("otp25", extra_args=["-config", str(sys_config)])
    b = node_factory("otp25")
    a.eval("application:ensure_all_started(sasl).")
    run_beamside(
        beamside_procs,
        tmp_path,
        [a, b],
        alertmanager,
        alarms={"corrupt_startup_file": {"window": "2s"}},
        global_config=[{"app": "beamside_e2e", "key": "pool_size"}],
    )

    # A global parameter set on one node only, then different, then equal.
    a.eval("application:set_env(beamside_e2e, pool_size, 10).")
    assert_raised(alertmanager, alertname="global_config_missing", family="app")
    b.eval("application:set_env(beamside_e2e, pool_size, 20).")
    assert_raised(alertmanager, alertname="global_config_inconsistent", family="app")
    assert_resolved(alertmanager, alertname="global_config_missing", family="app")
    b.eval("application:set_env(beamside_e2e, pool_size, 10).")
    assert_resolved(alertmanager, alertname="global_config_inconsistent", family="app")

    # A SASL alarm set on the node is forwarded, and cleared with it.
    a.eval('alarm_handler:set_alarm({beamside_e2e_alarm, "disk on fire"}).')
    alert = assert_raised(alertmanager, alertname="beamside_e2e_alarm", node=a.name)
    assert "disk on fire" in alert["annotations"]["cause"]
    a.eval("alarm_handler:clear_alarm(beamside_e2e_alarm).")
    assert_resolved(alertmanager, alertname="beamside_e2e_alarm", node=a.name)

    # sys.config corrupted under the running node: it would not restart.
    sys_config.write_text("[{kernel, [}.\n")
    alert = assert_raised(alertmanager, 8.0, alertname="corrupt_startup_file", node=a.name)
    assert "sys.config" in alert["annotations"]["cause"]
    sys_config.write_text("[{kernel, []}].\n")
    assert_resolved(alertmanager, 8.0, alertname="corrupt_startup_file", node=a.name)
