"""Generate the Grafana dashboards of the chart as JSON (run from the repository root).

    uv run --no-sync python deploy/helm/agentline/dashboards/build.py

Dashboards are code so that every panel has the same datasource and namespace variables and
the metric names stay in one reviewable place; tests/deploy checks that the committed JSON is
what this script produces and that every metric it queries is exported by the services.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # grafana.py beside this script, also when loaded by path
from grafana import Panel, Target, dashboard, gauge, or_zero, quantiles, rate  # noqa: E402


def overview() -> dict[str, Any]:
    done = rate("dispatcher_transitions_total", matchers='state="speaking"')
    failed = rate("dispatcher_failures_total")
    return dashboard(
        "agentline-overview",
        "agentline / Overview",
        "Dispatches from request to a speaking agent: throughput, outcomes, stage latencies.",
        [
            Panel(
                "Dispatch requests per second",
                [
                    Target(rate("dispatcher_requests_consumed_total"), "consumed by dispatchers"),
                    Target(rate("token_api_sessions_created_total"), "sessions created"),
                ],
                unit="reqps",
            ),
            Panel(
                "Outcomes (speaking, failed by reason)",
                [
                    Target(done, "speaking"),
                    Target(rate("dispatcher_failures_total", "reason"), "failed: {{reason}}"),
                ],
                unit="reqps",
            ),
            Panel(
                "Dispatch failure ratio",
                [Target(f"{failed} / ({failed} + {done})", "failed / (failed + speaking)")],
                unit="percentunit",
                kind="stat",
                width=6,
            ),
            Panel(
                "Dispatches in flight",
                [Target(gauge("dispatcher_in_flight"), "in flight")],
                kind="stat",
                width=6,
            ),
            Panel(
                "Requested → speaking (p50 / p95 / p99)",
                quantiles(
                    "dispatcher_stage_latency_seconds", matchers='stage="requested_to_speaking"'
                ),
                unit="s",
            ),
            Panel(
                "Stage latency p50",
                [quantiles("dispatcher_stage_latency_seconds", "stage")[0]],
                unit="s",
                width=8,
            ),
            Panel(
                "Stage latency p95",
                [quantiles("dispatcher_stage_latency_seconds", "stage")[1]],
                unit="s",
                width=8,
            ),
            Panel(
                "Stage latency p99",
                [quantiles("dispatcher_stage_latency_seconds", "stage")[2]],
                unit="s",
                width=8,
            ),
        ],
    )


def dispatcher() -> dict[str, Any]:
    return dashboard(
        "agentline-dispatcher",
        "agentline / Dispatcher",
        "The request stream, retries, and the dispatcher's calls to LiveKit.",
        [
            Panel(
                "Stream lag and pending",
                [
                    Target(gauge("dispatcher_stream_lag", "max"), "lag (not yet read)"),
                    Target(gauge("dispatcher_stream_pending", "max"), "pending (read, not acked)"),
                ],
            ),
            Panel(
                "Dead letters",
                [Target(gauge("dispatcher_dead_letters", "max"), "dead-letter stream length")],
            ),
            Panel(
                "Retries by reason",
                [Target(or_zero(rate("dispatcher_retries_total", "reason")), "{{reason}}")],
                unit="reqps",
            ),
            Panel(
                "Dispatch attempts by outcome and path",
                [
                    Target(
                        rate("dispatcher_dispatches_created_total", "outcome, path"),
                        "{{outcome}} via {{path}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "LiveKit call latency p95 by method",
                [quantiles("dispatcher_livekit_call_seconds", "method")[1]],
                unit="s",
            ),
            Panel(
                "LiveKit call errors by method and code",
                [
                    Target(
                        or_zero(
                            rate(
                                "dispatcher_livekit_call_seconds_count",
                                "method, code",
                                'code!="ok"',
                            )
                        ),
                        "{{method}} {{code}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Signals by source",
                [
                    Target(
                        rate("dispatcher_signals_total", "source, applied"),
                        "{{source}} applied={{applied}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Webhooks by result",
                [Target(rate("dispatcher_webhooks_total", "result"), "{{result}}")],
                unit="reqps",
            ),
            Panel(
                "Dispatcher's own time per step (p99)",
                [quantiles("dispatcher_own_overhead_seconds", "step")[2]],
                unit="s",
            ),
            Panel(
                "Admission: slots, used and waiting per agent_name",
                [
                    Target(
                        gauge("dispatcher_admission_slots", "max", "agent_name"),
                        "slots {{agent_name}}",
                    ),
                    Target(
                        gauge("dispatcher_admission_slots_used", "max", "agent_name"),
                        "used {{agent_name}}",
                    ),
                    Target(
                        gauge("dispatcher_admission_waiting", "max", "agent_name"),
                        "waiting {{agent_name}}",
                    ),
                ],
                description="Read from Redis at scrape time by every dispatcher replica (max).",
            ),
            Panel(
                "Worker demand: (active + waiting) / capacity",
                [
                    Target(
                        f"({gauge('dispatcher_admission_slots_used', 'max', 'agent_name')}"
                        f" + {gauge('dispatcher_admission_waiting', 'max', 'agent_name')})"
                        f" / {gauge('dispatcher_admission_slots', 'max', 'agent_name')}",
                        "{{agent_name}}",
                    )
                ],
                unit="percentunit",
                description="Above 1: dispatches wait for a slot. The agent-worker autoscaler's "
                "signal (docs/operations.md).",
            ),
            Panel(
                "Admission wait p99 by outcome",
                [
                    Target(
                        or_zero(quantiles("dispatcher_admission_wait_seconds", "outcome")[2].expr),
                        "{{outcome}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Redis reachable / replicas ready",
                [
                    Target(gauge("dispatcher_redis_up", "min"), "redis up (min over replicas)"),
                    Target(gauge("dispatcher_ready"), "replicas ready"),
                ],
            ),
        ],
    )


def agent_workers() -> dict[str, Any]:
    return dashboard(
        "agentline-agent-workers",
        "agentline / Agent workers",
        "Job requests, acceptance, join and audio latency, and capacity of the agent workers.",
        [
            Panel(
                "Job requests, accepts, rejects",
                [
                    Target(rate("agent_worker_job_requests_total"), "requests"),
                    Target(rate("agent_worker_jobs_accepted_total"), "accepted"),
                    Target(
                        rate("agent_worker_jobs_rejected_total", "reason"), "rejected: {{reason}}"
                    ),
                ],
                unit="reqps",
            ),
            Panel(
                "Job failures by stage",
                [Target(rate("agent_worker_job_failures_total", "stage"), "{{stage}}")],
                unit="reqps",
            ),
            Panel(
                "Acceptance latency (request → answer)",
                quantiles("agent_worker_job_acceptance_seconds"),
                unit="s",
                width=8,
            ),
            Panel(
                "Room join latency (assignment → connected)",
                quantiles("agent_worker_room_join_seconds"),
                unit="s",
                width=8,
            ),
            Panel(
                "Audio publish latency (assignment → audio track)",
                quantiles("agent_worker_audio_publish_seconds"),
                unit="s",
                width=8,
            ),
            Panel(
                "Active jobs vs capacity per pod",
                [
                    Target(gauge("agent_worker_active_jobs", by="pod"), "active {{pod}}"),
                    Target(gauge("agent_worker_capacity", by="pod"), "capacity {{pod}}"),
                ],
            ),
            Panel(
                "Load (active jobs / capacity)",
                [
                    Target(
                        f"{gauge('agent_worker_active_jobs')} / {gauge('agent_worker_capacity')}",
                        "load",
                    )
                ],
                unit="percentunit",
                width=6,
            ),
            Panel(
                "Registered workers per deployment (one agent_name each)",
                [
                    Target(
                        gauge("agent_worker_registered", by="namespace, service"),
                        "{{namespace}}/{{service}}",
                    )
                ],
                width=6,
            ),
        ],
    )


def token_api() -> dict[str, Any]:
    requests = "token_api_requests_total"
    server_errors = rate(requests, matchers='status_code=~"5.."')
    return dashboard(
        "agentline-token-api",
        "agentline / token-api",
        "The frontend's API: request rate, errors, latency, sessions and stream publishing.",
        [
            Panel(
                "Requests per second by path and status",
                [Target(rate(requests, "path, status_code"), "{{path}} {{status_code}}")],
                unit="reqps",
            ),
            Panel(
                "Server errors (5xx ratio, unhandled errors)",
                [
                    Target(
                        f"{or_zero(server_errors)} / {rate(requests)}",
                        "5xx ratio",
                    ),
                    Target(
                        or_zero(rate("token_api_requests_error_total", "path")), "errors {{path}}"
                    ),
                ],
                unit="short",
            ),
            Panel(
                "Request latency (p50 / p95 / p99)",
                quantiles("token_api_request_duration_seconds"),
                unit="s",
            ),
            Panel(
                "Sessions created by agent_name",
                [Target(rate("token_api_sessions_created_total", "agent_name"), "{{agent_name}}")],
                unit="reqps",
            ),
            Panel(
                "Dispatch requests published by kind",
                [Target(rate("token_api_dispatches_requested_total", "kind"), "{{kind}}")],
                unit="reqps",
            ),
            Panel(
                "Stream publish latency (p50 / p95 / p99)",
                quantiles("token_api_publish_latency_seconds"),
                unit="s",
            ),
        ],
    )


DASHBOARDS = {
    "overview.json": overview,
    "dispatcher.json": dispatcher,
    "agent-workers.json": agent_workers,
    "token-api.json": token_api,
}


def render_all() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    for name, text in render_all().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
