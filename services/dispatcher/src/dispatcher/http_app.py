"""The dispatcher's HTTP port: LiveKit webhooks, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections import defaultdict
from typing import Any

from aiohttp import web
from livekit import api
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from agentline.ids import now_ms
from agentline.keys import Keys
from agentline.logs import get_logger
from agentline.metrics import METRICS_CONTENT_TYPE, render_metrics
from dispatcher.loops import REDIS_ERRORS, Health
from dispatcher.metrics import DispatcherMetrics
from dispatcher.overhead import step
from dispatcher.signals import Signal, from_webhook, webhook_decoder
from dispatcher.tracking import Tracker
from dispatcher.webhook_queue import WebhookQueue

log = get_logger("dispatcher.http")
MAX_WEBHOOK_BYTES = 1 << 20
# The webhook events that can move a dispatch (see signals.from_webhook).
RELEVANT_EVENTS = frozenset(
    {"participant_joined", "participant_left", "track_published", "room_finished"}
)


class WebhookStats:
    """Recent webhooks and whether their signature matched, for ``agentline doctor``: the hash
    ``agentline.webhook_stats`` reads (``ok_count``, ``bad_count``, ``last_ok_at_ms``,
    ``last_ok_event``, ``last_bad_at_ms``, ``last_bad_error``), counted in memory and written
    once a second rather than one round trip per webhook."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.webhook_stats
        self.counts: dict[str, int] = defaultdict(int)
        self.fields: dict[str, str] = {}

    def ok(self, event: str) -> None:
        self.counts["ok_count"] += 1
        self.fields.update(last_ok_at_ms=str(now_ms()), last_ok_event=event)

    def bad(self, error: str) -> None:
        self.counts["bad_count"] += 1
        self.fields.update(last_bad_at_ms=str(now_ms()), last_bad_error=error[:300])

    async def flush(self) -> None:
        if not self.counts and not self.fields:
            return
        counts, fields = dict(self.counts), dict(self.fields)
        self.counts.clear()
        self.fields.clear()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, value in counts.items():
                pipe.hincrby(self.key, name, value)
            if fields:
                pipe.hset(self.key, mapping=fields)  # type: ignore[arg-type]
            await pipe.execute()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)
            with contextlib.suppress(*REDIS_ERRORS):
                await self.flush()


class WebhookHandler:
    """Verify, answer, then apply: a webhook is answered once its signature is checked and its
    signal queued (``webhook_queue``: applied in order per room), so our Redis work never
    holds LiveKit's senders."""

    def __init__(
        self,
        verifier: api.TokenVerifier,
        tracker: Tracker,
        stats: WebhookStats,
        metrics: DispatcherMetrics,
        health: Health,
    ) -> None:
        self.verifier = verifier
        self.tracker = tracker
        self.stats = stats
        self.metrics = metrics
        self.health = health
        self.queue = WebhookQueue(self.apply, metrics)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else auth
        try:
            # What livekit-api's WebhookReceiver checks (signature, body hash), then only the
            # fields that can move a dispatch are decoded (see signals.WebhookBody).
            self._verify(body, token)
            event = webhook_decoder.decode(body)
        except Exception as error:  # the SDK raises plain Exceptions (and jwt/msgspec errors)
            self.stats.bad(f"{type(error).__name__}: {error}")
            self.metrics.webhooks.labels("bad_signature").inc()
            log.warning("webhook refused", error=str(error))
            return web.Response(status=401, text="invalid webhook signature\n")
        kind = event.event
        self.stats.ok(kind)
        if event.num_dropped:
            # Those events are lost (polling will move their dispatches): say it loudly.
            self.metrics.webhooks_dropped_by_livekit.inc(event.num_dropped)
            log.warning("LiveKit dropped webhooks before sending them", dropped=event.num_dropped)
        signal = from_webhook(event) if kind in RELEVANT_EVENTS else None
        if signal is None:
            self.metrics.webhooks.labels("ignored").inc()
            return web.Response(text="ok\n")
        if not self.health.redis_ok:
            # Known down: LiveKit retries a refused webhook; one we accepted could not be kept.
            self.metrics.webhooks.labels("unavailable").inc()
            return web.Response(status=503, text="redis unavailable\n")
        await self.queue.submit(signal)
        return web.Response(text="ok\n")

    async def apply(self, signal: Signal) -> bool:
        """Apply one signal (called in the room's order); True when it moved the dispatch."""
        with step(self.metrics.own_overhead, "signal") as clock:
            dispatch_id, moved = await self.tracker.apply(signal)
        if dispatch_id:
            self.tracker.engine.account(
                dispatch_id,
                clock.own_seconds(),
                request=False,
                speaking=moved is not None and moved.value == "speaking",
            )
        return moved is not None

    def _verify(self, body: str, token: str) -> None:
        """What ``WebhookReceiver.receive`` checks (signature, body hash), without parsing."""
        claims = self.verifier.verify(token)
        if not claims.sha256:
            raise ValueError("sha256 was not found in the token")
        if hashlib.sha256(body.encode()).digest() != base64.b64decode(claims.sha256):
            raise ValueError("hash mismatch")


def build_app(
    webhook: WebhookHandler, health: Health, registry: CollectorRegistry
) -> web.Application:
    app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "ready": health.ready,
            "redis": health.redis_ok,
            "draining": health.draining,
        }
        if not health.redis_ok and health.last_error:
            body["error"] = health.last_error
        return web.json_response(body, status=200 if health.ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        payload = await render_metrics(registry)
        return web.Response(body=payload, headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_post("/webhooks/livekit", webhook.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
