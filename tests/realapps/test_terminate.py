"""TerminateProcess never stops a node or an application.

On each real application, asking to terminate the main application's master,
its top supervisor (and on RabbitMQ ``rabbit``, the name of the issue) is
refused with FAILED_PRECONDITION; the process and the node stay up. An
ordinary worker spawned on the node can still be terminated (first, while
the node is surely up).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.realapps.apps import TOP_SUPERVISOR
from tests.realapps.beamside_run import Beamside
from tests.realapps.conftest import RunningApp

METHOD = "beamside.v1.Processes/TerminateProcess"
EXTRA_PROTECTED = {"rabbitmq": ["rabbit"]}


@pytest.fixture(scope="module")
def operator(real_app: RunningApp) -> Iterator[tuple[RunningApp, Beamside]]:
    real_app.ensure_running()
    proc = Beamside(real_app.node, real_app.workdir / "beamside", name="ops")
    try:
        proc.start()
        proc.wait_attached(collects=1)
        yield real_app, proc
    finally:
        proc.detach()


def _alive(app: RunningApp, pid_or_name: str) -> bool:
    if pid_or_name.startswith("<"):
        expr = f'is_process_alive(list_to_pid("{pid_or_name}"))'
    else:
        expr = f"is_pid(whereis('{pid_or_name}'))"
    return app.probe.eval(expr, timeout=10) == "true"


def test_terminate_an_ordinary_worker(operator: tuple[RunningApp, Beamside]) -> None:
    app, beamside = operator
    pid = app.probe.eval(
        "W = erlang:spawn(timer, sleep, [infinity]),"
        " true = group_leader(whereis(user), W),"
        " pid_to_list(W)"
    ).strip('"')
    reply = beamside.grpcurl(METHOD, {"node": app.node.name, "pid": pid})
    assert reply.status == "OK", f"{reply.status} {reply.stderr}"
    assert reply.json.get("terminated") is True, reply.json
    assert not _alive(app, pid)
    assert app.is_up()


def test_terminate_refused_on_application_processes(
    operator: tuple[RunningApp, Beamside],
) -> None:
    app, beamside = operator
    main_app = app.node.main_app
    master = app.probe.eval(f"pid_to_list(application_controller:get_master({main_app}))")
    targets = [
        *EXTRA_PROTECTED.get(app.kind, []),
        TOP_SUPERVISOR[app.kind],
        master.strip('"'),
    ]
    problems: list[str] = []
    for target in targets:
        assert _alive(app, target), f"{target} is not running on {app.node.name} to begin with"
        reply = beamside.grpcurl(METHOD, {"node": app.node.name, "pid": target})
        if reply.status != "FailedPrecondition":
            problems.append(f"{target}: {reply.status} {reply.stdout.strip()} {reply.message}")
        elif not reply.message:
            problems.append(f"{target}: refused without saying why")
        time.sleep(0.5)  # a halting node takes a moment to go
        if not app.is_up():
            problems.append(f"{target}: the node went down ({app.node.name})")
            break
        if not _alive(app, target):
            problems.append(f"{target}: no longer running")
    assert not problems, f"TerminateProcess on {app.kind}:\n  " + "\n  ".join(problems)
