"""Capacity control: a worker is FULL exactly when its job slots are taken.

livekit-agents 1.8.9 estimates the load of each in-flight job request as
``load_threshold / num_idle_processes`` while no job is running, so with production defaults
two simultaneous requests mark the worker FULL, and its own availability check then answers
"unavailable" without calling the request handler: LiveKit drops such jobs silently and the
worker never hears of them. Here the request handler sees every request and decides by slots;
load is ``slots in use / capacity`` and FULL means ``load >= 1``.

The overrides below touch private methods of ``AgentServer`` (pinned version); the unit
tests assert they still exist, so an upgrade that renames them fails loudly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentServer
from livekit.protocol import agent

# Names of the AgentServer internals this module relies on.
OVERRIDDEN_INTERNALS = (
    "_is_available",
    "_get_effective_load",
    "_invoke_load_fnc",
    "_handle_availability",
    "_queue_msg",
    "_update_worker_status",
    "_handle_termination",
    "_run_ws",
)


class SlotLedger:
    """Job slots: accepted requests not yet running, plus running jobs that have not ended.

    A job whose process reported its end frees its slot at once, though livekit-agents lists
    the process as running until it has torn down (seconds): the next job gets another
    process, and the dispatcher, told the job ended, may send the next one right away."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.pending: set[str] = set()  # accepted, waiting for assignment and a process
        self.finished: set[str] = set()  # ended, their processes still tearing down
        self._running: Callable[[], set[str]] = set

    def bind_running(self, running_ids: Callable[[], set[str]]) -> None:
        self._running = running_ids

    @property
    def in_use(self) -> int:
        return len(self.pending) + len(self._running() - self.finished)

    def finish(self, job_id: str) -> None:
        self.pending.discard(job_id)
        self.finished.add(job_id)

    def forget_gone(self, running_ids: set[str]) -> None:
        """Drop the ended jobs whose processes are gone (called periodically)."""
        self.finished &= running_ids

    @property
    def load(self) -> float:
        return min(self.in_use / self.capacity, 1.0)

    def try_reserve(self, job_id: str) -> bool:
        # no await between the check and the reservation: atomic on the event loop
        if self.in_use >= self.capacity:
            return False
        self.pending.add(job_id)
        return True

    def release(self, job_id: str) -> None:
        self.pending.discard(job_id)


class CapacityAgentServer(AgentServer):
    """``AgentServer`` with slot-based availability and request/answer timestamps."""

    def __init__(self, ledger: SlotLedger, **kwargs: Any) -> None:
        kwargs.setdefault("load_fnc", lambda: ledger.load)
        kwargs.setdefault("load_threshold", 1.0)
        super().__init__(**kwargs)
        self.ledger = ledger
        ledger.bind_running(
            lambda: set() if self._closed else {info.job.id for info in self.active_jobs}
        )
        self.request_received_at: dict[str, float] = {}
        # jobs LiveKit ended (JobTermination): their processes get a reasonless shutdown
        self.terminated_by_livekit: set[str] = set()
        # True while the registered /agent WebSocket is up (readiness follows it)
        self.livekit_connected = False
        self.on_connection_change: Callable[[bool], None] | None = None
        self.on_answer_sent: Callable[[str, bool, float], None] | None = None

    # every request reaches the request handler, which answers by slots (and draining)
    def _is_available(self) -> bool:
        return True

    def _get_effective_load(self) -> float:
        return self.ledger.load

    async def _invoke_load_fnc(self) -> float:
        # the stock version hops to a thread for every job request (the default load
        # function measures CPU); counting slots is instant, and a burst of 50 requests
        # would otherwise queue behind the executor's few threads
        return self.ledger.load

    async def announce_status(self) -> None:
        """Send the worker's status (load, AVAILABLE/FULL) to LiveKit now rather than at the
        next periodic update (every 2.5 s): a freed slot is usable at once."""
        if self.livekit_connected and not self._closed:
            await self._update_worker_status()

    def _handle_availability(self, msg: agent.AvailabilityRequest) -> None:
        self.request_received_at[msg.job.id] = time.perf_counter()
        super()._handle_availability(msg)

    async def _run_ws(self, ws: Any) -> None:
        # called once LiveKit has answered the registration, returns when the socket drops
        self._set_connected(True)
        try:
            await super()._run_ws(ws)
        finally:
            self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        self.livekit_connected = connected
        if self.on_connection_change is not None:
            self.on_connection_change(connected)

    async def _handle_termination(self, msg: agent.JobTermination) -> None:
        self.terminated_by_livekit.add(msg.job_id)
        await super()._handle_termination(msg)

    async def _queue_msg(self, msg: agent.WorkerMessage) -> None:
        await super()._queue_msg(msg)
        if msg.WhichOneof("message") == "availability":
            job_id = msg.availability.job_id
            received = self.request_received_at.pop(job_id, None)
            if received is not None and self.on_answer_sent is not None:
                self.on_answer_sent(
                    job_id, msg.availability.available, time.perf_counter() - received
                )
