"""Capacity-aware admission with a real livekit-agents worker (agent-worker, capacity 1): its
own job events confirm and release the slot, and its own records prove that it never had to
refuse a job for capacity. Inside a network namespace (the worker's room join is WebRTC,
which ignores loopback), with an embedded Redis (the host's is not reachable from there)."""

from __future__ import annotations

import asyncio
import time

import pytest
from harness import AGENT, SECRET, harness

from agent_worker.realtime_standin import StandinConfig, running_standin
from agent_worker.testing import running_worker
from agentline.admission import Admission
from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.redis_conn import EmbeddedRedis, make_client
from dispatcher.admission_flow import WAITING_CHECK_MS
from livekit_emulator.netns import NetNamespace
from livekit_emulator.rtc.testing import netns

pytestmark = [pytest.mark.netns, pytest.mark.slow]
__all__ = ["netns"]  # the fixture, imported to be used here


async def test_real_worker_one_slot_queue_and_handoff(netns: NetNamespace) -> None:
    embedded = EmbeddedRedis()
    redis_url = await embedded.start()
    redis = make_client(redis_url)
    keys = Keys("admission-real")
    try:
        async with (
            running_standin(StandinConfig(pace=1.0)) as standin,
            harness(
                redis, redis_url, keys, workers=(), registered=False,
                emulator_config={"host": netns.server_ip, "availability_timeout": 5.0},
                join_timeout_seconds=15.0, audio_timeout_seconds=120.0, assign_timeout_seconds=10.0,
            ) as h,
            running_worker(
                h.emu.ws_url, "devkey", SECRET, redis_url=redis_url, namespace=keys.namespace,
                openai_base_url=standin.url, idle_processes=1, max_jobs=1,
            ) as worker,
        ):  # fmt: skip
            admission = Admission(redis, keys)
            deadline = time.monotonic() + 60  # a worker's start takes 10–20 s on a busy machine
            while (await admission.status(AGENT)).capacity != 1:  # its first heartbeat
                assert time.monotonic() < deadline, "the worker never heartbeat its capacity"
                await asyncio.sleep(0.05)
            first = await h.submit()
            # No caller joins, so the agent never gets a subscriber for its audio: sessions
            # stop at `joined` (the slot is held all the same; speaking is covered with
            # simulated workers in test_admission_flow.py).
            await h.wait_state(first, [DispatchState.JOINED], within=30)
            # one after the other: two requests read in one batch may be admitted in any order
            second = await h.submit()
            record = await h.wait_state(second, [DispatchState.WAITING])
            assert record.queue_position == 1
            third = await h.submit()
            record = await h.wait_state(third, [DispatchState.WAITING])
            assert record.queue_position == 2

            ended_room = (await h.store.get(first)).room  # type: ignore[union-attr]
            h.emu.emulator.rooms.close(h.emu.emulator.rooms.get(ended_room))
            nxt = await h.wait_state(second, [DispatchState.JOINED], within=30)
            events = await worker.wait_events(
                lambda evs: any(e.kind.value == "ended" and e.dispatch_id == first for e in evs),
                15,
            )
            (job_end,) = [e for e in events if e.kind.value == "ended" and e.dispatch_id == first]
            # LiveKit's webhooks (agent left, room finished) end the dispatch first; the slot
            # goes back when the worker itself reports the job's end, so it is free to take
            # the next one (released on the webhook, the worker refused it for capacity).
            gap_ms = nxt.timestamps["dispatching"] - job_end.at_ms
            print(f"worker's job end event → next dispatching: {gap_ms} ms")
            seen = [(e.kind.value, e.dispatch_id[-4:], e.reason, e.at_ms) for e in events]
            # Well before the periodic look at a waiting dispatch (5 s) or a retry after the
            # assign timeout (10 s, when LiveKit dropped a job sent to a worker it still
            # thought FULL): the worker's own end event handed the slot over.
            assert gap_ms < WAITING_CHECK_MS / 5, f"{gap_ms} ms; {seen}"
            assert (await h.store.get(third)).queue_position == 1  # type: ignore[union-attr]

            events = await worker.events()
            kinds = [e.kind.value for e in events]
            assert "rejected" not in kinds, [e for e in events if e.kind.value == "rejected"]
            accepted = [e.dispatch_id for e in events if e.kind.value == "accepted"]
            assert accepted == [first, second]  # one job at a time, in queue order
            status = await admission.status(AGENT)
            assert (status.capacity, status.used, status.waiting) == (1, 1, 1)
    finally:
        await redis.aclose()
        await embedded.stop()
