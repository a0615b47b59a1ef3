"""An async client for the emulator's admin API (``/emulator/...``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp


class EmulatorAdminError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"admin API answered {status}: {body}")
        self.status = status
        self.body = body


class EmulatorAdmin:
    """``EmulatorAdmin("http://127.0.0.1:7880")``; use as an async context manager or call
    ``aclose()`` when done."""

    def __init__(self, http_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.http_url = (
            http_url.rstrip("/").replace("ws://", "http://").replace("wss://", "https://")
        )
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> EmulatorAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        async with self._session.request(method, self.http_url + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise EmulatorAdminError(resp.status, data)
            return data

    async def state(self) -> dict[str, Any]:
        """Rooms, participants, dispatches, jobs, workers, agents per room, faults, webhooks."""
        return await self._request("GET", "/emulator/state")

    async def reset(self) -> None:
        await self._request("POST", "/emulator/reset")

    async def add_simulated_worker(
        self,
        agent_name: str,
        capacity: int = 10,
        join_delay_s: float | None = 0,
        publish_delay_s: float | None = 0,
        accept: bool = True,
        publish_audio: bool = True,
        join: bool = True,
    ) -> str:
        """Register a simulated worker; returns its worker id (``AW_...``). A delay of
        ``None`` uses the timing profile's (0, or the real server's with real timing)."""
        data = await self._request(
            "POST",
            "/emulator/workers",
            {
                "agent_name": agent_name,
                "capacity": capacity,
                "join_delay_s": join_delay_s,
                "publish_delay_s": publish_delay_s,
                "accept": accept,
                "publish_audio": publish_audio,
                "join": join,
            },
        )
        return str(data["worker_id"])

    async def remove_worker(
        self, worker_id: str | None = None, agent_name: str | None = None, agents_leave: bool = True
    ) -> list[str]:
        data = await self._request(
            "POST",
            "/emulator/workers/remove",
            {"worker_id": worker_id, "agent_name": agent_name, "agents_leave": agents_leave},
        )
        return list(data["removed"])

    async def set_fault(
        self,
        method: str,
        latency_s: float | None = None,
        http_status: int | None = None,
        twirp_code: str | None = None,
        reset_connection: bool = False,
        count: int | None = None,
        twirp_msg: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "method": method,
            "latency_s": latency_s,
            "http_status": http_status,
            "twirp_code": twirp_code,
            "twirp_msg": twirp_msg,
            "reset_connection": reset_connection,
            "count": count,
        }
        return await self._request("POST", "/emulator/faults", body)

    async def clear_faults(self) -> None:
        await self._request("DELETE", "/emulator/faults")

    async def workers_ignore_availability(self, agent_name: str, on: bool = True) -> None:
        await self._request(
            "POST", "/emulator/workers/ignore-availability", {"agent_name": agent_name, "on": on}
        )

    async def close_worker_sockets(self, agent_name: str | None = None) -> int:
        data = await self._request(
            "POST", "/emulator/workers/close-sockets", {"agent_name": agent_name}
        )
        return int(data["closed"])

    async def refuse_all(self, seconds: float) -> None:
        await self._request("POST", "/emulator/refuse", {"seconds": seconds})

    async def webhooks(
        self, drop: bool | None = None, delay_s: float | None = None
    ) -> dict[str, Any]:
        return await self._request("POST", "/emulator/webhooks", {"drop": drop, "delay_s": delay_s})

    async def agents_in_room(self, room: str) -> list[str]:
        data = await self._request("GET", f"/emulator/agents?room={quote(room, safe='')}")
        return list(data["agents"])

    async def max_agents_seen_in_room(self, room: str) -> int:
        data = await self._request("GET", f"/emulator/agents?room={quote(room, safe='')}")
        return int(data["max_seen"])
