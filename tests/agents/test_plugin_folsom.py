"""The folsom plugin against real folsom 0.8 (Debian's erlang-folsom, with
bear, on the OTP 25 node's code path): one metric of each type, as the
section, the exposition (promtool-clean) and the series budget see them;
nothing when folsom does not run."""

from __future__ import annotations

from sidecar import agents
from sidecar.erldist.node import LocalNode
from sidecar.exporter.exposition import TEXT, ExpositionCache, render_text
from sidecar.exporter.vm_metrics import folsom_family
from tests.agents.conftest import (  # noqa: F401  (local: the fixture)
    local,
    snapshot,
)
from tests.conftest import NodeFactory
from tests.support.prometheus import promtool_check_metrics

METRICS = (
    "{ok, _} = application:ensure_all_started(folsom),"
    " ok = folsom_metrics:new_counter(requests), folsom_metrics:notify({requests, {inc, 5}}),"
    ' ok = folsom_metrics:new_gauge(<<"queue.depth">>),'
    ' ok = folsom_metrics:notify(<<"queue.depth">>, 42),'
    " ok = folsom_metrics:new_meter({shop, orders}),"
    " [ok = folsom_metrics:notify({shop, orders}, 1) || _ <- [1, 2, 3]],"
    " ok = folsom_metrics:new_spiral(logins), ok = folsom_metrics:notify(logins, 2),"
    " ok = folsom_metrics:new_histogram(latency),"
    " [ok = folsom_metrics:notify(latency, X) || X <- lists:seq(1, 100)],"
    " ok = folsom_metrics:new_duration(db_call),"
    " ok = folsom_metrics:notify(db_call, timer_start),"
    " ok = folsom_metrics:notify(db_call, timer_end),"
    " ok"
)


def lines(body: str, family: str) -> list[str]:
    return [x for x in body.splitlines() if x.startswith(family + "{")]


async def test_every_folsom_type_exported_under_its_own_name(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    node.eval(METRICS)
    info = await agents.ensure_loaded(local, node.name)
    assert info.plugins["folsom"] is True
    snap = await snapshot(local, node)
    folsom = snap.folsom
    assert folsom is not None and not folsom.truncated
    assert folsom.version is not None and folsom.version.startswith("0.8.2")  # Debian: +dfsg
    by_name = {m.name: m for m in folsom.metrics}
    assert {n: m.type for n, m in by_name.items()} == {
        "requests": "counter",
        "queue.depth": "gauge",
        "{shop,orders}": "meter",
        "logins": "spiral",
        "latency": "histogram",
        "db_call": "duration",
    }
    assert by_name["requests"].fields == {"value": 5.0}
    assert by_name["{shop,orders}"].fields["count"] == 3.0
    assert by_name["logins"].fields == {"count": 2.0, "one": 2.0}
    latency = by_name["latency"]
    assert latency.percentiles == ((50, 50.0), (75, 75.0), (90, 90.0), (95, 95.0), (99, 99.0),
                                   (999, 100.0))  # fmt: skip
    assert (latency.fields["n"], latency.fields["min"], latency.fields["max"]) == (100, 1, 100)
    assert by_name["db_call"].fields["count"] == 1.0

    body = ExpositionCache().exposition([snap], TEXT).decode()
    assert folsom_family("{shop,orders}") == "folsom_shop_orders"
    (requests,) = lines(body, "folsom_requests")
    assert 'folsom_name="requests"' in requests and requests.endswith(" 5.0")
    (depth,) = lines(body, "folsom_queue_depth")
    assert 'folsom_name="queue.depth"' in depth and depth.endswith(" 42.0")
    (orders,) = lines(body, "folsom_shop_orders_total")
    assert 'folsom_name="{shop,orders}"' in orders and orders.endswith(" 3.0")
    assert len(lines(body, "folsom_shop_orders_rate")) == 3  # 1m, 5m, 15m
    assert lines(body, "folsom_logins_last_minute")[0].endswith(" 2.0")
    ps = {x.split('percentile="')[1].split('"')[0]: x for x in lines(body, "folsom_latency")}
    assert sorted(ps, key=float) == ["50", "75", "90", "95", "99", "99.9"]
    assert ps["99.9"].endswith(" 100.0") and ps["50"].endswith(" 50.0")
    assert lines(body, "folsom_latency_samples")[0].endswith(" 100.0")
    assert lines(body, "folsom_db_call_events_total")[0].endswith(" 1.0")
    lint = promtool_check_metrics(body.encode())
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # Under the node's series budget like any plugin: the rest is counted.
    budgeted = render_text(snap, None, series_budget=5)
    assert sum(budgeted.dropped.values()) > 0
    assert any(name.startswith("folsom_") for name in budgeted.dropped)


async def test_nothing_without_folsom(
    node_factory: NodeFactory,
    local: LocalNode,  # noqa: F811
) -> None:
    node = node_factory("otp25")
    info = await agents.ensure_loaded(local, node.name)
    assert info.plugins["folsom"] is False
    snap = await snapshot(local, node)
    assert snap.folsom is None and "folsom" not in snap.plugin_names
