"""The seed-style references call CreateDispatch on the emulator before answering: with one
LiveKit client kept, and with a client made and closed per call."""

from __future__ import annotations

import httpx
import pytest

from bench.token_api import LIVEKIT_KEY, LIVEKIT_SECRET
from bench.token_api_ladder import running
from bench.token_api_seed import seed_app
from livekit_emulator.testing import running_emulator


@pytest.mark.parametrize("client_per_call", [False, True])
async def test_a_seed_session_is_a_dispatch_in_the_emulator(
    client_per_call: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_emulator(keys={LIVEKIT_KEY: LIVEKIT_SECRET}) as emulator:
        monkeypatch.setenv("LIVEKIT_URL", emulator.http_url)
        monkeypatch.setenv("LIVEKIT_API_KEY", LIVEKIT_KEY)
        monkeypatch.setenv("LIVEKIT_API_SECRET", LIVEKIT_SECRET)
        # In this event loop (the emulator's): Litestar's test client runs the app in a thread.
        app = seed_app(client_per_call=client_per_call)
        transport = httpx.ASGITransport(app=app)
        async with (
            running(app),
            httpx.AsyncClient(transport=transport, base_url="http://seed") as client,
        ):
            answers = [
                (await client.post("/seed/sessions", json={"identity": f"u{i}"})) for i in range(3)
            ]
        assert [answer.status_code for answer in answers] == [201, 201, 201]
        for answer in answers:
            session = answer.json()
            # LiveKit also gives a room made by CreateDispatch its default dispatch.
            room = emulator.state.rooms[session["room"]]
            assert session["dispatch_id"] in room.dispatches
