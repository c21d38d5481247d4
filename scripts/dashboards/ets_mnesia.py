"""The ETS and mnesia dashboard: tables against their limit, transactions and locks."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import bargauge, limit_ratio, row, stat, timeseries
from .queries import RATE, Json, eq, plain_steps, prom, sel


def ets_mnesia() -> Json:
    panels = [
        row("ETS"),
        limit_ratio(
            "ETS table usage",
            "ets_limit",
            "erlang_vm_ets_tables",
            "erlang_vm_ets_limit",
            "ETS tables",
            w=8,
        ),
        timeseries(
            "ETS memory",
            "Memory of all ETS tables (erlang:memory(ets)).",
            [prom(f"erlang_vm_memory_bytes{sel(eq('kind', 'ets'))}")],
            "bytes",
            w=8,
        ),
        timeseries(
            "ETS tables and objects",
            "ETS tables, and the objects in all of them.",
            [
                prom(f"erlang_vm_ets_tables{sel()}", "{{node}} tables"),
                prom(f"erlang_vm_ets_objects{sel()}", "{{node}} objects"),
            ],
            "short",
            w=8,
        ),
        bargauge(
            "Largest tables by memory",
            "ETS tables using the most memory (tables sharing a name are summed).",
            [
                prom(
                    f"topk(10, erlang_vm_ets_top_memory_bytes{sel()})",
                    "{{node}} {{table}}",
                    instant=True,
                )
            ],
            "bytes",
            w=12,
        ),
        bargauge(
            "Largest tables by objects",
            "Objects in the largest ETS tables.",
            [
                prom(
                    f"topk(10, erlang_vm_ets_top_objects{sel()})",
                    "{{node}} {{table}}",
                    instant=True,
                )
            ],
            "short",
            w=12,
        ),
        row("Mnesia"),
        stat(
            "Mnesia running",
            "Nodes of the selection where mnesia runs.",
            [prom(f"sum(erlang_mnesia_running{sel()})", "running")],
            "short",
        ),
        stat(
            "Schema nodes running",
            "Nodes of the mnesia schema where mnesia runs, over all its nodes (each "
            "node's view; below 1 means part of the schema is away).",
            [
                prom(
                    f"min(erlang_mnesia_running_db_nodes{sel()} / on(node) "
                    f"erlang_mnesia_db_nodes{sel()})",
                    "running",
                )
            ],
            "percentunit",
            steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
        ),
        stat(
            "Tables",
            "Tables of the mnesia schema.",
            [prom(f"max(erlang_mnesia_tables{sel()})", "tables")],
            "short",
        ),
        stat(
            "Mnesia memory",
            "Memory of all local table copies.",
            [prom(f"sum(erlang_mnesia_memory_usage_bytes{sel()})", "memory")],
            "bytes",
        ),
        stat(
            "Locks held",
            "Locks held by mnesia on the selected nodes.",
            [prom(f"sum(erlang_mnesia_held_locks{sel()})", "locks")],
            "short",
        ),
        stat(
            "Lock queue",
            "Transactions waiting for a lock.",
            [prom(f"sum(erlang_mnesia_lock_queue{sel()})", "waiting")],
            "short",
            steps=plain_steps(("orange", 10), ("red", 100)),
        ),
        timeseries(
            "Transactions",
            "Transactions per second: committed, failed, restarted, logged.",
            [
                prom(
                    f"rate(erlang_mnesia_committed_transactions_total{sel()}[{RATE}])",
                    "{{node}} committed",
                ),
                prom(
                    f"rate(erlang_mnesia_failed_transactions_total{sel()}[{RATE}])",
                    "{{node}} failed",
                ),
                prom(
                    f"rate(erlang_mnesia_restarted_transactions_total{sel()}[{RATE}])",
                    "{{node}} restarted",
                ),
                prom(
                    f"rate(erlang_mnesia_logged_transactions_total{sel()}[{RATE}])",
                    "{{node}} logged",
                ),
            ],
            "ops",
        ),
        timeseries(
            "Transactions in progress",
            "Transactions each node coordinates and takes part in now.",
            [
                prom(f"erlang_mnesia_transaction_coordinators{sel()}", "{{node}} coordinator"),
                prom(f"erlang_mnesia_transaction_participants{sel()}", "{{node}} participant"),
            ],
            "short",
        ),
        timeseries(
            "Table memory",
            "Memory of each table's local copy, by storage type.",
            [
                prom(
                    f"erlang_mnesia_tablewise_memory_usage_bytes{sel()}",
                    "{{node}} {{table}} ({{type}})",
                )
            ],
            "bytes",
        ),
        timeseries(
            "Table size",
            "Records in each table's local copy.",
            [prom(f"erlang_mnesia_tablewise_size{sel()}", "{{node}} {{table}}")],
            "short",
        ),
        timeseries(
            "Mnesia system events",
            "inconsistent_database and mnesia_overload events per minute, seen since "
            "beamside attached (both raise alarms: mnesia_inconsistent_database, "
            "mnesia_overload).",
            [
                prom(
                    f"rate(erlang_mnesia_system_events_total{sel()}[{RATE}]) * 60",
                    "{{node}} {{event}}",
                )
            ],
            "opm",
            steps=plain_steps(("red", 0.001)),
            w=24,
        ),
    ]
    return dashboard(
        "beamside-ets-mnesia",
        "beamside / ETS and Mnesia",
        "ETS tables against their limit and the largest tables; mnesia transactions, "
        "locks, tables and system events.",
        standard_vars(),
        panels,
    )
