"""The tables. Times are unix seconds as floats (UTC), ids are strings as the APIs show them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """The declarative base of every Switchboard table."""


class Identity(Base):
    """An identity made by ``POST /identities`` (``8:acs:<resource>_<uuid>``)."""

    __tablename__ = "identities"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class Revocation(Base):
    """When an identity's tokens were last revoked (or the identity deleted): every token
    issued before ``revoked_at`` (unix seconds, whole: see identity/revocation.py) is refused.
    Kept after the identity is deleted, so that its old tokens stay refused."""

    __tablename__ = "revocations"
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    revoked_at: Mapped[float] = mapped_column(Float)


class Room(Base):
    """A room made by the rooms API. ``valid_from``/``valid_until``: unix seconds.
    ``repeatability_id``: the ``Repeatability-Request-Id`` it was created with, if any."""

    __tablename__ = "rooms"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    valid_from: Mapped[float] = mapped_column(Float)
    valid_until: Mapped[float] = mapped_column(Float)
    pstn_dial_out_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    repeatability_id: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)


class RoomParticipant(Base):
    """One participant of a room: its raw id (an identity id) and role."""

    __tablename__ = "room_participants"
    room_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    raw_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


class ChatThread(Base):
    """A chat thread (ACS Chat). ``id``: ``19:<32 hex>@thread.v2`` as ACS forms them.

    ``last_sequence_id`` is the thread's message counter (every message, system ones included,
    takes the next value); ``last_message_id``: the newest message id (a millisecond time,
    strictly increasing in a thread). ``deleted_at``: set by ``DELETE`` (the thread is then
    gone for everyone). ``repeatability_id``: the ``repeatability-request-id`` it was made with.
    """

    __tablename__ = "chat_threads"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(256))
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_message_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_sequence_id: Mapped[int] = mapped_column(Integer, default=0)
    last_message_id: Mapped[int] = mapped_column(BigInteger, default=0)
    repeatability_id: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)


class ChatParticipant(Base):
    """A participant of a chat thread: its raw id (an identity id), display name, and the time
    from which it sees the thread's history (``share_history_at``, unix s; None: all of it)."""

    __tablename__ = "chat_participants"
    thread_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("chat_threads.id", ondelete="CASCADE"), primary_key=True
    )
    raw_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    share_history_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    added_at: Mapped[float] = mapped_column(Float)


class ChatMessage(Base):
    """One message of a thread. ``type``: ``text``, ``html``, or a system type (``topicUpdated``,
    ``participantAdded``, ``participantRemoved``); ``content``: the ACS content object as JSON
    text (``{"message"}`` for text/html); ``metadata``: JSON text of a string map or None.
    ``version``: the millisecond time of the last change (creation or edit), as ACS's."""

    __tablename__ = "chat_messages"
    thread_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("chat_threads.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    sequence_id: Mapped[int] = mapped_column(Integer, index=True)
    type: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    sender_display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    content: Mapped[str] = mapped_column(Text)
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    edited_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    version: Mapped[int] = mapped_column(BigInteger)


class ChatReadReceipt(Base):
    """The newest message a participant has read in a thread (one row per reader)."""

    __tablename__ = "chat_read_receipts"
    thread_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("chat_threads.id", ondelete="CASCADE"), primary_key=True
    )
    raw_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    read_at: Mapped[float] = mapped_column(Float)
