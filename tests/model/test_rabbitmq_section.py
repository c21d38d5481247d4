"""``plugins.rabbitmq`` as the agent sends it (the shape tests/realapps/
test_plugin_rabbitmq.py checks against real RabbitMQ), for what one node
cannot show: a partition, vhosts down, a disk alarm, parts the node failed
or sent misshapen (each its own error, the others unaffected)."""

from __future__ import annotations

from typing import Any

from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.erldist.term import Atom
from sidecar.exporter.exposition import TEXT, ExpositionCache
from sidecar.model import (
    NodeSnapshot,
    RabbitCluster,
    RabbitDisk,
    RabbitMessages,
    SectionError,
    decode_snapshot,
)
from tests.support.prometheus import promtool_check_metrics

A = Atom
MiB = 1024 * 1024


def section(**changes: Any) -> dict[Atom, Any]:
    """A healthy node's section; ``changes`` replace its parts."""
    base: dict[Atom, Any] = {
        A("version"): b"3.10.8",
        A("running"): True,
        A("alarms"): [],
        A("memory"): {A("used"): 150 * MiB, A("limit"): 1600 * MiB, A("watermark"): 0.4},
        A("disk"): {A("free"): 9000 * MiB, A("limit"): 50 * MiB},
        A("totals"): {A("connections"): 3, A("channels"): 5, A("consumers"): 2, A("queues"): 4},
        A("messages"): {A("queues"): 4, A("ready"): 12, A("unacked"): 1, A("total"): 13},
        A("vhosts"): {
            b"/": {A("queues"): 3, A("ready"): 10, A("unacked"): 1, A("total"): 11},
            b"v2": {A("queues"): 1, A("ready"): 2, A("unacked"): 0, A("total"): 2},
        },
        A("vhosts_truncated"): False,
        A("counters"): [
            {
                A("labels"): {A("protocol"): A("amqp091")},
                A("values"): {A("messages_received_total"): 40, A("messages_routed_total"): 39},
            },
            {
                A("labels"): {
                    A("protocol"): A("amqp091"),
                    A("queue_type"): A("rabbit_quorum_queue"),
                },
                A("values"): {A("messages_delivered_total"): 7},
            },
        ],
        A("cluster"): {
            A("name"): b"rabbit@a",
            A("nodes"): 3,
            A("running"): 3,
            A("partitions"): [],
        },
        A("vhosts_down"): [],
    }
    base.update({A(k): v for k, v in changes.items()})
    return base


def snap(rabbitmq: object) -> NodeSnapshot:
    return decode_snapshot(
        {A("plugins"): {A("rabbitmq"): rabbitmq}},
        node="rabbit@a", family="rabbitmq", cluster="c", taken_at=1.7e9, duration=0.01,
    )  # fmt: skip


def body(s: NodeSnapshot) -> str:
    return ExpositionCache().exposition([s], TEXT).decode()


def sample(text: str, prefix: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith(prefix)]


def active(checker_overrides: dict[str, Any], s: NodeSnapshot) -> dict[str, Any]:
    engine = AlarmEngine("c")
    AlarmChecker(engine, checker_overrides).on_snapshot(s)
    return {a.id: a for a in engine.active() if a.id.startswith("rabbitmq_")}


def test_a_healthy_node() -> None:
    s = snap(section())
    assert s.errors == {}
    r = s.rabbitmq
    assert r is not None and r.running is True and r.alarms == () and r.version == "3.10.8"
    assert r.vhosts == (
        ("/", RabbitMessages(queues=3, ready=10, unacked=1, total=11)),
        ("v2", RabbitMessages(queues=1, ready=2, unacked=0, total=2)),
    )
    assert r.cluster == RabbitCluster(name="rabbit@a", nodes=3, running=3, partitions=())
    text = body(s)
    lint = promtool_check_metrics(text.encode())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert sample(text, "rabbitmq_queue_messages_ready{")[0].endswith(" 12.0")
    assert len(sample(text, "rabbitmq_vhost_queue_messages_ready{")) == 2
    (quorum,) = sample(text, "rabbitmq_global_messages_delivered_total{")
    assert 'queue_type="rabbit_quorum_queue"' in quorum and quorum.endswith(" 7.0")
    assert "rabbitmq_identity_info{" in text and 'rabbitmq_cluster="rabbit@a"' in text
    assert sample(text, "rabbitmq_alarms_memory_used_watermark{")[0].endswith(" 0.0")
    assert active({}, s) == {}


def test_a_partition_and_vhosts_down() -> None:
    s = snap(
        section(
            cluster={A("nodes"): 3, A("running"): 2, A("partitions"): [b"rabbit@c", b"rabbit@b"]},
            vhosts_down=[b"v2"],
        )
    )
    alarms = active({"rabbitmq_unhealthy": {"delay": 0}}, s)
    partition = alarms["rabbitmq_partition"]
    assert partition.severity.name == "CRITICAL"
    assert partition.cause == "partitioned from 2 node(s): rabbit@b, rabbit@c"
    assert partition.info == {"partitioned_from": ["rabbit@b", "rabbit@c"]}
    unhealthy = alarms["rabbitmq_unhealthy"]
    assert unhealthy.cause == "virtual host(s) down: v2" and unhealthy.severity.name == "MAJOR"
    assert sample(body(s), "rabbitmq_partitions{")[0].endswith(" 2.0")
    # with its default delay (60 s) a first sighting raises nothing
    assert "rabbitmq_unhealthy" not in active({}, s)


def test_a_disk_alarm_names_its_figures() -> None:
    s = snap(section(alarms=[A("disk")], disk={A("free"): 40 * MiB, A("limit"): 50 * MiB}))
    alarm = active({}, s)["rabbitmq_resource_alarm"]
    assert alarm.cause == (
        "RabbitMQ's disk alarm: 40 MiB free, limit 50 MiB: publishers are blocked"
    )
    assert alarm.info["disk"] == {"free_bytes": 40 * MiB, "limit_bytes": 50 * MiB}
    assert isinstance(s.rabbitmq and s.rabbitmq.disk, RabbitDisk)


def test_not_running_is_the_whole_section() -> None:
    s = snap({A("version"): b"3.10.8", A("running"): False})
    r = s.rabbitmq
    assert r is not None and r.running is False and r.totals is None and r.alarms is None
    assert sample(body(s), "rabbitmq_running{")[0].endswith(" 0.0")
    alarm = active({"rabbitmq_unhealthy": {"delay": 0}}, s)["rabbitmq_unhealthy"]
    assert alarm.cause == "RabbitMQ is not running"


def test_a_failed_or_misshapen_part_stays_in_its_part() -> None:
    failed = (A("error"), (A("exit"), A("timeout")))
    s = snap(section(alarms=failed, vhosts=[1, 2], running=A("maybe")))
    r = s.rabbitmq
    assert r is not None
    assert isinstance(r.alarms, SectionError) and not r.alarms.malformed
    assert isinstance(r.vhosts, SectionError) and r.vhosts.malformed
    assert r.running is None  # an atom is a part switched off, never a boolean
    assert isinstance(r.messages, RabbitMessages) and r.messages.ready == 12  # unaffected
    text = body(s)
    errors = sample(text, "beamside_agent_section_error{")
    assert any('section="plugins.rabbitmq.alarms"' in x for x in errors), errors
    assert any('section="plugins.rabbitmq.vhosts"' in x for x in errors), errors
    assert not sample(text, "rabbitmq_alarms_")  # not known: no 0 pretending all is well
    assert "rabbitmq_resource_alarm" not in active({}, s)
    # the whole section misshapen: one error, no exception
    bad = snap([1, 2, 3])
    assert bad.rabbitmq is None and bad.errors["plugins.rabbitmq"].malformed
