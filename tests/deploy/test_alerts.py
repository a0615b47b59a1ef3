"""The chart's alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`, tests/deploy/alerts_test.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from deploy_support import MINIMAL, find, manifests, merge

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "alerts_test.yaml"


def rendered_rules(thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    values = merge(MINIMAL, {"metrics": {"prometheusRule": {"enabled": True}}})
    if thresholds:
        values = merge(values, {"metrics": {"prometheusRule": {"thresholds": thresholds}}})
    (rule,) = find(manifests(values), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def write_rules(directory: Path, rules: dict[str, Any]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    path = write_rules(tmp_path, rendered_rules())
    result = run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_rules_pass_their_unit_tests(promtool: str, tmp_path: Path) -> None:
    write_rules(tmp_path, rendered_rules())
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_fail_when_a_threshold_changes(promtool: str, tmp_path: Path) -> None:
    """The unit tests pin the behaviour: with a looser saturation bound they must fail."""
    write_rules(tmp_path, rendered_rules({"workerSaturation": 0.99, "streamLag": 500}))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "AgentlineWorkersSaturated" in result.stdout + result.stderr
    assert "AgentlineStreamLagHigh" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {rule["alert"] for group in rendered_rules()["groups"] for rule in group["rules"]}
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired


def test_promtool_check_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    rules = rendered_rules()
    rules["groups"][0]["rules"][0]["expr"] = "sum by (namespace (broken"
    path = write_rules(tmp_path, rules)
    assert run(promtool, "check", "rules", str(path), cwd=tmp_path).returncode != 0
