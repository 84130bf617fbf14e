"""RoomsService: rooms and participants with roles and a validity window, and what the
signalling service asks of them (may this identity join this room, in which role?).

Roles (ACS Rooms): ``Presenter`` (publishes; may also mute others and remove participants),
``Attendee`` (publishes), ``Consumer`` (subscribes only: no audio, video or data),
``Collaborator`` (publishes; ACS's role for Teams interop, treated as an Attendee here).
Changes are stored first, then each listener is called with ``(room id, {raw id: role or
None})`` so that live sessions follow at once (``calls/enforcement.py``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store import Store
from ..store import rooms as queries
from ..store.models import Room

log = logging.getLogger(__name__)

ROLES = ("Presenter", "Attendee", "Consumer", "Collaborator")
PUBLISHING_ROLES = frozenset({"Presenter", "Attendee", "Collaborator"})
MODERATOR_ROLES = frozenset({"Presenter"})
DEFAULT_VALIDITY_S = 180 * 24 * 3600  # ACS: a room is valid 180 days unless told otherwise
MAX_VALIDITY_S = 180 * 24 * 3600  # ACS: validUntil at most 180 days after validFrom

RoleChanges = dict[str, str | None]  # raw id -> new role, None when removed
Listener = Callable[[str, RoleChanges], None]


class RoomAccessError(Exception):
    """Joining a room is refused: ``code`` ``not_invited``, ``room_not_open`` or
    ``unknown_room``; ``message`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Access:
    """What a joining identity may do in a room: ``role`` is None in an ad-hoc room."""

    role: str | None

    @property
    def can_publish(self) -> bool:
        return self.role is None or self.role in PUBLISHING_ROLES


def new_room_id() -> str:
    """A room id as ACS makes them: 17 or so decimal digits (a random 56-bit number)."""
    return str(secrets.randbits(56) | (1 << 55))


class RoomsService:
    """The rooms of one installation, in ``store``."""

    def __init__(self, store: Store, adhoc_rooms: bool = True) -> None:
        self.store = store
        self.adhoc_rooms = adhoc_rooms
        self.listeners: list[Listener] = []

    async def create(
        self,
        valid_from: float | None,
        valid_until: float | None,
        pstn_dial_out_enabled: bool,
        participants: dict[str, str],
        repeatability_id: str | None = None,
        now: float | None = None,
    ) -> Room:
        """Create a room (times: unix seconds; defaults now and 180 days later). With a
        ``repeatability_id`` seen before, return the room made then. Raises ValueError for a
        window that ends before it starts or is longer than 180 days."""
        created_at = time.time() if now is None else now
        start = created_at if valid_from is None else valid_from
        end = start + DEFAULT_VALIDITY_S if valid_until is None else valid_until
        check_window(start, end)
        room = Room(
            id=new_room_id(),
            created_at=created_at,
            valid_from=start,
            valid_until=end,
            pstn_dial_out_enabled=pstn_dial_out_enabled,
            repeatability_id=repeatability_id,
        )
        return await queries.create_room(self.store, room, participants)

    async def get(self, room_id: str) -> Room | None:
        return await queries.get_room(self.store, room_id)

    async def list(self) -> list[Room]:
        return await queries.list_rooms(self.store)

    async def update(
        self,
        room_id: str,
        valid_from: float | None,
        valid_until: float | None,
        pstn_dial_out_enabled: bool | None,
    ) -> Room | None:
        """Merge-patch a room (None: unchanged); None if there is no such room. Raises
        ValueError if the resulting window is invalid (nothing is changed then)."""
        room = await self.get(room_id)
        if room is None:
            return None
        check_window(
            room.valid_from if valid_from is None else valid_from,
            room.valid_until if valid_until is None else valid_until,
        )
        return await queries.update_room(
            self.store, room_id, valid_from, valid_until, pstn_dial_out_enabled
        )

    async def delete(self, room_id: str) -> bool:
        """Delete a room; its live participants are removed from the call."""
        raw_ids = await queries.delete_room(self.store, room_id)
        if raw_ids is None:
            return False
        self._notify(room_id, dict.fromkeys(raw_ids))
        return True

    async def participants(self, room_id: str) -> dict[str, str] | None:
        if await self.get(room_id) is None:
            return None
        return await queries.participants(self.store, room_id)

    async def patch_participants(self, room_id: str, changes: RoleChanges) -> bool:
        """Add, change (raw id -> role) or remove (raw id -> None) participants; False if
        there is no such room. Live sessions follow at once."""
        if not await queries.patch_participants(self.store, room_id, changes):
            return False
        self._notify(room_id, changes)
        return True

    async def access(self, room_id: str, raw_id: str, now: float | None = None) -> Access:
        """May ``raw_id`` join the call ``room_id``, and in which role?

        A room of this API: only its participants, only within ``[validFrom, validUntil)``.
        Any other room name is an ad-hoc room, open to any caller while ``adhoc_rooms``.
        Raises RoomAccessError.
        """
        room = await self.get(room_id)
        if room is None:
            if not self.adhoc_rooms:
                raise RoomAccessError("unknown_room", "no such room (ad-hoc rooms are off)")
            return Access(role=None)
        current = time.time() if now is None else now
        if not room.valid_from <= current < room.valid_until:
            raise RoomAccessError("room_not_open", "the room is outside its validity window")
        role = await queries.role_of(self.store, room_id, raw_id)
        if role is None:
            raise RoomAccessError("not_invited", "you are not a participant of this room")
        return Access(role=role)

    def _notify(self, room_id: str, changes: RoleChanges) -> None:
        for listener in list(self.listeners):
            try:
                listener(room_id, changes)
            except Exception:
                log.exception("rooms listener failed")


def check_window(valid_from: float, valid_until: float) -> None:
    """Raise ValueError unless ``valid_from < valid_until <= valid_from + 180 days``."""
    if not valid_from < valid_until:
        raise ValueError("validUntil must be after validFrom")
    if valid_until - valid_from > MAX_VALIDITY_S:
        raise ValueError("a room may be valid for at most 180 days")
