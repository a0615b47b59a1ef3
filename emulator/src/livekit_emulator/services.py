"""RoomService and AgentDispatchService methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

from livekit.protocol import agent_dispatch, models, room

from .auth import Grants, ensure, ensure_room_admin
from .errors import no_response_from_servers, participant_not_found, psrpc_error, room_not_found
from .twirp import router

if TYPE_CHECKING:
    from .server import Emulator

ROOM = "livekit.RoomService"
DISPATCH = "livekit.AgentDispatchService"


@router.route(ROOM, "CreateRoom")
async def create_room(
    emu: Emulator, grants: Grants | None, req: room.CreateRoomRequest
) -> models.Room:
    ensure(grants, "roomCreate")
    r, _ = emu.rooms.create(
        req.name,
        empty_timeout=req.empty_timeout,
        departure_timeout=req.departure_timeout,
        max_participants=req.max_participants,
        metadata=req.metadata,
        agents=req.agents,
    )
    return r.proto()


@router.route(ROOM, "ListRooms")
async def list_rooms(
    emu: Emulator, grants: Grants | None, req: room.ListRoomsRequest
) -> room.ListRoomsResponse:
    ensure(grants, "roomList")
    rooms = emu.state.rooms
    if req.names:
        selected = [rooms[n] for n in dict.fromkeys(req.names) if n in rooms]
    else:
        selected = list(rooms.values())
    return room.ListRoomsResponse(rooms=[r.proto() for r in selected])


@router.route(ROOM, "DeleteRoom")
async def delete_room(
    emu: Emulator, grants: Grants | None, req: room.DeleteRoomRequest
) -> room.DeleteRoomResponse:
    ensure(grants, "roomCreate")
    r = emu.rooms.get(req.room)
    if r is None:
        raise room_not_found()
    emu.rooms.close(r, models.DisconnectReason.ROOM_DELETED)
    return room.DeleteRoomResponse()


def _room(emu: Emulator, name: str):  # type: ignore[no-untyped-def]
    r = emu.rooms.get(name)
    if r is None:
        raise room_not_found()
    return r


@router.route(ROOM, "ListParticipants")
async def list_participants(
    emu: Emulator, grants: Grants | None, req: room.ListParticipantsRequest
) -> room.ListParticipantsResponse:
    ensure_room_admin(grants, req.room)
    r = _room(emu, req.room)
    return room.ListParticipantsResponse(participants=[p.proto() for p in r.participants.values()])


@router.route(ROOM, "GetParticipant")
async def get_participant(
    emu: Emulator, grants: Grants | None, req: room.RoomParticipantIdentity
) -> models.ParticipantInfo:
    ensure_room_admin(grants, req.room)
    p = _room(emu, req.room).participants.get(req.identity)
    if p is None:
        raise participant_not_found()
    return p.proto()


@router.route(ROOM, "RemoveParticipant")
async def remove_participant(
    emu: Emulator, grants: Grants | None, req: room.RoomParticipantIdentity
) -> room.RemoveParticipantResponse:
    ensure_room_admin(grants, req.room)
    r = _room(emu, req.room)
    p = r.participants.get(req.identity)
    if p is None:
        raise participant_not_found()
    emu.rooms.leave(r, p, models.DisconnectReason.PARTICIPANT_REMOVED)
    return room.RemoveParticipantResponse()


@router.route(ROOM, "UpdateRoomMetadata")
async def update_room_metadata(
    emu: Emulator, grants: Grants | None, req: room.UpdateRoomMetadataRequest
) -> models.Room:
    ensure_room_admin(grants, req.room)
    r = _room(emu, req.room)
    emu.rooms.update_metadata(r, req.metadata)
    return r.proto()


@router.route(DISPATCH, "CreateDispatch")
async def create_dispatch(
    emu: Emulator, grants: Grants | None, req: agent_dispatch.CreateAgentDispatchRequest
) -> agent_dispatch.AgentDispatch:
    ensure_room_admin(grants, req.room)
    r, _ = emu.rooms.create(req.room)
    dispatch = emu.engine.create_dispatch(
        r,
        req.agent_name,
        metadata=req.metadata,
        attributes=dict(req.attributes),
        deployment=req.deployment,
        restart_policy=req.restart_policy,
    )
    return dispatch.proto(now=0.0)


@router.route(DISPATCH, "ListDispatch")
async def list_dispatch(
    emu: Emulator, grants: Grants | None, req: agent_dispatch.ListAgentDispatchRequest
) -> agent_dispatch.ListAgentDispatchResponse:
    ensure_room_admin(grants, req.room)
    r = emu.rooms.get(req.room)
    if r is None:
        raise no_response_from_servers()
    now = emu.loop_time()
    dispatches = [
        d.proto(now)
        for d in r.dispatches.values()
        if not req.dispatch_id or d.id == req.dispatch_id
    ]
    return agent_dispatch.ListAgentDispatchResponse(agent_dispatches=dispatches)


@router.route(DISPATCH, "DeleteDispatch")
async def delete_dispatch(
    emu: Emulator, grants: Grants | None, req: agent_dispatch.DeleteAgentDispatchRequest
) -> agent_dispatch.AgentDispatch:
    ensure_room_admin(grants, req.room)
    r = emu.rooms.get(req.room)
    if r is None:
        raise no_response_from_servers()
    dispatch = emu.engine.delete_dispatch(r, req.dispatch_id)
    if dispatch is None:
        raise psrpc_error("not_found", "dispatch not found")
    return dispatch.proto(emu.loop_time())
