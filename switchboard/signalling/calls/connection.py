"""Connection: the state of one signalling socket (its token, its participant, its outbox)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..identity.tokens import UserToken
from . import outbound
from .protocol import ProtocolError
from .session import Participant

CLOSE_MEDIA_FAILED = 4002


class CloseSession(Exception):
    """Raised by a handler to end the socket with WebSocket close ``code``."""

    def __init__(self, code: int, reason: str, reason_for_room: str = "disconnected") -> None:
        super().__init__(reason)
        self.code, self.reason, self.reason_for_room = code, reason, reason_for_room


class Connection:
    """One signalling socket. Messages go out through ``send`` (non-blocking) to an outbox
    that one writer task drains, so that replies and events keep their order."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.token: UserToken | None = None
        self.participant: Participant | None = None
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.close_requested: asyncio.Future[CloseSession] = (
            asyncio.get_running_loop().create_future()
        )

    def send(self, message: outbound.Message) -> None:
        self.outbox.put_nowait(message)

    def joined(self) -> Participant:
        if self.participant is None:
            raise ProtocolError("not_joined", "send join first")
        return self.participant

    def media_failed(self) -> None:
        """A peer connection of this participant failed: end the session."""
        if not self.close_requested.done():
            self.close_requested.set_result(
                CloseSession(CLOSE_MEDIA_FAILED, "media connection failed", "connection_failed")
            )
