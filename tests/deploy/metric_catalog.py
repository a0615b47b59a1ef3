"""The Prometheus series names the services export, read from their own metric definitions,
and the metric names that PromQL expressions use."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from pathlib import Path

import promql_parser
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]
# Grafana's variables, replaced by values PromQL accepts before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*"}

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "unknown": ("",),
}


def _series(family: str, kind: str) -> set[str]:
    return {f"{family}{suffix}" for suffix in SUFFIXES.get(kind, ("",))}


def _registry_series(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names |= _series(family.name, family.type)
    return names


def dispatcher_series() -> set[str]:
    from agentline.keys import Keys
    from dispatcher.metrics import DispatcherMetrics

    metrics = DispatcherMetrics(CollectorRegistry())
    # An address nothing listens on: the scrape-time collector still names its families.
    metrics.add_backlog_collector("redis://127.0.0.1:9/0", Keys("catalog"))
    metrics.add_admission_collector("redis://127.0.0.1:9/0", Keys("catalog"))
    return _registry_series(metrics.registry)


def agent_worker_series() -> set[str]:
    from agent_worker.metrics import WorkerMetrics

    return _registry_series(WorkerMetrics(CollectorRegistry()).registry)


def _litestar_series(prefix: str) -> set[str]:
    """What litestar's PrometheusMiddleware exports under a prefix (read from its source)."""
    from litestar.plugins.prometheus import middleware

    source = inspect.getsource(middleware)
    pattern = re.compile(
        r'metric_name = f"\{self\._config\.prefix\}(_\w+)".*?'
        r"PrometheusMiddleware\._metrics\[metric_name\] = (Counter|Histogram|Gauge)\(",
        re.DOTALL,
    )
    names: set[str] = set()
    for suffix, kind in pattern.findall(source):
        family = f"{prefix}{suffix}"
        if kind == "Counter":
            names |= _series(family.removesuffix("_total"), "counter")
        else:
            names |= _series(family, kind.lower())
    assert names, "litestar's Prometheus middleware changed: no metric found in its source"
    return names


def _prometheus_config_prefixes(path: Path) -> list[str]:
    """The `prefix=` of every PrometheusConfig(...) call in a module."""
    prefixes = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "PrometheusConfig":
            for keyword in node.keywords:
                if keyword.arg == "prefix" and isinstance(keyword.value, ast.Constant):
                    prefixes.append(str(keyword.value.value))
    return prefixes


def token_api_series() -> set[str]:
    from token_api import metrics as token_metrics
    from token_api.loop_metrics import LoopCounter, LoopHistogram

    names: set[str] = set()
    for value in vars(token_metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= _series(value._name, str(value._type))
        elif isinstance(value, LoopCounter | LoopHistogram):  # token_api.loop_metrics
            for family in value.describe():
                names |= _series(family.name, family.type)
    for module in (ROOT / "services" / "token-api" / "src").rglob("*.py"):
        for prefix in _prometheus_config_prefixes(module):
            names |= _litestar_series(prefix)
    return names


def exported_series() -> set[str]:
    """Every series name token-api, the dispatcher and the agent worker can expose."""
    return dispatcher_series() | agent_worker_series() | token_api_series()


def metric_names(expression: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables substituted)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers if node.matchers else []:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


def all_metric_names(expressions: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for expression in expressions:
        names |= metric_names(expression)
    return names
