"""Access control, wired together: revocations, the rooms service and the live-session
directory, opened in one cleanup context after the store.

    identity routes ──revoke──> Revocations ──listener──> Directory.evict(user)
    rooms routes ──patch/delete──> RoomsService ──listener──> enforcement (roles on sessions)
    signalling authenticate/join ──asks──> Revocations.is_revoked, RoomsService.access
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .calls.directory import Directory
from .calls.enforcement import role_listener
from .identity.revocation import Revocations
from .keys import CONFIG, DIRECTORY, REVOCATIONS, ROOMS_API, STORE
from .rooms.service import RoomsService


async def context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: ``app[REVOCATIONS]`` (loaded from the store), ``app[ROOMS_API]`` and
    ``app[DIRECTORY]``, with the listeners that make revocations and role changes live."""
    revocations = Revocations(app[STORE])
    await revocations.load()
    directory = Directory()
    rooms = RoomsService(app[STORE], adhoc_rooms=app[CONFIG].adhoc_rooms)
    revocations.listeners.append(directory.evict)
    rooms.listeners.append(role_listener(directory))
    app[REVOCATIONS], app[DIRECTORY], app[ROOMS_API] = revocations, directory, rooms
    yield
