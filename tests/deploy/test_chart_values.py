"""values.schema.json rejects wrong values, helm lint --strict is clean, and the README
documents every value."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from deploy_support import CHART, MINIMAL, PROFILES, manifests, merge
from helm_python import HelmValuesError

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def leaf_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every value in values.yaml (maps that are empty by default are leaves)."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not key.endswith(("SecurityContext", "resources")):
            paths.extend(leaf_paths(value, f"{path}."))
        else:
            paths.append(path)
    return paths


def test_defaults_and_profiles_satisfy_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(DEFAULTS, SCHEMA)
    for values in PROFILES.values():
        jsonschema.validate(merge(DEFAULTS, values), SCHEMA)


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"tokenApi": {"replicas": "two"}}, "/tokenApi/replicas"),
        ({"replicaCount": 3}, "replicaCount"),
        ({"tokenApi": {"autoscaling": {"targetCPU": 50}}}, "targetCPU"),
        ({"dispatcher": {"registryPolicy": "maybe"}}, "/dispatcher/registryPolicy"),
        ({"tokenApi": {"port": 70000}}, "/tokenApi/port"),
        ({"environment": "staging"}, "/environment"),
        ({"livekit": {"url": "livekit.example.com"}}, "/livekit/url"),
        ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
        ({"agentWorker": {"agentName": ""}}, "/agentWorker/agentName"),
        ({"agentWorker": {"maxJobs": 0}}, "/agentWorker/maxJobs"),
        ({"agentWorker": {"autoscaling": {"mode": "vpa"}}}, "/agentWorker/autoscaling/mode"),
        (
            {"metrics": {"serviceMonitor": {"interval": "often"}}},
            "/metrics/serviceMonitor/interval",
        ),
        (
            {"metrics": {"prometheusRule": {"thresholds": {"workerSaturation": 2}}}},
            "workerSaturation",
        ),
        ({"secrets": {"tokenApiKeys": ["short"]}}, "/secrets/tokenApiKeys/0"),
        ({"secrets": {"tokenApiKeys": ["has,comma-inside"]}}, "/secrets/tokenApiKeys/0"),
        ({"logging": {"level": "TRACE"}}, "/logging/level"),
        (
            {"dispatcher": {"autoscaling": {"keda": {"redisAddress": "redis://r:6379"}}}},
            "redisAddress",
        ),
    ],
)
def test_schema_rejects_bad_values(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(HelmValuesError) as raised:
        manifests(merge(MINIMAL, bad))
    assert where in str(raised.value)


def test_helm_lint_strict_is_clean() -> None:
    for values in (MINIMAL, PROFILES["everything-on"], PROFILES["existing-secret"]):
        report = helm_python.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
        assert problems == [], problems
        assert report["total_charts_linted"] == 1


def test_lint_reports_a_broken_chart(tmp_path: Any) -> None:
    """The lint check can fail: a chart with an unknown value key is reported."""
    report = helm_python.lint(str(CHART), merge(MINIMAL, {"nope": 1}), strict=True)
    assert any(m["severity"] >= 2 for m in report["messages"]) or report.get("errors")


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[1]
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, flags=re.MULTILINE))
    expected = set(leaf_paths(DEFAULTS))
    assert expected - documented == set(), "values missing from README.md"
    assert documented - expected == set(), "README.md documents values that do not exist"


def test_every_value_has_a_schema_entry() -> None:
    def schema_at(path: str) -> dict[str, Any] | None:
        node: dict[str, Any] = SCHEMA
        for part in path.split("."):
            props = node.get("properties", {})
            if part not in props:
                return None
            node = props[part]
        return node

    missing = [path for path in leaf_paths(DEFAULTS) if schema_at(path) is None]
    assert missing == []


def documented_values_files() -> list[tuple[str, dict[str, Any]]]:
    """The YAML values examples of the chart README and docs/operations.md."""
    found = []
    for path in (CHART / "README.md", CHART.parents[2] / "docs" / "operations.md"):
        for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.DOTALL):
            values = yaml.safe_load(block)
            if isinstance(values, dict) and set(values) <= set(DEFAULTS):
                # a fragment (e.g. the monitoring switches) goes on top of a minimal install
                found.append((path.name, values if "livekit" in values else merge(MINIMAL, values)))
    return found


def test_documented_values_files_install() -> None:
    examples = documented_values_files()
    assert [name for name, _ in examples] == ["README.md", "operations.md", "operations.md"]
    for name, values in examples:
        objects = manifests(values)
        assert {o["kind"] for o in objects} >= {"Deployment", "Secret", "ConfigMap"}, name
        report = helm_python.lint(str(CHART), values, strict=True)
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], name
