"""The dispatcher's Prometheus metrics (names are a public interface: see docs/operations.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from agentline.keys import Keys
from agentline.lifecycle import FailureReason
from agentline.metrics import VOICE_BUCKETS, AdmissionCollector, StreamBacklogCollector

# The dispatcher's own work per step is sub-millisecond; voice buckets start at 10 ms. Fine
# up to 25 ms, where its targets lie (own p99 5 ms per dispatch, own share of a call 20 ms).
OWN_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005,
    0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CALL_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, *VOICE_BUCKETS)

# Stage-latency histogram label values (from → to).
STAGES = (
    "queue_wait",
    "livekit_create",
    "dispatched_to_assigned",
    "assigned_to_joined",
    "joined_to_speaking",
    "requested_to_speaking",
)


class DispatcherMetrics:
    """One set of metrics per process (tests create one per dispatcher with its own registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests_consumed = Counter(
            "dispatcher_requests_consumed", "Dispatch requests read from the stream", registry=r
        )
        self.dispatches_created = Counter(
            "dispatcher_dispatches_created",
            "LiveKit dispatch attempts by outcome and path",
            ["outcome", "path"],
            registry=r,
        )
        self.transitions = Counter(
            "dispatcher_transitions",
            "Lifecycle transitions applied by this replica, by target state and signal source",
            ["state", "source"],
            registry=r,
        )
        self.failures = Counter(
            "dispatcher_failures", "Dispatches failed, by reason", ["reason"], registry=r
        )
        # Every reason exported from the start at 0: increase() over a series born at 1 reads
        # as no increase, and the alerts would miss the first failure.
        for reason in FailureReason:
            self.failures.labels(reason=reason.value)
        self.retries = Counter(
            "dispatcher_retries", "Re-dispatches after a stage timed out", ["reason"], registry=r
        )
        self.in_flight = Gauge(
            "dispatcher_in_flight", "Dispatch steps this replica is running now", registry=r
        )
        self.stage_latency = Histogram(
            "dispatcher_stage_latency_seconds",
            "Time between lifecycle stages",
            ["stage", "path"],
            buckets=VOICE_BUCKETS,
            registry=r,
        )
        self.livekit_calls = Histogram(
            "dispatcher_livekit_call_seconds",
            "LiveKit API call latency by method and result code",
            ["method", "code"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.own_overhead = Histogram(
            "dispatcher_own_overhead_seconds",
            "Time spent in the dispatcher per step, LiveKit and Redis calls excluded",
            ["step"],
            buckets=OWN_BUCKETS,
            registry=r,
        )
        self.own_latency = Histogram(
            "dispatcher_own_latency_seconds",
            "Time a dispatch spent in this dispatcher from request to speaking, "
            "LiveKit and Redis calls excluded",
            buckets=OWN_BUCKETS,
            registry=r,
        )
        self.signals = Counter(
            "dispatcher_signals",
            "Signals received by source and whether they moved a dispatch",
            ["source", "applied"],
            registry=r,
        )
        self.webhooks = Counter(
            "dispatcher_webhooks", "LiveKit webhooks received by result", ["result"], registry=r
        )
        self.webhooks_dropped_by_livekit = Counter(
            "dispatcher_webhooks_dropped_by_livekit",
            "Webhooks LiveKit dropped before sending (its sender queue was full: we answered "
            "too slowly), from the numDropped of the webhooks that came",
            registry=r,
        )
        self.redis_up = Gauge(
            "dispatcher_ready",
            "1 when this replica can reach Redis and LiveKit is configured",
            registry=r,
        )
        self.admission_wait = Histogram(
            "dispatcher_admission_wait_seconds",
            "Time dispatches spent waiting for a worker slot, by how the wait ended "
            "(admitted, no_capacity, cancelled, or another failure reason)",
            ["outcome"],
            buckets=(*VOICE_BUCKETS, 90.0, 120.0, 180.0, 300.0),
            registry=r,
        )
        ProcessCollector(registry=r)

    def add_admission_collector(self, redis_url: str, keys: Keys) -> None:
        self.registry.register(AdmissionCollector(redis_url, keys, "dispatcher_"))

    def add_backlog_collector(self, redis_url: str, keys: Keys) -> None:
        self.registry.register(StreamBacklogCollector(redis_url, keys, "dispatcher_"))
