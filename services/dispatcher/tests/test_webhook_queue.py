"""The queue behind an early webhook answer: per-room order, rooms in parallel, a bounded
backlog that makes the answer wait, Redis errors retried, and the drain at shutdown."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from dispatcher import webhook_queue
from dispatcher.metrics import DispatcherMetrics
from dispatcher.signals import Signal, SignalKind, Source
from dispatcher.webhook_queue import WebhookQueue


def _signal(room: str, kind: SignalKind = SignalKind.JOINED, identity: str = "") -> Signal:
    return Signal(kind, Source.WEBHOOK, room=room, agent_identity=identity)


def _count(metrics: DispatcherMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value("dispatcher_webhooks_total", {"result": result})
    return value or 0.0


@pytest.fixture
def metrics() -> DispatcherMetrics:
    return DispatcherMetrics(CollectorRegistry())


async def test_answer_does_not_wait_and_room_order_is_kept(metrics: DispatcherMetrics) -> None:
    gate = asyncio.Event()
    applied: list[tuple[str, SignalKind]] = []

    async def apply(signal: Signal) -> bool:
        if signal.room == "slow":
            await gate.wait()  # this room's Redis work is slow
        applied.append((signal.room, signal.kind))
        return True

    queue = WebhookQueue(apply, metrics)
    # submit returns although the slow room's first signal is not applied yet
    await asyncio.wait_for(queue.submit(_signal("slow", SignalKind.JOINED)), 0.5)
    await asyncio.wait_for(queue.submit(_signal("slow", SignalKind.SPEAKING)), 0.5)
    await asyncio.wait_for(queue.submit(_signal("fast", SignalKind.JOINED)), 0.5)
    await asyncio.sleep(0.05)
    assert applied == [("fast", SignalKind.JOINED)]  # another room is not held
    assert queue.pending == 2
    gate.set()
    await queue.drain(1.0)
    assert applied[1:] == [("slow", SignalKind.JOINED), ("slow", SignalKind.SPEAKING)]
    assert queue.pending == 0
    assert _count(metrics, "applied") == 3


async def test_a_full_queue_makes_the_answer_wait(metrics: DispatcherMetrics) -> None:
    gate = asyncio.Event()

    async def apply(signal: Signal) -> bool:
        await gate.wait()
        return False

    queue = WebhookQueue(apply, metrics, max_pending=2)
    await asyncio.wait_for(queue.submit(_signal("a")), 0.5)
    await asyncio.wait_for(queue.submit(_signal("b")), 0.5)
    third = asyncio.create_task(queue.submit(_signal("c")))
    await asyncio.sleep(0.05)
    assert not third.done()  # backpressure: the sender waits for this one's apply
    gate.set()
    await asyncio.wait_for(third, 1.0)
    await queue.drain(1.0)
    assert _count(metrics, "no_change") == 3


async def test_redis_errors_are_retried_then_counted(
    metrics: DispatcherMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_queue, "FIRST_RETRY_SECONDS", 0.01)
    calls = {"flaky": 0, "down": 0}

    async def apply(signal: Signal) -> bool:
        calls[signal.room] += 1
        if signal.room == "down" or calls[signal.room] < 3:
            raise RedisConnectionError("redis went away")
        return True

    queue = WebhookQueue(apply, metrics)
    await queue.submit(_signal("flaky"))
    await queue.submit(_signal("down"))
    await queue.submit(_signal("down", SignalKind.SPEAKING))  # still applied after
    await queue.drain(2.0)
    assert calls == {"flaky": 3, "down": 2 * webhook_queue.APPLY_TRIES}
    assert _count(metrics, "applied") == 1
    assert _count(metrics, "unavailable") == 2


async def test_a_failing_signal_does_not_stop_its_room(metrics: DispatcherMetrics) -> None:
    applied: list[str] = []

    async def apply(signal: Signal) -> bool:
        if signal.agent_identity == "bad":
            raise ValueError("a bug")
        applied.append(signal.agent_identity)
        return True

    queue = WebhookQueue(apply, metrics)
    await queue.submit(_signal("r", identity="bad"))
    await queue.submit(_signal("r", identity="good"))
    await queue.drain(1.0)
    assert applied == ["good"]
    assert _count(metrics, "error") == 1


async def test_drain_gives_up_after_its_bound(metrics: DispatcherMetrics) -> None:
    async def apply(signal: Signal) -> bool:
        await asyncio.sleep(30)
        return True

    queue = WebhookQueue(apply, metrics)
    await queue.submit(_signal("stuck"))
    started = asyncio.get_running_loop().time()
    await queue.drain(0.1)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert queue.pending == 0
