"""/metrics from the per-snapshot text cache (sidecar/exporter/exposition.py).

The cached path must give the bytes prometheus_client gives today through
``collect()`` (``generate_latest`` for text 0.0.4, the OpenMetrics encoder for
OpenMetrics 1.0) for the same snapshots: on the recorded replies and their
error variants, after a node's snapshot changes and after a node goes away,
with odd label values, huge integers, NaN and infinities, on real nodes, with
the plugin series budget dropping samples; promtool accepts it; scrapes over
HTTP while snapshots are replaced are never torn; gzip decodes to the body.
"""

from __future__ import annotations

import difflib
import gzip
import itertools
import math
import random
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from typing import Any

import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from sidecar import agents
from sidecar.alarms.model import Alarm, AlarmKey, Severity
from sidecar.erldist.node import LocalNode
from sidecar.exporter import exposition as exposition_module
from sidecar.exporter import http as http_module
from sidecar.exporter.collector import BeamsideRegistry, build_registry
from sidecar.exporter.exposition import (
    OPENMETRICS,
    TEXT,
    Format,
    NodeText,
    generate,
    go_float,
    render_text,
)
from sidecar.exporter.http import MetricsServer
from sidecar.model import NodeSnapshot, NodeState, NodeStatus, decode_snapshot
from tests.support.golden import KINDS, RUNTIMES, golden_snapshot
from tests.support.nodes import ErlangNode
from tests.support.prometheus import promtool_check_metrics

FORMATS = [TEXT, OPENMETRICS, Format(True, "dots"), Format(False, "allow-utf-8")]
FORMAT_IDS = ["text", "openmetrics", "openmetrics-dots", "text-utf8"]
#: what Prometheus sends (scrape_protocols default of 2.x)
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
MAX_DIFF_LINES = 30


class Source:
    """A SnapshotSource the test mutates as the manager does (whole objects)."""

    def __init__(self, snaps: Sequence[NodeSnapshot], cluster: str = "c") -> None:
        self.cluster = cluster
        self.snapshots: dict[str, NodeSnapshot] = {s.node: s for s in snaps}

    def statuses(self) -> list[NodeStatus]:
        # last_success 0: no age series, so two renders of the same state are equal
        return [
            NodeStatus(s.node, s.family, NodeState.UP, agent_version=3, attaches=1)
            for s in list(self.snapshots.values())
        ]


def assert_same(got: bytes, expected: bytes, what: str) -> None:
    if got == expected:
        return
    diff = difflib.unified_diff(
        expected.decode().splitlines(),
        got.decode().splitlines(),
        "prometheus_client",
        "cached",
        lineterm="",
        n=1,
    )
    pytest.fail(f"{what}:\n" + "\n".join(islice(diff, MAX_DIFF_LINES)), pytrace=False)


def check(registry: BeamsideRegistry, fmt: Format, what: str = "") -> bytes:
    """The cached exposition, asserted equal to prometheus_client's of the same state."""
    cached = registry.exposition(fmt)
    assert_same(cached, generate(fmt, registry), what or str(fmt))
    return cached


def golden_all() -> list[NodeSnapshot]:
    return [golden_snapshot(name, kind) for name in RUNTIMES for kind in KINDS]


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_recorded_snapshots_render_prometheus_client_bytes(fmt: Format) -> None:
    snaps = golden_all()  # three runtimes, their section-error and misshapen variants
    registry = build_registry(Source(snaps), "t")
    first = check(registry, fmt, "cold")
    types = [line for line in first.split(b"\n") if line.startswith(b"# TYPE ")]
    assert len(types) == len(set(types)) > 120  # each family's header once
    assert b"section_error{" in first.replace(b"__", b"_")  # the dots escaping doubles _
    assert check(registry, fmt, "warm") == first
    # both formats from the same cached texts, each still exact
    other = Format(not fmt.openmetrics, fmt.escaping)
    check(registry, other, "other format after this one")
    assert first.endswith(b"# EOF\n") is fmt.openmetrics
    assert first.count(b"# EOF") == int(fmt.openmetrics)


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_a_changed_snapshot_is_rendered_again_and_a_removed_node_forgotten(fmt: Format) -> None:
    snaps = [golden_snapshot(name) for name in RUNTIMES]
    source = Source(snaps)
    registry = build_registry(source, "t")
    cache = registry.collector.cache
    before = check(registry, fmt)
    assert len(cache) == 3
    # the elixir node's next snapshot: its errors variant under its own name
    node = snaps[2].node
    changed = replace(golden_snapshot("elixir", "errors"), node=node, taken_at=2e9)
    source.snapshots[node] = changed
    after = check(registry, fmt, "after a change")
    assert after != before
    assert cache.node_text(changed, fmt) is cache.node_text(changed, fmt)  # kept
    # the otp25 node goes away: its series and its cache entry with it
    del source.snapshots[snaps[0].node]
    gone = check(registry, fmt, "after a removal")
    assert snaps[0].node.encode() not in gone
    assert len(cache) == 2
    # and a node that comes first now changes the family order
    source.snapshots = {changed.node: changed, snaps[1].node: snaps[1]}
    check(registry, fmt, "other node order")


def odd_snapshot() -> NodeSnapshot:
    """Label values with quotes, backslashes, newlines and braces, numbers
    beyond a float, NaN and infinities, in core and plugin sections."""
    snap = golden_snapshot("otp28")
    tables: dict[str, Any] = {
        't"quoted"': {"storage_type": "ram_copies", "memory_bytes": 2**70, "size": math.nan},
        "back\\slash\n": {"storage_type": "disc\ncopies", "memory_bytes": 1.5, "size": math.inf},
        "{brace}": {"storage_type": "x}", "memory_bytes": 10**400, "size": -math.inf},
        "é ünïcode ☃": {"storage_type": "", "memory_bytes": 123456789.0, "size": 2**63},
    }
    mnesia = {
        "is_running": "yes",
        "held_locks": 2**70,
        "lock_queue": 10**400,  # beyond a float: no sample
        "transactions": {"participants": math.nan, "coordinators": math.inf},
        "transaction_commits": -math.inf,
        "transaction_failures": 5e-324,
        "transaction_restarts": 1e22,
        "transaction_log_writes": 0.1 + 0.2,
        "db_nodes": -0.0,
        "running_db_nodes": True,
        "tables": tables,
    }
    areas = {
        "big": 2**80,
        "nan": math.nan,
        "inf": math.inf,
        "neg_inf": -math.inf,
        "huge": 10**400,
        "tiny": 5e-324,
        "e7": 1234567.0,
        "e8": 12345678.9,
        "neg": -123456789.0,
    }
    return replace(
        snap,
        node='odd"node\\x\ny@h',
        family="fam{1}",
        cluster='c"}\\',
        plugins={**snap.plugins, "mnesia": mnesia},
        plugin_names=tuple(sorted({*snap.plugin_names, "mnesia"})),
        trees={**snap.trees, "allocated_areas": areas},
    )


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_odd_label_values_huge_ints_nan_and_inf(fmt: Format) -> None:
    snaps = [odd_snapshot(), golden_snapshot("otp25")]
    body = check(build_registry(Source(snaps), "t"), fmt)
    for needle in (
        b'node="odd\\"node\\\\x\\ny@h"',
        b'family="fam{1}"',
        b'table="t\\"quoted\\""',
        b'table="back\\\\slash\\n"',
        b'table="{brace}"',
        "table=\"é ünïcode ☃\"".encode(),
        b"} NaN\n",
        b"} +Inf\n",
        b"} -Inf\n",
        b"} 1.2089258196146292e+24\n",  # 2**80
        b"} 5e-324\n",
        b"} 1.23456789e+08\n",
    ):
        assert needle in body, needle


def test_floats_are_written_as_prometheus_client_writes_them() -> None:
    rng = random.Random(15)
    values = [0.0, -0.0, 1.0, math.inf, -math.inf, math.nan, 1e16, 1.5e16, 123456.0, 1234567.0]
    values += [float(2**k) for k in range(0, 1024, 7)] + [-float(2**k) for k in range(0, 1024, 11)]
    values += [rng.uniform(-1e12, 1e12) for _ in range(2000)]
    values += [10 ** rng.uniform(-300, 300) for _ in range(2000)]
    values += [float(rng.randrange(10**9)) for _ in range(2000)]
    for v in values:
        assert go_float(v) == floatToGoString(v), v


class Alarms:
    def __init__(self, alarms: Sequence[Alarm]) -> None:
        self._alarms = list(alarms)

    def active(self) -> list[Alarm]:
        return self._alarms


def odd_families() -> list[Metric]:
    """What an extra provider may yield: shapes the fast path leaves to
    prometheus_client (histograms, ``_created``, timestamps, units) and plain ones."""
    hist = HistogramMetricFamily("x_push_seconds", "Push time.", labels=["sink"])
    hist.add_metric(["loki"], buckets=[("0.1", 3.0), ("+Inf", 5.0)], sum_value=0.7)
    created = CounterMetricFamily("x_batches", "Batches.", labels=["sink"], created=1.7e9)
    created.add_metric(["am"], 4, created=1.7e9)
    stamped = GaugeMetricFamily("x_last", "Stamped.", labels=["k"])
    stamped.add_metric(['v"\\\n'], 1.5, timestamp=1.7e9)
    unit = GaugeMetricFamily("x_spool_bytes", "Spool.\nSecond line \\ \"q\"", unit="bytes")
    unit.add_metric([], 2**60)
    info = InfoMetricFamily("x_build", "Build.", labels=["a"])
    info.add_metric(["1"], {"version": 'odd"v'})
    plain = CounterMetricFamily("x_sent", "Sent.", labels=["sink"])
    plain.add_metric(["loki"], 10)
    plain.add_metric(["am"], math.nan)
    empty = GaugeMetricFamily("x_empty", "No samples.", labels=["a"])
    return [hist, created, stamped, unit, info, plain, empty]


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_beamside_families_alarms_and_extra_providers(fmt: Format) -> None:
    snaps = [golden_snapshot("otp25"), odd_snapshot()]
    alarm = Alarm(
        AlarmKey("atom_limit", snaps[1].node),
        Severity.MAJOR,
        snaps[1].node,
        snaps[1].family,
        "c",
        "cause",
        "repair",
    )
    source = Source(snaps)
    registry = build_registry(
        source, 'v"1', alarms=Alarms([alarm]), extra=[odd_families, lambda: []]
    )
    body = check(registry, fmt)
    plain = body.replace(b"__", b"_")  # the dots escaping doubles every _
    assert b"beamside_alarm_active{" in plain
    assert b"x_push_seconds_bucket{" in plain
    # beamside's own families follow the node families, fresh at every scrape
    assert plain.index(b"# HELP beamside_build") > plain.index(b"# HELP erlang_vm_memory_bytes")
    source.statuses = lambda: []  # type: ignore[method-assign]
    assert b"beamside_node_up{" not in check(registry, fmt, "statuses gone")


# --------------------------------------------------------------------------- promtool


def test_promtool_accepts_the_cached_exposition() -> None:
    snaps = [*golden_all(), odd_snapshot()]
    registry = build_registry(Source(snaps), "t", series_budget=5)
    body = check(registry, TEXT)
    lint = promtool_check_metrics(body)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert b"beamside_series_dropped_total{" in body  # the budget's counter is linted too


# --------------------------------------------------------------------------- budget


def mnesia_snapshot(node: str, tables: int, taken_at: float = 1.7e9) -> NodeSnapshot:
    snap = golden_snapshot("otp25")
    mnesia = {
        "is_running": "yes",
        "held_locks": 1,
        "lock_queue": 0,
        "tables": {
            f"t{i:05d}": {"storage_type": "ram_copies", "memory_bytes": 100 + i, "size": i}
            for i in range(tables)
        },
    }
    return replace(
        snap,
        node=node,
        taken_at=taken_at,
        plugins={"mnesia": mnesia},
        plugin_names=("mnesia",),
    )


def samples(body: bytes, prefix: str) -> list[bytes]:
    return [line for line in body.split(b"\n") if line.startswith(prefix.encode())]


def dropped(body: bytes) -> dict[tuple[str, str], float]:
    """beamside_series_dropped_total samples: (node, metric_family) -> value."""
    out = {}
    for line in samples(body, "beamside_series_dropped_total{"):
        labels, value = line.rsplit(b" ", 1)
        parts = dict(p.split("=", 1) for p in labels.decode().split("{", 1)[1][:-1].split(","))
        out[(parts["node"].strip('"'), parts["metric_family"].strip('"'))] = float(value)
    return out


@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS], ids=["text", "openmetrics"])
def test_the_budget_drops_plugin_samples_and_counts_them(fmt: Format) -> None:
    # 1,500 tables: 4 scalars + 2 per table + the total = 3,005 plugin samples
    big = mnesia_snapshot("big@h", 1500)
    small = mnesia_snapshot("small@h", 10)
    source = Source([big, small])
    registry = build_registry(source, "t", series_budget=1000)
    body = check(registry, fmt)
    big_lines = [s for s in body.split(b"\n") if b'node="big@h"' in s]
    core_mnesia = b"erlang_mnesia_system_events"  # from the alarms section: no budget
    plugin = [s for s in big_lines if s.startswith(b"erlang_mnesia_")]
    assert len([s for s in plugin if not s.startswith(core_mnesia)]) == 1000
    assert len([s for s in plugin if s.startswith(core_mnesia)]) == 2
    # kept in render order: the scalars, then tables in order until the budget ends
    assert len(samples(body, 'erlang_mnesia_tablewise_memory_usage_bytes{cluster="c"')) == 498 + 10
    assert b'table="t00497"' in body and b'table="t00498"' not in body
    # core sections are not under the budget
    assert len([s for s in big_lines if s.startswith(b"erlang_vm_")]) == len(
        [s for s in body.split(b"\n") if b'node="small@h"' in s and s.startswith(b"erlang_vm_")]
    )
    counts = dropped(body)
    assert counts == {
        ("big@h", "erlang_mnesia_tablewise_memory_usage_bytes"): 1002.0,
        ("big@h", "erlang_mnesia_tablewise_size"): 1002.0,
        ("big@h", "erlang_mnesia_memory_usage_bytes"): 1.0,
    }
    assert sum(counts.values()) == 3005 - 1000
    # the same snapshot is counted once, however many scrapes and formats
    check(registry, fmt)
    check(registry, Format(not fmt.openmetrics))
    assert dropped(registry.exposition(fmt)) == counts
    # a new snapshot drops (and counts) again: a counter
    source.snapshots["big@h"] = mnesia_snapshot("big@h", 1500, taken_at=1.8e9)
    again = dropped(check(registry, fmt))
    assert again == {key: 2 * value for key, value in counts.items()}
    # the node goes away: so do its counts
    del source.snapshots["big@h"]
    assert dropped(check(registry, fmt)) == {}


def test_the_budget_counts_drops_seen_by_the_reference_path_too() -> None:
    source = Source([mnesia_snapshot("big@h", 600)])
    registry = build_registry(source, "t", series_budget=100)
    reference = generate(OPENMETRICS, registry)  # collect(): prometheus_client's objects
    assert dropped(reference) == {
        ("big@h", "erlang_mnesia_tablewise_memory_usage_bytes"): 600 - 48,
        ("big@h", "erlang_mnesia_tablewise_size"): 600 - 48,
        ("big@h", "erlang_mnesia_memory_usage_bytes"): 1,
    }
    assert registry.exposition(OPENMETRICS) == reference  # not counted twice
    unlimited = build_registry(source, "t", series_budget=10_000).exposition(OPENMETRICS)
    assert dropped(unlimited) == {}
    assert len(samples(unlimited, "erlang_mnesia_tablewise_size{")) == 600


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def served() -> Iterator[tuple[Source, MetricsServer]]:
    source = Source([golden_snapshot(name) for name in RUNTIMES])
    server = MetricsServer(build_registry(source, "t"), "127.0.0.1", 0)
    server.start()
    try:
        yield source, server
    finally:
        server.stop()


def scrape(url: str, accept: str = PROMETHEUS_ACCEPT, encoding: str = "") -> tuple[bytes, Any]:
    headers = {"Accept": accept}
    if encoding:
        headers["Accept-Encoding"] = encoding
    request = urllib.request.Request(url + "/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        return reply.read(), reply.headers


def test_prometheus_gets_openmetrics_and_gzip_decodes_to_the_same_body(
    served: tuple[Source, MetricsServer],
) -> None:
    _, server = served
    assert isinstance(server.registry, BeamsideRegistry)
    body, headers = scrape(server.url)
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert_same(body, generate(OPENMETRICS, server.registry), "OpenMetrics over HTTP")
    zipped, zheaders = scrape(server.url, encoding="gzip")
    assert zheaders["Content-Encoding"] == "gzip"
    assert len(zipped) < len(body) // 3
    assert gzip.decompress(zipped) == body
    # by ISA-L, a dependency on this machine's platform (pyproject.toml)
    assert http_module._gzip.__module__ == "isal.igzip"
    text, theaders = scrape(server.url, accept="text/plain")
    assert theaders["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert_same(text, generate(TEXT, server.registry), "text over HTTP")


def vm_part(body: bytes) -> bytes:
    """The node families (beamside's own start with beamside_build)."""
    cut = body.find(b"# HELP beamside_build")
    assert cut > 0, body[-300:]
    return body[:cut]


def test_concurrent_scrapes_while_snapshots_are_replaced_are_never_torn(
    served: tuple[Source, MetricsServer],
) -> None:
    source, server = served
    names = [f"n{i}@h" for i in range(4)]
    # two versions per node, with different values and different families
    versions = {
        name: (
            replace(golden_snapshot(RUNTIMES[i % 3]), node=name),
            replace(golden_snapshot(RUNTIMES[(i + 1) % 3], "errors"), node=name),
        )
        for i, name in enumerate(names)
    }
    extra = replace(golden_snapshot("otp28", "shapes"), node="extra@h")
    registry = server.registry
    assert isinstance(registry, BeamsideRegistry)
    expected: dict[bytes, str] = {}
    for choice in itertools.product((0, 1), repeat=len(names)):
        for with_extra in (False, True):
            snaps = [versions[n][c] for n, c in zip(names, choice, strict=True)]
            snaps += [extra] if with_extra else []
            ref = generate(OPENMETRICS, build_registry(Source(snaps), "t"))
            expected[vm_part(ref)] = f"{choice} extra={with_extra}"
    assert len(expected) == 32
    source.snapshots = {n: versions[n][0] for n in names}

    stop = threading.Event()
    replaced = 0

    def replacer() -> None:
        nonlocal replaced
        rng = random.Random(1)
        taken = 2e9
        while not stop.is_set():
            name = rng.choice(names)
            taken += 1
            # a new object each time, as the manager stores a new snapshot
            source.snapshots[name] = replace(versions[name][rng.randrange(2)], taken_at=taken)
            if rng.random() < 0.2:
                if "extra@h" in source.snapshots:
                    del source.snapshots["extra@h"]
                else:
                    source.snapshots["extra@h"] = replace(extra, taken_at=taken)
            replaced += 1
            time.sleep(0.0005)

    bodies: list[bytes] = []
    errors: list[BaseException] = []

    def scraper(count: int) -> None:
        try:
            for i in range(count):
                body, _ = scrape(server.url, encoding="gzip" if i % 2 else "")
                bodies.append(gzip.decompress(body) if i % 2 else body)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=replacer)]
    threads += [threading.Thread(target=scraper, args=(25,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(timeout=240)
    stop.set()
    threads[0].join(timeout=10)
    assert not errors, errors
    assert len(bodies) == 75
    assert replaced > 75  # snapshots did change under the scrapes
    seen = set()
    for body in bodies:
        assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1
        state = expected.get(vm_part(body))
        assert state is not None, "a scrape matches no consistent set of snapshots"
        seen.add(state)
    assert len(seen) > 1, seen


# --------------------------------------------------------------------------- real nodes


@pytest.fixture
async def local(cookie: str, epmd_port: int) -> AsyncIterator[LocalNode]:
    node = LocalNode("beamside-exposition@127.0.0.1", cookie, epmd_port=epmd_port)
    yield node
    await node.close()


async def collect(local: LocalNode, node: ErlangNode, family: str) -> NodeSnapshot:
    taken = time.time()
    data = await agents.collect(local, node.name, timeout=30)
    return decode_snapshot(
        data, node=node.name, family=family, cluster="real", taken_at=taken, duration=0.01
    )


async def test_real_nodes_with_os_mon_and_mnesia(
    otp25_node: ErlangNode, otp28_node: ErlangNode, local: LocalNode
) -> None:
    for node in (otp25_node, otp28_node):
        await agents.ensure_loaded(local, node.name)
        await agents.attach(local, node.name)
    await otp25_node.aeval("application:ensure_all_started(os_mon).", timeout=30)
    await otp25_node.aeval(
        "ok = application:set_env(mnesia, schema_location, ram), "
        "{ok, _} = application:ensure_all_started(mnesia), "
        "[{atomic, ok} = mnesia:create_table(list_to_atom(\"t_\" ++ integer_to_list(I)),"
        " [{attributes, [id, v]}]) || I <- lists:seq(1, 30)], ok.",
        timeout=60,
    )
    await agents.ensure_loaded(local, otp25_node.name)  # picks up the plugins
    source = Source([await collect(local, otp25_node, "a"), await collect(local, otp28_node, "b")])
    full = build_registry(source, "t")  # the default budget: nothing dropped here
    for fmt in (OPENMETRICS, TEXT):
        body = check(full, fmt, f"real nodes, {fmt}")
        assert f'node="{otp28_node.name}"'.encode() in body
        assert b"erlang_os_mon_cpu_load1{" in body
        assert b"erlang_mnesia_tablewise_size{" in body
        assert b"erlang_vm_mseg_alloc_calls_total{" in body  # agent v11: mseg_alloc's cache
        assert b"erlang_vm_mseg_alloc_cache_hit_ratio{" in body
        assert dropped(body) == {}
    lint = promtool_check_metrics(full.exposition(TEXT))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # 40 plugin series: mnesia (first, sorted) takes them, os_mon is dropped whole
    registry = build_registry(source, "t", series_budget=40)
    for fmt in (OPENMETRICS, TEXT):
        body = check(registry, fmt, f"real nodes, budget 40, {fmt}")
        assert b"erlang_mnesia_tablewise_size{" in body
        assert b"erlang_os_mon_cpu_load1{" not in body
    counts = dropped(registry.exposition(TEXT))
    assert {node for node, _ in counts} == {otp25_node.name}
    assert (otp25_node.name, "erlang_os_mon_cpu_load1") in counts
    assert (otp25_node.name, "erlang_mnesia_tablewise_size") in counts
    # the next collect replaces one node's snapshot: still exact
    source.snapshots[otp28_node.name] = await collect(local, otp28_node, "b")
    for fmt in (OPENMETRICS, TEXT):
        check(registry, fmt, f"real nodes after a change, {fmt}")
    for node in (otp25_node, otp28_node):
        await agents.detach(local, node.name)


# --------------------------------------------------------------------------- memory


def test_nodes_of_one_release_share_what_is_not_their_own() -> None:
    """What the cache keeps per node between scrapes is only its sample
    lines: family order, headers' metadata and name sets are one object for
    every node with the same families, and the modules' md5 texts of two
    snapshots of the same release are the same objects."""
    a, b = (replace(golden_snapshot("otp25"), node=n) for n in ("a@h", "b@h"))
    ta, tb = render_text(a), render_text(b)
    assert ta.order is tb.order and ta.index is tb.index and ta.meta is tb.meta
    assert ta.sample_names is tb.sample_names and ta.label_names is tb.label_names
    assert ta.blocks != tb.blocks  # the node label differs: its own
    first, second = (golden_snapshot("otp25") for _ in range(2))
    assert first.modules and first.modules is not second.modules
    assert all(first.modules[m] is second.modules[m] for m in first.modules)


def test_kept_text_holds_the_base_labels_once_per_node() -> None:
    """A node's kept text has a byte for its node, family and cluster
    labels: under half the size of the text it writes, the same bytes once
    expanded."""
    name = "rabbit@rabbitmq-server-0.rabbitmq-nodes.default.svc.cluster.local"
    snap = replace(golden_snapshot("otp25"), node=name, family="rabbitmq", cluster="prod-eu-1")
    text = render_text(snap)
    full, starts = text.expand(), text.starts
    three = f'cluster="prod-eu-1",family="rabbitmq",node="{name}"'.encode()
    assert text.labels == (b"prod-eu-1", b"rabbitmq", name.encode(), three)
    assert len(text.body) < 0.4 * len(full)  # 29 of 69 KB
    lines = full.count(b"\n")
    assert full.count(f'node="{name}"'.encode()) == lines > 400
    # most lines hold the three labels together (one stand-in), the others each value
    assert lines > text.body.count(b"\x04") > lines // 2
    assert text.body.count(b"\x04") + text.body.count(b"\x03") == lines
    assert not any(c in full for c in (b"\x01", b"\x02", b"\x03", b"\x04"))
    assert list(starts)[-1] == len(full) and b"".join(text.blocks) == full
    registry = build_registry(Source([snap]), "t")
    for fmt in FORMATS:
        check(registry, fmt, f"expanded {fmt}")


@pytest.mark.parametrize(
    "labels",
    [
        {"node": "odd\x03\x01@h"},  # a stand-in byte in a value: written as it is
        {"cluster": "a\x02b", "family": 'q"\\\n'},  # escaped values, stand-in bytes
    ],
    ids=["node", "cluster-family"],
)
def test_label_values_holding_stand_in_bytes_are_written_as_they_are(
    labels: dict[str, str],
) -> None:
    snap = replace(golden_snapshot("otp28"), **labels)
    text = render_text(snap)
    assert text.labels is None and text.expand() == text.body
    check(build_registry(Source([snap, golden_snapshot("otp25")]), "t"), TEXT, str(labels))


def test_a_plugin_label_named_like_a_base_label_renders_without_stand_ins() -> None:
    """A renderer's own label called ``node`` (no renderer has one today;
    user plugins' are renamed ``plugin_node``) would win over the base one,
    as in a dict merge: its line has no stand-in for the node, and the
    writer says so rather than keep a text it could not expand."""
    snap = golden_snapshot("otp25")
    writer = exposition_module._TextWriter(snap, None, None)
    writer.gauge("erlang_vm_user_plugin_peer", "a peer", 1.0, node="other@h")
    assert writer.finish() is None


class StatusSource(Source):
    """Nodes in every state, with failures, labels to escape, no success yet."""

    def statuses(self) -> list[NodeStatus]:
        states = list(NodeState)
        return [
            NodeStatus(
                s.node,
                'fam"ily\\' if i % 2 else s.family,
                states[i % len(states)],
                agent_version=10,
                collect_errors=i,
                connect_failures={"cookie": 2, 'we"ird': 1} if i % 3 == 0 else {},
                attaches=i + 1,
                last_collect_duration=0.012345 * i,
                last_success=0.0 if i == 1 else 1.7e9 + i / 3,
            )
            for i, s in enumerate(list(self.snapshots.values()))
        ]


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_own_families_written_line_by_line_are_prometheus_clients_bytes(
    fmt: Format, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sidecar.exporter.collector.time.time", lambda: 1.7e9 + 100)
    registry = build_registry(StatusSource(golden_all(), cluster='c"1'), "t")
    body = check(registry, fmt, "own families").replace(b"__", b"_")  # dots doubles _
    for family in (b"beamside_node_state", b"beamside_node_connect_failures_total{"):
        assert family in body
    assert b'reason="we\\"ird"' in body and b"beamside_snapshot_age_seconds{" in body


def test_a_new_snapshot_is_rendered_ahead_only_while_scrapes_read_each_one() -> None:
    snaps = [golden_snapshot(name) for name in RUNTIMES]
    source = Source(snaps)
    registry = build_registry(source, "t")
    cache = registry.collector.cache
    node = snaps[0].node

    def kept() -> tuple[NodeSnapshot, NodeText] | None:
        """The snapshot whose text the cache keeps for the node, and that text
        (a render makes a new NodeText: the same object means no render)."""
        entry = cache._entries.get(node)
        return None if entry is None else (entry.snapshot, entry.texts[None])

    def arrives(seconds: float) -> tuple[NodeSnapshot, bool]:
        snap = replace(snaps[0], taken_at=2e9 + seconds)
        ahead = cache.prepare(snap)
        source.snapshots[snap.node] = snap
        return snap, ahead

    def scrape(what: str) -> None:
        check(registry, OPENMETRICS, what)

    # never scraped: a new snapshot waits for a scrape, which renders it
    first, ahead = arrives(0)
    assert not ahead and kept() is None
    scrape("first scrape")
    rendered = kept()
    assert rendered is not None and rendered[0] is first
    # scrapes read every snapshot: each is rendered as it arrives, a scrape only joins
    for t in (15, 30, 45):
        snap, ahead = arrives(t)
        rendered = kept()
        assert ahead and rendered is not None and rendered[0] is snap
        assert not cache.prepare(snap) and kept() == rendered  # once
        scrape(f"warm at {t}")
        check(registry, TEXT, "the other format, from the same text")
        assert kept() == rendered  # the same text object: not rendered again
    # two snapshots between scrapes (scraped less often than collected): the
    # first one after a read is still rendered ahead, then the node is lazy
    _, ahead_60 = arrives(60)
    snap_75, ahead_75 = arrives(75)
    rendered = kept()
    assert ahead_60 and ahead_75 and rendered is not None and rendered[0] is snap_75
    scrape("after two snapshots")
    assert kept() == rendered
    before = kept()
    _, ahead_90 = arrives(90)
    last, ahead = arrives(105)
    assert not ahead_90 and not ahead and kept() == before  # nothing rendered
    scrape("lazy")
    rendered = kept()
    assert rendered is not None and rendered[0] is last
