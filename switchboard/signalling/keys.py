"""Every ``web.AppKey`` of the application, in one place, so that mypy knows each value's type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .config import Config
from .identity.tokens import TokenService
from .store.db import Store

if TYPE_CHECKING:
    from ..sfu.worker import Worker
    from .calls.directory import Directory
    from .calls.rooms import RoomRegistry
    from .chat.service import ChatService
    from .identity.revocation import Revocations
    from .rooms.service import RoomsService

CONFIG = web.AppKey("config", Config)
TOKENS = web.AppKey("tokens", TokenService)
SFU: web.AppKey[Worker] = web.AppKey("sfu")
ROOMS: web.AppKey[RoomRegistry] = web.AppKey("rooms")
STORE = web.AppKey("store", Store)
REVOCATIONS: web.AppKey[Revocations] = web.AppKey("revocations")
DIRECTORY: web.AppKey[Directory] = web.AppKey("directory")
ROOMS_API: web.AppKey[RoomsService] = web.AppKey("rooms_api")
CHAT: web.AppKey[ChatService] = web.AppKey("chat")
