"""GET /v1/diagnostics: the doctor's checks over HTTP, API key required, no probe."""

from __future__ import annotations

from agentline.registry import WorkerRegistry
from agentline.schema import WorkerInfo


async def test_diagnostics_need_an_api_key(client):
    response = await client.get("/v1/diagnostics", headers={"Authorization": ""})
    assert response.status_code == 401


async def test_diagnostics_name_the_agent_name_mismatch(
    make_settings, livekit_emulator, redis_client, keys
):
    import httpx

    from token_api.app import create_app
    from token_api.testing import API_KEY, serving

    settings = make_settings(
        livekit_url=livekit_emulator.ws_url,
        livekit_api_key=livekit_emulator.api_key,
        livekit_api_secret=livekit_emulator.api_secret,
    )
    await WorkerRegistry(redis_client, keys).heartbeat(WorkerInfo("w1", "support-bot", 2))
    # served for real: the emulator answers from this same event loop
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/diagnostics", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["API key and secret"]["ok"], checks["API key and secret"]
    mismatch = checks["agent_name 'travel-assistant' served"]
    assert not mismatch["ok"] and "'support-bot'" in mismatch["evidence"]
    assert not any(c["section"] == "probe" for c in body["checks"])
