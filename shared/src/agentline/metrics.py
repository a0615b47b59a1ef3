"""Prometheus helpers shared by the services: buckets fit for voice, scrape-time collectors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agentline.admission import status_sync
from agentline.keys import DISPATCHER_GROUP, Keys

# 10 ms … 60 s: voice stages live between tens of milliseconds and tens of seconds.
VOICE_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


def _scrape_client(redis_url: str) -> redis.Redis:
    """A short-lived synchronous client for one scrape: quick to give up, so that a Redis
    outage shows as ``redis_up 0`` rather than as a slow scrape."""
    return redis.Redis.from_url(
        redis_url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True
    )


class StreamBacklogCollector(Collector):
    """Lag, pending and dead-letter counts of the requests stream, read at scrape time.

    ``collect`` runs in the scraping thread with a short-lived synchronous client; serve
    metrics with :func:`render_metrics`, which keeps that off the event loop.
    """

    def __init__(self, redis_url: str, keys: Keys, prefix: str) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.prefix = prefix

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # values are read at scrape time

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            f"{self.prefix}stream_lag", "Dispatch requests not yet read by the dispatcher group"
        )
        pending = GaugeMetricFamily(
            f"{self.prefix}stream_pending", "Dispatch requests read but not yet acknowledged"
        )
        dead = GaugeMetricFamily(f"{self.prefix}dead_letters", "Entries in the dead-letter stream")
        up = GaugeMetricFamily(f"{self.prefix}redis_up", "1 when Redis answered this scrape")
        try:
            client = _scrape_client(self.redis_url)
            try:
                length = int(client.xlen(self.keys.requests))
                lag_value, pending_value = length, 0
                if client.exists(self.keys.requests):
                    for info in client.xinfo_groups(self.keys.requests):
                        if info["name"] == DISPATCHER_GROUP:
                            raw_lag = info.get("lag")
                            lag_value = int(raw_lag) if raw_lag is not None else length
                            pending_value = int(info["pending"])
                lag.add_metric([], lag_value)
                pending.add_metric([], pending_value)
                dead.add_metric([], int(client.xlen(self.keys.dead_letters)))
                up.add_metric([], 1)
            finally:
                client.close()
        except redis.RedisError:
            up.add_metric([], 0)
        yield from (lag, pending, dead, up)


class AdmissionCollector(Collector):
    """Capacity-aware admission per agent_name, read at scrape time: slots (live, not
    draining capacity), slots used (reservations and running jobs), dispatches waiting."""

    def __init__(self, redis_url: str, keys: Keys, prefix: str) -> None:
        self.redis_url = redis_url
        self.keys = keys
        self.prefix = prefix

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["agent_name"]
        slots = GaugeMetricFamily(
            f"{self.prefix}admission_slots",
            "Worker slots (capacity of live workers)",
            labels=labels,
        )
        used = GaugeMetricFamily(
            f"{self.prefix}admission_slots_used",
            "Slots reserved or held by running jobs",
            labels=labels,
        )
        waiting = GaugeMetricFamily(
            f"{self.prefix}admission_waiting", "Dispatches waiting for a slot", labels=labels
        )
        try:
            client = _scrape_client(self.redis_url)
            try:
                names: Any = client.smembers(self.keys.admission_agents)
                for name in sorted(str(n) for n in names):
                    status = status_sync(client, self.keys, name)
                    slots.add_metric([name], status.capacity)
                    used.add_metric([name], status.used)
                    waiting.add_metric([name], status.waiting)
            finally:
                client.close()
        except redis.RedisError:
            pass  # redis_up (the backlog collector) says so
        yield from (slots, used, waiting)


async def render_metrics(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry``, produced off the event loop."""
    return await asyncio.to_thread(generate_latest, registry)
