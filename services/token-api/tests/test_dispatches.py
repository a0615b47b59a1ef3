"""Re-invite, status, cancel, agents."""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState, FailureReason
from agentline.registry import WorkerRegistry
from agentline.schema import DispatchKind, DispatchRequest, WorkerInfo
from agentline.store import DispatchStore
from token_api.testing import AUTH

Client = AsyncTestClient[Litestar]


async def _session(client: Client, **body: object) -> str:
    response = await client.post("/v1/sessions", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return str(response.json()["dispatch"]["id"])


async def test_reinvite_publishes_a_reinvite_request(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    response = await client.post(
        "/v1/dispatches", json={"room": "existing-room", "agent_name": "concierge"}, headers=AUTH
    )
    assert response.status_code == 202, response.text
    link = response.json()
    assert link["state"] == "requested" and link["status_url"].endswith(link["id"])
    entries = await redis_client.xrange(keys.requests)
    request = msgspec.json.decode(entries[-1][1]["request"], type=DispatchRequest)
    assert request.kind is DispatchKind.REINVITE and request.room == "existing-room"
    assert request.agent_name == "concierge"


async def test_reinvite_needs_a_room(client: Client) -> None:
    missing = await client.post("/v1/dispatches", json={}, headers=AUTH)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "room"


async def test_status_shows_stages_durations_and_failure(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    dispatch_id = await _session(client, room="status-room")
    store = DispatchStore(redis_client, keys)
    record = await store.get(dispatch_id)
    assert record is not None
    t0 = record.created_at_ms
    await store.transition(
        dispatch_id, DispatchState.DISPATCHING, at_ms=t0 + 5, fields={"attempts": 1}
    )
    await store.transition(dispatch_id, DispatchState.DISPATCHED, at_ms=t0 + 50)
    await store.transition(
        dispatch_id,
        DispatchState.FAILED,
        reason=FailureReason.NOT_ASSIGNED,
        at_ms=t0 + 10_050,
        fields={"error_detail": "no worker answered within 10 s"},
    )
    response = await client.get(f"/v1/dispatches/{dispatch_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["state"] == "failed" and status["terminal"] is True
    assert status["attempts"] == 1 and status["room"] == "status-room"
    assert set(status["timestamps"]) == {"requested", "dispatching", "dispatched", "failed"}
    assert status["durations_ms"]["requested→dispatching"] == 5
    assert status["durations_ms"]["dispatching→dispatched"] == 45
    failure = status["failure"]
    assert failure["reason"] == "not_assigned"
    assert failure["message"] and failure["hint"]
    assert failure["detail"] == "no worker answered within 10 s"


async def test_unknown_or_malformed_dispatch_is_404(client: Client) -> None:
    for dispatch_id in ("dsp_0123456789abcdefghjkmnpqrs", "nope", "dsp_" + "z" * 300):
        for method in ("GET", "DELETE"):
            response = await client.request(method, f"/v1/dispatches/{dispatch_id}", headers=AUTH)
            assert response.status_code == 404, (method, dispatch_id)
            assert response.headers["content-type"].startswith("application/problem+json")
        events = await client.get(f"/v1/dispatches/{dispatch_id}/events", headers=AUTH)
        assert events.status_code == 404


async def test_cancel_marks_cancelled_and_tells_the_dispatchers(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    dispatch_id = await _session(client)
    response = await client.delete(f"/v1/dispatches/{dispatch_id}", headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "cancelled"
    control = await redis_client.xrange(keys.control)
    assert [fields for _, fields in control] == [{"action": "cancel", "dispatch_id": dispatch_id}]

    again = await client.delete(f"/v1/dispatches/{dispatch_id}", headers=AUTH)
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert len(await redis_client.xrange(keys.control)) == 1


async def test_agents_lists_live_workers_and_allowed_names(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    registry = WorkerRegistry(redis_client, keys)
    await registry.heartbeat(WorkerInfo("w1", "travel-assistant", capacity=4, active_jobs=1))
    await registry.heartbeat(WorkerInfo("w2", "travel-assistant", capacity=4, active_jobs=3))
    await registry.heartbeat(WorkerInfo("w3", "foreign-agent", capacity=2, draining=True))
    response = await client.get("/v1/agents", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["default_agent_name"] == "travel-assistant"
    agents = {a["agent_name"]: a for a in body["agents"]}
    assert agents["travel-assistant"] == {
        "agent_name": "travel-assistant",
        "allowed": True,
        "workers": 2,
        "capacity": 8,
        "active_jobs": 4,
        "load": 0.5,
        "draining_workers": 0,
        "used": 0,
        "waiting": 0,
    }
    assert agents["foreign-agent"]["allowed"] is False
    assert agents["foreign-agent"]["draining_workers"] == 1
    assert agents["concierge"]["workers"] == 0 and agents["concierge"]["allowed"] is True


async def test_agents_show_slots_used_and_waiting(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    from agentline.admission import Admission

    registry = WorkerRegistry(redis_client, keys)
    await registry.heartbeat(WorkerInfo("w1", "travel-assistant", capacity=1))
    admission = Admission(redis_client, keys)
    for dispatch_id in ("a", "b", "c"):
        await admission.try_admit(dispatch_id, "travel-assistant")
    response = await client.get("/v1/agents", headers=AUTH)
    assert response.status_code == 200, response.text
    agents = {a["agent_name"]: a for a in response.json()["agents"]}
    ta = agents["travel-assistant"]
    assert (ta["capacity"], ta["used"], ta["waiting"]) == (1, 1, 2)
    assert (agents["concierge"]["used"], agents["concierge"]["waiting"]) == (0, 0)


async def test_waiting_dispatch_shows_position_and_estimated_wait(
    client: Client, redis_client: Redis, keys: Keys
) -> None:
    from agentline.lifecycle import DispatchState
    from agentline.store import DispatchStore

    created = await client.post("/v1/sessions", json={"room": "queued-room"}, headers=AUTH)
    assert created.status_code == 201, created.text
    dispatch_id = created.json()["dispatch"]["id"]
    store = DispatchStore(redis_client, keys)
    await store.transition(
        dispatch_id, DispatchState.WAITING, fields={"queue_position": 3, "estimated_wait_ms": 1}
    )
    await store.queue_updates([(dispatch_id, 2, 45_000)])
    body = (await client.get(f"/v1/dispatches/{dispatch_id}", headers=AUTH)).json()
    assert body["state"] == "waiting"
    assert (body["queue_position"], body["estimated_wait_ms"]) == (2, 45_000)
