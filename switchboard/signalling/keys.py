"""Every ``web.AppKey`` of the application, in one place, so that mypy knows each value's type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .config import Config
from .identity.tokens import TokenService

if TYPE_CHECKING:
    from ..sfu.worker import Worker
    from .calls.rooms import RoomRegistry

CONFIG = web.AppKey("config", Config)
TOKENS = web.AppKey("tokens", TokenService)
SFU: web.AppKey[Worker] = web.AppKey("sfu")
ROOMS: web.AppKey[RoomRegistry] = web.AppKey("rooms")
