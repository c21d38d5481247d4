"""The alarms dashboard: active alarms, their history and notifications, the built-in catalogue."""

from __future__ import annotations

from sidecar.alarms.catalogue import BUILTIN

from .board import dashboard, standard_vars
from .panels import LABELS_ONLY, logs, row, stat, state_timeline, table, text, timeseries
from .queries import CFN_ALARM, Json, prom, sel, stream


def _catalogue_markdown() -> str:
    lines = [
        "| alarm | scope | unit | defaults |",
        "| --- | --- | --- | --- |",
    ]
    for spec in BUILTIN.values():
        levels = ", ".join(f"{sev} {level:g}" for sev, level in spec.levels)
        lines.append(f"| `{spec.id}` | {spec.scope} | {spec.unit} | {levels} |")
    return "\n".join(lines)


def alarms() -> Json:
    severity_steps: list[Json] = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
    panels = [
        row("Active"),
        stat(
            "Active alarms by severity",
            "beamside alarms active now, by severity, on the selected nodes and their "
            "families (family-wide alarms have no node).",
            [
                prom(
                    f"count by (severity) (beamside_alarm_active{sel(base=CFN_ALARM)})",
                    "{{severity}}",
                )
            ],
            "short",
            steps=severity_steps,
            w=12,
        ),
        stat(
            "SASL alarms on the nodes",
            "Alarms set in SASL's alarm_handler on the nodes (os_mon's among them); "
            "beamside forwards each one as an alarm of its own.",
            [prom(f"sum(erlang_vm_sasl_alarms{sel()})", "SASL alarms")],
            "short",
            steps=severity_steps,
            w=12,
        ),
        table(
            "Active alarms",
            "Every active alarm: id, severity, node (empty for a family-wide alarm) and "
            "family. Cause, repair action and details are in Alertmanager and in the "
            "alarm notifications below.",
            [
                prom(
                    "max by (alarm, severity, node, family) "
                    f"(beamside_alarm_active{sel(base=CFN_ALARM)})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            transformations=LABELS_ONLY,
            w=24,
        ),
        row("History"),
        timeseries(
            "Active alarms over time",
            "Count of active alarms by severity.",
            [
                prom(
                    f"count by (severity) (beamside_alarm_active{sel(base=CFN_ALARM)})",
                    "{{severity}}",
                )
            ],
            "short",
            stack=True,
            w=24,
        ),
        state_timeline(
            "Alarm timeline",
            "When each alarm was active, per node (or family).",
            [
                prom(
                    f"max by (alarm, node, family) (beamside_alarm_active{sel(base=CFN_ALARM)})",
                    "{{alarm}} {{node}}{{family}}",
                )
            ],
            mappings=[
                {"type": "value", "options": {"1": {"text": "active", "color": "red", "index": 0}}}
            ],
            steps=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
        ),
        logs(
            "Alarm notifications",
            "Every raise, change and clear beamside sent to Loki (kind=alarm), with cause, "
            "repair action and additional information in the JSON line.",
            f"{stream('alarm')} | json",
        ),
        text(
            "Built-in alarms and default thresholds",
            "The alarm catalogue this beamside version ships (sidecar/alarms/catalogue.py); "
            "thresholds can be changed per alarm under `alarms:` in the config file.",
            _catalogue_markdown(),
            h=16,
        ),
    ]
    return dashboard(
        "beamside-alarms",
        "beamside / Alarms",
        "beamside's alarms: what is active now, their history and notifications.",
        standard_vars(loki_too=True),
        panels,
    )
