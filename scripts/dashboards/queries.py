"""Shared query pieces: datasources, label selectors, thresholds and targets.

The dashboard filters (``$cluster``, ``$family``, ``$node``) every query
carries, threshold steps taken from the built-in alarm defaults of
``sidecar/alarms/catalogue.py``, and the Prometheus and Loki target shapes.
"""

from __future__ import annotations

from typing import Any

from sidecar.alarms.catalogue import BUILTIN
from sidecar.alarms.model import Severity

Json = dict[str, Any]

PROM: Json = {"type": "prometheus", "uid": "${prometheus}"}
LOKI: Json = {"type": "loki", "uid": "${loki}"}

# Label matchers every per-node query carries; `=~` because the variables are
# multi-valued (Grafana writes a multi-value selection as a regex).
CF = 'cluster=~"$cluster", family=~"$family"'
CFN = f'{CF}, node=~"$node"'
# Family-wide alarms have node="": keep them when filtering by node.
CFN_ALARM = f'{CF}, node=~"$node|"'
RATE = "$__rate_interval"

SEVERITY_COLOR = {
    Severity.WARNING: "yellow",
    Severity.MINOR: "orange",
    Severity.MAJOR: "red",
    Severity.CRITICAL: "dark-red",
}

# Loki: the labels beamside sets on its streams (SPEC §5) and their values.
LOKI_JOB = "beamside"
LOKI_KINDS = ("log", "notification", "alarm", "audit", "trace")


def eq(label: str, value: str, op: str = "=") -> str:
    """One label matcher: ``label op "value"``."""
    return f'{label}{op}"{value}"'


def sel(extra: str = "", base: str = CFN) -> str:
    """A label selector body: the dashboard filters plus ``extra``."""
    return "{" + base + (", " + extra if extra else "") + "}"


def alarm_steps(alarm: str, scale: float = 1.0) -> list[Json]:
    """Threshold steps at the alarm's default levels (times ``scale``)."""
    steps: list[Json] = [{"color": "green", "value": None}]
    last = float("-inf")
    for severity, level in BUILTIN[alarm].levels:
        value = round(level * scale, 10)
        if value <= last:
            raise ValueError(f"{alarm}: levels must rise")
        last = value
        steps.append({"color": SEVERITY_COLOR[severity], "value": value})
    return steps


def alarm_note(alarm: str, fmt: str = "{:g}", scale: float = 1.0) -> str:
    levels = ", ".join(
        f"{sev} at {fmt.format(level * scale)}" for sev, level in BUILTIN[alarm].levels
    )
    return (
        f" Thresholds are the defaults of the `{alarm}` alarm ({levels}); "
        "your `alarms:` config may set others."
    )


def plain_steps(*levels: tuple[str, float]) -> list[Json]:
    return [{"color": "green", "value": None}] + [{"color": c, "value": v} for c, v in levels]


def prom(
    expr: str, legend: str = "{{node}}", *, instant: bool = False, table: bool = False
) -> Json:
    target: Json = {"datasource": PROM, "expr": expr, "legendFormat": legend, "range": not instant}
    if instant:
        target["instant"] = True
    if table:
        target["format"] = "table"
    return target


def loki(expr: str, legend: str | None = None) -> Json:
    target: Json = {"datasource": LOKI, "expr": expr, "queryType": "range"}
    if legend is not None:
        target["legendFormat"] = legend
    return target


def loki_annotation(name: str, expr: str, *, title: str, text: str, tags: str, color: str) -> Json:
    """A dashboard annotation from Loki lines, as Grafana's Loki datasource
    stores it: the query and the title/text/tag patterns (``{{field}}``,
    fields of ``| json`` included) at the top level of the annotation."""
    return {
        "datasource": LOKI,
        "enable": True,
        "iconColor": color,
        "name": name,
        "expr": expr,
        "queryType": "range",
        "titleFormat": title,
        "textFormat": text,
        "tagKeys": tags,
    }


def stream(kind: str | None = None, *, level: bool = False) -> str:
    """A Loki stream selector with the dashboard filters."""
    parts = [f'job="{LOKI_JOB}"', 'cluster=~"$cluster"', 'family=~"$family"', 'node=~"$node"']
    if kind is not None:
        parts.append(f'kind="{kind}"' if "|" not in kind else f'kind=~"{kind}"')
    if level:
        parts.append('level=~"$level"')
    return "{" + ", ".join(parts) + "}"


def per_minute(event: str) -> str:
    return f"rate(erlang_vm_system_monitor_events_total{sel(eq('event', event))}[{RATE}]) * 60"
