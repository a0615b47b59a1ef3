"""A real livekit-agents worker (AgentServer in ``start`` mode, in a subprocess) against the
emulator: it gets an explicit dispatch's job and its entrypoint runs with the right room and
metadata; a worker registered under another agent_name never gets it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit import api
from livekit.protocol import agent

from livekit_emulator.testing import RunningEmulator, wait_until

APP = Path(__file__).parent / "apps" / "marker_agent.py"
pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def agents_worker(
    emu: RunningEmulator, agent_name: str, marker_dir: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "AGENT_NAME": agent_name,
        "MARKER_DIR": str(marker_dir),
        "LIVEKIT_URL": emu.ws_url,
        "LIVEKIT_API_KEY": emu.api_key,
        "LIVEKIT_API_SECRET": emu.api_secret,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        "start",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def registered(emu: RunningEmulator, agent_name: str) -> bool:
    return any(w.agent_name == agent_name and not w.simulated for w in emu.state.workers.values())


async def test_real_worker_runs_the_explicit_dispatch(
    livekit_emulator: RunningEmulator, lkapi: api.LiveKitAPI, tmp_path: Path
) -> None:
    emu = livekit_emulator
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.mkdir()
    wrong.mkdir()
    async with (
        agents_worker(emu, "travel-assistant", right),
        agents_worker(emu, "other-agent", wrong),
    ):
        await wait_until(
            lambda: registered(emu, "travel-assistant") and registered(emu, "other-agent"),
            within=60,
        )
        dispatch = await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                room="golden-room", agent_name="travel-assistant", metadata='{"id": "d-1"}'
            )
        )
        marker = await wait_until(lambda: next(right.glob("*.json"), None), within=30)
        record = json.loads(marker.read_text())
        assert record["room"] == "golden-room"
        assert record["metadata"] == '{"id": "d-1"}'
        assert record["dispatch_id"] == dispatch.id
        assert record["agent_name"] == "travel-assistant"
        assert record["token_identity"] == f"agent-{record['job_id']}"
        assert record["room_sid"] == emu.state.rooms["golden-room"].sid

        # the worker accepted, reported RUNNING then SUCCESS; ListDispatch keeps JS_RUNNING
        job = emu.state.jobs[record["job_id"]]
        await wait_until(lambda: "JS_SUCCESS" in job.reported, within=15)
        assert job.reported[0] == "JS_RUNNING"
        listed = await lkapi.agent_dispatch.get_dispatch(dispatch.id, "golden-room")
        assert listed is not None
        assert [j.state.status for j in listed.state.jobs] == [agent.JobStatus.JS_RUNNING]

        # the seed's symptom: a worker with another agent_name, CreateDispatch OK, no job
        other = await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room="unserved-room", agent_name="travel-assistant-v2")
        )
        await asyncio.sleep(1.0)
        assert list(wrong.glob("*.json")) == []
        listed = await lkapi.agent_dispatch.get_dispatch(other.id, "unserved-room")
        assert listed is not None and list(listed.state.jobs) == []
        assert len(list(right.glob("*.json"))) == 1
