"""The processes dashboard: counts, schedulers and run queues, message queues, system monitor."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import LARGEST_FIRST, limit_ratio, row, table, timeseries
from .queries import RATE, Json, alarm_note, alarm_steps, eq, per_minute, prom, sel


def processes() -> Json:
    panels = [
        row("Processes"),
        limit_ratio(
            "Process table usage",
            "process_limit",
            "erlang_vm_processes",
            "erlang_vm_process_limit",
            "Processes",
        ),
        timeseries(
            "Processes and ports",
            "Processes and ports existing on each node.",
            [
                prom(f"erlang_vm_processes{sel()}", "{{node}} processes"),
                prom(f"erlang_vm_ports{sel()}", "{{node}} ports"),
            ],
            "short",
        ),
        row("Schedulers"),
        timeseries(
            "Scheduler utilisation",
            "Average busy fraction of the schedulers of each type since the previous "
            "collection. Needs scheduler_wall_time on the node "
            "(erlang:system_flag(scheduler_wall_time, true)); beamside never turns it on.",
            [
                prom(
                    f"erlang_vm_scheduler_utilization_average_ratio{sel()}",
                    "{{node}} {{type}}",
                )
            ],
            "percentunit",
            max_=1,
        ),
        timeseries(
            "Run queues",
            "Processes and ports ready to run, per node: normal queues (summed) and the "
            "dirty CPU and IO queues.",
            [
                prom(f"erlang_vm_statistics_run_queues_length{sel()}", "{{node}} normal"),
                prom(
                    f"erlang_vm_statistics_dirty_cpu_run_queue_length{sel()}",
                    "{{node}} dirty cpu",
                ),
                prom(
                    f"erlang_vm_statistics_dirty_io_run_queue_length{sel()}",
                    "{{node}} dirty io",
                ),
            ],
            "short",
        ),
        timeseries(
            "Run queue per scheduler",
            "Run queue length of each normal scheduler: one long queue while others are "
            "empty points at poor balancing or a blocked scheduler.",
            [prom(f"erlang_vm_run_queue_length{sel()}", "{{node}} #{{scheduler}}")],
            "short",
        ),
        timeseries(
            "Active tasks",
            "Processes and ports running or ready to run, by scheduler type.",
            [prom(f"erlang_vm_active_tasks{sel()}", "{{node}} {{type}}")],
            "short",
        ),
        timeseries(
            "Scheduler time by state (microstate accounting)",
            "Seconds per second the normal schedulers spend in each state. Needs "
            "microstate accounting on the node (erlang:system_flag(microstate_accounting, "
            "true) or msacc:start/0); sleep is left out.",
            [
                prom(
                    f"sum by (node) (rate(erlang_vm_msacc_{state}_seconds_total"
                    f"{sel(eq('type', 'scheduler'))}[{RATE}]))",
                    "{{node}} " + state,
                )
                for state in ("emulator", "gc", "port", "check_io", "aux", "other")
            ],
            "s",
            stack=True,
            w=24,
        ),
        timeseries(
            "Reductions per second",
            "Reductions executed per second on each node.",
            [prom(f"rate(erlang_vm_statistics_reductions_total{sel()}[{RATE}])")],
            "short",
            w=8,
        ),
        timeseries(
            "Context switches per second",
            "Process context switches per second.",
            [prom(f"rate(erlang_vm_statistics_context_switches_total{sel()}[{RATE}])")],
            "ops",
            w=8,
        ),
        timeseries(
            "Garbage collection",
            "Bytes reclaimed per second by garbage collection.",
            [
                prom(
                    "rate(erlang_vm_statistics_garbage_collection_bytes_reclaimed_total"
                    f"{sel()}[{RATE}])"
                )
            ],
            "Bps",
            w=8,
        ),
        row("Message queues"),
        timeseries(
            "Longest message queue",
            "The longest message queue of a single process on each node."
            + alarm_note("process_message_queue"),
            [prom(f"erlang_vm_process_message_queue_max{sel()}")],
            "short",
            steps=alarm_steps("process_message_queue"),
            w=8,
        ),
        timeseries(
            "Messages queued",
            "Messages waiting in all the message queues of each node.",
            [prom(f"erlang_vm_process_messages_queued{sel()}")],
            "short",
            w=8,
        ),
        timeseries(
            "Processes with messages",
            "Processes with a non-empty queue, and those above the agent's threshold.",
            [
                prom(f"erlang_vm_processes_with_messages{sel()}", "{{node}} non-empty"),
                prom(
                    f"erlang_vm_processes_above_message_queue_threshold{sel()}",
                    "{{node}} above threshold",
                ),
            ],
            "short",
            w=8,
        ),
        table(
            "Longest message queues",
            "The processes with the longest message queues, by registered name or pid.",
            [
                prom(
                    f"max by (node, process) (erlang_vm_process_top_message_queue_length{sel()})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            transformations=LARGEST_FIRST,
            w=24,
        ),
        row("System monitor"),
        timeseries(
            "Long garbage collections",
            "long_gc events per minute from erlang:system_monitor (beamside holds the "
            "node's system monitor)." + alarm_note("long_gc_storm", "{:g}/min"),
            [prom(per_minute("long_gc"))],
            "opm",
            steps=alarm_steps("long_gc_storm"),
            w=8,
        ),
        timeseries(
            "Long schedules",
            "long_schedule events per minute: a process or port ran too long without "
            "yielding." + alarm_note("long_schedule_storm", "{:g}/min"),
            [prom(per_minute("long_schedule"))],
            "opm",
            steps=alarm_steps("long_schedule_storm"),
            w=8,
        ),
        timeseries(
            "Large heaps and busy ports",
            "large_heap and busy_port events per minute.",
            [
                prom(
                    "rate(erlang_vm_system_monitor_events_total"
                    f"{sel(eq('event', 'large_heap|busy_port', '=~'))}[{RATE}]) * 60",
                    "{{node}} {{event}}",
                )
            ],
            "opm",
            w=8,
        ),
    ]
    return dashboard(
        "beamside-processes",
        "beamside / Processes and schedulers",
        "Process counts and limits, schedulers and run queues, message queues and "
        "system monitor events.",
        standard_vars(),
        panels,
    )
