"""Assembling the dispatcher: Redis, LiveKit, the loops and the HTTP port; start and drain."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid

from aiohttp import web
from livekit import api
from prometheus_client import CollectorRegistry

from agentline.admission import Admission
from agentline.keys import Keys
from agentline.logs import get_logger
from agentline.redis_conn import make_client
from agentline.redis_mux import hot_client
from agentline.registry import InstanceHeartbeats, WorkerRegistry
from agentline.settings import DispatcherSettings, RegistryPolicy
from agentline.store import DispatchStore
from dispatcher.context import Context
from dispatcher.engine import Engine
from dispatcher.http_app import WebhookHandler, WebhookStats, build_app
from dispatcher.livekit_gateway import LiveKitError, LiveKitGateway
from dispatcher.loops import REDIS_ERRORS, Health, Loops
from dispatcher.metrics import DispatcherMetrics
from dispatcher.registry_check import ServedNames
from dispatcher.timers import Deadlines, Leases, RoomOwners
from dispatcher.tracking import Tracker

log = get_logger("dispatcher")
WEBHOOK_DRAIN_SECONDS = 5.0


def consumer_name(settings: DispatcherSettings) -> str:
    """The pod name (HOSTNAME) when set; else host + pid, unique per process."""
    return settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


def admission_on(settings: DispatcherSettings) -> bool:
    """Admission counts slots from the registry: only when the registry is authoritative."""
    return settings.admission_enabled and settings.registry_policy is not RegistryPolicy.ADVISE


class DispatcherService:
    def __init__(
        self, settings: DispatcherSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis_namespace)
        self.consumer = consumer_name(settings)
        self.metrics = DispatcherMetrics(registry)
        self.health = Health()
        # One connection per in-flight step (each awaits one call at a time), plus the blocked
        # stream reads and webhook handlers: a burst must not queue for a connection.
        self.redis = make_client(
            settings.redis_url, max_connections=settings.max_in_flight + 64, socket_timeout=10.0
        )
        # The per-dispatch commands (records, transitions, deadlines, leases, room owners) on
        # one pipelined connection: redis-py's client costs ~70 µs of CPU per command, the
        # pipelined one ~10 µs; blocking reads and everything else stay on the pool.
        self.hot_redis = hot_client(settings.redis_url, self.redis, timeout=10.0)
        self.gateway = LiveKitGateway(
            settings.livekit_http_url,
            settings.livekit_api_key,
            settings.livekit_api_secret.get_secret_value(),
            settings.livekit_timeout_seconds,
            self.metrics,
        )
        ctx = Context(
            redis=self.redis,
            hot_redis=self.hot_redis,
            keys=self.keys,
            settings=settings,
            store=DispatchStore(self.hot_redis, self.keys),
            gateway=self.gateway,
            served=ServedNames(WorkerRegistry(self.redis, self.keys)),
            metrics=self.metrics,
            deadlines=Deadlines(self.hot_redis, self.keys),
            leases=Leases(self.hot_redis, self.keys, self.consumer),
            rooms=RoomOwners(self.hot_redis, self.keys),
            admission=Admission(self.redis, self.keys, scripts_redis=self.hot_redis)
            if admission_on(settings)
            else None,
        )
        self.engine = Engine(ctx)
        self.tracker = Tracker(self.engine)
        self.loops = Loops(self.engine, self.tracker, self.consumer, self.health)
        webhook_key = settings.webhook_api_key or settings.livekit_api_key
        secret = settings.webhook_api_secret or settings.livekit_api_secret
        verifier = api.TokenVerifier(webhook_key, secret.get_secret_value())
        self.webhook_stats = WebhookStats(self.redis, self.keys)
        # liveness for `agentline doctor` (a consumer group cannot tell a dead replica)
        self.instances = InstanceHeartbeats(self.redis, self.keys, "dispatcher")
        self.webhooks = WebhookHandler(
            verifier, self.tracker, self.webhook_stats, self.metrics, self.health
        )
        self.app = build_app(
            self.webhooks,
            self.health,
            self.metrics.registry,
        )
        self.metrics.add_backlog_collector(settings.redis_url, self.keys)
        if ctx.admission is not None:
            self.metrics.add_admission_collector(settings.redis_url, self.keys)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = settings.port

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.ping()
            self.health.ok()
        if self.settings.registry_policy is RegistryPolicy.ADVISE:
            log.info("registry policy advise: dispatching without a registry check")
        if self.settings.admission_enabled and not admission_on(self.settings):
            log.warning(
                "capacity-aware admission is OFF: registry policy advise means the worker "
                "registry is not authoritative (workers that are not ours), so slots cannot "
                "be counted; dispatches are never queued"
            )
        elif not self.settings.admission_enabled:
            log.info("capacity-aware admission is off (DISPATCHER_ADMISSION_ENABLED=false)")
        else:
            log.info(
                "capacity-aware admission on",
                max_wait_seconds=self.settings.max_wait_seconds,
            )
        loops = self.loops
        for coro in (
            loops.run_requests(),
            loops.run_worker_events(),
            loops.run_control(),
            loops.run_scanner(),
            loops.run_admission(),
            self.webhook_stats.run(loops.stopping),
            self._watch_redis(),
            self._check_livekit(),
        ):
            self._tasks.append(asyncio.create_task(coro))
        log.info("dispatcher started", consumer=self.consumer, port=self.port)

    async def _check_livekit(self) -> None:
        """Say at start when LiveKit is unreachable or refuses our credentials (dispatches
        would fail with livekit_unreachable / livekit_auth)."""
        try:
            await self.gateway.check_credentials()
        except LiveKitError as error:
            log.error("LiveKit check failed", error=str(error), kind=error.kind.value)

    async def _watch_redis(self) -> None:
        """Readiness follows Redis even while the loops are idle; the replica's heartbeat."""
        while not self.loops.stopping.is_set():
            try:
                await asyncio.wait_for(self.instances.beat(self.consumer), 2.0)
                self.health.ok()
            except (*REDIS_ERRORS, TimeoutError) as error:
                self.health.failed(error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.loops.stopping.wait(), 1.0)

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop reading, finish (or hand back) in-flight work, close everything."""
        self.health.draining = True
        with contextlib.suppress(*REDIS_ERRORS):
            await self.instances.leave(self.consumer)
        seconds = self.settings.drain_seconds if drain_seconds is None else drain_seconds
        await self.loops.drain(seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.webhook_stats.flush()
        if self._runner is not None:
            await self._runner.cleanup()  # no new webhooks from here on
        # Signals of webhooks already answered: applied before Redis closes (normally within
        # milliseconds; bounded so that the pod's grace period covers the whole stop).
        await self.webhooks.queue.drain(WEBHOOK_DRAIN_SECONDS)
        await self.gateway.aclose()
        if self.hot_redis is not self.redis:
            await self.hot_redis.aclose()
        await self.redis.aclose()
        log.info("dispatcher stopped", consumer=self.consumer)
