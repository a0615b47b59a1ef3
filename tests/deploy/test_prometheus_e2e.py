"""A real Prometheus (Debian's package) scrapes the whole system during an end-to-end run
against the LiveKit emulator; afterwards every dashboard panel's query returns data, each
service's live /metrics passes `promtool check metrics`, and the no-worker alert's expression
sees the failure the run provoked.

Everything runs inside a network namespace of its own (WebRTC needs a non-loopback interface;
see docs/emulator.md): `agentline.devrun` (embedded Redis, emulator, dispatcher, token-api, one
agent worker on the Realtime stand-in) and Prometheus, which scrapes them every second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import CHART, MINIMAL, find, manifests, merge

from agentline.devrun import namespace_env
from livekit_emulator.netns import NetNamespace, namespace, skip_reason

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
]

PROMETHEUS_PORT = 9090  # the namespace is new: nothing else listens in it
TARGETS = {"token-api": 8080, "dispatcher": 8081, "agent-worker": 8082}
K8S_NAMESPACE = "agentline-e2e"
UNSERVED_AGENT = "nobody-serves-this"


class System:
    def __init__(self, ns: NetNamespace, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = self.tmp / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    self.ns.command(argv),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def run(self, argv: list[str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ns.command(argv),
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def prometheus_config() -> dict[str, Any]:
    """Scrape configuration with the labels the ServiceMonitors give in a cluster."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": service,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{port}"],
                        "labels": {
                            "namespace": K8S_NAMESPACE,
                            "service": f"agentline-{service}",
                            "pod": f"agentline-{service}-0",
                        },
                    }
                ],
            }
            for service, port in TARGETS.items()
        ],
    }


@pytest.fixture(scope="module")
def system(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp_path = tmp_path_factory.mktemp("prometheus-e2e")
    with namespace("agprom") as ns:
        running = System(ns, tmp_path)
        env = namespace_env(
            ns.name,
            ns.server_ip,
            TOKEN_API_ALLOWED_AGENT_NAMES=f"travel-assistant,{UNSERVED_AGENT}",
        )
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config()))
        try:
            running.spawn(
                "devrun", [sys.executable, "-m", "agentline.devrun", "--netns", "off"], env
            )
            running.spawn(
                "prometheus",
                [
                    prometheus_binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                dict(os.environ),
            )
            yield running
        finally:
            running.stop()


def probe(system: System, *extra: str) -> dict[str, Any]:
    result = system.run(
        [sys.executable, "-m", "agentline.demo", "--json", "--wait-ready", "90",
         "--timeout", "10", *extra],
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"demo printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    return dict(json.loads(lines[-1]))


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) of every dashboard target."""
    queries = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                queries.append((path.stem, panel["title"], target["expr"]))
    return queries


def grafana_to_promql(expression: str) -> str:
    return expression.replace("$__rate_interval", "5m").replace("$namespace", K8S_NAMESPACE)


def wait_for_scrapes(client: httpx.Client, deadline: float) -> None:
    """Until every target is up in Prometheus."""
    while time.monotonic() < deadline:
        try:
            answer = client.get("/api/v1/targets").json()
            healthy = [t for t in answer["data"]["activeTargets"] if t["health"] == "up"]
            if len(healthy) == len(TARGETS):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError("Prometheus never scraped all three services")


@dataclass
class Run:
    system: System
    client: httpx.Client
    expositions: dict[str, str]


@pytest.fixture(scope="module")
def run(system: System) -> Iterator[Run]:
    """One session to speaking and one for an agent_name nobody serves, then scrapes."""
    happy = probe(system)
    # metrics need the dispatch to reach `speaking`; whether the caller heard the audio is
    # tests/e2e's business
    assert "speaking" in happy["stage_at_ms"], f"{happy}\n{system.tail()}"
    unserved = probe(system, "--agent", UNSERVED_AGENT)
    assert unserved["reason"] == "no_worker_for_agent", unserved
    with (
        system.ns.entered(),
        httpx.Client(base_url=f"http://127.0.0.1:{PROMETHEUS_PORT}", timeout=5) as client,
    ):
        wait_for_scrapes(client, time.monotonic() + 30)
        time.sleep(3)  # a few scrapes after the runs
        expositions = {
            service: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            for service, port in TARGETS.items()
        }
        yield Run(system, client, expositions)


def query(run: Run, expression: str) -> list[dict[str, Any]]:
    with run.system.ns.entered():
        answer = run.client.get("/api/v1/query", params={"query": expression}).json()
    assert answer["status"] == "success", (expression, answer)
    return list(answer["data"]["result"])


@pytest.mark.timeout(300)
def test_every_panel_has_data_after_a_real_run(run: Run) -> None:
    empty = [
        f"{dashboard} / {title}: {expression}"
        for dashboard, title, expression in panel_queries()
        if not query(run, grafana_to_promql(expression))
    ]
    assert empty == [], "panels without data:\n" + "\n".join(empty)


@pytest.mark.timeout(300)
def test_the_no_worker_alert_sees_the_unserved_agent_name(run: Run) -> None:
    values = merge(MINIMAL, {"metrics": {"prometheusRule": {"enabled": True}}})
    (rule,) = find(manifests(values), "PrometheusRule")
    (no_worker,) = [
        r["expr"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if r.get("alert") == "AgentlineNoWorkerForAgent"
    ]
    assert [r["metric"]["namespace"] for r in query(run, no_worker)] == [K8S_NAMESPACE]


def promtool_problems(promtool: str, text: str) -> list[str]:
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    return [line for line in (checked.stdout + checked.stderr).splitlines() if line.strip()]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("service", sorted(TARGETS))
def test_promtool_check_metrics_is_clean(run: Run, promtool: str, service: str) -> None:
    assert promtool_problems(promtool, run.expositions[service]) == []


@pytest.mark.timeout(300)
def test_the_chart_probes_answer_on_the_running_services(run: Run) -> None:
    """The paths and ports the Deployments probe are the ones the services serve."""
    objects = manifests(MINIMAL)
    with run.system.ns.entered():
        for service, port in TARGETS.items():
            (deployment,) = find(objects, "Deployment", service)
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["ports"][0]["containerPort"] == port
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                path = container[probe_name]["httpGet"]["path"]
                answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                assert answer.status_code == 200, (service, path, answer.text[:200])
