"""RoomsService: rooms and participants with roles and a validity window, and what the
signalling service asks of them (may this identity join this room, in which role?).

Roles (ACS Rooms): ``Presenter`` (publishes; may also mute others and remove participants),
``Attendee`` (publishes), ``Consumer`` (subscribes only: no audio, video or data),
``Collaborator`` (publishes; ACS's role for Teams interop, treated as an Attendee here).
Changes are stored first, then each listener is called with ``(room id, {raw id: role or
None})`` so that live sessions follow at once (``calls/enforcement.py``).

A room is open from ``validFrom`` (inclusive) to ``validUntil`` (exclusive). Once someone has
joined it, a timer watches its ``validUntil``: when that passes, or an update moves the window
so that now is outside it, each ``closed_listeners`` entry is called with the room id (access.py
then ends its live sessions: 4003 ``room closed``). Times are unix seconds within what ISO 8601
can write (years 1 to 9999, ``MIN_TIME_S``..``MAX_TIME_S``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..store import Store
from ..store import rooms as queries
from ..store.models import Room

log = logging.getLogger(__name__)

ROLES = ("Presenter", "Attendee", "Consumer", "Collaborator")
PUBLISHING_ROLES = frozenset({"Presenter", "Attendee", "Collaborator"})
MODERATOR_ROLES = frozenset({"Presenter"})
DEFAULT_VALIDITY_S = 180 * 24 * 3600  # ACS: a room is valid 180 days unless told otherwise
MAX_VALIDITY_S = 180 * 24 * 3600  # ACS: validUntil at most 180 days after validFrom

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIME_S = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()
MAX_TIME_S = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - EPOCH).total_seconds()

RoleChanges = dict[str, str | None]  # raw id -> new role, None when removed
Listener = Callable[[str, RoleChanges], None]
ClosedListener = Callable[[str], None]  # called with the id of a room that has just closed


def format_time(unix_s: float) -> str:
    """ISO 8601 UTC with "Z"; microseconds only when there are some. Never raises: a value
    outside years 1..9999 (a row stored by an older version) is clamped, with a warning."""
    clamped = min(max(unix_s, MIN_TIME_S), MAX_TIME_S) if math.isfinite(unix_s) else MIN_TIME_S
    if clamped != unix_s:
        log.warning("a stored room time %r is out of range; shown as %r", unix_s, clamped)
    moment = EPOCH + timedelta(seconds=clamped)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


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
        self.closed_listeners: list[ClosedListener] = []
        self._deadlines: dict[str, asyncio.TimerHandle] = {}

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
        ``repeatability_id`` seen before, return the room made then. Raises ValueError (a
        message for the client) for a window that ends before it starts, is longer than 180
        days or ends after 9999-12-31T23:59:59Z; nothing is stored then."""
        created_at = time.time() if now is None else now
        start = created_at if valid_from is None else valid_from
        end = start + DEFAULT_VALIDITY_S if valid_until is None else valid_until
        check_window(
            start,
            end,
            "validFrom" if valid_from is not None else "the default validFrom (now)",
            "validUntil"
            if valid_until is not None
            else "the default validUntil (validFrom + 180 days)",
        )
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
        ValueError if the resulting window is invalid (nothing is changed then). If now is
        outside the new window, the room's live sessions end at once; otherwise they end at
        the new ``validUntil``."""
        room = await self.get(room_id)
        if room is None:
            return None
        check_window(
            room.valid_from if valid_from is None else valid_from,
            room.valid_until if valid_until is None else valid_until,
            "validFrom" if valid_from is not None else "the room's validFrom",
            "validUntil" if valid_until is not None else "the room's validUntil",
        )
        updated = await queries.update_room(
            self.store, room_id, valid_from, valid_until, pstn_dial_out_enabled
        )
        if updated is not None and (valid_from is not None or valid_until is not None):
            if not updated.valid_from <= time.time() < updated.valid_until:
                self._close(room_id)
            elif room_id in self._deadlines:
                self._watch(updated)
        return updated

    async def delete(self, room_id: str) -> bool:
        """Delete a room; its live participants are removed from the call."""
        raw_ids = await queries.delete_room(self.store, room_id)
        if raw_ids is None:
            return False
        deadline = self._deadlines.pop(room_id, None)
        if deadline is not None:
            deadline.cancel()
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
        Raises RoomAccessError. Granting access starts the room's ``validUntil`` timer.
        The window is checked after the last read, so that nothing runs between the check and
        the caller's join (the timer cannot fire in between).
        """
        role = await queries.role_of(self.store, room_id, raw_id)
        room = await self.get(room_id)
        if room is None:
            if not self.adhoc_rooms:
                raise RoomAccessError("unknown_room", "no such room (ad-hoc rooms are off)")
            return Access(role=None)
        current = time.time() if now is None else now
        if not room.valid_from <= current < room.valid_until:
            raise RoomAccessError("room_not_open", "the room is outside its validity window")
        if role is None:
            raise RoomAccessError("not_invited", "you are not a participant of this room")
        self._watch(room)
        return Access(role=role)

    def close(self) -> None:
        """Cancel every ``validUntil`` timer (the server is stopping)."""
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()

    def _watch(self, room: Room) -> None:
        """(Re)start the timer that closes ``room`` at its ``validUntil``."""
        old = self._deadlines.pop(room.id, None)
        if old is not None:
            old.cancel()
        delay_s = max(0.0, room.valid_until - time.time())
        loop = asyncio.get_running_loop()
        self._deadlines[room.id] = loop.call_later(
            delay_s, self._on_deadline, room.id, room.valid_until
        )

    def _on_deadline(self, room_id: str, valid_until: float) -> None:
        self._deadlines.pop(room_id, None)
        remaining_s = valid_until - time.time()
        if remaining_s > 0:  # the loop's monotonic clock ran ahead of the wall clock
            loop = asyncio.get_running_loop()
            self._deadlines[room_id] = loop.call_later(
                remaining_s, self._on_deadline, room_id, valid_until
            )
            return
        self._close(room_id)

    def _close(self, room_id: str) -> None:
        """The room is outside its window now: tell the closed listeners."""
        deadline = self._deadlines.pop(room_id, None)
        if deadline is not None:
            deadline.cancel()
        for listener in list(self.closed_listeners):
            try:
                listener(room_id)
            except Exception:
                log.exception("rooms closed listener failed")

    def _notify(self, room_id: str, changes: RoleChanges) -> None:
        for listener in list(self.listeners):
            try:
                listener(room_id, changes)
            except Exception:
                log.exception("rooms listener failed")


def check_window(
    valid_from: float,
    valid_until: float,
    from_name: str = "validFrom",
    until_name: str = "validUntil",
) -> None:
    """Raise ValueError, with a message naming the fields as ``from_name``/``until_name`` say
    where they come from, unless ``valid_from < valid_until <= valid_from + 180 days`` and
    both are within years 1..9999."""
    for name, value in ((from_name, valid_from), (until_name, valid_until)):
        if not MIN_TIME_S <= value <= MAX_TIME_S:
            raise ValueError(f"{name} must be within 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z")
    start, end = format_time(valid_from), format_time(valid_until)
    if not valid_from < valid_until:
        raise ValueError(f"{until_name} {end} must be after {from_name} {start}")
    if valid_until - valid_from > MAX_VALIDITY_S:
        raise ValueError(f"{until_name} {end} must be at most 180 days after {from_name} {start}")
