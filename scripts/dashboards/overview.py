"""The cluster overview dashboard: nodes up, active alarms and the hottest nodes."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import UP_MAPPING, bargauge, row, stat, table, timeseries
from .queries import CF, RATE, Json, alarm_note, alarm_steps, eq, plain_steps, prom, sel


def overview() -> Json:
    hot_desc = "The ten nodes with the highest value now, across the selected families."
    panels = [
        row("Nodes"),
        stat(
            "Nodes up",
            "Nodes beamside is attached to (beamside_node_up == 1).",
            [prom(f"sum(beamside_node_up{sel(base=CF)})", "up")],
            "short",
        ),
        stat(
            "Nodes not up",
            "Managed nodes beamside is not attached to now: down, unreachable, cookie "
            "refused or still connecting (see the node_down alarm)." + alarm_note("node_down"),
            [prom(f"count(beamside_node_up{sel(base=CF)} == 0) or vector(0)", "not up")],
            "short",
            steps=alarm_steps("node_down"),
        ),
        stat(
            "Active alarms",
            "beamside alarms active now, by severity (family-wide alarms included).",
            [prom(f"count by (severity) (beamside_alarm_active{sel(base=CF)})", "{{severity}}")],
            "short",
            steps=plain_steps(("red", 1)),
            w=8,
        ),
        stat(
            "Nodes managed",
            "Nodes in beamside's target list for the cluster (up or not).",
            [prom('sum(beamside_nodes_managed{cluster=~"$cluster"})', "managed")],
            "short",
        ),
        stat(
            "Erlang processes",
            "Processes on all selected nodes together.",
            [prom(f"sum(erlang_vm_processes{sel()})", "processes")],
            "short",
        ),
        table(
            "Nodes",
            "One line per node: attachment, OTP release, ERTS version, uptime.",
            [
                prom(
                    f"max by (node, family) (beamside_node_up{sel()})",
                    "",
                    instant=True,
                    table=True,
                ),
                prom(
                    f"max by (node, otp_release, erts_version) (erlang_vm_info{sel()})",
                    "",
                    instant=True,
                    table=True,
                ),
                prom(
                    f"max by (node) (erlang_vm_uptime_seconds{sel()})", "", instant=True, table=True
                ),
            ],
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value #B": True},
                        "renameByName": {"Value #A": "up", "Value #C": "uptime"},
                    },
                },
            ],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "uptime"},
                    "properties": [{"id": "unit", "value": "dtdurations"}],
                },
                {
                    "matcher": {"id": "byName", "options": "up"},
                    "properties": [{"id": "mappings", "value": UP_MAPPING}],
                },
            ],
            w=24,
        ),
        row("Hottest nodes"),
        bargauge(
            "Memory",
            f"{hot_desc} erlang:memory(total).",
            [prom(f"topk(10, erlang_vm_memory_bytes{sel(eq('kind', 'total'))})", instant=True)],
            "bytes",
        ),
        bargauge(
            "Run queue",
            f"{hot_desc} Processes and ports ready to run on the normal run queues: "
            "a queue that stays above the number of schedulers means the node is CPU bound.",
            [prom(f"topk(10, erlang_vm_statistics_run_queues_length{sel()})", instant=True)],
            "short",
        ),
        bargauge(
            "Reductions per second",
            f"{hot_desc} Reductions (units of work) executed per second.",
            [
                prom(
                    f"topk(10, rate(erlang_vm_statistics_reductions_total{sel()}[{RATE}]))",
                    instant=True,
                )
            ],
            "short",
        ),
        bargauge(
            "Process table usage",
            f"{hot_desc} Processes over the process limit." + alarm_note("process_limit", "{:.0%}"),
            [
                prom(
                    f"topk(10, erlang_vm_processes{sel()} / on(node, family, cluster) "
                    f"erlang_vm_process_limit{sel()})",
                    instant=True,
                )
            ],
            "percentunit",
            steps=alarm_steps("process_limit"),
            max_=1,
        ),
        bargauge(
            "Longest message queue",
            f"{hot_desc} The longest message queue of a single process on the node."
            + alarm_note("process_message_queue"),
            [prom(f"topk(10, erlang_vm_process_message_queue_max{sel()})", instant=True)],
            "short",
            steps=alarm_steps("process_message_queue"),
        ),
        bargauge(
            "Atom table usage",
            f"{hot_desc} Atoms over the atom limit; atoms are never freed."
            + alarm_note("atom_limit", "{:.0%}"),
            [
                prom(
                    f"topk(10, erlang_vm_atoms{sel()} / on(node, family, cluster) "
                    f"erlang_vm_atom_limit{sel()})",
                    instant=True,
                )
            ],
            "percentunit",
            steps=alarm_steps("atom_limit"),
            max_=1,
        ),
        row("Over time"),
        timeseries(
            "Memory by node",
            "erlang:memory(total) of each node.",
            [prom(f"erlang_vm_memory_bytes{sel(eq('kind', 'total'))}")],
            "bytes",
        ),
        timeseries(
            "Processes by node",
            "Processes existing on each node.",
            [prom(f"erlang_vm_processes{sel()}")],
            "short",
        ),
        row("beamside itself"),
        timeseries(
            "Collection time",
            "Round trip of beamside's one call per node per interval (agent time included); "
            "it must stay well below the metrics interval.",
            [prom(f"beamside_collect_duration_seconds{sel()}")],
            "s",
            w=8,
        ),
        timeseries(
            "Snapshot age",
            "Age of the snapshot each node's series come from: about one interval when "
            "collection keeps up (the BeamsideNotCollecting rule fires past 180 s).",
            [prom(f"beamside_snapshot_age_seconds{sel()}")],
            "s",
            steps=plain_steps(("orange", 60), ("red", 180)),
            w=8,
        ),
        timeseries(
            "Collection errors and reconnects",
            "Failed collections and (re)attaches per minute: a node that keeps reattaching "
            "restarts or loses its connection.",
            [
                prom(f"rate(beamside_collect_errors_total{sel()}[{RATE}]) * 60", "{{node}} errors"),
                prom(
                    f"rate(beamside_node_attaches_total{sel()}[{RATE}]) * 60",
                    "{{node}} attaches",
                ),
            ],
            "opm",
            w=8,
        ),
        timeseries(
            "Alertmanager pushes",
            "POSTs to each Alertmanager per second, by result; errors are retried with "
            "backoff (the BeamsideAlertmanager* rules watch them).",
            [
                prom(
                    "sum by (url, result) (rate(beamside_alertmanager_pushes_total"
                    f'{{cluster=~"$cluster"}}[{RATE}]))',
                    "{{url}} {{result}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            "Alerts waiting for Alertmanager",
            "Alarm changes and resolutions queued for each Alertmanager (0 when it answers).",
            [
                prom(
                    'beamside_alertmanager_pending_alerts{cluster=~"$cluster"}',
                    "{{url}}",
                )
            ],
            "short",
        ),
    ]
    return dashboard(
        "beamside-overview",
        "beamside / Cluster overview",
        "Nodes up, active alarms and the hottest nodes of a cluster beamside manages.",
        standard_vars(),
        panels,
    )
