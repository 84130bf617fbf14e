"""Rooms: who is in which call. Media routing is the SFU's; this is membership and events."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from ...sfu import Worker
from ...sfu.producer import Producer
from . import outbound
from .session import Participant, Send, track_info

log = logging.getLogger(__name__)


class Room:
    """A call: its participants and its Router. Created by the first join, closed (its Router
    and memory freed) when the last participant leaves."""

    def __init__(self, name: str, worker: Worker, on_empty: Callable[[Room], None]) -> None:
        self.name = name
        self.worker = worker
        self.router = worker.create_router()
        self.participants: dict[str, Participant] = {}
        self._on_empty = on_empty
        self.router.active_speaker.on_speakers_changed = lambda speakers, dominant: self.broadcast(
            outbound.speakers_changed(speakers, dominant)
        )

    def join(
        self, name: str, user_id: str, send: Send, on_media_failed: Callable[[], None]
    ) -> Participant:
        """Add a participant; it is subscribed to every track already published."""
        participant = Participant(
            "PA_" + secrets.token_urlsafe(9), name, user_id, self, send, on_media_failed
        )
        self.broadcast(outbound.participant_joined(participant.info()))
        self.participants[participant.id] = participant
        for producer in list(self.router.producers.values()):
            participant.consume(producer)
        return participant

    def on_tracks_published(self, publisher: Participant, producers: list[Producer]) -> None:
        for producer in producers:
            self.broadcast(outbound.track_published(track_info(producer)), exclude=publisher)
            for participant in self.participants.values():
                if participant is not publisher:
                    participant.consume(producer)

    def broadcast(self, message: outbound.Message, exclude: Participant | None = None) -> None:
        for participant in self.participants.values():
            if participant is not exclude:
                participant.send(message)

    async def leave(self, participant: Participant, reason: str) -> None:
        """Remove ``participant``: its tracks end everywhere, the others are told."""
        if self.participants.pop(participant.id, None) is None:
            return
        tracks = list(participant.publish.producers.values())
        await participant.close()
        for producer in tracks:
            self.broadcast(outbound.track_unpublished(producer.id, participant.id))
        self.broadcast(outbound.participant_left(participant.id, reason))
        if not self.participants:
            self.worker.close_router(self.router)
            self._on_empty(self)


class RoomRegistry:
    """The rooms of this node, by name."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.rooms: dict[str, Room] = {}

    def get_or_create(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self.worker, self._remove)
        return room

    def _remove(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                await room.leave(participant, "server_shutdown")
