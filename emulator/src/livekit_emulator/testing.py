"""Run the emulator in-process for tests::

async with running_emulator(keys={"devkey": SECRET}, simulated_workers=[("agent", 5)]) as emu:
    api = LiveKitAPI(emu.http_url, emu.api_key, emu.api_secret)
    ...
    assert await emu.admin.max_agents_seen_in_room("room") == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from livekit import api

from .admin_client import EmulatorAdmin
from .config import EmulatorConfig, SimulatedWorkerSpec
from .server import Emulator
from .state import State


class RunningEmulator:
    """What ``running_emulator`` yields: URLs, credentials, the admin client, the state."""

    def __init__(self, emulator: Emulator, admin: EmulatorAdmin) -> None:
        self.emulator = emulator
        self.admin = admin

    @property
    def http_url(self) -> str:
        return self.emulator.http_url

    @property
    def ws_url(self) -> str:
        return self.emulator.ws_url

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def api_key(self) -> str:
        return next(iter(self.emulator.config.keys))

    @property
    def api_secret(self) -> str:
        return self.emulator.config.keys[self.api_key]

    @property
    def state(self) -> State:
        return self.emulator.state

    def __getattr__(self, name: str) -> Any:
        # Everything else (add_simulated_worker, set_fault, rooms, webhooks...) is the
        # emulator's own, callable in-process.
        return getattr(self.emulator, name)


@contextlib.asynccontextmanager
async def running_emulator(
    keys: dict[str, str] | None = None,
    webhook_urls: Iterable[str] = (),
    simulated_workers: Iterable[tuple[str, int] | SimulatedWorkerSpec] = (),
    real_timing: bool = False,
    departure_timeout: float = 20.0,
    empty_timeout: float = 300.0,
    host: str = "127.0.0.1",
    port: int = 0,
    **config: Any,
) -> AsyncIterator[RunningEmulator]:
    """Start an emulator on ``host`` (a free port unless ``port`` is given) and stop it on
    exit. Extra keyword arguments go to ``EmulatorConfig`` (e.g. ``availability_timeout``)."""
    cfg = EmulatorConfig(
        webhook_urls=list(webhook_urls),
        simulated_workers=[
            w if isinstance(w, SimulatedWorkerSpec) else SimulatedWorkerSpec(*w)
            for w in simulated_workers
        ],
        real_timing=real_timing,
        departure_timeout=departure_timeout,
        empty_timeout=empty_timeout,
        **config,
    )
    if keys:
        cfg.keys = dict(keys)
    emu = Emulator(cfg)
    await emu.start(host, port)
    admin = EmulatorAdmin(emu.http_url)
    try:
        yield RunningEmulator(emu, admin)
    finally:
        await admin.aclose()
        await emu.stop()


def server_token(
    api_key: str,
    api_secret: str,
    room: str = "",
    *,
    room_create: bool = True,
    room_list: bool = True,
    room_admin: bool = True,
    ttl_s: int = 600,
) -> str:
    """A server API token as the golden traces used: roomCreate + roomList + roomAdmin, and
    ``video.room`` = the request's room (roomAdmin is checked against it)."""
    grants = api.VideoGrants(
        room_create=room_create or None,
        room_list=room_list or None,
        room_admin=room_admin or None,
        room=room,
    )
    return (
        api.AccessToken(api_key, api_secret)
        .with_grants(grants)
        .with_ttl(datetime.timedelta(seconds=ttl_s))
        .to_jwt()
    )


@dataclass
class TwirpReply:
    status: int
    content_type: str
    text: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.text)


async def twirp_call(
    http_url: str,
    service: str,
    method: str,
    body: dict[str, Any] | bytes | str = b"",
    *,
    token: str | None = None,
    content_type: str = "application/json",
) -> TwirpReply:
    """POST ``/twirp/livekit.<service>/<method>`` with a JSON (dict/str) or raw body."""
    if isinstance(body, dict):
        data = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{http_url}/twirp/livekit.{service}/{method}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as resp,
    ):
        raw = await resp.read()
        return TwirpReply(
            status=resp.status,
            content_type=resp.headers.get("Content-Type", ""),
            text=raw.decode("utf-8", "replace"),
            body=raw,
        )


async def wait_until(
    predicate: Callable[[], Any], within: float = 5.0, interval: float = 0.01
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or fail."""
    async with asyncio.timeout(within):
        while True:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(interval)
