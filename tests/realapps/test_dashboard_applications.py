"""The applications dashboard against real applications: every variable and
PromQL target of grafana_dashboards/beamside-applications.json run through a
real Prometheus, the way Grafana runs them, must return data.  Prometheus
scrapes two ``beamside run``: one attached to real RabbitMQ 3.10 (its AMQP
listener is a ranch listener), one to a plain OTP 25 node running Debian's
poolboy 1.5 (a pool of two workers) and folsom 0.8 (a meter and a
histogram).  tests/test_dashboards.py proves the other boards on plain nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.agents.conftest import load_source
from tests.realapps.beamside_run import Beamside
from tests.realapps.conftest import PlainTarget, RunningApp, _cookie_file
from tests.support.nodes import Epmd, ErlangNode
from tests.support.prometheus import Prometheus
from tests.test_dashboards import PromAPI, _escape_regex, substitute, targets, variables

pytestmark = pytest.mark.parametrize("real_app", ["rabbitmq"], indirect=True)
BOARD = Path(__file__).resolve().parents[2] / "grafana_dashboards" / "beamside-applications.json"

WORKER = [
    "-module(bs_dash_worker).",
    "-behaviour(gen_server).",
    "-export([start_link/1, init/1, handle_call/3, handle_cast/2]).",
    "start_link(_) -> gen_server:start_link(bs_dash_worker, [], []).",
    "init([]) -> {ok, #{}}.",
    "handle_call(_, _, S) -> {reply, ok, S}.",
    "handle_cast(_, S) -> {noreply, S}.",
]
LIBRARIES = (
    "{ok, _} = application:ensure_all_started(folsom),"
    " ok = folsom_metrics:new_meter(bs_dash_meter),"
    " ok = folsom_metrics:new_histogram(bs_dash_hist),"
    " [folsom_metrics:notify(bs_dash_meter, 1) || _ <- lists:seq(1, 50)],"
    " [folsom_metrics:notify(bs_dash_hist, N) || N <- lists:seq(1, 50)],"
    " {ok, _} = application:ensure_all_started(poolboy),"
    " Me = self(),"
    " spawn(fun() -> {ok, P} = poolboy:start_link([{name, {local, bs_dash_pool}},"
    " {worker_module, bs_dash_worker}, {size, 2}, {max_overflow, 0}], []),"
    " Me ! {pool, P}, receive stop -> ok end end),"
    " receive {pool, _} -> ok after 5000 -> timeout end."
)


def test_every_query_of_the_applications_board_returns_data(
    app: RunningApp, tmp_path: Path
) -> None:
    board = json.loads(BOARD.read_text())
    app.probe.eval(
        "Q = rabbit_misc:r(<<\"/\">>, queue, <<\"bs_dash_q\">>),"
        " {_, _} = rabbit_amqqueue:declare(Q, false, false, [], none, <<\"beamside-test\">>),"
        " [ok = rabbit_basic:publish(rabbit_misc:r(<<\"/\">>, exchange, <<>>), <<\"bs_dash_q\">>,"
        " [], <<\"m\">>) || _ <- lists:seq(1, 3)], ok."
    )
    rabbit = app.beamside(name="dash")
    with Epmd(log_path=tmp_path / "epmd.log") as epmd:
        node = ErlangNode(
            "otp25", longnames=False, epmd_port=epmd.port, log_dir=tmp_path / "node"
        ).start()
        prometheus: Prometheus | None = None
        libraries: Beamside | None = None
        try:
            load_source(node, WORKER)
            assert node.eval(LIBRARIES) == "ok"
            libraries = Beamside(
                PlainTarget(node.name, epmd.port, _cookie_file(tmp_path, node.cookie)),
                tmp_path / "beamside",
                name="libs",
            ).start()
            rabbit.wait_attached(collects=2)
            libraries.wait_attached(collects=2)
            (tmp_path / "prom").mkdir()
            prometheus = Prometheus(tmp_path / "prom", [rabbit.address, libraries.address])
            prometheus.start()
            prometheus.wait_for("count(beamside_node_up == 1) == 2", timeout=30)
            api = PromAPI(prometheus)

            vs = variables(board)
            assert api.label_values(vs["cluster"]["query"]["query"]) == ["realapps"]
            scope = {"cluster": "realapps"}
            families = api.label_values(substitute(vs["family"]["query"]["query"], scope))
            scope["family"] = "(" + "|".join(_escape_regex(f) for f in families) + ")"
            nodes = api.label_values(substitute(vs["node"]["query"]["query"], scope))
            assert sorted(nodes) == sorted([app.node.name, node.name])
            values = {
                **scope,
                "node": "(" + "|".join(_escape_regex(n) for n in nodes) + ")",
                "__rate_interval": "30s",
                "__interval": "15s",
                "__range": "5m",
            }
            pending = {
                f"{p['title']!r} {t['refId']}: {expr}": (expr, bool(t.get("instant")))
                for p, t in targets(board, "prometheus")
                for expr in [substitute(t["expr"], values)]
            }
            assert len(pending) >= 25
            # rate() needs two samples in its window
            deadline = time.monotonic() + 40
            while pending:
                for key, (expr, instant) in list(pending.items()):
                    if api.series_count(expr, instant) > 0:
                        del pending[key]
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert not pending, "queries without data:\n" + "\n".join(pending)
        finally:
            if prometheus is not None:
                prometheus.stop()
            if libraries is not None:
                libraries.detach()
            node.kill()
