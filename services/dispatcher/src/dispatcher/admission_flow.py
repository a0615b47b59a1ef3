"""Capacity-aware admission in the dispatcher (``agentline.admission`` holds the scripts).

Before LiveKit is asked, a dispatch reserves a slot of its agent_name (one Lua script, so two
replicas never over-commit a worker pool) or enters ``waiting`` with a place in the FIFO queue.
Every transition that ends a dispatch gives its slot back (or takes it out of the queue) and
starts, at once, the queue heads admitted in its place; a worker's acceptance turns the
reservation into a hold until the job ends. Waiting is bounded (``no_capacity``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentline.admission import Admission, AdmitResult
from agentline.ids import now_ms
from agentline.lifecycle import DispatchState, FailureReason, is_terminal
from agentline.logs import get_logger
from agentline.schema import DispatchRecord
from agentline.store import TransitionResult
from dispatcher.overhead import io

if TYPE_CHECKING:
    from dispatcher.engine import Engine

log = get_logger("dispatcher.admission")

# A waiting dispatch is looked at this often by the deadline scanner (besides the queue moving):
# it re-checks its place, and a dispatch admitted by a replica that died before starting it
# is started.
WAITING_CHECK_MS = 5_000
# A worker that accepted holds its slot until the job ends (bounded, in case the end is lost).
JOB_HOLD_MS = 6 * 3600 * 1000
# LiveKit said the job is over (the agent left, the room closed) before the worker did: the
# worker may still count the job for a moment (it would refuse the next one for capacity), so
# its slot goes back when it reports the end, or after this grace if it never does (a real
# livekit-agents job was measured taking up to ~15 s to end after its room was closed).
WORKER_END_GRACE_MS = 30_000
_CONFIRMING = (DispatchState.DISPATCHING, DispatchState.DISPATCHED)
# Places rewritten when the queue moves: the first ones (those about to be admitted, whose
# callers watch the count down); the rest get theirs at their periodic look.
PUBLISHED_PLACES = 100
_ACCEPTED = (DispatchState.ASSIGNED, DispatchState.JOINED, DispatchState.SPEAKING)
_AFTER_WAITING = (DispatchState.DISPATCHING, *_CONFIRMING[1:], *_ACCEPTED)

# (agent_name, admitted dispatch ids, whether the queue moved) → start them, publish places.
AdmittedHook = Callable[[str, list[str], bool], None]


def reserve_ms(engine: Engine) -> int:
    """An unconfirmed reservation outlives a dispatcher's lease (a replica that resumes a dead
    one's dispatch finds it still held) plus the assign timeout."""
    settings = engine.ctx.settings
    return engine.ctx.lease_ms + int(settings.assign_timeout_seconds * 1000) + 2_000


class Admitter:
    def __init__(self, engine: Engine, admission: Admission | None) -> None:
        self.engine = engine
        self.ctx = engine.ctx
        self.admission = admission  # None: admission off (setting, or registry policy advise)
        if admission is not None:
            admission.reserve_ms = reserve_ms(engine)
            admission.job_hold_ms = JOB_HOLD_MS
        self.on_admitted: AdmittedHook = lambda name, ids, moved: None
        self._publishing: dict[str, bool] = {}  # agent_name → another publish requested

    @property
    def enabled(self) -> bool:
        return self.admission is not None

    @property
    def max_wait_ms(self) -> int:
        return int(self.ctx.settings.max_wait_seconds * 1000)

    async def admit(self, record: DispatchRecord, known: AdmitResult | None = None) -> bool:
        """True: ``record`` holds a slot, go on. False: it waits in the queue (moved to
        ``waiting`` if it was not), or it failed with ``no_capacity``, or it is gone.
        We hold the dispatch's lease; ``record`` is updated when it moves to ``waiting``.
        ``known``: the admission already tried in the intake round trip (a new request)."""
        admission = self.admission
        if admission is None:
            return True
        at = now_ms()
        if record.state is DispatchState.WAITING:
            waited_since = record.timestamps.get(DispatchState.WAITING.value, at)
            if at >= waited_since + self.max_wait_ms:
                await self._no_capacity(record, at - waited_since)
                return False
        front = record.state is DispatchState.DISPATCHING  # it had a slot and lost it
        result = (
            known
            if known is not None
            else await io(admission.try_admit(record.id, record.agent_name, front=front))
        )
        if result.admitted:
            return True
        estimate = await io(
            admission.estimated_wait_ms(record.agent_name, result.position, result.capacity)
        )
        if front:
            # Its reservation expired and was taken (a retry or a resume came late): nothing
            # of this attempt may stay in LiveKit while it waits (re-admitted, it starts over).
            await self.engine.remove_from_livekit(record)
        if record.state is not DispatchState.WAITING:
            moved = await self.engine.move(
                record,
                DispatchState.WAITING,
                "admission",
                fields={"queue_position": result.position, "estimated_wait_ms": estimate},
                detail={
                    "position": str(result.position),
                    "estimated_wait_ms": str(estimate),
                    "capacity": str(result.capacity),
                },
                expected_version=record.version,
            )
            if not moved.applied:  # cancelled or failed meanwhile: leave the queue
                await self.release(record.id, record.agent_name, queue_moved=True)
                return False
            record.state, record.version = DispatchState.WAITING, moved.version
            record.timestamps[DispatchState.WAITING.value] = at
            record.queue_position, record.estimated_wait_ms = result.position, estimate
        elif result.position != record.queue_position:
            await io(self.ctx.store.queue_updates([(record.id, result.position, estimate)]))
        waited_since = record.timestamps.get(DispatchState.WAITING.value, at)
        next_look = min(waited_since + self.max_wait_ms, now_ms() + WAITING_CHECK_MS)
        await io(self.ctx.deadlines.schedule(record.id, next_look))
        # A slot may have freed since we queued it: its releaser could not start it (we hold
        # the lease), so look once more.
        again = await io(admission.try_admit(record.id, record.agent_name))
        return again.admitted

    async def _no_capacity(self, record: DispatchRecord, waited_ms: int) -> None:
        admission = self.admission
        assert admission is not None
        status = await io(admission.status(record.agent_name))
        detail = {
            "agent_name": record.agent_name,
            "waited_ms": str(waited_ms),
            "capacity": str(status.capacity),
            "used": str(status.used),
            "waiting": str(status.waiting),
        }
        await self.engine.fail(
            record, FailureReason.NO_CAPACITY, "admission", detail, record.version
        )

    async def after_move(
        self,
        record: DispatchRecord,
        target: DispatchState,
        result: TransitionResult,
        at: int,
        reason: FailureReason | None,
        source: str = "",
    ) -> None:
        """Called by ``Engine.move`` for every applied transition."""
        admission = self.admission
        if admission is None:
            return
        if is_terminal(target):
            await self.left_pipeline(record, target, result.previous, at, reason, source)
        elif target in _ACCEPTED and result.previous in _CONFIRMING:
            await io(admission.confirm(record.id, record.agent_name))
        elif target is DispatchState.DISPATCHING and result.previous is DispatchState.WAITING:
            self._observe_wait(record, "admitted", at)

    async def left_pipeline(
        self,
        record: DispatchRecord,
        target: DispatchState,
        previous: DispatchState | None,
        at: int,
        reason: FailureReason | None = None,
        source: str = "",
    ) -> None:
        """A dispatch ended (any terminal state, whoever moved it): its slot or its place goes
        back, and whatever that admits starts now. A job of a worker that reports its events
        keeps its slot until that worker says the job is over (``worker_job_over``)."""
        admission = self.admission
        if admission is None:
            return
        was_waiting = previous is DispatchState.WAITING
        if record.worker_reports and source != "worker" and not was_waiting:
            await io(admission.release_by(record.id, record.agent_name, WORKER_END_GRACE_MS))
        else:
            await self.release(record.id, record.agent_name, queue_moved=was_waiting)
        if was_waiting:
            self._observe_wait(record, reason.value if reason else target.value, at)
        if target is DispatchState.ENDED:
            stages = ("assigned", "joined", "speaking")
            started = next((record.timestamps[s] for s in stages if s in record.timestamps), None)
            if started is not None:
                await io(admission.record_job_duration(record.agent_name, max(0, at - started)))

    async def cancelled(self, record: DispatchRecord) -> None:
        """token-api cancelled it (not through ``Engine.move``): give back its slot, or take it
        out of the queue and tell the others their new places."""
        waiting_at = record.timestamps.get(DispatchState.WAITING.value)
        was_waiting = waiting_at is not None and not any(
            record.timestamps.get(s.value, 0) > waiting_at for s in _AFTER_WAITING
        )
        await self.left_pipeline(
            record,
            DispatchState.CANCELLED,
            DispatchState.WAITING if was_waiting else None,
            record.timestamps.get(DispatchState.CANCELLED.value, now_ms()),
        )

    async def worker_job_over(self, record: DispatchRecord) -> None:
        """Our worker reported the end of a job whose dispatch is already terminal (LiveKit's
        signal came first): now its slot goes back."""
        if self.admission is not None:
            await self.release(record.id, record.agent_name)

    def _observe_wait(self, record: DispatchRecord, outcome: str, at: int) -> None:
        since = record.timestamps.get(DispatchState.WAITING.value)
        if since is None:
            return
        self.ctx.metrics.admission_wait.labels(outcome).observe(max(0, at - since) / 1000)

    async def release(self, dispatch_id: str, agent_name: str, queue_moved: bool = False) -> None:
        if self.admission is None:
            return
        admitted = await io(self.admission.release(dispatch_id, agent_name))
        if admitted or queue_moved:
            self.on_admitted(agent_name, admitted, True)

    async def pump(self, agent_name: str) -> None:
        """Admit queue heads while slots are free (capacity raised, reservations expired)."""
        assert self.admission is not None
        admitted = await io(self.admission.pump(agent_name))
        if admitted:
            self.on_admitted(agent_name, admitted, True)

    async def publish_positions(self, agent_name: str) -> None:
        """Tell every waiting dispatch of ``agent_name`` its place (record and SSE event).
        Coalesced: a burst of queue moves costs one or two passes, not one per move."""
        if agent_name in self._publishing:
            self._publishing[agent_name] = True
            return
        self._publishing[agent_name] = False
        try:
            while True:
                await self._publish_once(agent_name)
                if not self._publishing[agent_name]:
                    return
                self._publishing[agent_name] = False
                await asyncio.sleep(0)
        finally:
            del self._publishing[agent_name]

    async def _publish_once(self, agent_name: str) -> None:
        admission = self.admission
        assert admission is not None
        ids = await io(admission.waiting_ids(agent_name, PUBLISHED_PLACES))
        if not ids:
            return
        status = await io(admission.status(agent_name))
        mean = await io(admission.mean_job_duration_ms(agent_name))
        places = [
            (dispatch_id, index + 1, admission.estimate(mean, index + 1, status.capacity))
            for index, dispatch_id in enumerate(ids)
        ]
        await io(self.ctx.store.queue_updates(places))
