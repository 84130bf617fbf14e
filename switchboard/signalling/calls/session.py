"""Participant: one person (or bot) in a room, with its two peer connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...sfu import SdpError
from ...sfu.producer import Producer
from ...sfu.simulcast import Preference, SimulcastConsumer
from ...sfu.transport import WebRtcTransport
from . import outbound
from .protocol import ProtocolError

if TYPE_CHECKING:
    from .rooms import Room

log = logging.getLogger(__name__)

Send = Callable[[outbound.Message], None]


def track_info(producer: Producer) -> dict[str, Any]:
    return {
        "track_id": producer.id,
        "participant_id": producer.participant_id,
        "kind": producer.kind,
        "muted": producer.muted,
    }


class Participant:
    """One participant of a Room: its socket's outbox, its publish and subscribe transports.

    Renegotiations of the subscribe connection are serialised: one task creates an offer,
    sends it, and waits for its answer before it makes the next one (the protocol's rule).
    ``on_media_failed`` runs when a transport's ICE/DTLS fails.
    """

    def __init__(
        self,
        participant_id: str,
        name: str,
        user_id: str,
        room: Room,
        send: Send,
        on_media_failed: Callable[[], None],
    ) -> None:
        self.id, self.name, self.user_id, self.room = participant_id, name, user_id, room
        self.send = send
        self.closed = False
        # The rooms API role (rooms/service.py); None in an ad-hoc room, where anyone publishes.
        self.role: str | None = None
        self.can_publish = True
        self._on_media_failed = on_media_failed
        worker = room.worker
        self.publish = worker.create_webrtc_transport(
            room.router, "publish", self.id, self._transport_closed
        )
        self.subscribe = worker.create_webrtc_transport(
            room.router, "subscribe", self.id, self._transport_closed
        )
        self.subscribe.on_renegotiation_needed = self._renegotiation_needed
        # Simulcast: the layer this subscriber gets; dynacast requests to this publisher.
        self.subscribe.on_layer_changed = lambda consumer, layer: self.send(
            outbound.layer_changed(
                consumer.producer.id,
                layer.rid if layer else None,
                layer.width if layer else None,
                layer.height if layer else None,
            )
        )
        self.publish.on_publisher_layers = lambda producer, rids: self.send(
            outbound.publisher_layers(producer.id, rids)
        )
        self._dirty = asyncio.Event()
        self._offer_id = 0
        self._answered: asyncio.Event | None = None
        self._negotiator = asyncio.ensure_future(self._negotiate())
        # In-call data: drops of this participant's messages are reported to it.
        self.publish.data.on_dropped = lambda reason, messages, size, detail: self.send(
            outbound.data_dropped(reason, messages, size, detail)
        )

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "user_id": self.user_id}

    def tracks(self) -> list[dict[str, Any]]:
        return [track_info(p) for p in self.publish.producers.values()]

    # publish

    async def publish_offer(self, sdp: str) -> dict[str, Any]:
        """Answer the client's publish offer; announce new tracks to the room."""
        answer, created = await self.publish.handle_offer(sdp)
        self.room.on_tracks_published(self, created)
        tracks = [
            {**track_info(p), "mid": self.publish.mid_of(p)}
            for p in self.publish.producers.values()
        ]
        return {"sdp": answer, "tracks": tracks}

    def stop_publishing(self) -> None:
        """Close every track this participant publishes (a demotion to a role that may not):
        the others get ``track_unpublished`` and their subscribe connections renegotiate."""
        for producer_id in list(self.publish.producers):
            self.publish.close_producer(producer_id)
            self.room.broadcast(outbound.track_unpublished(producer_id, self.id), exclude=self)

    def set_muted(self, track_id: str, muted: bool) -> None:
        producer = self.publish.producers.get(track_id)
        if producer is None:
            raise ProtocolError("unknown_track", f"no track {track_id} of yours")
        if producer.muted != muted:
            producer.muted = muted
            self.room.broadcast(outbound.track_muted(track_id, self.id, muted), exclude=self)

    # subscribe

    def _renegotiation_needed(self) -> None:
        if not self.closed:
            self._dirty.set()

    async def _negotiate(self) -> None:
        try:
            while not self.closed:
                await self._dirty.wait()
                self._dirty.clear()
                sdp, mids = await self.subscribe.create_offer()
                self._offer_id += 1
                self._answered = asyncio.Event()
                tracks = {
                    mid: {k: v for k, v in track_info(c.producer).items() if k != "muted"}
                    for mid, c in mids.items()
                }
                self.send(outbound.subscribe_offer(self._offer_id, sdp, tracks))
                await self._answered.wait()
        except asyncio.CancelledError:
            pass
        except SdpError as exc:  # the transport closed under us
            log.debug("participant %s: negotiation ended: %s", self.id, exc.message)

    async def subscribe_answer(self, offer_id: int, sdp: str) -> None:
        """Apply the answer to subscribe offer ``offer_id``.

        Raises ProtocolError ``no_pending_offer`` for a stale or answered offer, SdpError from
        the transport; on error the offer stays pending."""
        answered = self._answered
        if answered is None or answered.is_set() or offer_id != self._offer_id:
            raise ProtocolError("no_pending_offer", f"subscribe offer {offer_id} is not pending")
        await self.subscribe.handle_answer(sdp)
        answered.set()

    def restart_ice(self, connection: str) -> None:
        """Restart ICE (RFC 8445 §9) on ``connection`` after the client's network changed. The
        subscribe connection restarts with the next subscribe offer, serialised with the other
        renegotiations; the publish connection restarts with the client's next publish offer
        (new ICE credentials), so asking here is refused with ``restart_by_offer``.
        Raises ProtocolError/SdpError ``not_connected`` before the connection is up."""
        if connection == "subscribe":
            self.subscribe.restart_ice()
        elif self.publish.connection_state != "connected":
            raise ProtocolError("not_connected", "the publish connection is not connected yet")
        else:
            raise ProtocolError(
                "restart_by_offer",
                "the client restarts ICE on the publish connection: send a publish_offer "
                "with new ICE credentials (pc.restartIce())",
            )

    def update_subscription(
        self,
        track_id: str,
        max_width: int | None = None,
        max_height: int | None = None,
        max_fps: float | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        """Set this subscriber's preference for track ``track_id``; return the reply: the
        RIDs the track has (none for a single-layer track, where only ``paused`` applies).
        Raises ProtocolError ``unknown_track``."""
        try:
            consumer = self.subscribe.update_subscription(
                track_id, Preference(max_width, max_height, max_fps, paused)
            )
        except KeyError:
            raise ProtocolError("unknown_track", f"you receive no track {track_id}") from None
        layers = consumer.producer.layers if isinstance(consumer, SimulcastConsumer) else []
        return {"rids": [layer.rid for layer in layers]}

    def consume(self, producer: Producer) -> None:
        """Start receiving ``producer`` (renegotiates the subscribe connection)."""
        if not self.closed and not producer.closed:
            self.subscribe.consume(producer)

    # both

    def transport(self, target: str) -> WebRtcTransport:
        return self.publish if target == "publish" else self.subscribe

    def _transport_closed(self, transport: WebRtcTransport) -> None:
        if not self.closed:
            self._on_media_failed()

    async def close(self) -> None:
        """Close both transports (Producers close, so others' Consumers of them close)."""
        if self.closed:
            return
        self.closed = True
        self._negotiator.cancel()
        await asyncio.gather(self.publish.close(), self.subscribe.close())
