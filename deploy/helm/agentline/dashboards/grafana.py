"""The Grafana JSON model the chart's dashboards are written in: panels, targets, PromQL
helpers and the dashboard frame (datasource and namespace variables, grid layout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Target:
    expr: str
    legend: str = ""


@dataclass
class Panel:
    title: str
    targets: list[Target]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 12
    extra: dict[str, Any] = field(default_factory=dict)


def rate(metric: str, by: str = "", matchers: str = "") -> str:
    selector = ",".join(part for part in (NS, matchers) if part)
    inner = f"rate({metric}{{{selector}}}[{RATE}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantiles(histogram: str, by: str = "", matchers: str = "") -> list[Target]:
    """p50/p95/p99 of a histogram, optionally per label."""
    labels = f"le, {by}" if by else "le"
    targets = []
    for q in QUANTILES:
        inner = rate(f"{histogram}_bucket", labels, matchers)
        suffix = f" {{{{{by}}}}}" if by else ""
        targets.append(Target(f"histogram_quantile({q}, {inner})", f"p{round(q * 100)}{suffix}"))
    return targets


def or_zero(expression: str) -> str:
    """Rare events (errors, retries): show 0 rather than "No data" while none happened."""
    return f"(({expression}) or vector(0))"


def gauge(metric: str, agg: str = "sum", by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"{agg}{grouping} ({metric}{{{NS}}})"


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend or "__auto",
                "range": True,
            }
            for index, target in enumerate(panel.targets)
        ],
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
    }
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "values": False}}
    body.update(panel.extra)
    return body


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    laid_out = []
    x = y = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        laid_out.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["agentline"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["agentline"], "asDropdown": True}],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(up, namespace)", "refId": "namespace"},
                    "definition": "label_values(up, namespace)",
                    "current": {},
                    "hide": 0,
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "options": [],
                    "refresh": 2,
                    "regex": "",
                    "sort": 1,
                },
            ]
        },
        "panels": laid_out,
    }
