"""The seed-style references of token-api's benchmark: the naive backend this project
replaces, which mints with livekit-api's AccessToken and calls CreateDispatch on LiveKit (the
emulator here) before answering. Each runs in its own uvicorn process (``bench.token_api``).
"""

from __future__ import annotations

import os
from typing import Any


def seed_app(client_per_call: bool = False) -> Any:
    """The seed-style backend: token from AccessToken, then CreateDispatch, then the answer.

    Its LiveKit client is made once and kept, the quickest way to call LiveKit synchronously;
    the target is measured against it. With ``client_per_call`` it makes a client for each call
    and closes it after, as LiveKit's dispatch example does (a reference printed beside it).
    """
    import datetime
    import secrets

    from litestar import Litestar, post
    from litestar.params import JSONBody
    from livekit import api

    url = os.environ["LIVEKIT_URL"]
    key, secret = os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"]
    clients: dict[str, api.LiveKitAPI] = {}

    async def create_dispatch(lk: api.LiveKitAPI, room: str) -> Any:
        return await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(room=room, agent_name="travel-assistant")
        )

    @post("/seed/sessions", status_code=201)
    async def create_session(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        room = "seed-room-" + secrets.token_hex(6)
        identity = str(data.get("identity") or "user")
        token = (
            api.AccessToken(key, secret)
            .with_identity(identity)
            .with_name(str(data.get("name") or ""))
            .with_grants(api.VideoGrants(room_join=True, room=room))
            .with_ttl(datetime.timedelta(hours=1))
            .to_jwt()
        )
        if client_per_call:
            async with api.LiveKitAPI(url, key, secret) as lk:
                dispatch = await create_dispatch(lk, room)
        else:
            if "lk" not in clients:
                clients["lk"] = api.LiveKitAPI(url, key, secret)
            dispatch = await create_dispatch(clients["lk"], room)
        return {"room": room, "token": token, "dispatch_id": dispatch.id}

    async def close_client() -> None:
        if "lk" in clients:
            await clients.pop("lk").aclose()

    return Litestar([create_session], on_shutdown=[close_client])


def seed_client_per_call_app() -> Any:
    return seed_app(client_per_call=True)
