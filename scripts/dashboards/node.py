"""The node detail dashboard: one BEAM node, its limits, load, memory, alarms and logs."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import LABELS_ONLY, UP_MAPPING, gauge, logs, row, stat, table, timeseries
from .queries import RATE, Json, alarm_note, alarm_steps, eq, loki_annotation, prom, sel, stream


def node_detail() -> Json:
    total = sel('kind="total"')
    panels = [
        row("Node"),
        stat(
            "Attached",
            "Whether beamside is attached to the node now.",
            [prom(f"beamside_node_up{sel()}")],
            "short",
            mappings=UP_MAPPING,
            steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
            graph=False,
        ),
        stat(
            "Uptime",
            "Time since the VM started (the node_restarted alarm fires when it goes back).",
            [prom(f"erlang_vm_uptime_seconds{sel()}")],
            "dtdurations",
            graph=False,
        ),
        stat(
            "OTP release",
            "OTP release and ERTS version of the node.",
            [prom(f"erlang_vm_info{sel()}", "OTP {{otp_release}} / ERTS {{erts_version}}")],
            "short",
            text_mode="name",
            graph=False,
            w=6,
        ),
        stat(
            "Memory",
            "erlang:memory(total): everything the VM allocated.",
            [prom(f"erlang_vm_memory_bytes{total}")],
            "bytes",
            w=5,
        ),
        stat(
            "Schedulers online",
            "Normal schedulers online (usually one per core the node may use).",
            [prom(f"erlang_vm_schedulers_online{sel()}")],
            "short",
            graph=False,
            w=5,
        ),
        row("Limits"),
        gauge(
            "Processes",
            "Processes over the process limit (+P)." + alarm_note("process_limit", "{:.0%}"),
            [prom(f"erlang_vm_processes{sel()} / on(node) erlang_vm_process_limit{sel()}")],
            "percentunit",
            steps=alarm_steps("process_limit"),
            w=4,
        ),
        gauge(
            "Ports",
            "Ports over the port limit (+Q)." + alarm_note("port_limit", "{:.0%}"),
            [prom(f"erlang_vm_ports{sel()} / on(node) erlang_vm_port_limit{sel()}")],
            "percentunit",
            steps=alarm_steps("port_limit"),
            w=4,
        ),
        gauge(
            "Atoms",
            "Atoms over the atom limit (+t)." + alarm_note("atom_limit", "{:.0%}"),
            [prom(f"erlang_vm_atoms{sel()} / on(node) erlang_vm_atom_limit{sel()}")],
            "percentunit",
            steps=alarm_steps("atom_limit"),
            w=4,
        ),
        gauge(
            "ETS tables",
            "ETS tables over the ETS table limit." + alarm_note("ets_limit", "{:.0%}"),
            [prom(f"erlang_vm_ets_tables{sel()} / on(node) erlang_vm_ets_limit{sel()}")],
            "percentunit",
            steps=alarm_steps("ets_limit"),
            w=4,
        ),
        gauge(
            "File descriptors",
            "Open file descriptors of the node's OS process over the poll set's maximum."
            + alarm_note("open_file_limit", "{:.0%}"),
            [prom(f"erlang_vm_open_fds{sel()} / on(node) erlang_vm_poll_max_fds{sel()}")],
            "percentunit",
            steps=alarm_steps("open_file_limit"),
            w=4,
        ),
        gauge(
            "Sockets (socket NIF)",
            "Sockets of the socket module over the file descriptor maximum."
            + alarm_note("open_socket_limit", "{:.0%}"),
            [
                prom(
                    f"erlang_vm_sockets{sel(eq('api', 'socket'))}"
                    f" / ignoring(api) erlang_vm_poll_max_fds{sel()}"
                )
            ],
            "percentunit",
            steps=alarm_steps("open_socket_limit"),
            w=4,
        ),
        row("Load"),
        timeseries(
            "Memory by kind",
            "erlang:memory/0 by kind (total = processes + system).",
            [prom(f"erlang_vm_memory_bytes{sel(eq('kind', '.*_used', '!~'))}", "{{kind}}")],
            "bytes",
        ),
        timeseries(
            "Run queues",
            "Processes and ports ready to run: normal, dirty CPU and dirty IO queues.",
            [
                prom(f"erlang_vm_statistics_run_queues_length{sel()}", "normal"),
                prom(f"erlang_vm_statistics_dirty_cpu_run_queue_length{sel()}", "dirty cpu"),
                prom(f"erlang_vm_statistics_dirty_io_run_queue_length{sel()}", "dirty io"),
            ],
            "short",
        ),
        timeseries(
            "Reductions per second",
            "Work done by the node's processes per second.",
            [prom(f"rate(erlang_vm_statistics_reductions_total{sel()}[{RATE}])", "reductions")],
            "short",
            w=8,
        ),
        timeseries(
            "Garbage collections per second",
            "Garbage collections per second and the bytes they reclaim.",
            [
                prom(
                    "rate(erlang_vm_statistics_garbage_collection_number_of_gcs_total"
                    f"{sel()}[{RATE}])",
                    "GCs",
                )
            ],
            "ops",
            w=8,
        ),
        timeseries(
            "Port IO",
            "Bytes per second in and out through ports (sockets, files, drivers).",
            [
                prom(f"rate(erlang_vm_statistics_bytes_received_total{sel()}[{RATE}])", "in"),
                prom(f"rate(erlang_vm_statistics_bytes_output_total{sel()}[{RATE}])", "out"),
            ],
            "Bps",
            w=8,
        ),
        timeseries(
            "Longest message queue",
            "The longest message queue of a single process." + alarm_note("process_message_queue"),
            [prom(f"erlang_vm_process_message_queue_max{sel()}", "longest queue")],
            "short",
            steps=alarm_steps("process_message_queue"),
        ),
        timeseries(
            "Largest process",
            "Memory of the node's largest process."
            + alarm_note("process_memory_high_watermark", "{:.0f} MiB", 1 / 2**20),
            [prom(f"erlang_vm_process_memory_max_bytes{sel()}", "largest process")],
            "bytes",
            steps=alarm_steps("process_memory_high_watermark"),
        ),
        row("Host and code"),
        timeseries(
            "Host CPU load per core",
            "os_mon's 1-minute load average of the node's host over the node's logical "
            "processors (needs os_mon on the node)." + alarm_note("os_cpu_load"),
            [
                prom(
                    f"erlang_os_mon_cpu_load1{sel()} / on(node, family, cluster) "
                    f"erlang_vm_logical_processors{sel()}",
                    "load per core",
                )
            ],
            "short",
            steps=alarm_steps("os_cpu_load"),
            w=8,
        ),
        timeseries(
            "Disk usage",
            "Used fraction of each mounted disk, from os_mon's disksup; where disksup does "
            "not run (RabbitMQ, nodes without os_mon), the file system of the node's data "
            "directory (mnesia's, else its working directory), from df."
            + alarm_note("disk_almost_full", "{:g}%"),
            [
                prom(
                    f"erlang_os_mon_disk_used_ratio{sel()} or on(node, family, cluster) "
                    f"erlang_vm_data_dir_disk_used_ratio{sel()}",
                    "{{mount}}",
                )
            ],
            "percentunit",
            steps=alarm_steps("disk_almost_full", 0.01),
            max_=1,
            w=8,
        ),
        timeseries(
            "Modules loaded",
            "Modules loaded on the node." + alarm_note("module_limit"),
            [prom(f"erlang_vm_modules{sel()}", "modules")],
            "short",
            steps=alarm_steps("module_limit"),
            w=4,
        ),
        stat(
            "Modules with old code",
            "Modules whose old version is still loaded (soft-purge them once no process "
            "runs it)." + alarm_note("old_code"),
            [prom(f"erlang_vm_modules_old_code{sel()}", "old code")],
            "short",
            steps=alarm_steps("old_code"),
            w=4,
            h=8,
        ),
        row("Ports"),
        timeseries(
            "Ports by kind",
            "Open ports by driver (tcp_inet, udp_inet, efile, spawn, ...), as "
            "recon:port_types counts them; the Ports/ListPorts tool lists them one by one.",
            [prom(f"erlang_vm_ports_by_kind{sel()}", "{{kind}}")],
            "short",
            stack=True,
        ),
        timeseries(
            "Port traffic by kind",
            "Bytes per second read (+) and written (-) by the open ports of each kind.",
            [
                prom(
                    f"sum by (kind) (rate(erlang_vm_port_input_bytes{sel()}[{RATE}]))",
                    "{{kind}} in",
                ),
                prom(
                    f"-sum by (kind) (rate(erlang_vm_port_output_bytes{sel()}[{RATE}]))",
                    "{{kind}} out",
                ),
            ],
            "Bps",
            min_=None,
        ),
        row("Applications and alarms"),
        table(
            "Applications",
            "Applications running on the node, with their versions.",
            [
                prom(
                    f"max by (application, version) (erlang_vm_application_info{sel()})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            transformations=LABELS_ONLY,
        ),
        table(
            "Releases",
            "The releases release_handler knows (permanent, current, old, unpacked): shown "
            "when the node runs sasl. A change of the permanent release is marked on the "
            'graphs (annotation "Release changes").',
            [
                prom(
                    f"max by (release, version, status) (erlang_vm_release_info{sel()})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            transformations=LABELS_ONLY,
        ),
        table(
            "Active alarms",
            "beamside alarms active on the node (family-wide ones on the Alarms dashboard).",
            [
                prom(
                    f"max by (alarm, severity) (beamside_alarm_active{sel()})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            transformations=LABELS_ONLY,
        ),
        logs(
            "Logs of the node",
            "Logger events beamside shipped from the node to Loki (warning and up by default).",
            f"{stream('log')} | json",
        ),
    ]
    return dashboard(
        "beamside-node",
        "beamside / Node detail",
        "One BEAM node: attachment, limits, load, memory, applications, alarms and logs.",
        standard_vars(loki_too=True, single_node=True),
        panels,
        [
            loki_annotation(
                "Release changes",
                f'{stream("notification")} |= "release_changed" | json',
                title="{{release}} {{version}} permanent",
                text="{{message}}",
                tags="node",
                color="purple",
            )
        ],
    )
