"""Connection: the state of one signalling socket (its token, its participant, its outbox)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from ..identity.tokens import UserToken
from ..keys import DIRECTORY
from . import outbound
from .protocol import ProtocolError
from .session import Participant

CLOSE_TOKEN_EXPIRED = 4001
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
        self._expiry: asyncio.TimerHandle | None = None

    def send(self, message: outbound.Message) -> None:
        self.outbox.put_nowait(message)

    def joined(self) -> Participant:
        if self.participant is None:
            raise ProtocolError("not_joined", "send join first")
        return self.participant

    def end(self, close: CloseSession) -> None:
        """Ask the socket loop to end the session (the first request wins)."""
        if not self.close_requested.done():
            self.close_requested.set_result(close)

    def media_failed(self) -> None:
        """A peer connection of this participant failed: end the session."""
        self.end(CloseSession(CLOSE_MEDIA_FAILED, "media connection failed", "connection_failed"))

    def expire_at(self, unix_s: float) -> None:
        """End the session with 4001 when the token expires (``unix_s``, seconds); a later call
        (a refreshed token) replaces the earlier deadline."""
        if self._expiry is not None:
            self._expiry.cancel()
        delay_s = max(0.0, unix_s - time.time())
        expired = CloseSession(CLOSE_TOKEN_EXPIRED, "token expired", "token_expired")
        self._expiry = asyncio.get_running_loop().call_later(delay_s, self.end, expired)

    def release(self) -> None:
        """Cancel the timers of this socket (it has ended) and leave the directory."""
        if self._expiry is not None:
            self._expiry.cancel()
        if self.token is not None and (directory := self.app.get(DIRECTORY)) is not None:
            directory.remove(self.token.user_id, self)
