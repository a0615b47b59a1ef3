"""The doctor's LiveKit checks: HTTP and WebSocket reachability, credentials, server version."""

from __future__ import annotations

import asyncio

import aiohttp
from livekit import api
from livekit.protocol import agent as agent_pb

from agentline.doctor.checks import Check
from agentline.settings import CommonSettings

DOCTOR_AGENT_NAME = "agentline-doctor"  # nobody dispatches this name: the check gets no jobs


async def check_livekit(settings: CommonSettings, wait_s: float = 5.0) -> list[Check]:
    http_url, ws_url = settings.livekit_http_url, settings.livekit_ws_url
    key = settings.livekit_api_key
    secret = settings.livekit_api_secret.get_secret_value()
    timeout = aiohttp.ClientTimeout(total=wait_s)
    out: list[Check] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(http_url + "/") as response:
                out.append(
                    Check("livekit", "LiveKit HTTP", True, f"{http_url} answers {response.status}")
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return [
                Check(
                    "livekit",
                    "LiveKit HTTP",
                    False,
                    f"{http_url}: {type(error).__name__}: {error}",
                    "check LIVEKIT_URL, that the LiveKit server runs, and the network path",
                )
            ]

        lkapi = api.LiveKitAPI(http_url, key, secret, session=session)
        try:
            rooms = await lkapi.room.list_rooms(api.ListRoomsRequest())
            out.append(
                Check("livekit", "API key and secret", True, f"key '{key}' accepted; "
                      f"{len(rooms.rooms)} rooms open")
            )  # fmt: skip
        except api.TwirpError as error:
            if error.status == 401 and error.code in ("unknown", ""):
                evidence = f"LiveKit answered a plain 401: the secret does not match key '{key}'"
            elif error.code == "unauthenticated":
                evidence = f"LiveKit does not accept key '{key}' ({error.message})"
            else:
                evidence = f"ListRooms failed: {error.status} {error.code} {error.message}"
            out.append(
                Check(
                    "livekit",
                    "API key and secret",
                    False,
                    evidence,
                    "set LIVEKIT_API_KEY/LIVEKIT_API_SECRET to a pair from the LiveKit server's "
                    "keys",
                )
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            out.append(Check("livekit", "API key and secret", False, f"ListRooms: {error}"))
        out.append(await _check_agent_socket(session, ws_url, key, secret, wait_s))
    return out


async def _check_agent_socket(
    session: aiohttp.ClientSession, ws_url: str, key: str, secret: str, wait_s: float
) -> Check:
    """Register a throw-away worker on /agent: proves the WebSocket path and gives the version."""
    token = (
        api.AccessToken(key, secret)
        .with_identity(DOCTOR_AGENT_NAME)
        .with_grants(api.VideoGrants(agent=True))
        .to_jwt()
    )
    register = agent_pb.WorkerMessage(
        register=agent_pb.RegisterWorkerRequest(
            type=agent_pb.JobType.JT_ROOM, agent_name=DOCTOR_AGENT_NAME, version="doctor"
        )
    )
    try:
        async with (
            asyncio.timeout(wait_s),
            session.ws_connect(
                f"{ws_url}/agent", headers={"Authorization": f"Bearer {token}"}
            ) as ws,
        ):
            await ws.send_bytes(register.SerializeToString())
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise ConnectionError(f"socket closed ({message.type.name})")
                reply = agent_pb.ServerMessage.FromString(message.data)
                if reply.HasField("register"):
                    info = reply.register.server_info
                    return Check(
                        "livekit",
                        "LiveKit WebSocket (/agent)",
                        True,
                        f"{ws_url} accepts workers; server {info.version or '?'} "
                        f"(protocol {info.protocol}, agent protocol {info.agent_protocol})",
                        data={"version": info.version},
                    )
    except (aiohttp.ClientError, TimeoutError, ConnectionError, OSError) as error:
        return Check(
            "livekit",
            "LiveKit WebSocket (/agent)",
            False,
            f"{ws_url}/agent: {type(error).__name__}: {error}",
            "WebSocket upgrades must reach LiveKit (proxies and ingress must allow them)",
        )
