"""The whole system end to end, as `make dev` runs it, inside a network namespace of its own.

Inside the namespace: an embedded Redis, the LiveKit emulator (WebRTC through aiortc), the
dispatcher, token-api and one real livekit-agents worker on the Realtime stand-in. A caller
process does what a frontend does (`agentline.demo --json`: POST /v1/sessions, join with the
real SDK, publish a microphone, follow the SSE events) and reports what it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from agentline.devrun import namespace_env
from livekit_emulator.netns import NetNamespace, skip_reason

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
]


@dataclass
class RunningSystem:
    ns: NetNamespace
    process: asyncio.subprocess.Process
    log: list[str]

    async def run(self, *argv: str, wait_s: float = 120.0) -> tuple[int, str, str]:
        """Run a command inside the namespace; return its code, stdout and stderr."""
        proc = await self.ns.spawn(list(argv), env=dict(os.environ))
        out, err = await asyncio.wait_for(proc.communicate(), wait_s)
        return proc.returncode or 0, out.decode(), err.decode()

    async def probe(self, *extra: str) -> dict[str, Any]:
        code, out, err = await self.run(
            sys.executable, "-m", "agentline.demo", "--json", "--wait-ready", "90",
            "--timeout", "45", *extra,
        )  # fmt: skip
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"demo printed no result (exit {code}): {err[-2000:]}\n{self.tail()}"
        return dict(json.loads(lines[-1]))

    async def get(self, url: str) -> str:
        code, out, err = await self.run(
            sys.executable, "-c",
            "import sys, httpx; r = httpx.get(sys.argv[1], headers={'Authorization': "
            "'Bearer dev-api-key'}, timeout=5); print(r.text)",
            url,
        )  # fmt: skip
        assert code == 0, err
        return out

    async def doctor(self, *extra: str) -> tuple[int, str, str]:
        """`agentline doctor --json` inside the namespace, configured like the services."""
        proc = await self.ns.spawn(
            ["agentline", "doctor", "--json", *extra],
            env={**os.environ, "LIVEKIT_URL": f"ws://{self.ns.server_ip}:7880"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, out.decode(), err.decode()

    def tail(self, lines: int = 60) -> str:
        return "".join(self.log[-lines:])


async def _start_system(
    ns: NetNamespace, env_overrides: dict[str, str], with_worker: bool = True
) -> RunningSystem:
    env = namespace_env(ns.name, ns.server_ip, **env_overrides)
    argv = [sys.executable, "-m", "agentline.devrun", "--netns", "off"]
    process = await ns.spawn(
        argv if with_worker else [*argv, "--no-worker"],
        env=env,
        stderr=asyncio.subprocess.STDOUT,
    )
    log: list[str] = []

    async def collect() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            log.append(raw.decode(errors="replace"))

    system = RunningSystem(ns, process, log)
    system.collector = asyncio.create_task(collect())  # type: ignore[attr-defined]
    return system


async def _stop_system(system: RunningSystem) -> None:
    if system.process.returncode is None:
        system.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(system.process.wait(), 30)
        except TimeoutError:
            system.process.kill()
            await system.process.wait()


@pytest_asyncio.fixture
async def system(netns: NetNamespace) -> AsyncIterator[RunningSystem]:
    running = await _start_system(netns, {})
    try:
        yield running
    finally:
        await _stop_system(running)


@pytest_asyncio.fixture
async def misnamed_system(netns: NetNamespace) -> AsyncIterator[RunningSystem]:
    running = await _start_system(netns, {"AGENT_WORKER_AGENT_NAME": "support-bot"})
    try:
        yield running
    finally:
        await _stop_system(running)


@pytest_asyncio.fixture
async def silent_agent_system(netns: NetNamespace) -> AsyncIterator[RunningSystem]:
    """No real worker: a simulated one (not ours, so the registry only advises) whose agent
    joins rooms but never publishes audio."""
    overrides = {"DISPATCHER_REGISTRY_POLICY": "advise", "DISPATCHER_AUDIO_TIMEOUT_SECONDS": "3"}
    running = await _start_system(netns, overrides, with_worker=False)
    try:
        yield running
    finally:
        await _stop_system(running)


@pytest.mark.timeout(240)
async def test_session_reaches_speaking_with_real_audio(system: RunningSystem) -> None:
    result = await system.probe()
    assert result["ok"], f"{result}\n{system.tail()}"
    stages = result["stage_at_ms"]
    for stage in ("requested", "dispatching", "dispatched", "assigned", "joined", "speaking"):
        assert stage in stages, f"{stage} missing from {stages}"
    ordered = [stages[s] for s in ("requested", "dispatched", "joined", "speaking")]
    assert ordered == sorted(ordered)
    assert result["agent_connected_ms"] is not None, "no ParticipantConnected for the agent"
    assert result["audio_subscribed_ms"] is not None, "the agent's audio was not subscribed"
    assert result["audible_frames"] >= 10

    # The record agrees with what the SSE stream showed, stage by stage.
    dispatch_id = result["dispatch_id"]
    code, out, err = await system.run("agentline", "dispatch", dispatch_id)
    assert code == 0, err
    shown = json.loads(out)
    record_stages = shown["record"]["timestamps"]
    requested = record_stages["requested"]
    for stage, at in stages.items():
        assert record_stages[stage] - requested == at
    assert [e["state"] for e in shown["events"]][: len(stages)] == list(stages)

    # Both services counted it.
    worker_metrics = await system.get("http://127.0.0.1:8082/metrics")
    assert _sample(worker_metrics, "agent_worker_jobs_accepted_total") >= 1
    assert _sample(worker_metrics, "agent_worker_audio_publish_seconds_count") >= 1
    dispatcher_metrics = await system.get("http://127.0.0.1:8081/metrics")
    assert _sample(dispatcher_metrics, "dispatcher_transitions_total", state="speaking") == 1
    assert (
        _sample(
            dispatcher_metrics,
            "dispatcher_stage_latency_seconds_count",
            stage="requested_to_speaking",
        )
        == 1
    )

    # And the doctor, probe included, finds nothing wrong.
    code, out, err = await system.doctor()
    report = json.loads(out)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert code == 0 and report["ok"], f"{failed}\n{err[-1500:]}"
    assert any(c["section"] == "probe" for c in report["checks"])


@pytest.mark.timeout(240)
async def test_worker_with_another_agent_name_is_diagnosed(misnamed_system: RunningSystem) -> None:
    result = await misnamed_system.probe()
    assert not result["ok"]
    assert result["state"] == "failed", f"{result}\n{misnamed_system.tail()}"
    assert result["reason"] == "no_worker_for_agent"
    assert "support-bot" in json.dumps(result["detail"]), result

    code, out, _ = await misnamed_system.doctor("--no-probe")
    report = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1
    mismatch = report["agent_name 'travel-assistant' served"]
    assert not mismatch["ok"] and "'support-bot'" in mismatch["evidence"]


@pytest.mark.timeout(240)
async def test_doctor_probe_names_an_agent_that_never_speaks(
    silent_agent_system: RunningSystem,
) -> None:
    system = silent_agent_system
    emulator = f"http://{system.ns.server_ip}:7880"
    add_worker = (
        "import asyncio, sys\n"
        "from livekit_emulator.admin_client import EmulatorAdmin\n"
        "async def main():\n"
        "    for _ in range(300):\n"
        "        try:\n"
        "            async with EmulatorAdmin(sys.argv[1]) as admin:\n"
        "                return await admin.add_simulated_worker("
        "'travel-assistant', 4, publish_audio=False)\n"
        "        except Exception:\n"
        "            await asyncio.sleep(0.2)\n"
        "print(asyncio.run(main()))\n"
    )
    code, out, err = await system.run(sys.executable, "-c", add_worker, emulator)
    assert code == 0 and out.startswith("AW_"), err
    ready, _, err = await system.run(
        sys.executable, "-c",
        "import asyncio; from agentline.demo import wait_ready; "
        "raise SystemExit(0 if asyncio.run(wait_ready('http://127.0.0.1:8080', "
        "'dev-api-key', 90, require_worker=False)) else 1)",
    )  # fmt: skip
    assert ready == 0, err

    code, out, err = await system.doctor("--timeout", "40")
    report = {c["name"]: c for c in json.loads(out)["checks"]}
    probe = report["live session reaches speaking"]
    assert code == 1
    assert not probe["ok"], probe
    assert "joined" in probe["evidence"] and "no_audio" in probe["evidence"], probe
    assert "model connection" in probe["fix"], probe


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples (those carrying ``labels``) in a text exposition."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name)] not in " {":
            continue
        if all(pair in line for pair in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total
