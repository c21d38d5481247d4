"""Dashboard-level pieces: template variables, grid layout and the dashboard envelope."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from .queries import PROM, Json

# What @grafana/schema 13.x (dashboard "x" kind) writes as its default.
SCHEMA_VERSION = 42
TAGS = ["beamside", "erlang"]


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
    uid: str,
    title: str,
    description: str,
    variables: list[Json],
    panels: Iterable[Json],
    annotations: Sequence[Json] = (),
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
        "annotations": {"list": list(annotations)},
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
