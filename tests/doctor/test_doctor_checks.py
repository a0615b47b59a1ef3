"""`agentline doctor`: each ✗ produced for real, against the LiveKit emulator and real Redis."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import SecretStr

from agentline.doctor.checks import check_redis, check_settings, check_webhooks, check_workers
from agentline.doctor.livekit_checks import check_livekit
from agentline.doctor.runner import DoctorOptions, render_json, render_text, run_doctor
from agentline.keys import DISPATCHER_GROUP
from agentline.registry import InstanceHeartbeats, WorkerRegistry
from agentline.schema import WorkerInfo
from agentline.settings import CommonSettings
from agentline.streams import StreamConsumer
from agentline.webhook_stats import read_webhook_stats, record_webhook


def _settings(emu, **overrides) -> CommonSettings:
    values = {
        "livekit_url": emu.ws_url,
        "livekit_api_key": emu.api_key,
        "livekit_api_secret": SecretStr(emu.api_secret),
        **overrides,
    }
    return CommonSettings.model_construct(**values)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_livekit_all_good(livekit_emulator):
    checks = await check_livekit(_settings(livekit_emulator))
    assert [c.ok for c in checks] == [True, True, True], checks
    assert "1.13" in checks[2].evidence  # the server version from the /agent registration


async def test_wrong_secret_is_named_as_such(livekit_emulator):
    settings = _settings(livekit_emulator, livekit_api_secret=SecretStr("x" * 40))
    checks = {c.name: c for c in await check_livekit(settings)}
    auth = checks["API key and secret"]
    assert not auth.ok
    assert f"the secret does not match key '{livekit_emulator.api_key}'" in auth.evidence


async def test_livekit_down():
    settings = CommonSettings.model_construct(
        livekit_url=f"ws://127.0.0.1:{_closed_port()}",
        livekit_api_key="devkey",
        livekit_api_secret=SecretStr("s" * 40),
    )
    checks = await check_livekit(settings, wait_s=2)
    assert len(checks) == 1 and not checks[0].ok
    assert "LIVEKIT_URL" in checks[0].fix


async def test_workers_under_another_agent_name(redis_client, keys):
    await WorkerRegistry(redis_client, keys).heartbeat(WorkerInfo("w1", "support-bot", 4))
    checks = await check_workers(redis_client, keys, ["travel-assistant"])
    served = checks[1]
    assert not served.ok
    assert "'travel-assistant'" in served.evidence and "'support-bot'" in served.evidence
    assert "empty agent_name never receives explicit dispatches" in served.fix


async def test_no_workers(redis_client, keys):
    checks = await check_workers(redis_client, keys, ["travel-assistant"])
    assert not checks[0].ok and "no agent worker" in checks[0].evidence


async def test_workers_full(redis_client, keys):
    await WorkerRegistry(redis_client, keys).heartbeat(
        WorkerInfo("w1", "travel-assistant", capacity=2, active_jobs=2)
    )
    checks = await check_workers(redis_client, keys, ["travel-assistant"])
    assert checks[0].ok
    assert not checks[1].ok and "2/2 jobs, 0 free" in checks[1].evidence
    assert "scale" in checks[1].fix


async def test_dispatcher_down_with_stale_group(redis_client, keys, redis_url):
    consumer = StreamConsumer(
        redis_client, keys.requests, DISPATCHER_GROUP, "gone", keys.dead_letters
    )
    await consumer.ensure_group()
    await redis_client.xadd(keys.requests, {"dispatch_id": "dsp_1", "request": "{}"})
    checks = {c.name: c for c in await check_redis(redis_client, keys, redis_url)}
    assert checks["dispatch stream and consumer group"].ok
    alive = checks["dispatchers alive"]
    assert not alive.ok and "1 requests waiting unread" in alive.evidence
    await InstanceHeartbeats(redis_client, keys, "dispatcher").beat("pod-a")
    checks = {c.name: c for c in await check_redis(redis_client, keys, redis_url)}
    assert checks["dispatchers alive"].ok and "pod-a" in checks["dispatchers alive"].evidence


async def test_redis_unreachable(keys):
    from agentline.redis_conn import make_client

    url = f"redis://127.0.0.1:{_closed_port()}/0"
    client = make_client(url)
    try:
        checks = await check_redis(client, keys, url)
    finally:
        await client.aclose()
    assert len(checks) == 1 and not checks[0].ok and "REDIS_URL" in checks[0].fix


async def test_webhook_checks(redis_client, keys):
    assert not (await check_webhooks(redis_client, keys))[0].ok  # none ever received
    await record_webhook(redis_client, keys, verified=True, event="room_started")
    assert (await check_webhooks(redis_client, keys))[0].ok
    await record_webhook(redis_client, keys, verified=False, error="signature mismatch")
    check = (await check_webhooks(redis_client, keys))[0]
    assert not check.ok and "does not match" in check.fix


async def test_a_new_systems_first_webhooks_come_with_the_probe(
    livekit_emulator, redis_url, keys, redis_client, monkeypatch
):
    """On a new system no webhook has come yet when the doctor starts; the live probe's
    session makes LiveKit send some, so the webhook line is judged again after it. (The real
    probe is in tests/e2e; here it stands in for LiveKit's webhooks arriving meanwhile.)"""
    from agentline.doctor import runner
    from agentline.doctor.checks import Check

    async def probe_with_webhooks(options, progress):
        await record_webhook(redis_client, keys, verified=True, event="participant_joined")
        return Check("probe", "live session reaches speaking", True, "stand-in")

    async def probe_without_webhooks(options, progress):
        return Check("probe", "live session reaches speaking", True, "stand-in")

    settings = _settings(livekit_emulator, redis_url=redis_url, redis_namespace=keys.namespace)
    options = DoctorOptions(agent_names=["travel-assistant"], probe=True)
    monkeypatch.setattr(runner, "_probe", probe_without_webhooks)
    checks = {c.section: c for c in await run_doctor(settings, options)}
    assert not checks["webhooks"].ok
    assert "not even for the live probe's session" in checks["webhooks"].evidence

    monkeypatch.setattr(runner, "_probe", probe_with_webhooks)
    ordered = await run_doctor(settings, options)
    checks = {c.section: c for c in ordered}
    assert checks["webhooks"].ok, checks["webhooks"]
    assert "came with the live probe's session" in checks["webhooks"].evidence
    assert [c.section for c in ordered][-2:] == ["webhooks", "probe"]  # the order stays


def test_bad_setting_named(monkeypatch):
    monkeypatch.setenv("DISPATCHER_JOIN_TIMEOUT_SECONDS", "soon")
    checks = {c.name: c for c in check_settings()}
    assert not checks["dispatcher settings"].ok
    assert "DISPATCHER_JOIN_TIMEOUT_SECONDS" in checks["dispatcher settings"].evidence
    assert checks["token-api settings"].ok


async def test_whole_run_renders_and_exits_by_result(
    livekit_emulator, redis_url, keys, redis_client
):
    settings = _settings(livekit_emulator, redis_url=redis_url, redis_namespace=keys.namespace)
    checks = await run_doctor(
        settings, DoctorOptions(agent_names=["travel-assistant"], probe=False)
    )
    text = render_text(checks, colour=False)
    assert "✗ agent_name 'travel-assistant' served" in text
    assert text.strip().endswith("failed")
    assert '"ok": false' in render_json(checks)
    sections = [c.section for c in checks]
    assert sections == sorted(
        sections, key=["settings", "redis", "livekit", "workers", "webhooks"].index
    )


@pytest.mark.parametrize("argv", [["doctor", "--no-probe", "--json"]])
def test_cli_exit_code_is_nonzero_on_failure(argv, monkeypatch, capsys):
    from agentline.cli import main

    monkeypatch.setenv("LIVEKIT_URL", f"ws://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    assert main(argv) == 1
    assert '"ok": false' in capsys.readouterr().out


async def test_webhook_signature_mismatch_through_a_real_dispatcher(
    livekit_emulator_factory, redis_client, redis_url, keys
):
    """LiveKit signs its webhooks with a key the dispatcher does not know: the dispatcher
    refuses them, and the doctor names the mismatch."""
    from livekit import api

    from dispatcher.testing import dispatcher_env, start_dispatcher

    port = _closed_port()
    webhook_url = f"http://127.0.0.1:{port}/webhooks/livekit"
    async with livekit_emulator_factory(webhook_urls=[webhook_url]) as emu:
        env = dispatcher_env(
            redis_url, keys, emu.ws_url, emu.api_key, emu.api_secret, port, "doctor-test",
            webhook_api_key=emu.api_key, webhook_api_secret="not-the-signing-secret-" + "x" * 20,
        )  # fmt: skip
        dispatcher = await start_dispatcher(env, port, "doctor-test")
        try:
            await dispatcher.wait_ready()
            async with api.LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret) as lkapi:
                await lkapi.room.create_room(api.CreateRoomRequest(name="doctor-room"))
            for _ in range(100):  # the dispatcher writes its webhook counts once a second
                if (await read_webhook_stats(redis_client, keys)).bad_count:
                    break
                await asyncio.sleep(0.1)
            checks = await check_webhooks(redis_client, keys)
        finally:
            dispatcher.process.terminate()
            await dispatcher.process.wait()
    check = checks[0]
    assert not check.ok, check
    assert check.name == "webhook signatures"
    assert "DISPATCHER_WEBHOOK_API_KEY" in check.fix
