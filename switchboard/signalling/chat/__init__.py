"""Chat threads (ACS Chat): ``routes.py`` (REST), ``service.py`` (rules), ``wire.py`` (JSON
shapes), ``events.py`` (real-time events over the signalling socket); the queries are in
``store/chat.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..identity.routes import is_own_identity_id
from ..keys import CHAT, CONFIG, DIRECTORY, STORE
from .events import deliver_to
from .service import ChatService


async def context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the store and access control): ``app[CHAT]``, whose events go
    to the live signalling sockets of ``app[DIRECTORY]``."""
    config = app[CONFIG]
    service = ChatService(
        app[STORE],
        lambda raw_id: is_own_identity_id(raw_id, config.access_key),
        config.chat_max_message_bytes,
    )
    if DIRECTORY in app:
        service.listeners.append(deliver_to(app[DIRECTORY]))
    app[CHAT] = service
    yield
