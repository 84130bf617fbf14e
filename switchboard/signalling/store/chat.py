"""Queries of the chat service: threads, participants, messages and read receipts.

Times are unix seconds (floats, UTC). Message ids are millisecond times, strictly increasing
within a thread; sequence ids count every message of a thread from 1, system messages
included. Writers that number messages (``append_message``) lock the thread row (``FOR
UPDATE`` on PostgreSQL; SQLite has one writer at a time, and the service serialises its
writes on one node), so that two messages never share a number. Every function commits
before it returns: what it returns is durable (SQLite WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .db import Store
from .models import ChatMessage, ChatParticipant, ChatReadReceipt, ChatThread


@dataclass(frozen=True)
class NewParticipant:
    """A participant to add: raw id, display name, history shared from (unix s, None: all)."""

    raw_id: str
    display_name: str | None = None
    share_history_at: float | None = None


def _ms(unix_s: float) -> int:
    return int(unix_s * 1000)


async def _locked_thread(session: AsyncSession, thread_id: str) -> ChatThread | None:
    """The live (not deleted) thread, its row locked for the transaction where the database
    can (PostgreSQL); None if there is none."""
    thread = await session.scalar(
        select(ChatThread).where(ChatThread.id == thread_id).with_for_update()
    )
    return None if thread is None or thread.deleted_at is not None else thread


def _append(
    session: AsyncSession,
    thread: ChatThread,
    kind: str,
    content: dict[str, Any],
    now: float,
    sender_id: str | None = None,
    sender_display_name: str | None = None,
    metadata: dict[str, str] | None = None,
) -> ChatMessage:
    """Number a new message of ``thread`` (next sequence id, a fresh millisecond id) and add it."""
    thread.last_sequence_id += 1
    message_id = max(_ms(now), thread.last_message_id + 1)
    thread.last_message_id = message_id
    thread.last_message_at = now
    message = ChatMessage(
        thread_id=thread.id,
        id=message_id,
        sequence_id=thread.last_sequence_id,
        type=kind,
        sender_id=sender_id,
        sender_display_name=sender_display_name,
        content=json.dumps(content),
        metadata_json=None if metadata is None else json.dumps(metadata),
        created_at=now,
        version=message_id,
    )
    session.add(message)
    return message


def _participants_content(
    participants: list[ChatParticipant], initiator: str | None
) -> dict[str, Any]:
    """The content of a participantAdded/participantRemoved system message (raw shapes; the
    wire module renders identifiers)."""
    return {
        "participants": [
            {
                "rawId": p.raw_id,
                "displayName": p.display_name,
                "shareHistoryAt": p.share_history_at,
            }
            for p in participants
        ],
        "initiator": initiator,
    }


async def create_thread(
    store: Store,
    thread: ChatThread,
    participants: list[NewParticipant],
    now: float,
) -> tuple[ChatThread, list[ChatParticipant], bool]:
    """Insert ``thread`` with ``participants`` (its creator among them); if a thread was made
    with the same ``repeatability_id``, return that one instead. Returns (thread, its
    participants, created)."""
    async with store.session.begin() as session:
        if thread.repeatability_id is not None:
            found = await session.scalar(
                select(ChatThread).where(ChatThread.repeatability_id == thread.repeatability_id)
            )
            if found is not None:
                rows = await session.scalars(
                    select(ChatParticipant).where(ChatParticipant.thread_id == found.id)
                )
                return found, list(rows), False
        thread.last_sequence_id, thread.last_message_id = 0, 0
        session.add(thread)
        await session.flush()
        added = [
            ChatParticipant(
                thread_id=thread.id,
                raw_id=p.raw_id,
                display_name=p.display_name,
                share_history_at=p.share_history_at,
                added_at=now,
            )
            for p in participants
        ]
        session.add_all(added)
        _append(session, thread, "participantAdded", _participants_content(added, None), now)
    return thread, added, True


async def get_thread(store: Store, thread_id: str) -> ChatThread | None:
    """The thread, None if there is none or it was deleted."""
    async with store.session() as session:
        thread = await session.get(ChatThread, thread_id)
        return None if thread is None or thread.deleted_at is not None else thread


async def get_participant(store: Store, thread_id: str, raw_id: str) -> ChatParticipant | None:
    async with store.session() as session:
        return await session.get(ChatParticipant, (thread_id, raw_id))


async def participant_ids(store: Store, thread_id: str) -> list[str]:
    """The raw ids of a thread's participants (for event delivery)."""
    async with store.session() as session:
        rows = await session.scalars(
            select(ChatParticipant.raw_id).where(ChatParticipant.thread_id == thread_id)
        )
        return list(rows)


async def append_message(
    store: Store,
    thread_id: str,
    kind: str,
    content: dict[str, Any],
    now: float,
    sender_id: str,
    sender_display_name: str | None,
    metadata: dict[str, str] | None,
) -> ChatMessage | None:
    """Add a message from ``sender_id``, who must still be a participant; None if the thread
    is gone or the sender is no participant (checked inside the same transaction)."""
    async with store.session.begin() as session:
        thread = await _locked_thread(session, thread_id)
        if thread is None or await session.get(ChatParticipant, (thread_id, sender_id)) is None:
            return None
        return _append(
            session, thread, kind, content, now, sender_id, sender_display_name, metadata
        )


async def list_messages(
    store: Store,
    thread_id: str,
    *,
    before_sequence_id: int | None,
    limit: int,
    history_from: float | None,
    start_time: float | None,
) -> list[ChatMessage]:
    """Up to ``limit`` messages, newest first, with sequence ids below ``before_sequence_id``
    (None: from the newest), created at or after ``history_from`` and ``start_time``."""
    query = select(ChatMessage).where(ChatMessage.thread_id == thread_id)
    if before_sequence_id is not None:
        query = query.where(ChatMessage.sequence_id < before_sequence_id)
    for since in (history_from, start_time):
        if since is not None:
            query = query.where(ChatMessage.created_at >= since)
    query = query.order_by(ChatMessage.sequence_id.desc()).limit(limit)
    async with store.session() as session:
        return list(await session.scalars(query))


async def get_message(store: Store, thread_id: str, message_id: int) -> ChatMessage | None:
    async with store.session() as session:
        return await session.get(ChatMessage, (thread_id, message_id))


async def change_message(
    store: Store,
    thread_id: str,
    message_id: int,
    now: float,
    *,
    content: str | None = None,
    metadata: dict[str, str] | None = None,
    delete: bool = False,
) -> ChatMessage | None:
    """Edit (new ``content``, merged ``metadata``) or delete a message; its ``version``
    becomes the time of the change. None if there is no such live message."""
    async with store.session.begin() as session:
        message = await session.get(ChatMessage, (thread_id, message_id))
        if message is None or message.deleted_at is not None:
            return None
        version = max(_ms(now), message.version + 1)
        if delete:
            message.deleted_at = now
        else:
            message.edited_at = now
            if content is not None:
                body = json.loads(message.content)
                body["message"] = content
                message.content = json.dumps(body)
            if metadata is not None:
                merged = json.loads(message.metadata_json or "{}")
                merged.update(metadata)
                message.metadata_json = json.dumps(merged)
        message.version = version
    return message


async def add_participants(
    store: Store, thread_id: str, participants: list[NewParticipant], initiator: str, now: float
) -> tuple[list[ChatParticipant], ChatMessage | None] | None:
    """Add participants (those already there are updated, as ACS does: no error); a
    participantAdded system message names the new ones. None if the thread is gone."""
    async with store.session.begin() as session:
        thread = await _locked_thread(session, thread_id)
        if thread is None:
            return None
        added: list[ChatParticipant] = []
        for p in participants:
            existing = await session.get(ChatParticipant, (thread_id, p.raw_id))
            if existing is not None:
                existing.display_name = p.display_name or existing.display_name
                continue
            row = ChatParticipant(
                thread_id=thread_id,
                raw_id=p.raw_id,
                display_name=p.display_name,
                share_history_at=p.share_history_at,
                added_at=now,
            )
            session.add(row)
            added.append(row)
        message = None
        if added:
            content = _participants_content(added, initiator)
            message = _append(session, thread, "participantAdded", content, now)
    return added, message


async def remove_participant(
    store: Store, thread_id: str, raw_id: str, initiator: str, now: float
) -> tuple[ChatParticipant, ChatMessage] | None:
    """Remove a participant (its read receipt too); a participantRemoved system message says
    so. None if the thread is gone or ``raw_id`` is no participant."""
    async with store.session.begin() as session:
        thread = await _locked_thread(session, thread_id)
        if thread is None:
            return None
        row = await session.get(ChatParticipant, (thread_id, raw_id))
        if row is None:
            return None
        await session.delete(row)
        receipt = await session.get(ChatReadReceipt, (thread_id, raw_id))
        if receipt is not None:
            await session.delete(receipt)
        content = _participants_content([row], initiator)
        message = _append(session, thread, "participantRemoved", content, now)
    return row, message


async def list_participants(
    store: Store, thread_id: str, skip: int, limit: int
) -> list[ChatParticipant]:
    """Participants in the order they were added (then by raw id)."""
    async with store.session() as session:
        rows = await session.scalars(
            select(ChatParticipant)
            .where(ChatParticipant.thread_id == thread_id)
            .order_by(ChatParticipant.added_at, ChatParticipant.raw_id)
            .offset(skip)
            .limit(limit)
        )
        return list(rows)


async def update_topic(
    store: Store, thread_id: str, topic: str, initiator: str, now: float
) -> ChatMessage | None:
    """Set the topic; a topicUpdated system message says so. None if the thread is gone."""
    async with store.session.begin() as session:
        thread = await _locked_thread(session, thread_id)
        if thread is None:
            return None
        thread.topic = topic
        content = {"topic": topic, "initiator": initiator}
        return _append(session, thread, "topicUpdated", content, now)


async def delete_thread(store: Store, thread_id: str, now: float) -> list[str] | None:
    """Mark the thread deleted; return the raw ids of its participants (None: no thread)."""
    async with store.session.begin() as session:
        thread = await _locked_thread(session, thread_id)
        if thread is None:
            return None
        thread.deleted_at = now
        rows = await session.scalars(
            select(ChatParticipant.raw_id).where(ChatParticipant.thread_id == thread_id)
        )
        return list(rows)


async def set_read_receipt(
    store: Store, thread_id: str, raw_id: str, message_id: int, now: float
) -> bool:
    """Record that ``raw_id`` read up to ``message_id``; an older message than the one
    already recorded leaves the receipt as it was. False if there is no such message."""
    async with store.session.begin() as session:
        message = await session.get(ChatMessage, (thread_id, message_id))
        if message is None:
            return False
        receipt = await session.get(ChatReadReceipt, (thread_id, raw_id))
        if receipt is None:
            session.add(
                ChatReadReceipt(
                    thread_id=thread_id, raw_id=raw_id, message_id=message_id, read_at=now
                )
            )
        elif message_id > receipt.message_id:
            receipt.message_id, receipt.read_at = message_id, now
    return True


async def list_read_receipts(
    store: Store, thread_id: str, skip: int, limit: int
) -> list[ChatReadReceipt]:
    async with store.session() as session:
        rows = await session.scalars(
            select(ChatReadReceipt)
            .where(ChatReadReceipt.thread_id == thread_id)
            .order_by(ChatReadReceipt.read_at.desc(), ChatReadReceipt.raw_id)
            .offset(skip)
            .limit(limit)
        )
        return list(rows)


async def threads_of(
    store: Store, raw_id: str, start_time: float | None, skip: int, limit: int
) -> list[ChatThread]:
    """The live threads ``raw_id`` takes part in, most recently active first, whose last
    message came at or after ``start_time``."""
    activity = func.coalesce(ChatThread.last_message_at, ChatThread.created_at)
    query = (
        select(ChatThread)
        .join(ChatParticipant, ChatParticipant.thread_id == ChatThread.id)
        .where(ChatParticipant.raw_id == raw_id, ChatThread.deleted_at.is_(None))
    )
    if start_time is not None:
        query = query.where(activity >= start_time)
    query = query.order_by(activity.desc(), ChatThread.id).offset(skip).limit(limit)
    async with store.session() as session:
        return list(await session.scalars(query))
