"""The applications dashboard: RabbitMQ, ranch/cowboy listeners, poolboy pools, folsom.

Every panel reads the series of one plugin (sidecar/exporter/vm_metrics.py):
RabbitMQ's under rabbitmq_prometheus' names, the others under erlang_*.  A
panel whose application does not run on the selected nodes stays empty.
Every query is run against a real Prometheus scraping beamside attached to
real RabbitMQ and to a node running Debian's poolboy and folsom
(tests/realapps/test_dashboard_applications.py).
"""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import row, stat, timeseries
from .queries import RATE, Json, alarm_note, alarm_steps, plain_steps, prom, sel

RED_WHEN_ONE = [{"color": "green", "value": None}, {"color": "red", "value": 1}]


def applications() -> Json:
    panels = [
        row("RabbitMQ"),
        stat(
            "RabbitMQ running",
            "rabbit:is_running/0 on each node: 0 while it boots or after rabbitmqctl "
            "stop_app (the rabbitmq_unhealthy alarm after 60 s).",
            [prom(f"min(rabbitmq_running{sel()})", "running")],
            "short",
            steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
            graph=False,
        ),
        stat(
            "Resource alarms",
            "RabbitMQ's memory, disk and file descriptor alarms set now: while one is, "
            "publishers are blocked cluster-wide (rabbitmq_resource_alarm).",
            [
                prom(
                    f"sum(rabbitmq_alarms_memory_used_watermark{sel()})"
                    f" + sum(rabbitmq_alarms_free_disk_space_watermark{sel()})"
                    f" + sum(rabbitmq_alarms_file_descriptor_limit{sel()})",
                    "alarms",
                )
            ],
            "short",
            steps=RED_WHEN_ONE,
            graph=False,
        ),
        stat(
            "Partitioned from",
            "Nodes each node's rabbit_node_monitor sees it partitioned from "
            "(rabbitmq_partition).",
            [prom(f"max(rabbitmq_partitions{sel()})", "partitions")],
            "short",
            steps=RED_WHEN_ONE,
            graph=False,
        ),
        stat(
            "Cluster members running",
            "Members of the RabbitMQ cluster running over all members, as each node sees them.",
            [
                prom(
                    f"min(rabbitmq_cluster_members_running{sel()}"
                    f" / rabbitmq_cluster_members{sel()})",
                    "running",
                )
            ],
            "percentunit",
            steps=plain_steps(("red", 0), ("orange", 0.5), ("green", 1)),
            graph=False,
        ),
        stat(
            "Virtual hosts down",
            "Virtual hosts whose supervisor or message stores are down (rabbitmq_unhealthy).",
            [prom(f"sum(rabbitmq_vhosts_down{sel()})", "down")],
            "short",
            steps=RED_WHEN_ONE,
            graph=False,
        ),
        stat(
            "Queues",
            "Queues on the selected nodes (rabbitmq_queues).",
            [prom(f"sum(rabbitmq_queues{sel()})", "queues")],
            "short",
        ),
        timeseries(
            "Memory against the high watermark",
            "Memory RabbitMQ's memory monitor measures over its high watermark: at 100 % "
            "the memory alarm blocks publishers.",
            [
                prom(
                    f"rabbitmq_process_resident_memory_bytes{sel()}"
                    f" / rabbitmq_resident_memory_limit_bytes{sel()}"
                )
            ],
            "percentunit",
            steps=plain_steps(("orange", 0.8), ("red", 1)),
        ),
        timeseries(
            "Free disk against the limit",
            "Free disk space where RabbitMQ keeps its data, and the limit under which the "
            "disk alarm blocks publishers.",
            [
                prom(f"rabbitmq_disk_space_available_bytes{sel()}", "{{node}} free"),
                prom(f"rabbitmq_disk_space_available_limit_bytes{sel()}", "{{node}} limit"),
            ],
            "bytes",
        ),
        timeseries(
            "Connections, channels and consumers",
            "What clients hold open on each node.",
            [
                prom(f"rabbitmq_connections{sel()}", "{{node}} connections"),
                prom(f"rabbitmq_channels{sel()}", "{{node}} channels"),
                prom(f"rabbitmq_consumers{sel()}", "{{node}} consumers"),
            ],
            "short",
        ),
        timeseries(
            "Messages ready and unacknowledged, by virtual host",
            "Messages in the node's queues waiting for a consumer (ready) and delivered "
            "but not acknowledged, per virtual host (at most 50 a node; never per queue).",
            [
                prom(
                    f"sum by (vhost) (rabbitmq_vhost_queue_messages_ready{sel()})",
                    "{{vhost}} ready",
                ),
                prom(
                    f"sum by (vhost) (rabbitmq_vhost_queue_messages_unacked{sel()})",
                    "{{vhost}} unacked",
                ),
            ],
            "short",
        ),
        timeseries(
            "Message rates",
            "Messages received from publishers, routed to queues, delivered to consumers and "
            "acknowledged, per second (RabbitMQ's global counters, all protocols and queue "
            "types).",
            [
                prom(
                    f"sum(rate(rabbitmq_global_messages_received_total{sel()}[{RATE}]))",
                    "received",
                ),
                prom(
                    f"sum(rate(rabbitmq_global_messages_routed_total{sel()}[{RATE}]))",
                    "routed",
                ),
                prom(
                    f"sum(rate(rabbitmq_global_messages_delivered_total{sel()}[{RATE}]))",
                    "delivered",
                ),
                prom(
                    f"sum(rate(rabbitmq_global_messages_acknowledged_total{sel()}[{RATE}]))",
                    "acknowledged",
                ),
            ],
            "ops",
        ),
        row("Listeners (ranch and cowboy)"),
        timeseries(
            "Listener usage",
            "Active connections of each ranch listener over its max_connections (cowboy's "
            "too; RabbitMQ's AMQP and HTTP listeners are ranch listeners)."
            + alarm_note("ranch_connection_limit", "{:.0%}"),
            [
                prom(
                    f"erlang_ranch_active_connections{sel()}"
                    f" / erlang_ranch_max_connections{sel()}",
                    "{{node}} {{listener}}",
                )
            ],
            "percentunit",
            steps=alarm_steps("ranch_connection_limit"),
            max_=1,
        ),
        timeseries(
            "Connections accepted",
            "Connections each listener accepts per second (ranch 2).",
            [
                prom(
                    f"rate(erlang_ranch_accepted_connections_total{sel()}[{RATE}])",
                    "{{node}} {{listener}}",
                )
            ],
            "ops",
        ),
        row("Pools (poolboy)"),
        timeseries(
            "Workers checked out",
            "Workers each registered poolboy pool has lent out, against its size.",
            [
                prom(
                    f"erlang_poolboy_checked_out_workers{sel()}",
                    "{{node}} {{pool}} checked out",
                ),
                prom(f"erlang_poolboy_size{sel()}", "{{node}} {{pool}} size"),
            ],
            "short",
        ),
        timeseries(
            "Callers waiting for a worker",
            "Callers blocked in poolboy:checkout/1 (poolboy_waiters after 30 s).",
            [prom(f"erlang_poolboy_waiting_callers{sel()}", "{{node}} {{pool}}")],
            "short",
            steps=alarm_steps("poolboy_waiters"),
        ),
        row("folsom"),
        timeseries(
            "folsom meters",
            "Events per second of every folsom meter, one-minute moving average.",
            [
                prom(
                    f'{{__name__=~"folsom_.+_rate", window="1m", '
                    f"{sel()[1:-1]}}}",
                    "{{node}} {{folsom_name}}",
                )
            ],
            "ops",
        ),
        timeseries(
            "folsom histograms, 95th percentile",
            "The 95th percentile of every folsom histogram and duration.",
            [
                prom(
                    f'{{__name__=~"folsom_.+", percentile="95", {sel()[1:-1]}}}',
                    "{{node}} {{folsom_name}}",
                )
            ],
            "short",
        ),
    ]
    return dashboard(
        "beamside-applications",
        "beamside / Applications",
        "RabbitMQ without its Prometheus plugin, ranch and cowboy listeners, poolboy "
        "pools and folsom metrics, as beamside's plugins report them.",
        standard_vars(),
        panels,
    )
