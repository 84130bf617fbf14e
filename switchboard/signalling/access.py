"""Access control, wired together: revocations, the rooms service and the live-session
directory, opened in one cleanup context after the store.

    identity routes ──revoke──> Revocations ──listener──> Directory.evict(user)
    rooms routes ──patch/delete──> RoomsService ──listener──> enforcement (roles on sessions)
    RoomsService's validUntil timer, or a PATCH of the window ──closed listener──>
        every live session of that room ends (4003, "room closed")
    signalling authenticate/join ──asks──> Revocations.is_revoked, RoomsService.access
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .calls.connection import CloseSession
from .calls.directory import Directory
from .calls.enforcement import CLOSE_REMOVED, role_listener
from .identity.revocation import Revocations
from .keys import CONFIG, DIRECTORY, REVOCATIONS, ROOMS, ROOMS_API, STORE
from .rooms.service import RoomsService

ROOM_CLOSED = "room closed"  # the disconnect reason; the others see participant_left room_closed


def closed_room_listener(app: web.Application) -> Callable[[str], None]:
    """A RoomsService closed listener: end every live session in the call ``room_id`` with a
    ``disconnect`` event (4003, ``room closed``); each leaves with reason ``room_closed``."""

    def on_room_closed(room_id: str) -> None:
        registry = app.get(ROOMS)
        live = registry.rooms.get(room_id) if registry is not None else None
        if live is None:
            return
        for participant in list(live.participants.values()):
            for conn in app[DIRECTORY].of(participant.user_id):
                if conn.participant is participant:
                    conn.end(CloseSession(CLOSE_REMOVED, ROOM_CLOSED, "room_closed"))

    return on_room_closed


async def context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[REVOCATIONS]`` (loaded from the store), ``app[ROOMS_API]`` and
    ``app[DIRECTORY]``, with the listeners that make revocations, role changes and the end
    of a room's validity live."""
    revocations = Revocations(app[STORE])
    await revocations.load()
    directory = Directory()
    rooms = RoomsService(app[STORE], adhoc_rooms=app[CONFIG].adhoc_rooms)
    revocations.listeners.append(directory.evict)
    rooms.listeners.append(role_listener(directory))
    rooms.closed_listeners.append(closed_room_listener(app))
    app[REVOCATIONS], app[DIRECTORY], app[ROOMS_API] = revocations, directory, rooms
    yield
    rooms.close()
