"""GET /v1/dispatches/{id}/events over a real socket: order, resume, heartbeats, closing."""

from __future__ import annotations

import asyncio

import httpx
import msgspec
from redis.asyncio import Redis

from agentline.keys import Keys
from agentline.lifecycle import DispatchState
from agentline.store import REQUESTED_EVENT_ID, DispatchStore
from token_api.testing import AUTH

PATH = [
    DispatchState.DISPATCHING,
    DispatchState.DISPATCHED,
    DispatchState.ASSIGNED,
    DispatchState.JOINED,
    DispatchState.SPEAKING,
    DispatchState.ENDED,
]


class Event(msgspec.Struct):
    id: str
    event: str
    data: dict[str, object]


async def _read(
    response: httpx.Response, limit: int | None = None
) -> tuple[list[Event], list[str]]:
    """Events and comment lines until the stream closes (or ``limit`` events)."""
    events: list[Event] = []
    comments: list[str] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            comments.append(line[1:].strip())
        elif line == "":
            if "data" in fields:
                events.append(
                    Event(
                        fields.get("id", ""),
                        fields.get("event", ""),
                        msgspec.json.decode(fields["data"]),
                    )
                )
                if limit is not None and len(events) >= limit:
                    break
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return events, comments


async def _new_session(http: httpx.AsyncClient) -> str:
    response = await http.post("/v1/sessions", json={}, headers=AUTH)
    assert response.status_code == 201, response.text
    return str(response.json()["dispatch"]["id"])


async def _drive(store: DispatchStore, dispatch_id: str, states: list[DispatchState]) -> None:
    for state in states:
        await asyncio.sleep(0.05)
        result = await store.transition(dispatch_id, state)
        assert result.applied, (state, result)


async def test_events_arrive_in_order_and_stream_closes_after_terminal(
    live_url: str, redis_client: Redis, keys: Keys
) -> None:
    store = DispatchStore(redis_client, keys)
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        dispatch_id = await _new_session(http)
        async with http.stream(
            "GET", f"/v1/dispatches/{dispatch_id}/events", headers=AUTH
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            driver = asyncio.create_task(_drive(store, dispatch_id, PATH))
            events, _ = await asyncio.wait_for(_read(response), 10)
            await driver
    states = [e.data["state"] for e in events]
    assert states == ["requested", *[s.value for s in PATH]]
    assert all(e.event == "transition" for e in events)
    assert [e.data["seq"] for e in events] == list(range(1, 8))
    stream_ids = [
        entry_id for entry_id, _ in await redis_client.xrange(keys.dispatch_events(dispatch_id))
    ]
    # The requested event comes from the record (its id is below every stream id).
    assert [e.id for e in events] == [REQUESTED_EVENT_ID, *stream_ids]


async def test_resume_with_last_event_id(live_url: str, redis_client: Redis, keys: Keys) -> None:
    store = DispatchStore(redis_client, keys)
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        dispatch_id = await _new_session(http)
        await _drive(store, dispatch_id, PATH[:2])
        url = f"/v1/dispatches/{dispatch_id}/events"
        async with http.stream("GET", url, headers=AUTH) as response:
            first, _ = await asyncio.wait_for(_read(response, limit=2), 10)
        assert [e.data["state"] for e in first] == ["requested", "dispatching"]

        await _drive(store, dispatch_id, PATH[2:])
        headers = {**AUTH, "Last-Event-ID": first[-1].id}
        async with http.stream("GET", url, headers=headers) as response:
            rest, _ = await asyncio.wait_for(_read(response), 10)
    assert [e.data["state"] for e in rest] == [s.value for s in PATH[1:]]


async def test_heartbeat_comments_while_idle(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        dispatch_id = await _new_session(http)
        async with http.stream(
            "GET", f"/v1/dispatches/{dispatch_id}/events", headers=AUTH
        ) as response:
            comments: list[str] = []

            async def collect() -> None:
                async for line in response.aiter_lines():
                    if line.startswith(": heartbeat"):
                        comments.append(line)
                        if len(comments) == 2:
                            return

            await asyncio.wait_for(collect(), 5)  # heartbeat every 0.2 s in the tests
    assert len(comments) == 2


async def test_terminal_dispatch_replays_and_closes(
    live_url: str, redis_client: Redis, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        dispatch_id = await _new_session(http)
        assert (await http.delete(f"/v1/dispatches/{dispatch_id}", headers=AUTH)).status_code == 202
        async with http.stream(
            "GET", f"/v1/dispatches/{dispatch_id}/events", headers=AUTH
        ) as response:
            events, _ = await asyncio.wait_for(_read(response), 5)
    assert [e.data["state"] for e in events] == ["requested", "cancelled"]


async def test_bad_last_event_id_is_400(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        dispatch_id = await _new_session(http)
        response = await http.get(
            f"/v1/dispatches/{dispatch_id}/events", headers={**AUTH, "Last-Event-ID": "yesterday"}
        )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_queue_moves_arrive_as_queue_events(
    live_url: str, redis_client: Redis, keys: Keys
) -> None:
    store = DispatchStore(redis_client, keys)

    async def drive(dispatch_id: str) -> None:
        await asyncio.sleep(0.05)
        await store.transition(dispatch_id, DispatchState.WAITING)
        for position in (2, 1):
            await asyncio.sleep(0.05)
            assert await store.queue_updates([(dispatch_id, position, position * 30_000)]) == 1
        await _drive(store, dispatch_id, [DispatchState.DISPATCHING, DispatchState.CANCELLED])

    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        dispatch_id = await _new_session(http)
        url = f"/v1/dispatches/{dispatch_id}/events"
        async with http.stream("GET", url, headers=AUTH) as response:
            driver = asyncio.create_task(drive(dispatch_id))
            events, _ = await asyncio.wait_for(_read(response), 10)
            await driver
    seen = [(e.event, e.data["state"], e.data.get("detail", {}).get("position")) for e in events]  # type: ignore[union-attr]
    assert seen == [
        ("transition", "requested", None),
        ("transition", "waiting", None),
        ("queue", "waiting", "2"),
        ("queue", "waiting", "1"),
        ("transition", "dispatching", None),
        ("transition", "cancelled", None),
    ]
    assert events[3].data["detail"] == {"position": "1", "estimated_wait_ms": "30000"}
