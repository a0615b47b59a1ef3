"""A bare ``/agent`` protocol client for tests: it sends and receives the raw protobuf frames,
so a test can play a worker message by message (or misbehave on purpose)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from google.protobuf.json_format import MessageToDict
from livekit import api
from livekit.protocol import agent, models


class RawWorker:
    def __init__(self, ws_url: str, api_key: str, api_secret: str) -> None:
        self._url = ws_url.rstrip("/") + "/agent"
        self._token = (
            api.AccessToken(api_key, api_secret).with_grants(api.VideoGrants(agent=True)).to_jwt()
        )
        self._session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: asyncio.Queue[agent.ServerMessage] = asyncio.Queue()
        # Every frame both ways, decoded like the golden traces: {"dir", "msg"}.
        self.log: list[dict[str, Any]] = []
        self.worker_id = ""
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> RawWorker:
        self._session = aiohttp.ClientSession()
        self.ws = await self._session.ws_connect(
            self._url, headers={"Authorization": f"Bearer {self._token}"}
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type == aiohttp.WSMsgType.BINARY:
                msg = agent.ServerMessage.FromString(frame.data)
                self.log.append({"dir": "s2c", "msg": _dict(msg)})
                await self.messages.put(msg)

    async def send(self, msg: agent.WorkerMessage) -> None:
        assert self.ws is not None
        self.log.append({"dir": "c2s", "msg": _dict(msg)})
        await self.ws.send_bytes(msg.SerializeToString())

    async def recv(self, kind: str | None = None, within: float = 5.0) -> agent.ServerMessage:
        """The next server message (skipping others until one of ``kind`` when given)."""
        async with asyncio.timeout(within):
            while True:
                msg = await self.messages.get()
                if kind is None or msg.WhichOneof("message") == kind:
                    return msg

    async def register(
        self,
        agent_name: str,
        status: agent.WorkerStatus | None = agent.WorkerStatus.WS_AVAILABLE,
        load: float = 0.0,
    ) -> agent.RegisterWorkerResponse:
        await self.send(
            agent.WorkerMessage(
                register=agent.RegisterWorkerRequest(
                    type=agent.JobType.JT_ROOM,
                    agent_name=agent_name,
                    version="1.8.9",
                    allowed_permissions=models.ParticipantPermission(
                        can_subscribe=True,
                        can_publish=True,
                        can_publish_data=True,
                        can_update_metadata=True,
                        agent=True,
                    ),
                )
            )
        )
        reply = (await self.recv("register")).register
        self.worker_id = reply.worker_id
        if status is not None:
            await self.update_status(status, load)
        return reply

    async def update_status(
        self, status: agent.WorkerStatus, load: float = 0.0, job_count: int = 0
    ) -> None:
        await self.send(
            agent.WorkerMessage(
                update_worker=agent.UpdateWorkerStatus(
                    status=status, load=load, job_count=job_count
                )
            )
        )

    async def answer(self, job: agent.Job, available: bool = True, **fields: Any) -> None:
        res = agent.AvailabilityResponse(job_id=job.id, available=available, **fields)
        if available and not fields:
            res.participant_identity = f"agent-{job.id}"
            res.participant_attributes["lk.agent.name"] = job.agent_name
        await self.send(agent.WorkerMessage(availability=res))

    async def update_job(self, job_id: str, status: agent.JobStatus, error: str = "") -> None:
        await self.send(
            agent.WorkerMessage(
                update_job=agent.UpdateJobStatus(job_id=job_id, status=status, error=error)
            )
        )

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> RawWorker:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _dict(msg: Any) -> dict[str, Any]:
    return MessageToDict(msg, preserving_proto_field_name=True)
