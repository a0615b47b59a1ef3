"""LiveKit through ``livekit-api`` only: the calls the dispatcher makes, timed, with errors
classified into what the lifecycle can act on.

Classification follows what a real livekit-server answers (see DESIGN.md and the golden traces):
a wrong secret is a plain HTTP 401 with no Twirp code, so we classify by status; ListDispatch on
a room that has closed answers 503 ``unavailable``, which means "room gone", not "LiveKit down".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import aiohttp
from livekit import api

from dispatcher.livekit_auth import CachedAuthHeaders
from dispatcher.metrics import DispatcherMetrics
from dispatcher.overhead import io_time

T = TypeVar("T")


class ErrorKind(StrEnum):
    UNREACHABLE = "unreachable"  # transport error, timeout or 5xx: retry with backoff
    AUTH = "auth"  # 401/403: wrong key or secret, never retried
    REJECTED = "rejected"  # other 4xx: the request itself is not acceptable
    NOT_FOUND = "not_found"  # the dispatch, room or participant does not exist
    ROOM_GONE = "room_gone"  # ListDispatch 503 unavailable on a closed room


class LiveKitError(Exception):
    def __init__(self, kind: ErrorKind, method: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{method}: {kind} (status {status}, code {code}): {message}")
        self.kind = kind
        self.method = method
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.UNREACHABLE


def classify(method: str, error: BaseException) -> LiveKitError:
    """Map an exception raised by ``livekit-api`` to a :class:`LiveKitError`."""
    if isinstance(error, LiveKitError):
        return error
    if isinstance(error, api.ServerError):
        status, code, message = error.status, error.code or "unknown", error.message
        if status in (401, 403):
            kind = ErrorKind.AUTH
        elif status == 404 or code == "not_found":
            kind = ErrorKind.NOT_FOUND
        elif method == "ListDispatch" and status == 503 and code == "unavailable":
            kind = ErrorKind.ROOM_GONE
        elif status >= 500 or status == 429:
            kind = ErrorKind.UNREACHABLE
        else:
            kind = ErrorKind.REJECTED
        return LiveKitError(kind, method, status, code, message)
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return LiveKitError(ErrorKind.UNREACHABLE, method, 0, "timeout", "call timed out")
    if isinstance(error, aiohttp.ClientError | OSError):
        return LiveKitError(ErrorKind.UNREACHABLE, method, 0, "transport", repr(error))
    raise error


@dataclass(frozen=True, slots=True)
class AgentParticipant:
    identity: str
    sid: str
    agent_name: str
    has_audio: bool


@dataclass(frozen=True, slots=True)
class ListedDispatch:
    dispatch_id: str
    agent_name: str
    metadata: str
    job_id: str = ""
    worker_id: str = ""
    participant_identity: str = ""


class LiveKitGateway:
    def __init__(
        self,
        url: str,
        api_key: str,
        api_secret: str,
        timeout_seconds: float,
        metrics: DispatcherMetrics,
    ) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
        )
        # failover=False: region failover is for LiveKit Cloud; retries are ours.
        self._api = api.LiveKitAPI(url, api_key, api_secret, session=self._session, failover=False)
        self.auth = CachedAuthHeaders(api_key, api_secret)
        self.auth.install(self._api.room, self._api.agent_dispatch)
        self._metrics = metrics

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._session.close()

    async def _call(self, method: str, make: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        code = "ok"
        try:
            async with io_time():
                return await make()
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                code = "cancelled"
                raise
            classified = classify(method, error)
            code = classified.code if classified.status == 0 else str(classified.status)
            raise classified from error
        finally:
            self._metrics.livekit_calls.labels(method, code).observe(time.perf_counter() - started)

    async def create_room_with_agent(self, room: str, agent_name: str, metadata: str) -> None:
        """The fast path for a new room: the agent in the room configuration."""
        request = api.CreateRoomRequest(
            name=room, agents=[api.RoomAgentDispatch(agent_name=agent_name, metadata=metadata)]
        )
        await self._call("CreateRoom", lambda: self._api.room.create_room(request))

    async def create_dispatch(self, room: str, agent_name: str, metadata: str) -> str:
        request = api.CreateAgentDispatchRequest(
            room=room, agent_name=agent_name, metadata=metadata
        )
        created = await self._call(
            "CreateDispatch", lambda: self._api.agent_dispatch.create_dispatch(request)
        )
        return created.id

    async def delete_dispatch(self, dispatch_id: str, room: str) -> bool:
        """Delete a dispatch; False when it (or its room) no longer exists."""
        try:
            await self._call(
                "DeleteDispatch",
                lambda: self._api.agent_dispatch.delete_dispatch(dispatch_id, room),
            )
        except LiveKitError as error:
            if error.kind in (ErrorKind.NOT_FOUND, ErrorKind.ROOM_GONE):
                return False
            raise
        return True

    async def list_dispatches(self, room: str) -> list[ListedDispatch]:
        rows = await self._call(
            "ListDispatch", lambda: self._api.agent_dispatch.list_dispatch(room)
        )
        out: list[ListedDispatch] = []
        for row in rows:
            job = row.state.jobs[0] if row.state.jobs else None
            out.append(
                ListedDispatch(
                    dispatch_id=row.id,
                    agent_name=row.agent_name,
                    metadata=row.metadata,
                    job_id=job.id if job else "",
                    worker_id=job.state.worker_id if job else "",
                    participant_identity=job.state.participant_identity if job else "",
                )
            )
        return out

    async def agents_in_room(self, room: str) -> list[AgentParticipant]:
        """Agent participants in the room; ``ROOM_GONE`` when the room does not exist."""
        try:
            reply = await self._call(
                "ListParticipants",
                lambda: self._api.room.list_participants(api.ListParticipantsRequest(room=room)),
            )
        except LiveKitError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                raise LiveKitError(
                    ErrorKind.ROOM_GONE, error.method, error.status, error.code, error.message
                ) from error
            raise
        agents: list[AgentParticipant] = []
        for participant in reply.participants:
            if participant.kind != api.ParticipantInfo.Kind.AGENT:
                continue
            attributes = participant.attributes
            agents.append(
                AgentParticipant(
                    identity=participant.identity,
                    sid=participant.sid,
                    agent_name=attributes.get("lk.agent_name", attributes.get("lk.agent.name", "")),
                    has_audio=any(t.type == api.TrackType.AUDIO for t in participant.tracks),
                )
            )
        return agents

    async def remove_participant(self, room: str, identity: str) -> bool:
        try:
            await self._call(
                "RemoveParticipant",
                lambda: self._api.room.remove_participant(
                    api.RoomParticipantIdentity(room=room, identity=identity)
                ),
            )
        except LiveKitError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return False
            raise
        return True

    async def check_credentials(self) -> None:
        """A cheap authenticated call, to report a wrong key/secret at start."""
        await self._call(
            "ListRooms", lambda: self._api.room.list_rooms(api.ListRoomsRequest(names=["-"]))
        )
