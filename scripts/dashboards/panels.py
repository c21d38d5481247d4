"""Panel constructors: one function per Grafana panel type, plus shared panel shapes.

Each takes a title, a description and targets (see ``queries``) and returns
the panel JSON without id or position; ``board.layout`` assigns those.
"""

from __future__ import annotations

from collections.abc import Sequence

from .queries import LOKI, PROM, Json, alarm_note, alarm_steps, loki, plain_steps, prom, sel


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


# Table transformations: an instant query's labels as the columns (an info
# metric, whose value is always 1) ...
LABELS_ONLY: list[Json] = [
    {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
]
# ... or its labels and value, largest value first (a top-N list).
LARGEST_FIRST: list[Json] = [
    {"id": "organize", "options": {"excludeByName": {"Time": True}}},
    {"id": "sortBy", "options": {"sort": [{"field": "Value", "desc": True}]}},
]


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
