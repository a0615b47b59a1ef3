"""token-api's own Prometheus metrics (names are a public interface: listed in docs/api.md).

They are updated from the event loop only and kept lock-free (``token_api.loop_metrics``:
the same exposition as prometheus_client's Counter and Histogram, at a fraction of the cost).
"""

from __future__ import annotations

from token_api.loop_metrics import CounterSeries, LoopCounter, LoopHistogram

# Publishing is sub-millisecond on loopback: finer buckets than the voice ones at the low end.
PUBLISH_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

SESSIONS_CREATED = LoopCounter(
    "token_api_sessions_created_total",
    "Sessions created (token minted and dispatch recorded), by agent_name",
    ["agent_name"],
)
DISPATCHES_REQUESTED = LoopCounter(
    "token_api_dispatches_requested_total",
    "Dispatch requests published to the stream, by kind (session, reinvite)",
    ["kind"],
)
TOKENS_MINTED = LoopCounter(
    "token_api_tokens_minted_total", "Participant tokens minted (sessions and /v1/tokens)"
)
PUBLISH_LATENCY = LoopHistogram(
    "token_api_publish_latency_seconds",
    "Time to record a dispatch and publish its request to the Redis stream",
    buckets=PUBLISH_BUCKETS,
)


_sessions_by_agent: dict[str, CounterSeries] = {}
_dispatches_by_kind: dict[str, CounterSeries] = {}


def session_created(agent_name: str) -> None:
    """Count a session; the labelled series is looked up once per agent name (the names are
    the deployment's allowed ones, so the cache stays small)."""
    series = _sessions_by_agent.get(agent_name)
    if series is None:
        series = _sessions_by_agent[agent_name] = SESSIONS_CREATED.labels(agent_name)
    series.inc()


def dispatch_requested(kind: str) -> None:
    series = _dispatches_by_kind.get(kind)
    if series is None:
        series = _dispatches_by_kind[kind] = DISPATCHES_REQUESTED.labels(kind)
    series.inc()
