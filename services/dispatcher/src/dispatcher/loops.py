"""The dispatcher's loops: new requests, worker events, control commands and the deadline
scanner. Each survives Redis outages (backoff, readiness false) and stops on request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentline.ids import now_ms
from agentline.keys import DISPATCHER_GROUP
from agentline.lifecycle import DispatchState
from agentline.logs import get_logger
from agentline.schema import DispatchRequest, WorkerEvent
from agentline.streams import StreamConsumer, StreamEntry
from dispatcher.engine import Engine
from dispatcher.intake import start_dispatch, start_waiting
from dispatcher.overhead import step
from dispatcher.signals import from_worker_event
from dispatcher.tracking import Tracker

log = get_logger("dispatcher.loops")

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
BLOCK_MS = 500  # a blocked read ends this often, so that stopping is prompt
SCAN_INTERVAL_SECONDS = 0.05
READ_BATCH = 8
# Fallback pump of every queue (reservations that expired unconfirmed, missed messages);
# slots freed by our own transitions and capacity changes are acted on at once.
PUMP_INTERVAL_SECONDS = 1.0


class Health:
    """Readiness: Redis answered recently and we are not draining."""

    def __init__(self) -> None:
        self.redis_ok = False
        self.draining = False
        self.last_error = ""

    @property
    def ready(self) -> bool:
        return self.redis_ok and not self.draining

    def ok(self) -> None:
        self.redis_ok = True

    def failed(self, error: BaseException) -> None:
        if self.redis_ok:
            log.error("redis unreachable", error=repr(error))
        self.redis_ok = False
        self.last_error = repr(error)


class Backoff:
    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    async def wait(self) -> None:
        await asyncio.sleep(self.current)
        self.current = min(self.cap, self.current * 2)

    def reset(self) -> None:
        self.current = self.first


class Loops:
    def __init__(self, engine: Engine, tracker: Tracker, consumer: str, health: Health) -> None:
        self.engine = engine
        self.tracker = tracker
        self.ctx = engine.ctx
        self.health = health
        self.stopping = asyncio.Event()
        settings = self.ctx.settings
        keys, redis = self.ctx.keys, self.ctx.redis
        self.requests = StreamConsumer(
            redis,
            keys.requests,
            DISPATCHER_GROUP,
            consumer,
            keys.dead_letters,
            max_deliveries=settings.max_deliveries,
            claim_idle_ms=int(settings.claim_idle_seconds * 1000),
            claim_interval=max(0.2, min(5.0, settings.claim_idle_seconds / 4)),
        )
        self.worker_events = StreamConsumer(
            redis, keys.worker_events, DISPATCHER_GROUP, consumer, keys.worker_events + ":dead",
            claim_idle_ms=int(settings.claim_idle_seconds * 1000),
        )  # fmt: skip
        self.control = StreamConsumer(
            redis, keys.control, DISPATCHER_GROUP, consumer, keys.control + ":dead",
            claim_idle_ms=int(settings.claim_idle_seconds * 1000),
        )  # fmt: skip
        self.work: set[asyncio.Task[None]] = set()  # requests and timer visits (bounded)
        self._aux: set[asyncio.Task[None]] = set()  # queue-position updates
        self._slot_freed = asyncio.Event()
        engine.admitter.on_admitted = self._on_admitted

    @property
    def free(self) -> int:
        return max(0, self.ctx.settings.max_in_flight - len(self.work))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.work.add(task)
        self.ctx.metrics.in_flight.set(len(self.work))

        def done(t: asyncio.Task[None]) -> None:
            self.work.discard(t)
            self.ctx.metrics.in_flight.set(len(self.work))
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _guarded(self, name: str, body: Callable[[Backoff], Awaitable[None]]) -> None:
        """Run ``body`` until stopping; Redis errors mark us not ready and back off."""
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                await body(backoff)
            except REDIS_ERRORS as error:
                self.health.failed(error)
                await backoff.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("loop failed", loop=name)
                await backoff.wait()

    # -- requests ---------------------------------------------------------------------------
    async def run_requests(self) -> None:
        resume_own = True

        async def body(backoff: Backoff) -> None:
            nonlocal resume_own
            await self.requests.ensure_group()
            if resume_own:  # after start or an outage: entries we read and did not settle
                for entry in await self.requests.read_own_pending(self.free or 1):
                    self._take(entry)
                resume_own = False
            while not self.stopping.is_set():
                if self.free <= 0:
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), BLOCK_MS / 1000)
                    continue
                entries = await self.requests.claim_stale(self.free)
                # Small reads: replicas blocked on the group take turns, so they share evenly.
                count = min(READ_BATCH, self.free - len(entries))
                entries += await self.requests.read(count, block_ms=BLOCK_MS)
                self.health.ok()
                backoff.reset()
                for entry in entries:
                    self._take(entry)

        try:
            await self._guarded("requests", body)
        finally:
            resume_own = True

    def _take(self, entry: StreamEntry) -> None:
        if entry.deliveries > self.ctx.settings.max_deliveries:
            self._spawn(self.requests.dead_letter(entry, f"delivered {entry.deliveries} times"))
            return
        self.ctx.metrics.requests_consumed.inc()
        self._spawn(self._handle_request(entry))

    async def _handle_request(self, entry: StreamEntry) -> None:
        try:
            request = msgspec.json.decode(entry.fields.get("request", ""), type=DispatchRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            await self.requests.dead_letter(entry, f"invalid request: {error}")
            return

        def ack_in(pipe: Any) -> None:
            pipe.xack(self.requests.stream, self.requests.group, entry.entry_id)

        with step(self.ctx.metrics.own_overhead, "request") as clock:
            try:
                await start_dispatch(self.engine, request, ack_in)
            except asyncio.CancelledError:
                await self._hand_back(request.dispatch_id)
                raise
            except REDIS_ERRORS as error:
                self.health.failed(error)  # left pending: read again once Redis is back
                return
        self.engine.account(request.dispatch_id, clock.own_seconds(), request=True, speaking=False)

    async def _hand_back(self, dispatch_id: str) -> None:
        """Draining ran out of time: let another replica resume it now."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.ctx.leases.release(dispatch_id)
            await self.ctx.deadlines.schedule(dispatch_id, now_ms())

    # -- worker events ----------------------------------------------------------------------
    async def run_worker_events(self) -> None:
        async def body(backoff: Backoff) -> None:
            await self.worker_events.ensure_group()
            while not self.stopping.is_set():
                entries = await self.worker_events.claim_stale(256)
                entries += await self.worker_events.read(256, block_ms=BLOCK_MS)
                self.health.ok()
                backoff.reset()
                if entries:
                    await self._apply_worker_events(entries)

        await self._guarded("worker-events", body)

    async def _apply_worker_events(self, entries: list[StreamEntry]) -> None:
        # In order per dispatch, dispatches concurrently.
        by_dispatch: dict[str, list[WorkerEvent]] = defaultdict(list)
        for entry in entries:
            try:
                event = WorkerEvent.from_fields(entry.fields)
            except (msgspec.ValidationError, ValueError):
                log.warning("invalid worker event", entry_id=entry.entry_id)
                continue
            by_dispatch[event.dispatch_id].append(event)

        async def apply_all(dispatch_id: str, events: list[WorkerEvent]) -> None:
            for event in events:
                signal = from_worker_event(event)
                if signal is None:
                    continue
                with step(self.ctx.metrics.own_overhead, "signal") as clock:
                    _, moved = await self.tracker.apply(signal)
                speaking = moved is DispatchState.SPEAKING
                self.engine.account(
                    dispatch_id, clock.own_seconds(), request=False, speaking=speaking
                )

        await asyncio.gather(*(apply_all(d, evs) for d, evs in by_dispatch.items() if d))
        await self.worker_events.ack(*[entry.entry_id for entry in entries])

    # -- control ----------------------------------------------------------------------------
    async def run_control(self) -> None:
        async def body(backoff: Backoff) -> None:
            await self.control.ensure_group()
            while not self.stopping.is_set():
                entries = await self.control.claim_stale(64)
                entries += await self.control.read(64, block_ms=BLOCK_MS)
                self.health.ok()
                backoff.reset()
                for entry in entries:
                    if entry.fields.get("action") == "cancel" and entry.fields.get("dispatch_id"):
                        await self.tracker.cancel(entry.fields["dispatch_id"])
                    await self.control.ack(entry.entry_id)

        await self._guarded("control", body)

    # -- deadlines --------------------------------------------------------------------------
    async def run_scanner(self) -> None:
        async def body(backoff: Backoff) -> None:
            while not self.stopping.is_set():
                due = await self.ctx.deadlines.claim_due(now_ms(), self.ctx.lease_ms, self.free)
                self.health.ok()
                backoff.reset()
                for dispatch_id in due:
                    self._spawn(self._visit(dispatch_id))
                if len(due) == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), SCAN_INTERVAL_SECONDS)

        await self._guarded("scanner", body)

    async def _visit(self, dispatch_id: str) -> None:
        with step(self.ctx.metrics.own_overhead, "timer") as clock:
            try:
                await self.tracker.visit(dispatch_id)
            except asyncio.CancelledError:
                await self._hand_back(dispatch_id)
                raise
            except REDIS_ERRORS as error:
                self.health.failed(error)  # the claim expires and the visit comes again
                return
        self.engine.account(dispatch_id, clock.own_seconds(), request=False, speaking=False)

    # -- admission ---------------------------------------------------------------------------
    def _on_admitted(self, agent_name: str, admitted: list[str], queue_moved: bool) -> None:
        """Slots went to these queue heads: start them now (each through its lease), and tell
        the ones still waiting their new places."""
        for dispatch_id in admitted:
            self._spawn(self._start_admitted(dispatch_id))
        if queue_moved:
            task = asyncio.ensure_future(self._publish_positions(agent_name))
            self._aux.add(task)
            task.add_done_callback(self._aux.discard)

    async def _start_admitted(self, dispatch_id: str) -> None:
        with step(self.ctx.metrics.own_overhead, "request") as clock:
            try:
                await start_waiting(self.engine, dispatch_id)
            except asyncio.CancelledError:
                await self._hand_back(dispatch_id)
                raise
            except REDIS_ERRORS as error:
                self.health.failed(error)  # its waiting deadline brings it back
                return
        self.engine.account(dispatch_id, clock.own_seconds(), request=True, speaking=False)

    async def _publish_positions(self, agent_name: str) -> None:
        try:
            await self.engine.admitter.publish_positions(agent_name)
        except REDIS_ERRORS as error:
            self.health.failed(error)

    async def run_admission(self) -> None:
        """Capacity changes (a worker joined, raised its capacity, stopped draining) admit queue
        heads at once; every queue is also pumped each PUMP_INTERVAL_SECONDS."""
        admitter = self.engine.admitter
        if not admitter.enabled:
            return

        async def body(backoff: Backoff) -> None:
            pubsub = self.ctx.redis.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(self.ctx.keys.capacity_changed)
            try:
                next_pump = 0.0
                while not self.stopping.is_set():
                    message = await pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") == "message":
                        await admitter.pump(str(message["data"]))
                    if time.monotonic() >= next_pump:
                        assert admitter.admission is not None
                        for agent_name in await admitter.admission.queued_agent_names():
                            await admitter.pump(agent_name)
                        next_pump = time.monotonic() + PUMP_INTERVAL_SECONDS
                    self.health.ok()
                    backoff.reset()
            finally:
                await pubsub.aclose()

        await self._guarded("admission", body)

    # -- drain ------------------------------------------------------------------------------
    async def drain(self, seconds: float) -> None:
        """Stop reading; give in-flight work ``seconds`` to finish, then hand it back."""
        self.stopping.set()
        deadline = time.monotonic() + seconds
        while self.work and time.monotonic() < deadline:
            await asyncio.wait(set(self.work), timeout=max(0.0, deadline - time.monotonic()))
        for task in list(self.work):
            task.cancel()
        if self.work:
            await asyncio.wait(set(self.work), timeout=5)
