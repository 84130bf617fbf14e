"""Queries of the identity service: identities and their revocation times."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, select

from .db import Store
from .models import Identity, Revocation, RoomParticipant


async def create_identity(store: Store, identity_id: str, now: float) -> None:
    """Record a new identity (``now``: unix seconds)."""
    async with store.session.begin() as session:
        session.add(Identity(id=identity_id, created_at=now))


async def identity_exists(store: Store, identity_id: str) -> bool:
    async with store.session() as session:
        return await session.get(Identity, identity_id) is not None


async def existing(store: Store, identity_ids: Collection[str]) -> set[str]:
    """Those of ``identity_ids`` that are identities of the store."""
    if not identity_ids:
        return set()
    async with store.session() as session:
        rows = await session.scalars(select(Identity.id).where(Identity.id.in_(identity_ids)))
        return set(rows)


async def delete_identity(store: Store, identity_id: str, revoked_at: float) -> bool:
    """Delete an identity, and its places in rooms, and record ``revoked_at`` for it; False
    if there was none."""
    async with store.session.begin() as session:
        identity = await session.get(Identity, identity_id)
        if identity is None:
            return False
        await session.delete(identity)
        await session.execute(delete(RoomParticipant).where(RoomParticipant.raw_id == identity_id))
        await session.merge(Revocation(user_id=identity_id, revoked_at=revoked_at))
    return True


async def revoke(store: Store, identity_id: str, revoked_at: float) -> bool:
    """Record that tokens of ``identity_id`` issued before ``revoked_at`` are refused;
    False if there is no such identity."""
    async with store.session.begin() as session:
        if await session.get(Identity, identity_id) is None:
            return False
        await session.merge(Revocation(user_id=identity_id, revoked_at=revoked_at))
    return True


async def revocations(store: Store) -> dict[str, float]:
    """Every revocation: identity id -> revoked_at (unix seconds)."""
    async with store.session() as session:
        rows = await session.execute(select(Revocation.user_id, Revocation.revoked_at))
        return {user_id: revoked_at for user_id, revoked_at in rows}
