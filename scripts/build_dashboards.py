#!/usr/bin/env python3
"""Generate beamside's Grafana dashboards (grafana_dashboards/*.json).

One generator keeps every dashboard consistent: the same datasource and
cluster/family/node variables, stable uids, units, and thresholds taken from
the built-in alarm defaults of ``sidecar/alarms/catalogue.py`` (so a panel
turns orange and red where beamside raises its minor and major alarms).

    python scripts/build_dashboards.py          # (re)write the JSON files
    python scripts/build_dashboards.py --check  # exit 1 if a file is stale

Queries use the metric names beamside exports (prometheus.erl's where that
project has the metric) and the Loki stream labels of SPEC §5.  Every
Prometheus query is run against a real Prometheus by tests/test_dashboards.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sidecar.alarms.catalogue import BUILTIN  # noqa: E402
from sidecar.alarms.model import Severity  # noqa: E402
from sidecar.config import LOG_LEVELS  # noqa: E402

OUT_DIR = ROOT / "grafana_dashboards"
# What @grafana/schema 13.x (dashboard "x" kind) writes as its default.
SCHEMA_VERSION = 42
TAGS = ["beamside", "erlang"]

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
LOKI_KINDS = ("log", "notification", "alarm", "audit")


def eq(label: str, value: str, op: str = "=") -> str:
    """One label matcher: ``label op "value"``."""
    return f'{label}{op}"{value}"'


def sel(extra: str = "", base: str = CFN) -> str:
    """A label selector body: the dashboard filters plus ``extra``."""
    return "{" + base + (", " + extra if extra else "") + "}"


# --------------------------------------------------------------------------- thresholds


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


# --------------------------------------------------------------------------- targets


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


def stream(kind: str | None = None, *, level: bool = False) -> str:
    """A Loki stream selector with the dashboard filters."""
    parts = [f'job="{LOKI_JOB}"', 'cluster=~"$cluster"', 'family=~"$family"', 'node=~"$node"']
    if kind is not None:
        parts.append(f'kind="{kind}"' if "|" not in kind else f'kind=~"{kind}"')
    if level:
        parts.append('level=~"$level"')
    return "{" + ", ".join(parts) + "}"


# --------------------------------------------------------------------------- panels


def _refs(targets: Sequence[Json]) -> list[Json]:
    return [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]


def _defaults(
    unit: str,
    steps: list[Json] | None,
    *,
    min_: float | None = None,
    max_: float | None = None,
    mappings: list[Json] | None = None,
    custom: Json | None = None,
) -> Json:
    d: Json = {"unit": unit}
    if min_ is not None:
        d["min"] = min_
    if max_ is not None:
        d["max"] = max_
    d["color"] = {"mode": "thresholds" if steps else "palette-classic"}
    d["thresholds"] = {"mode": "absolute", "steps": steps or plain_steps()}
    d["mappings"] = mappings or []
    if custom is not None:
        d["custom"] = custom
    return d


def _panel(kind: str, title: str, description: str, ds: Json, w: int, h: int) -> Json:
    if not description.strip():
        raise ValueError(f"panel {title!r} needs a description")
    return {
        "type": kind,
        "title": title,
        "description": description.strip(),
        "datasource": ds,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
    }


def timeseries(
    title: str,
    description: str,
    targets: Sequence[Json],
    unit: str,
    *,
    steps: list[Json] | None = None,
    stack: bool = False,
    min_: float | None = 0,
    max_: float | None = None,
    w: int = 12,
    h: int = 8,
    ds: Json = PROM,
) -> Json:
    custom: Json = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 8,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if steps else "off"},
    }
    p = _panel("timeseries", title, description, ds, w, h)
    p["targets"] = _refs(targets)
    p["fieldConfig"] = {
        "defaults": _defaults(unit, steps, min_=min_, max_=max_, custom=custom),
        "overrides": [],
    }
    if steps:  # colour by series, thresholds only as lines
        p["fieldConfig"]["defaults"]["color"] = {"mode": "palette-classic"}
    p["options"] = {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def stat(
    title: str,
    description: str,
    targets: Sequence[Json],
    unit: str,
    *,
    steps: list[Json] | None = None,
    mappings: list[Json] | None = None,
    text_mode: str = "auto",
    graph: bool = True,
    w: int = 4,
    h: int = 4,
) -> Json:
    p = _panel("stat", title, description, PROM, w, h)
    p["targets"] = _refs(targets)
    p["fieldConfig"] = {
        "defaults": _defaults(unit, steps, mappings=mappings),
        "overrides": [],
    }
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text_mode,
        "wideLayout": True,
    }
    return p


def gauge(
    title: str,
    description: str,
    targets: Sequence[Json],
    unit: str,
    *,
    steps: list[Json],
    max_: float = 1,
    w: int = 6,
    h: int = 6,
) -> Json:
    p = _panel("gauge", title, description, PROM, w, h)
    p["targets"] = _refs(targets)
    p["fieldConfig"] = {"defaults": _defaults(unit, steps, min_=0, max_=max_), "overrides": []}
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "auto",
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
    }
    return p


def bargauge(
    title: str,
    description: str,
    targets: Sequence[Json],
    unit: str,
    *,
    steps: list[Json] | None = None,
    max_: float | None = None,
    w: int = 8,
    h: int = 8,
) -> Json:
    p = _panel("bargauge", title, description, PROM, w, h)
    p["targets"] = _refs(targets)
    p["fieldConfig"] = {
        "defaults": _defaults(unit, steps, min_=0, max_=max_),
        "overrides": [],
    }
    if not steps:
        p["fieldConfig"]["defaults"]["color"] = {"mode": "continuous-GrYlRd"}
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
    }
    return p


def table(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    unit: str = "short",
    transformations: list[Json] | None = None,
    overrides: list[Json] | None = None,
    w: int = 12,
    h: int = 8,
) -> Json:
    p = _panel("table", title, description, PROM, w, h)
    p["targets"] = _refs(targets)
    p["fieldConfig"] = {
        "defaults": _defaults(unit, None, custom={"align": "auto", "filterable": True}),
        "overrides": overrides or [],
    }
    p["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    p["transformations"] = transformations or []
    return p


def state_timeline(
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    mappings: list[Json],
    steps: list[Json],
    w: int = 24,
    h: int = 8,
) -> Json:
    p = _panel("state-timeline", title, description, PROM, w, h)
    p["targets"] = _refs(targets)
    p["fieldConfig"] = {
        "defaults": _defaults(
            "short", steps, mappings=mappings, custom={"fillOpacity": 70, "lineWidth": 0}
        ),
        "overrides": [],
    }
    p["options"] = {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return p


def logs(title: str, description: str, expr: str, *, w: int = 24, h: int = 12) -> Json:
    p = _panel("logs", title, description, LOKI, w, h)
    p["targets"] = _refs([loki(expr)])
    p["options"] = {
        "showTime": True,
        "showLabels": False,
        "showCommonLabels": False,
        "wrapLogMessage": True,
        "prettifyLogMessage": False,
        "enableLogDetails": True,
        "dedupStrategy": "none",
        "sortOrder": "Descending",
    }
    return p


def text(title: str, description: str, content: str, *, w: int = 24, h: int = 8) -> Json:
    p = _panel("text", title, description, PROM, w, h)
    del p["datasource"]  # a text panel queries nothing
    p["options"] = {"mode": "markdown", "content": content}
    return p


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "id": 0}


UP_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]


# --------------------------------------------------------------------------- variables


def ds_var(name: str, plugin: str, label: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "datasource",
        "query": plugin,
        "regex": "",
        "hide": 0,
        "refresh": 1,
        "includeAll": False,
        "multi": False,
        "options": [],
        "skipUrlSync": False,
    }


def query_var(
    name: str, label: str, query: str, *, multi: bool = True, description: str = ""
) -> Json:
    var: Json = {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": PROM,
        "query": {"query": query, "refId": f"PrometheusVariableQueryEditor-{name}"},
        "regex": "",
        "refresh": 2,  # on time range change: nodes come and go
        "sort": 1,
        "hide": 0,
        "includeAll": multi,
        "multi": multi,
        "options": [],
        "skipUrlSync": False,
    }
    if multi:
        var["allValue"] = ".*"
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


def custom_var(name: str, label: str, values: Sequence[str], default: Sequence[str]) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "hide": 0,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": list(default), "value": list(default)},
        "options": [{"selected": v in default, "text": v, "value": v} for v in values],
        "skipUrlSync": False,
    }


def textbox_var(name: str, label: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "textbox",
        "query": "",
        "hide": 0,
        "current": {"selected": False, "text": "", "value": ""},
        "options": [{"selected": True, "text": "", "value": ""}],
        "skipUrlSync": False,
    }


def standard_vars(*, loki_too: bool = False, single_node: bool = False) -> list[Json]:
    out = [ds_var("prometheus", "prometheus", "Prometheus")]
    if loki_too:
        out.append(ds_var("loki", "loki", "Loki"))
    out.append(
        query_var(
            "cluster",
            "Cluster",
            "label_values(beamside_node_up, cluster)",
            multi=False,
            description="beamside's `cluster:` setting.",
        )
    )
    out.append(
        query_var(
            "family",
            "Family",
            'label_values(beamside_node_up{cluster=~"$cluster"}, family)',
            description="Nodes running the same release.",
        )
    )
    out.append(
        query_var(
            "node",
            "Node",
            'label_values(beamside_node_up{cluster=~"$cluster", family=~"$family"}, node)',
            multi=not single_node,
        )
    )
    return out


# --------------------------------------------------------------------------- layout


def layout(items: Iterable[Json]) -> list[Json]:
    """Ids in order and grid positions flowing left to right, rows full width."""
    out: list[Json] = []
    x = y = row_h = 0
    for i, item in enumerate(items, 1):
        p = json.loads(json.dumps(item))
        p["id"] = i
        if p["type"] == "row":
            if x:
                y += row_h
            p["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y += 1
            x = row_h = 0
        else:
            w, h = p["gridPos"]["w"], p["gridPos"]["h"]
            if x + w > 24:
                y += row_h
                x = row_h = 0
            p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            x += w
            row_h = max(row_h, h)
        out.append(p)
    return out


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], panels: Iterable[Json]
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "version": 1,
        "weekStart": "",
        "annotations": {"list": []},
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["beamside"],
                "targetBlank": False,
                "title": "beamside dashboards",
                "tooltip": "The other beamside dashboards, same variables and time",
                "type": "dashboards",
            }
        ],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


# --------------------------------------------------------------------------- common panels


def limit_ratio(
    title: str, alarm: str, count: str, limit: str, what: str, *, w: int = 12, extra: str = ""
) -> Json:
    """Usage against a limit, thresholds at the alarm's levels."""
    expr = f"{count}{sel(extra)} / on(node, family, cluster) {limit}{sel()}"
    return timeseries(
        title,
        f"{what} divided by the limit, per node." + alarm_note(alarm, "{:.0%}"),
        [prom(expr)],
        "percentunit",
        steps=alarm_steps(alarm),
        max_=1,
        w=w,
    )


def per_minute(event: str) -> str:
    return f"rate(erlang_vm_system_monitor_events_total{sel(eq('event', event))}[{RATE}]) * 60"


# --------------------------------------------------------------------------- dashboards


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
            "Used fraction of each mounted disk, from os_mon's disksup."
            + alarm_note("disk_almost_full", "{:g}%"),
            [prom(f"erlang_os_mon_disk_used_ratio{sel()}", "{{mount}}")],
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
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
            ],
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
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
            ],
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
    )


def memory() -> Json:
    binary = sel(eq("kind", "binary"))
    panels = [
        row("VM memory"),
        timeseries(
            "Memory by kind",
            "erlang:memory/0 by kind, per node (processes and system add up to total).",
            [
                prom(
                    "erlang_vm_memory_bytes"
                    + sel(
                        eq("kind", "processes|system|binary|ets|code|atom|persistent_term", "=~")
                    ),
                    "{{node}} {{kind}}",
                )
            ],
            "bytes",
        ),
        timeseries(
            "System memory by use",
            "Memory the emulator allocated that is not process memory, split as "
            "prometheus.erl does: atom, binary, code, ets and the rest.",
            [
                prom(
                    f"sum by (usage) (erlang_vm_memory_system_bytes{sel()})",
                    "{{usage}}",
                )
            ],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Process memory used and free",
            "Memory allocated for process heaps: used, and allocated but free.",
            [prom(f"sum by (usage) (erlang_vm_memory_processes_bytes{sel()})", "{{usage}}")],
            "bytes",
            stack=True,
            w=8,
        ),
        timeseries(
            "Atom memory used and free",
            "Memory allocated for the atom table: used and free.",
            [prom(f"sum by (usage) (erlang_vm_memory_atom_bytes{sel()})", "{{usage}}")],
            "bytes",
            stack=True,
            w=8,
        ),
        timeseries(
            "Binary memory growth",
            "Binary memory over its lowest value of the last 10 minutes (the alarm's "
            "window); beamside only raises the alarm once binaries use 64 MiB or more."
            + alarm_note("binary_memory_growth", "{:g}x"),
            [
                prom(
                    f"erlang_vm_memory_bytes{binary}"
                    f" / min_over_time(erlang_vm_memory_bytes{binary}[10m])"
                )
            ],
            "none",
            steps=alarm_steps("binary_memory_growth"),
            w=8,
        ),
        row("Allocators"),
        timeseries(
            "Carriers by allocator",
            "Memory the alloc_util allocators got from the OS (carriers), per allocator "
            "type, summed over instances and carrier kinds.",
            [prom(f"sum by (alloc) (erlang_vm_allocator_carriers_bytes{sel()})", "{{alloc}}")],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Allocator usage (1 - fragmentation)",
            "Blocks (data) over carriers of each allocator: a low ratio with large "
            "carriers means fragmented memory the VM holds but does not use.",
            [prom(f"erlang_vm_allocator_usage_ratio{sel()}", "{{node}} {{alloc}}")],
            "percentunit",
            max_=1,
        ),
        timeseries(
            "Unused carrier memory",
            "Bytes in carriers not used by blocks, per allocator (fragmentation in bytes).",
            [prom(f"sum by (alloc) (erlang_vm_allocator_unused_bytes{sel()})", "{{alloc}}")],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Allocated vs used",
            "Bytes in all allocator carriers against erlang:memory(total): the gap is "
            "memory taken from the OS but not in use.",
            [
                prom(f"erlang_vm_allocated_bytes{sel()}", "{{node}} carriers"),
                prom(
                    f"erlang_vm_memory_bytes{sel(eq('kind', 'total'))}",
                    "{{node}} total",
                ),
            ],
            "bytes",
        ),
        bargauge(
            "Largest internal areas",
            "The VM's own allocated areas (erlang:system_info(allocated_areas)), largest ten.",
            [
                prom(
                    f"topk(10, max by (area) (erlang_vm_allocated_area_bytes{sel()}))",
                    "{{area}}",
                    instant=True,
                )
            ],
            "bytes",
            w=12,
        ),
        row("Processes and host"),
        timeseries(
            "Largest process",
            "Memory of each node's largest process."
            + alarm_note("process_memory_high_watermark", "{:.0f} MiB", 1 / 2**20),
            [prom(f"erlang_vm_process_memory_max_bytes{sel()}")],
            "bytes",
            steps=alarm_steps("process_memory_high_watermark"),
        ),
        table(
            "Largest processes",
            "The processes using the most memory, by registered name or pid.",
            [
                prom(
                    f"max by (node, process) (erlang_vm_process_top_memory_bytes{sel()})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            unit="bytes",
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
                {"id": "sortBy", "options": {"sort": [{"field": "Value", "desc": True}]}},
            ],
        ),
        timeseries(
            "Host memory used",
            "Used fraction of the host's memory: os_mon's memsup when it runs on the "
            "node, else the node's own view of /proc/meminfo."
            + alarm_note("system_memory_high_watermark", "{:.0%}"),
            [
                prom(
                    f"(1 - erlang_os_mon_memory_available_bytes{sel()} / on(node, family, cluster)"
                    f" erlang_os_mon_memory_total_bytes{sel()}) or (1 - "
                    f"erlang_vm_system_memory_bytes{sel(eq('kind', 'available'))}"
                    f" / ignoring(kind) erlang_vm_system_memory_bytes{sel(eq('kind', 'total'))})"
                )
            ],
            "percentunit",
            steps=alarm_steps("system_memory_high_watermark"),
            max_=1,
        ),
        timeseries(
            "Host memory (os_mon)",
            "memsup's figures for the node's host: total, available, free and cached.",
            [
                prom(f"erlang_os_mon_memory_total_bytes{sel()}", "{{node}} total"),
                prom(f"erlang_os_mon_memory_available_bytes{sel()}", "{{node}} available"),
                prom(f"erlang_os_mon_memory_free_bytes{sel()}", "{{node}} free"),
                prom(f"erlang_os_mon_memory_cached_bytes{sel()}", "{{node}} cached"),
            ],
            "bytes",
        ),
    ]
    return dashboard(
        "beamside-memory",
        "beamside / Memory and allocators",
        "Where the memory of the nodes goes: kinds, allocators and fragmentation, the "
        "largest processes, the host.",
        standard_vars(),
        panels,
    )


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
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
                {"id": "sortBy", "options": {"sort": [{"field": "Value", "desc": True}]}},
            ],
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


def distribution() -> Json:
    peer = "{{node}} → {{peer}}"
    panels = [
        row("Links"),
        timeseries(
            "Distribution links",
            "Nodes each node is connected to (visible and hidden)." + alarm_note("dist_link_limit"),
            [prom(f"erlang_vm_dist_links{sel()}")],
            "short",
            steps=alarm_steps("dist_link_limit"),
            w=8,
        ),
        timeseries(
            "Connected nodes by type",
            "Visible peers (the mesh) and hidden ones (beamside itself, tools).",
            [prom(f"erlang_vm_dist_nodes{sel()}", "{{node}} {{type}}")],
            "short",
            w=8,
        ),
        timeseries(
            "Pending connections",
            "Distribution connections being set up.",
            [prom(f"erlang_vm_dist_pending_connections{sel()}")],
            "short",
            w=8,
        ),
        state_timeline(
            "Connection state by peer",
            "State of each node's connection to each peer: pending, up_pending or up. "
            "A link that leaves `up` between nodes of a family raises dist_link_down.",
            [prom(f"erlang_vm_dist_node_state{sel()}", peer)],
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "unknown", "color": "gray", "index": 0},
                        "1": {"text": "pending", "color": "orange", "index": 1},
                        "2": {"text": "up_pending", "color": "yellow", "index": 2},
                        "3": {"text": "up", "color": "green", "index": 3},
                    },
                }
            ],
            steps=[{"color": "red", "value": None}, {"color": "green", "value": 3}],
        ),
        row("Traffic"),
        timeseries(
            "Bytes sent per peer",
            "Bytes per second written to each distribution socket.",
            [prom(f"rate(erlang_vm_dist_send_bytes{sel()}[{RATE}])", peer)],
            "Bps",
        ),
        timeseries(
            "Bytes received per peer",
            "Bytes per second read from each distribution socket.",
            [prom(f"rate(erlang_vm_dist_recv_bytes{sel()}[{RATE}])", peer)],
            "Bps",
        ),
        timeseries(
            "Packets per peer",
            "Packets per second sent and received on each distribution socket.",
            [
                prom(f"rate(erlang_vm_dist_send_cnt{sel()}[{RATE}])", peer + " sent"),
                prom(f"rate(erlang_vm_dist_recv_cnt{sel()}[{RATE}])", peer + " received"),
            ],
            "pps",
        ),
        timeseries(
            "Average packet size",
            "Average size of the packets sent and received per peer.",
            [
                prom(f"erlang_vm_dist_send_avg_bytes{sel()}", peer + " sent"),
                prom(f"erlang_vm_dist_recv_avg_bytes{sel()}", peer + " received"),
            ],
            "bytes",
        ),
        row("Backlog"),
        timeseries(
            "Bytes waiting in the socket",
            "Bytes queued in each distribution socket (send_pend): grows when the link "
            "or the peer cannot keep up.",
            [prom(f"erlang_vm_dist_send_pend_bytes{sel()}", peer)],
            "bytes",
            w=8,
        ),
        timeseries(
            "Distribution port queue",
            "Bytes queued in each distribution port, against the busy limit (+zdbbl) "
            "past which senders are suspended.",
            [
                prom(f"erlang_vm_dist_port_queue_size_bytes{sel()}", peer),
                prom(f"erlang_vm_dist_buf_busy_limit_bytes{sel()}", "{{node}} busy limit"),
            ],
            "bytes",
            w=8,
        ),
        timeseries(
            "Busy distribution port events",
            "busy_dist_port events per minute from erlang:system_monitor: processes "
            "suspended because the distribution buffer was full."
            + alarm_note("busy_dist_port", "{:g}/min"),
            [prom(per_minute("busy_dist_port"))],
            "opm",
            steps=alarm_steps("busy_dist_port"),
            w=8,
        ),
    ]
    return dashboard(
        "beamside-distribution",
        "beamside / Distribution",
        "Distributed Erlang per node and peer: links, state, traffic and backlog.",
        standard_vars(),
        panels,
    )


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
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
            ],
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
            "Lines per interval by kind: logs, notifications, alarms and audit records.",
            [
                loki(
                    "sum by (kind) (count_over_time("
                    f"{stream('log|notification|alarm|audit')}[$__interval]))",
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
    ]
    return dashboard(
        "beamside-logs",
        "beamside / Logs and notifications",
        "What beamside ships to Loki: node logs, notifications, audit records and alarms.",
        variables,
        panels,
    )


BUILDERS = {
    "beamside-overview.json": overview,
    "beamside-node.json": node_detail,
    "beamside-memory.json": memory,
    "beamside-processes.json": processes,
    "beamside-distribution.json": distribution,
    "beamside-ets-mnesia.json": ets_mnesia,
    "beamside-alarms.json": alarms,
    "beamside-logs.json": logs_dashboard,
}


def render(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(make()) for name, make in BUILDERS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    wanted = build()
    if args.check:
        stale = [
            name
            for name, body in wanted.items()
            if not (args.out / name).exists() or (args.out / name).read_text() != body
        ]
        extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in wanted)
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        for name in extra:
            print(f"not generated (remove or add to BUILDERS): {args.out / name}", file=sys.stderr)
        if stale or extra:
            print("run: python scripts/build_dashboards.py", file=sys.stderr)
            return 1
        print(f"{len(wanted)} dashboards up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in wanted.items():
        (args.out / name).write_text(body)
    print(f"wrote {len(wanted)} dashboards to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
