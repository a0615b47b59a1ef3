"""The worker's Prometheus metrics (names are a public interface: dashboards use them).

All of them live in the main process. Values measured inside job processes (join and audio
publish latency, failures) arrive as job reports (see :mod:`agent_worker.job_reports`) and
are recorded here, so `/metrics` is complete without Prometheus' multiprocess mode and its
per-pid files that grow with every job a long-lived worker runs.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from agentline.metrics import VOICE_BUCKETS

METRIC_NAMES = (
    "agent_worker_job_requests_total",
    "agent_worker_jobs_accepted_total",
    "agent_worker_jobs_rejected_total",
    "agent_worker_job_acceptance_seconds",
    "agent_worker_room_join_seconds",
    "agent_worker_audio_publish_seconds",
    "agent_worker_job_failures_total",
    "agent_worker_active_jobs",
    "agent_worker_capacity",
    "agent_worker_registered",
)

# livekit-agents' own metrics left out of /metrics: this gauge's ``_count`` suffix breaks the
# Prometheus naming rules (promtool rejects it) and agent_worker_active_jobs says the same.
LEFT_OUT_LIVEKIT_METRICS = frozenset({"lk_agents_active_job_count"})


class _LivekitAgentsMetrics:
    """The default registry (process metrics, livekit-agents') minus the left-out ones."""

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name not in LEFT_OUT_LIVEKIT_METRICS:
                yield family


# Acceptance is answered in-process: finer buckets below 10 ms than the voice set.
ACCEPTANCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, *VOICE_BUCKETS)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, agent_name: str = "") -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.job_requests = Counter(
            "agent_worker_job_requests", "Job requests (availability requests) received", registry=r
        )
        self.jobs_accepted = Counter(
            "agent_worker_jobs_accepted", "Job requests accepted", registry=r
        )
        self.jobs_rejected = Counter(
            "agent_worker_jobs_rejected", "Job requests rejected", ["reason"], registry=r
        )
        self.acceptance_seconds = Histogram(
            "agent_worker_job_acceptance_seconds",
            "Job request received → answer (accept or reject) sent to LiveKit",
            buckets=ACCEPTANCE_BUCKETS,
            registry=r,
        )
        self.room_join_seconds = Histogram(
            "agent_worker_room_join_seconds",
            "Job assignment → agent connected to the room",
            buckets=VOICE_BUCKETS,
            registry=r,
        )
        self.audio_publish_seconds = Histogram(
            "agent_worker_audio_publish_seconds",
            "Job assignment → agent audio track published",
            buckets=VOICE_BUCKETS,
            registry=r,
        )
        self.job_failures = Counter(
            "agent_worker_job_failures", "Jobs that failed, by stage", ["stage"], registry=r
        )
        self.active_jobs = Gauge(
            "agent_worker_active_jobs", "Jobs accepted and not yet ended (capacity in use)",
            registry=r,
        )  # fmt: skip
        self.capacity = Gauge("agent_worker_capacity", "Maximum concurrent jobs", registry=r)
        # labelled with the agent_name it registered with: a mismatch with what the API
        # dispatches (the seed's "registered but never gets a job") shows on a dashboard
        self.registered = Gauge(
            "agent_worker_registered",
            "1 while registered with LiveKit, by the agent_name registered with",
            ["agent_name"],
            registry=r,
        ).labels(agent_name=agent_name)
        # labelled series exist from the start, so dashboards see zeros rather than gaps
        for reason in ("at_capacity", "draining"):
            self.jobs_rejected.labels(reason=reason)
        for stage in ("join", "model", "session", "assignment", "process"):
            self.job_failures.labels(stage=stage)

    def render(self) -> bytes:
        """This worker's metrics followed by the process and livekit-agents ones."""
        others = generate_latest(_LivekitAgentsMetrics())
        return generate_latest(self.registry) + others
