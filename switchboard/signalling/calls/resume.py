"""Session resume: a participant outlives its socket for a grace period, events numbered.

When a participant's WebSocket drops without ``leave`` (network change, a proxy timing out,
the tab frozen), its peer connections may well be alive: its media keeps flowing. The
participant is *detached* for ``RESUME_GRACE_S`` (30 s) instead of leaving; a new socket
that authenticates as the same user and sends ``resume`` with the session id (secret, from the
join reply) and the last event ``seq`` it processed gets the events it missed, in order, and
the participant back with its Producers and Consumers. Events (not replies) carry ``seq``,
1, 2, 3… per session; the last ``MAX_REPLAY`` are kept. After the grace period the
participant leaves with reason ``disconnected``, as before.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import outbound
from .session import Participant

RESUME_GRACE_S = 30.0
MAX_REPLAY = 1024  # events kept per session; a longer absence cannot be resumed

Message = dict[str, Any]


class Session:
    """One participant's event stream, across the sockets it has over time.

    ``send`` numbers an event, logs it and passes it to the attached socket's ``sink``, if any.
    ``media_failed`` is forwarded to the attached socket, so a failure ends the current one.
    """

    def __init__(self, user_id: str) -> None:
        self.id = "SE_" + secrets.token_urlsafe(18)
        self.user_id = user_id
        self.participant: Participant | None = None
        self.seq = 0
        self._log: deque[Message] = deque(maxlen=MAX_REPLAY)
        self._sink: Callable[[Message], None] | None = None
        self._on_media_failed: Callable[[], None] = lambda: None
        self._expiry: asyncio.TimerHandle | None = None

    def send(self, message: Message) -> None:
        self.seq += 1
        numbered = {**message, "seq": self.seq}
        self._log.append(numbered)
        if self._sink is not None:
            self._sink(numbered)

    def media_failed(self) -> None:
        self._on_media_failed()

    def attach(self, sink: Callable[[Message], None], on_media_failed: Callable[[], None]) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._sink, self._on_media_failed = sink, on_media_failed

    def detach(self, on_expired: Callable[[], None], grace_s: float) -> None:
        """No socket: log events only; ``on_expired`` after ``grace_s``, or at once if the
        media fails meanwhile (the client is gone, not just its socket)."""
        self._sink, self._on_media_failed = None, on_expired
        self._expiry = asyncio.get_running_loop().call_later(grace_s, on_expired)

    def missed(self, last_seq: int) -> list[Message] | None:
        """Events after ``last_seq``, or None when some of them are no longer kept."""
        if last_seq > self.seq or last_seq < 0:
            return None
        missed = [m for m in self._log if m["seq"] > last_seq]
        if len(missed) < self.seq - last_seq:
            return None
        return missed

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


class SessionRegistry:
    """The sessions of this node by id: live ones and detached ones awaiting a resume."""

    def __init__(self, grace_s: float = RESUME_GRACE_S) -> None:
        self.grace_s = grace_s
        self._sessions: dict[str, Session] = {}
        self._by_participant: dict[str, Session] = {}

    def create(self, user_id: str) -> Session:
        session = Session(user_id)
        self._sessions[session.id] = session
        return session

    def bind(self, session: Session, participant: Participant) -> None:
        session.participant = participant
        self._by_participant[participant.id] = session

    def of(self, participant: Participant) -> Session | None:
        return self._by_participant.get(participant.id)

    def detach(self, participant: Participant) -> bool:
        """Keep ``participant`` for the grace period; False if it has no session or its
        media is gone already (a client that closed everything, not just its socket)."""
        session = self._by_participant.get(participant.id)
        if session is None or participant.publish.closed or participant.subscribe.closed:
            return False

        published = list(participant.publish.producers)

        def expired() -> None:
            if self._by_participant.get(participant.id) is not session:
                return
            self.forget(participant)
            # A failed transport closed its Producers already: Room.leave no longer sees them.
            room = participant.room
            for track_id in published:
                if track_id not in participant.publish.producers:
                    unpublished = outbound.track_unpublished(track_id, participant.id)
                    room.broadcast(unpublished, exclude=participant)
            asyncio.ensure_future(room.leave(participant, "disconnected"))

        session.detach(expired, self.grace_s)
        return True

    def find(self, session_id: str, user_id: str) -> Session | None:
        """A session to resume: it exists and belongs to ``user_id``."""
        session = self._sessions.get(session_id)
        if session is None or session.user_id != user_id or session.participant is None:
            return None
        return session

    def forget(self, participant: Participant) -> None:
        session = self._by_participant.pop(participant.id, None)
        if session is not None:
            session.close()
            self._sessions.pop(session.id, None)


SESSIONS = web.AppKey("sessions", SessionRegistry)
