"""ChatService: the rules of chat threads over the store, and the events they raise.

Who may do what (ACS's scopes): every call needs a token with ``chat``, ``chat.join`` or
``chat.join.limited``, and everything in a thread needs the caller to be its participant
(403 ``NotAParticipant`` otherwise; 404 ``ThreadNotFound`` for a thread that does not exist
or was deleted). Creating, deleting a thread and changing its topic need ``chat``; adding and
removing others need ``chat`` or ``chat.join`` (``chat.join.limited`` may only remove
itself). Only a message's sender may edit or delete it (403 ``NotMessageSender``). Content is
at most ``max_message_bytes`` of UTF-8 (400 ``MessageTooLarge``).

Writes are serialised on this node (one asyncio lock), so that SQLite never sees two writers
at once; PostgreSQL additionally locks the thread row when numbering messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ApiError
from ..identity.tokens import UserToken
from ..store import Store
from ..store import chat as queries
from ..store.chat import NewParticipant
from ..store.models import ChatMessage, ChatParticipant, ChatReadReceipt, ChatThread
from . import events, wire

log = logging.getLogger(__name__)

MAX_TOPIC_CHARS = 256
MAX_DISPLAY_NAME_CHARS = 256
MAX_PARTICIPANTS_PER_REQUEST = 200


def new_thread_id() -> str:
    """A thread id as ACS forms them: ``19:<32 hex digits>@thread.v2``."""
    return f"19:{uuid.uuid4().hex}@thread.v2"


class ChatService:
    """Chat threads of one installation. ``is_own_id(raw_id)`` says whether an identity id
    belongs to this installation (others are refused as participants); listeners get
    ``(recipient raw ids, event)`` for every change (events.py)."""

    def __init__(
        self, store: Store, is_own_id: Callable[[str], bool], max_message_bytes: int
    ) -> None:
        self._store = store
        self._is_own_id = is_own_id
        self.max_message_bytes = max_message_bytes
        self._write = asyncio.Lock()
        self.listeners: list[events.Listener] = []

    def _emit(self, recipients: Iterable[str], event: events.Event) -> None:
        recipients = list(recipients)
        for listener in list(self.listeners):
            try:
                listener(recipients, event)
            except Exception:  # one broken listener must not keep the others from running
                log.exception("chat listener failed")

    # -- checks ---------------------------------------------------------------------------

    @staticmethod
    def require_scope(caller: UserToken, scopes: tuple[str, ...], what: str) -> None:
        if not set(scopes) & set(caller.scopes):
            names = " or ".join(repr(s) for s in scopes)
            raise ApiError(403, "MissingScope", f"{what} needs a token with the {names} scope")

    async def thread_for(
        self, caller: UserToken, thread_id: str
    ) -> tuple[ChatThread, ChatParticipant]:
        """The live thread and the caller's participant row; 404 or 403 otherwise."""
        thread = await queries.get_thread(self._store, thread_id)
        if thread is None:
            raise ApiError(404, "ThreadNotFound", "no such chat thread")
        me = await queries.get_participant(self._store, thread_id, caller.user_id)
        if me is None:
            raise ApiError(403, "NotAParticipant", "you are not a participant of this thread")
        return thread, me

    def check_content(self, content: str) -> None:
        size = len(content.encode("utf-8"))
        if size > self.max_message_bytes:
            raise ApiError(
                400,
                "MessageTooLarge",
                f"message content is {size} bytes; the limit is {self.max_message_bytes}",
            )

    def _split_participants(
        self, participants: list[NewParticipant]
    ) -> tuple[list[NewParticipant], list[dict[str, Any]]]:
        """Valid participants (each once) and ACS ChatErrors for the others."""
        valid: dict[str, NewParticipant] = {}
        invalid: list[dict[str, Any]] = []
        for p in participants:
            if self._is_own_id(p.raw_id):
                valid.setdefault(p.raw_id, p)
            else:
                invalid.append(
                    {
                        "code": "403",
                        "message": "not an identity of this installation",
                        "target": p.raw_id,
                    }
                )
        return list(valid.values()), invalid

    # -- threads --------------------------------------------------------------------------

    async def create_thread(
        self,
        caller: UserToken | None,
        topic: str,
        participants: list[NewParticipant],
        repeatability_id: str | None,
        creator_id: str | None = None,
    ) -> tuple[ChatThread, list[dict[str, Any]], bool]:
        """Create a thread; the creator (``caller``, or ``creator_id`` for the server's own
        threads) is added as a participant if not listed. Returns (thread, invalid
        participants as ChatErrors, created)."""
        if caller is not None:
            self.require_scope(caller, ("chat",), "creating a thread")
            creator_id = caller.user_id
        assert creator_id is not None
        valid, invalid = self._split_participants(participants)
        if creator_id not in {p.raw_id for p in valid}:
            valid.insert(0, NewParticipant(creator_id))
        now = time.time()
        row = ChatThread(
            id=new_thread_id(),
            topic=topic,
            created_at=now,
            created_by=creator_id,
            repeatability_id=repeatability_id,
        )
        async with self._write:
            thread, added, created = await queries.create_thread(self._store, row, valid, now)
        if created:
            self._emit(
                [p.raw_id for p in added],
                events.event(
                    "participantsAdded",
                    thread.id,
                    participants=[wire.participant(p) for p in added],
                    by=wire.identifier(creator_id),
                ),
            )
        return thread, invalid, created

    async def update_topic(self, caller: UserToken, thread_id: str, topic: str) -> None:
        self.require_scope(caller, ("chat",), "changing the topic")
        await self.thread_for(caller, thread_id)
        async with self._write:
            message = await queries.update_topic(
                self._store, thread_id, topic, caller.user_id, time.time()
            )
        if message is None:
            raise ApiError(404, "ThreadNotFound", "no such chat thread")
        recipients = await queries.participant_ids(self._store, thread_id)
        self._emit(
            recipients,
            events.event(
                "chatThreadPropertiesUpdated",
                thread_id,
                properties={"topic": topic},
                updatedBy=wire.identifier(caller.user_id),
                updatedOn=wire.iso(message.created_at),
            ),
        )

    async def delete_thread(self, caller: UserToken, thread_id: str) -> None:
        self.require_scope(caller, ("chat",), "deleting a thread")
        await self.thread_for(caller, thread_id)
        now = time.time()
        async with self._write:
            recipients = await queries.delete_thread(self._store, thread_id, now)
        if recipients is None:
            raise ApiError(404, "ThreadNotFound", "no such chat thread")
        self._emit(
            recipients,
            events.event(
                "chatThreadDeleted",
                thread_id,
                deletedOn=wire.iso(now),
                deletedBy=wire.identifier(caller.user_id),
            ),
        )

    async def threads_of(
        self, caller: UserToken, start_time: float | None, skip: int, limit: int
    ) -> list[ChatThread]:
        return await queries.threads_of(self._store, caller.user_id, start_time, skip, limit)

    # -- messages -------------------------------------------------------------------------

    async def send_message(
        self,
        caller: UserToken,
        thread_id: str,
        content: str,
        kind: str,
        sender_display_name: str | None,
        metadata: dict[str, str] | None,
    ) -> ChatMessage:
        """Store a message (durable when this returns) and tell the participants."""
        await self.thread_for(caller, thread_id)
        self.check_content(content)
        async with self._write:
            message = await queries.append_message(
                self._store,
                thread_id,
                kind,
                {"message": content},
                time.time(),
                caller.user_id,
                sender_display_name,
                metadata,
            )
        if message is None:  # removed (or the thread deleted) meanwhile
            raise ApiError(403, "NotAParticipant", "you are not a participant of this thread")
        await self._emit_message("chatMessageReceived", thread_id, message)
        return message

    async def _emit_message(self, name: str, thread_id: str, message: ChatMessage) -> None:
        recipients = await queries.participant_ids(self._store, thread_id)
        self._emit(recipients, events.event(name, thread_id, message=wire.message(message)))

    async def list_messages(
        self,
        caller: UserToken,
        thread_id: str,
        before_sequence_id: int | None,
        limit: int,
        start_time: float | None,
    ) -> list[ChatMessage]:
        """Newest first; only what the caller's share-history time lets it see."""
        _, me = await self.thread_for(caller, thread_id)
        return await queries.list_messages(
            self._store,
            thread_id,
            before_sequence_id=before_sequence_id,
            limit=limit,
            history_from=me.share_history_at,
            start_time=start_time,
        )

    async def get_message(self, caller: UserToken, thread_id: str, message_id: int) -> ChatMessage:
        _, me = await self.thread_for(caller, thread_id)
        message = await queries.get_message(self._store, thread_id, message_id)
        if message is None or (
            me.share_history_at is not None and message.created_at < me.share_history_at
        ):
            raise ApiError(404, "MessageNotFound", "no such message in this thread")
        return message

    async def change_message(
        self,
        caller: UserToken,
        thread_id: str,
        message_id: int,
        content: str | None = None,
        metadata: dict[str, str] | None = None,
        delete: bool = False,
    ) -> None:
        """Edit or delete one's own text/html message."""
        message = await self.get_message(caller, thread_id, message_id)
        if message.sender_id != caller.user_id or message.type not in ("text", "html"):
            raise ApiError(403, "NotMessageSender", "only its sender may change a message")
        if message.deleted_at is not None:
            raise ApiError(404, "MessageNotFound", "this message was deleted")
        if content is not None:
            self.check_content(content)
        async with self._write:
            changed = await queries.change_message(
                self._store,
                thread_id,
                message_id,
                time.time(),
                content=content,
                metadata=metadata,
                delete=delete,
            )
        if changed is None:
            raise ApiError(404, "MessageNotFound", "this message was deleted")
        name = "chatMessageDeleted" if delete else "chatMessageEdited"
        await self._emit_message(name, thread_id, changed)

    # -- participants -----------------------------------------------------------------------

    async def add_participants(
        self,
        caller: UserToken | None,
        thread_id: str,
        participants: list[NewParticipant],
        initiator_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Add participants; returns ChatErrors for those refused. ``caller`` None: the
        server itself adds (the web demo's room thread), as ``initiator_id``."""
        if caller is not None:
            self.require_scope(caller, ("chat", "chat.join"), "adding participants")
            await self.thread_for(caller, thread_id)
            initiator_id = caller.user_id
        assert initiator_id is not None
        valid, invalid = self._split_participants(participants)
        if valid:
            async with self._write:
                result = await queries.add_participants(
                    self._store, thread_id, valid, initiator_id, time.time()
                )
            if result is None:
                raise ApiError(404, "ThreadNotFound", "no such chat thread")
            added, _ = result
            if added:
                recipients = await queries.participant_ids(self._store, thread_id)
                self._emit(
                    recipients,
                    events.event(
                        "participantsAdded",
                        thread_id,
                        participants=[wire.participant(p) for p in added],
                        by=wire.identifier(initiator_id),
                    ),
                )
        return invalid

    async def remove_participant(self, caller: UserToken, thread_id: str, raw_id: str) -> None:
        if raw_id != caller.user_id:
            self.require_scope(caller, ("chat", "chat.join"), "removing another participant")
        await self.thread_for(caller, thread_id)
        recipients = await queries.participant_ids(self._store, thread_id)
        async with self._write:
            result = await queries.remove_participant(
                self._store, thread_id, raw_id, caller.user_id, time.time()
            )
        if result is None:
            raise ApiError(404, "ParticipantNotFound", "no such participant in this thread")
        removed, _ = result
        self._emit(
            recipients,
            events.event(
                "participantsRemoved",
                thread_id,
                participants=[wire.participant(removed)],
                by=wire.identifier(caller.user_id),
            ),
        )

    async def list_participants(
        self, caller: UserToken, thread_id: str, skip: int, limit: int
    ) -> list[ChatParticipant]:
        await self.thread_for(caller, thread_id)
        return await queries.list_participants(self._store, thread_id, skip, limit)

    # -- typing and read receipts -------------------------------------------------------------

    async def typing(
        self, caller: UserToken, thread_id: str, sender_display_name: str | None
    ) -> None:
        """Tell the other participants that the caller is typing (nothing is stored)."""
        _, me = await self.thread_for(caller, thread_id)
        recipients = await queries.participant_ids(self._store, thread_id)
        self._emit(
            [r for r in recipients if r != caller.user_id],
            events.event(
                "typingIndicatorReceived",
                thread_id,
                sender=wire.identifier(caller.user_id),
                senderDisplayName=sender_display_name or me.display_name,
                receivedOn=wire.iso(time.time()),
            ),
        )

    async def read_receipt(self, caller: UserToken, thread_id: str, message_id: int) -> None:
        await self.get_message(caller, thread_id, message_id)
        now = time.time()
        async with self._write:
            found = await queries.set_read_receipt(
                self._store, thread_id, caller.user_id, message_id, now
            )
        if not found:
            raise ApiError(404, "MessageNotFound", "no such message in this thread")
        recipients = await queries.participant_ids(self._store, thread_id)
        self._emit(
            recipients,
            events.event(
                "readReceiptReceived",
                thread_id,
                sender=wire.identifier(caller.user_id),
                chatMessageId=str(message_id),
                readOn=wire.iso(now),
            ),
        )

    async def read_receipts(
        self, caller: UserToken, thread_id: str, skip: int, limit: int
    ) -> list[ChatReadReceipt]:
        await self.thread_for(caller, thread_id)
        return await queries.list_read_receipts(self._store, thread_id, skip, limit)
