"""Queries of the rooms service: rooms and their participants."""

from __future__ import annotations

from sqlalchemy import delete, select

from .db import Store
from .models import Room, RoomParticipant


async def create_room(store: Store, room: Room, participants: dict[str, str]) -> Room:
    """Insert ``room`` with ``participants`` (raw id -> role); if a room was already created
    with the same ``repeatability_id``, return that one instead (a retried create)."""
    async with store.session.begin() as session:
        if room.repeatability_id is not None:
            found = await session.scalar(
                select(Room).where(Room.repeatability_id == room.repeatability_id)
            )
            if found is not None:
                return found
        session.add(room)
        await session.flush()
        session.add_all(
            RoomParticipant(room_id=room.id, raw_id=raw_id, role=role)
            for raw_id, role in participants.items()
        )
    return room


async def get_room(store: Store, room_id: str) -> Room | None:
    async with store.session() as session:
        return await session.get(Room, room_id)


async def list_rooms(store: Store) -> list[Room]:
    """Every room, oldest first."""
    async with store.session() as session:
        return list(await session.scalars(select(Room).order_by(Room.created_at, Room.id)))


async def update_room(
    store: Store,
    room_id: str,
    valid_from: float | None,
    valid_until: float | None,
    pstn_dial_out_enabled: bool | None,
) -> Room | None:
    """Set the fields that are not None; return the room, or None if there is none."""
    async with store.session.begin() as session:
        room = await session.get(Room, room_id)
        if room is None:
            return None
        if valid_from is not None:
            room.valid_from = valid_from
        if valid_until is not None:
            room.valid_until = valid_until
        if pstn_dial_out_enabled is not None:
            room.pstn_dial_out_enabled = pstn_dial_out_enabled
    return room


async def delete_room(store: Store, room_id: str) -> list[str] | None:
    """Delete a room; return the raw ids of its participants, or None if there was no room."""
    async with store.session.begin() as session:
        room = await session.get(Room, room_id)
        if room is None:
            return None
        raw_ids = list(
            await session.scalars(
                select(RoomParticipant.raw_id).where(RoomParticipant.room_id == room_id)
            )
        )
        await session.execute(delete(RoomParticipant).where(RoomParticipant.room_id == room_id))
        await session.delete(room)
    return raw_ids


async def participants(store: Store, room_id: str) -> dict[str, str]:
    """The participants of a room: raw id -> role, in raw id order."""
    async with store.session() as session:
        rows = await session.execute(
            select(RoomParticipant.raw_id, RoomParticipant.role)
            .where(RoomParticipant.room_id == room_id)
            .order_by(RoomParticipant.raw_id)
        )
        return {raw_id: role for raw_id, role in rows}


async def role_of(store: Store, room_id: str, raw_id: str) -> str | None:
    async with store.session() as session:
        participant = await session.get(RoomParticipant, (room_id, raw_id))
        return None if participant is None else participant.role


async def patch_participants(store: Store, room_id: str, changes: dict[str, str | None]) -> bool:
    """Apply a merge-patch of participants: raw id -> role (added or changed) or None
    (removed). Returns False if there is no such room."""
    async with store.session.begin() as session:
        if await session.get(Room, room_id) is None:
            return False
        for raw_id, role in changes.items():
            existing = await session.get(RoomParticipant, (room_id, raw_id))
            if role is None:
                if existing is not None:
                    await session.delete(existing)
            elif existing is None:
                session.add(RoomParticipant(room_id=room_id, raw_id=raw_id, role=role))
            else:
                existing.role = role
    return True
