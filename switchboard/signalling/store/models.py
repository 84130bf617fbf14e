"""The tables. Times are unix seconds as floats (UTC), ids are strings as the APIs show them."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, String
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
