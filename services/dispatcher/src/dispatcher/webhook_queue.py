"""Verified webhook signals applied after the webhook is answered, in arrival order per room.

LiveKit sends webhooks through a small pool of senders (10 in livekit-server), each posting one
request at a time and waiting for the answer, the room name choosing the sender. A receiver
that answers only after its own work holds that sender, and every room hashed to it waits
behind: at 200 sessions/s (600 webhooks/s) the dispatcher's 3-4 Redis round trips per webhook
made the senders the bottleneck (events queued there for up to 1.5 s). So a webhook is
answered once its signature is checked and its signal queued here; the signal is then applied
by one task per room (LiveKit's per-room order is kept: a track_published is matched to the
participant_joined before it).

What an early answer gives up, and how it is covered: a signal applied after the answer is
lost if the process dies first, or if Redis stays unreachable through the retries below; the
dispatcher's polling (ListDispatch, ListParticipants) then moves the dispatch, as it does for
any webhook LiveKit never delivers. While Redis is known to be down the webhook is refused
with 503 (LiveKit retries it), and past ``max_pending`` queued signals the answer waits for
the apply again, which slows LiveKit's senders instead of growing memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agentline.logs import get_logger
from dispatcher.loops import REDIS_ERRORS
from dispatcher.metrics import DispatcherMetrics
from dispatcher.signals import Signal

log = get_logger("dispatcher.webhooks")

DEFAULT_MAX_PENDING = 4096
# A Redis error while applying is retried (the webhook was already answered), as LiveKit
# would have retried a 503: 0.2, 0.4, 0.8 s.
APPLY_TRIES = 4
FIRST_RETRY_SECONDS = 0.2


@dataclass(slots=True)
class _Queued:
    signal: Signal
    done: asyncio.Future[None] | None = field(default=None)  # set when the answer waits


class WebhookQueue:
    """Per-room FIFO of verified signals, each room drained by one task."""

    def __init__(
        self,
        apply: Callable[[Signal], Awaitable[bool]],
        metrics: DispatcherMetrics,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._apply = apply  # True: it moved the dispatch
        self._metrics = metrics
        self.max_pending = max_pending
        self.pending = 0
        self._rooms: dict[str, deque[_Queued]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, signal: Signal) -> None:
        """Queue ``signal``; returns at once, or once it is applied when the queue is full."""
        item = _Queued(signal)
        if self.pending >= self.max_pending:
            item.done = asyncio.get_running_loop().create_future()
        self.pending += 1
        queue = self._rooms.get(signal.room)
        if queue is None:
            queue = self._rooms[signal.room] = deque()
            task = asyncio.create_task(self._drain(signal.room, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(item)
        if item.done is not None:
            await asyncio.shield(item.done)

    async def _drain(self, room: str, queue: deque[_Queued]) -> None:
        try:
            while queue:
                item = queue[0]
                try:
                    await self._apply_with_retries(item.signal)
                finally:
                    queue.popleft()
                    self.pending -= 1
                    if item.done is not None and not item.done.done():
                        item.done.set_result(None)
        finally:
            self._rooms.pop(room, None)

    async def _apply_with_retries(self, signal: Signal) -> None:
        delay = FIRST_RETRY_SECONDS
        for attempt in range(APPLY_TRIES):
            try:
                moved = await self._apply(signal)
            except REDIS_ERRORS as error:
                if attempt == APPLY_TRIES - 1:
                    self._metrics.webhooks.labels("unavailable").inc()
                    log.warning(
                        "webhook signal not applied: redis unavailable (polling will catch up)",
                        room=signal.room,
                        kind=signal.kind.value,
                        error=repr(error),
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2
            except Exception:  # a bug must not stop this room's later signals
                self._metrics.webhooks.labels("error").inc()
                log.exception("webhook signal failed", room=signal.room, kind=signal.kind.value)
                return
            else:
                self._metrics.webhooks.labels("applied" if moved else "no_change").inc()
                return

    async def drain(self, seconds: float) -> None:
        """Shutdown: let the queued signals be applied, for at most ``seconds``."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=seconds)
        for task in late:
            task.cancel()
        if late:
            log.warning("webhook signals left unapplied at shutdown", rooms=len(late))
            await asyncio.gather(*late, return_exceptions=True)
