"""The launchers themselves: each application listens on loopback only, is
registered in its private EPMD (never the system one on 4369), and serves
what it is for."""

from __future__ import annotations

import socket
import time

import httpx

from tests.realapps.apps import listening
from tests.realapps.conftest import RunningApp
from tests.support.nodes import epmd_names

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return True


def test_loopback_only_and_private_epmd(app: RunningApp) -> None:
    node = app.node
    sockets = listening(node.os_pid)
    assert sockets, f"no listening socket found for OS pid {node.os_pid}"
    exposed = [s for s in sockets if s[0] not in LOOPBACK]
    assert not exposed, f"{node.kind} listens beyond loopback: {exposed}"
    assert node.epmd_port != 4369
    alive = node.name.split("@")[0]
    names = epmd_names(node.epmd_port)
    assert alive in names, names
    assert ("127.0.0.1", names[alive]) in sockets, (names[alive], sockets)
    assert not app.launcher.dir.is_relative_to("/var"), app.launcher.dir
    assert all(p.is_relative_to(node.workdir) for p in node.log_files), node.log_files


def test_application_serves(app: RunningApp) -> None:
    node = app.node
    if node.kind == "rabbitmq":
        assert _connects(node.ports["amqp"])
        metrics = httpx.get(f"http://127.0.0.1:{node.ports['prometheus']}/metrics", timeout=10)
        assert metrics.status_code == 200 and "erlang_vm_process_count" in metrics.text
    elif node.kind == "ejabberd":
        assert _connects(node.ports["c2s"]) and _connects(node.ports["mqtt"])
        admin = httpx.get(f"http://127.0.0.1:{node.ports['http']}/admin/", timeout=10)
        assert admin.status_code == 401, admin.status_code  # asks for credentials
        assert app.probe.eval("ejabberd:is_loaded()") == "true"
    elif node.kind == "yaws":
        page = httpx.get(f"http://127.0.0.1:{node.ports['http']}/", timeout=10)
        assert page.status_code == 200 and "yaws here" in page.text
    else:
        deadline = time.monotonic() + 5
        while (hits := int(app.probe.eval("'Elixir.Shop':hits()"))) == 0:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert hits > 0, "the Ticker counts hits in the Agent every second"
        assert app.probe.eval("is_pid(whereis('Elixir.Shop.TaskSupervisor'))") == "true"
    assert (
        app.probe.eval(f"lists:keymember({node.main_app}, 1, application:which_applications())")
        == "true"
    )
