"""The logs dashboard: what beamside ships to Loki (logs, notifications, audit, alarms, traces)."""

from __future__ import annotations

from sidecar.config import LOG_LEVELS

from .board import custom_var, dashboard, standard_vars, textbox_var
from .panels import logs, row, timeseries
from .queries import LOKI, Json, loki, stream


def logs_dashboard() -> Json:
    log_stream = stream("log", level=True)
    variables = [
        *standard_vars(loki_too=True),
        custom_var("level", "Level", LOG_LEVELS, LOG_LEVELS[:5]),
        textbox_var("search", "Search"),
    ]
    search = ' |= "$search"'
    panels = [
        row("Volume"),
        timeseries(
            "Log lines by level",
            "Logger events shipped to Loki per interval, by level.",
            [
                loki(
                    f"sum by (level) (count_over_time({log_stream}[$__interval]))",
                    "{{level}}",
                )
            ],
            "short",
            stack=True,
            ds=LOKI,
        ),
        timeseries(
            "Lines by kind",
            "Lines per interval by kind: logs, notifications, alarms, audit records and "
            "trace events.",
            [
                loki(
                    "sum by (kind) (count_over_time("
                    f"{stream('log|notification|alarm|audit|trace')}[$__interval]))",
                    "{{kind}}",
                )
            ],
            "short",
            stack=True,
            ds=LOKI,
        ),
        row("Lines"),
        logs(
            "Logs",
            "Logger events from the nodes (crash, supervisor and SASL reports included) "
            "at the selected levels, filtered by the search text; the line is JSON.",
            f"{log_stream}{search} | json",
            h=14,
        ),
        logs(
            "Notifications",
            "Shell commands typed on the nodes, modules loaded and purged, configuration "
            "changes and (when enabled) system monitor events.",
            f"{stream('notification')}{search} | json",
        ),
        logs(
            "Audit",
            "Every mutating control-plane request: who, what, on which node, result.",
            f"{stream('audit')}{search} | json",
            h=10,
        ),
        logs(
            "Alarm notifications",
            "Alarms raised, changed and cleared.",
            f"{stream('alarm')}{search} | json",
            h=10,
        ),
        logs(
            "Trace events",
            "Events of the traces started with Trace/Start (calls, returns, messages), "
            "formatted as recon_trace does (each trace's start and stop, with its reason, "
            "are audit records).",
            f"{stream('trace')}{search} | json",
            h=10,
        ),
    ]
    return dashboard(
        "beamside-logs",
        "beamside / Logs and notifications",
        "What beamside ships to Loki: node logs, notifications, audit records, alarms and "
        "trace events.",
        variables,
        panels,
    )
