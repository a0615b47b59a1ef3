"""The Grafana dashboards are valid, current with their generator, and every metric that a
dashboard, an alert or an autoscaler queries is exported by the services' code."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_support import CHART, MINIMAL, PROFILES, find, manifests, merge
from metric_catalog import all_metric_names, exported_series, metric_names

DASHBOARDS = CHART / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))


def load_builder() -> Any:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARDS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def alert_expressions() -> list[str]:
    values = merge(MINIMAL, {"metrics": {"prometheusRule": {"enabled": True}}})
    (rule,) = find(manifests(values), "PrometheusRule")
    return [item["expr"] for group in rule["spec"]["groups"] for item in group["rules"]]


def test_committed_json_is_what_the_generator_produces() -> None:
    generated = load_builder().render_all()
    assert sorted(generated) == [path.name for path in FILES]
    for path in FILES:
        assert path.read_text() == generated[path.name], f"rerun build.py: {path.name} is stale"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"].startswith("agentline-") and len(board["uid"]) <= 40
    assert board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace=~"$namespace"' in target["expr"], target["expr"]
            assert metric_names(target["expr"]), target["expr"]


def test_dashboards_cover_what_operators_look_at() -> None:
    boards = {path.stem: json.loads(path.read_text()) for path in FILES}
    assert set(boards) == {"overview", "dispatcher", "agent-workers", "token-api"}
    used = {name: all_metric_names(expressions(board)) for name, board in boards.items()}
    assert {
        "dispatcher_requests_consumed_total",
        "dispatcher_failures_total",
        "dispatcher_stage_latency_seconds_bucket",
    } <= used["overview"]
    assert {
        "dispatcher_stream_lag",
        "dispatcher_stream_pending",
        "dispatcher_dead_letters",
        "dispatcher_retries_total",
        "dispatcher_livekit_call_seconds_bucket",
        "dispatcher_livekit_call_seconds_count",
    } <= used["dispatcher"]
    assert {
        "agent_worker_job_requests_total",
        "agent_worker_jobs_accepted_total",
        "agent_worker_jobs_rejected_total",
        "agent_worker_job_acceptance_seconds_bucket",
        "agent_worker_audio_publish_seconds_bucket",
        "agent_worker_active_jobs",
        "agent_worker_capacity",
        "agent_worker_registered",
    } <= used["agent-workers"]
    assert {
        "token_api_requests_total",
        "token_api_request_duration_seconds_bucket",
        "token_api_requests_error_total",
    } <= used["token-api"]


def test_every_queried_metric_is_exported_by_the_code() -> None:
    exported = exported_series()
    queries = [expr for path in FILES for expr in expressions(json.loads(path.read_text()))]
    queries += alert_expressions()
    objects = manifests(PROFILES["everything-on"])
    queries += [
        trigger["metadata"]["query"]
        for scaled in find(objects, "ScaledObject")
        for trigger in scaled["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    ]
    used = all_metric_names(queries)
    assert len(used) >= 25
    assert used - exported == set(), "queried but not exported by any service"


def test_the_name_check_can_fail() -> None:
    """Guard: a misspelt metric is not in the exported set."""
    exported = exported_series()
    assert "dispatcher_stream_lag" in exported
    assert metric_names("sum(rate(dispatcher_dispatch_total[5m]))") - exported == {
        "dispatcher_dispatch_total"
    }
