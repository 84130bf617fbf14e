"""WebRtcTransport: one participant's ICE+DTLS connection in one direction."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from . import aiortc_glue, ice, sdp_checks, sdp_simulcast
from .clock import monotonic_ms
from .config import MediaConfig
from .consumer import Consumer
from .data.transport_data import TransportData
from .producer import Codec, Producer
from .router import Router
from .simulcast import LayerAllocator, Preference, SimulcastConsumer, SimulcastProducer
from .simulcast.layer import ProducerLayer
from .transport_errors import SdpError

MAX_PUBLISHED_TRACKS = 16  # audio/video m-sections one participant may publish

log = logging.getLogger(__name__)


class WebRtcTransport:
    """One participant's peer connection in one direction (LiveKit's two-connection model).

    ``direction == "publish"``: the client offers (``handle_offer``); each track it sends
    becomes a Producer in the Router. ``direction == "subscribe"``: the server offers
    (``consume`` then ``create_offer``, ``handle_answer``); each Consumer is one ``sendonly``
    m-section. A closed Consumer's m-section is set ``inactive`` and never reused.
    ``on_closed`` runs once when ICE or DTLS fails or the connection closes.
    """

    def __init__(
        self,
        router: Router,
        direction: str,
        participant_id: str,
        on_closed: Callable[[WebRtcTransport], None],
        config: MediaConfig | None = None,
    ) -> None:
        if direction not in ("publish", "subscribe"):
            raise ValueError(f"direction must be publish or subscribe, not {direction!r}")
        self.id = "TP_" + secrets.token_urlsafe(9)
        self.router = router
        self.direction = direction
        self.participant_id = participant_id
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self.on_renegotiation_needed: Callable[[], None] = lambda: None
        self.closed = False
        self._on_closed = on_closed
        self._lock = asyncio.Lock()
        self._ice_restart_wanted = False
        self._ice_restart: asyncio.Task[bool] | None = None
        self._config = config or MediaConfig()
        # max-bundle: every m-section, including those added later, rides on one transport.
        self._pc = RTCPeerConnection(ice.rtc_configuration(self._config))
        self._new_tracks: list[MediaStreamTrack] = []
        # Simulcast (simulcast/): the last offer's simulcast m-sections by MID (publish);
        # one subscriber's layer choice (subscribe); events for the control plane.
        self._simulcast: dict[str, sdp_simulcast.SimulcastOffer] = {}
        self.layers = LayerAllocator()
        self.on_publisher_layers: Callable[[SimulcastProducer, list[str]], None] = (
            lambda producer, rids: None
        )
        self.on_layer_changed: Callable[[SimulcastConsumer, ProducerLayer | None], None] = (
            lambda consumer, layer: None
        )
        self._producer_transceivers: dict[str, RTCRtpTransceiver] = {}
        self._consumer_transceivers: dict[str, RTCRtpTransceiver] = {}
        self._pc.on("track", self._new_tracks.append)
        self._pc.on("connectionstatechange", self._on_connection_state)
        # In-call data (data/): the client's two channels on its publish connection carry its
        # messages in (DataProducers) and the room's out (DataConsumers).
        self.data = TransportData(router.data, participant_id, self._config.data)
        if direction == "publish":
            self.data.register_consumers()
            self._pc.on("datachannel", self.data.on_datachannel)

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    def _on_connection_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed") and not self.closed:
            asyncio.ensure_future(self._fail())

    async def _fail(self) -> None:
        if not self.closed:
            await self.close()
            self._on_closed(self)

    # publish side

    async def handle_offer(self, sdp: str) -> tuple[str, list[Producer]]:
        """Apply the client's offer; return the answer SDP and the Producers it created.

        Raises SdpError ``wrong_connection`` for an offer that asks to receive (it belongs on
        the subscribe connection), ``invalid_sdp`` when aiortc cannot parse or apply it.
        """
        self._require("publish")
        directions = sdp_checks.media_directions(sdp)
        if "recvonly" in directions:
            raise SdpError("wrong_connection", "the publish connection only receives media")
        if len(directions) > MAX_PUBLISHED_TRACKS:
            raise SdpError("invalid_sdp", f"at most {MAX_PUBLISHED_TRACKS} tracks per participant")
        sdp_checks.check_client_description(sdp, require_media="\nm=application " not in sdp)
        async with self._lock:
            self._new_tracks.clear()
            offer = aiortc_glue.spread_bundle_candidates(sdp)
            restart = aiortc_glue.is_ice_restart(self._pc, offer)  # new ufrag/pwd: RFC 8839
            if restart:
                await self._begin_ice_restart()
            try:
                await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            except Exception as exc:
                if restart:
                    await aiortc_glue.abandon_ice_restart(self._pc)
                raise SdpError("invalid_sdp", f"cannot apply offer: {_short(exc)}") from None
            if restart:
                self._finish_ice_restart()
            self._simulcast = self._published_layers(sdp_simulcast.parse_offer(offer))
            for transceiver in self._pc.getTransceivers():
                if transceiver.mid in self._simulcast:
                    aiortc_glue.accept_rid_extensions(
                        transceiver, self._simulcast[transceiver.mid].extmap
                    )
            created = [p for p in map(self._create_producer, self._new_tracks) if p is not None]
            try:
                await self._pc.setLocalDescription(await self._pc.createAnswer())
            except Exception as exc:
                # The offer is applied and cannot be taken back: this connection is unusable.
                asyncio.ensure_future(self._fail())
                raise SdpError("invalid_sdp", f"cannot answer offer: {_short(exc)}") from None
            for producer_id, transceiver in list(self._producer_transceivers.items()):
                if transceiver.currentDirection not in ("recvonly", "sendrecv"):
                    self._close_producer(producer_id)  # the client stopped sending it
            return sdp_simulcast.answer(self._local_sdp(), self._simulcast), created

    def _published_layers(
        self, offers: dict[str, sdp_simulcast.SimulcastOffer]
    ) -> dict[str, sdp_simulcast.SimulcastOffer]:
        """``offers`` as answerable: a re-offer cannot change the layers of a track already
        published (its Producer has them), so its m-section is answered with those of the
        Producer's RIDs still offered, and a track published as one stream gets no simulcast.
        Otherwise the answer would ask for layers whose packets are then all dropped."""
        out = dict(offers)
        for producer_id, transceiver in self._producer_transceivers.items():
            offer = out.get(transceiver.mid or "")
            if offer is None:
                continue
            producer = self.producers.get(producer_id)
            kept = (
                tuple(x.rid for x in producer.layers if x.rid in offer.rids)
                if isinstance(producer, SimulcastProducer)
                else ()
            )
            if kept:
                out[offer.mid] = dataclasses.replace(offer, rids=kept)
            else:
                del out[offer.mid]
        return out

    def _create_producer(self, track: MediaStreamTrack) -> Producer | None:
        transceiver = next(t for t in self._pc.getTransceivers() if t.receiver.track is track)
        codecs = aiortc_glue.negotiated_codecs(transceiver)
        media = [
            c
            for c in codecs
            if c.mimeType.lower() != f"{track.kind}/rtx" and c.payloadType is not None
        ]
        if not media:
            return None
        first = media[0]
        assert first.payloadType is not None
        parameters = {k: v for k, v in first.parameters.items() if v is not None}
        codec = Codec(
            first.mimeType, first.clockRate, first.channels, parameters, first.payloadType
        )
        rtx = {
            c.payloadType: int(str(c.parameters["apt"]))
            for c in codecs
            if c.mimeType.lower() == "video/rtx"
            and c.payloadType is not None
            and c.parameters.get("apt") is not None
        }
        producer_id = "TR_" + secrets.token_urlsafe(9)
        simulcast = self._simulcast.get(transceiver.mid or "")
        producer: Producer
        if simulcast is not None and track.kind == "video":
            producer = SimulcastProducer(
                producer_id,
                self.participant_id,
                transceiver.receiver,
                codec,
                rtx,
                simulcast.rids,
                self.router._on_producer_rtp,
                self.router.key_frame_interval_ms,
                self.router._on_producer_loss,
            )
            producer.on_active_layers = lambda p, rids: self.on_publisher_layers(p, rids)
        else:
            producer = Producer(
                producer_id,
                track.kind,
                self.participant_id,
                transceiver.receiver,
                codec,
                rtx,
                self.router._on_producer_rtp,
                self.router.key_frame_interval_ms,
                self.router._on_producer_loss,
            )
        self.router.add_producer(producer)
        self.producers[producer.id] = producer
        self._producer_transceivers[producer.id] = transceiver
        return producer

    def mid_of(self, producer: Producer) -> str | None:
        """The MID of the publish m-section ``producer`` arrives on."""
        transceiver = self._producer_transceivers.get(producer.id)
        return transceiver.mid if transceiver is not None else None

    def _close_producer(self, producer_id: str) -> None:
        self.producers.pop(producer_id, None)
        self._producer_transceivers.pop(producer_id, None)
        self.router.close_producer(producer_id)

    def close_producer(self, producer_id: str) -> None:
        """Stop forwarding one published track (its Consumers close, so subscribers see its
        m-section go ``inactive``). The client's m-section stays; whatever it still sends is
        dropped. Used when a participant loses the right to publish."""
        self._close_producer(producer_id)

    # subscribe side

    def consume(self, producer: Producer) -> Consumer:
        """Add a ``sendonly`` m-section that forwards ``producer``; it starts once the next
        offer is answered. Raises KeyError if the Producer is closed."""
        self._require("subscribe")
        if producer.closed:
            raise KeyError(producer.id)
        transceiver = self._pc.addTransceiver(
            aiortc_glue.HoldTrack(producer.kind, producer.id), direction="sendonly"
        )
        transceiver.setCodecPreferences(_capabilities_for(producer))
        consumer_id = "CO_" + secrets.token_urlsafe(9)
        holder: dict[str, Consumer] = {}
        sender = aiortc_glue.ForwardingSender(
            transceiver.sender,
            stream_id=producer.participant_id,
            on_started=lambda: holder["c"].on_started(),
            on_key_frame_request=lambda: holder["c"].on_key_frame_requested(),
            on_nack=lambda lost: holder["c"].on_nack(lost),
        )
        consumer: Consumer
        if isinstance(producer, SimulcastProducer):
            layered = SimulcastConsumer(consumer_id, producer, self.participant_id, sender)
            layered.on_layer_changed = lambda c, layer: self.on_layer_changed(c, layer)
            self.layers.add(layered)
            aiortc_glue.tap_remb(transceiver.sender, self.layers.on_remb)
            consumer = holder["c"] = layered
        else:
            consumer = holder["c"] = Consumer(consumer_id, producer, self.participant_id, sender)
        self.router.add_consumer(consumer)
        self.consumers[consumer_id] = consumer
        self._consumer_transceivers[consumer_id] = transceiver
        consumer.add_close_listener(self._on_consumer_closed)
        self.on_renegotiation_needed()
        return consumer

    def update_subscription(self, track_id: str, preference: Preference) -> Consumer:
        """Set the subscriber's ``preference`` for the track ``track_id`` (its Producer's id):
        a simulcast track re-chooses its layer at once; a single-layer track has no layer to
        choose, so only ``paused`` applies to it. Raises KeyError when this connection has no
        such track."""
        self._require("subscribe")
        found = [c for c in self.consumers.values() if c.producer.id == track_id]
        if not found:
            raise KeyError(track_id)
        consumer = found[-1]
        if not isinstance(consumer, SimulcastConsumer):
            consumer.paused = preference.paused
            return consumer
        consumer.preference = preference
        consumer.raised_ms = monotonic_ms()
        self.layers.allocate()
        return consumer

    def _on_consumer_closed(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        transceiver = self._consumer_transceivers.pop(consumer.id, None)
        if transceiver is None or self.closed:
            return
        transceiver.direction = "inactive"
        asyncio.ensure_future(transceiver.sender.stop())
        self.on_renegotiation_needed()

    async def create_offer(self) -> tuple[str, dict[str, Consumer]]:
        """Create and apply the next subscribe offer; return its SDP and MID → Consumer."""
        self._require("subscribe")
        async with self._lock:
            if self._ice_restart_wanted:
                self._ice_restart_wanted = False
                try:
                    await self._begin_ice_restart()
                except SdpError as exc:  # it failed meanwhile: on_closed follows
                    log.info("transport %s: no ICE restart: %s", self.id, exc.message)
                self._require("subscribe")  # closed while the restart gathered
            offer = await self._pc.createOffer()
            await self._pc.setLocalDescription(offer)
            mids = {
                t.mid: self.consumers[cid]
                for cid, t in self._consumer_transceivers.items()
                if t.mid is not None and cid in self.consumers
            }
            return self._local_sdp(), mids

    async def handle_answer(self, sdp: str) -> None:
        """Apply the client's answer to our last offer.

        Raises SdpError ``no_pending_offer`` when no offer awaits an answer, ``wrong_connection``
        when the SDP offers to send (a publish offer sent here), ``invalid_sdp`` otherwise.
        """
        self._require("subscribe")
        if any(d in ("sendonly", "sendrecv") for d in sdp_checks.media_directions(sdp)):
            raise SdpError("wrong_connection", "the subscribe connection only sends media")
        sdp_checks.check_client_description(sdp, max_sections=None, require_media=False)
        async with self._lock:
            if self._pc.signalingState != "have-local-offer":
                raise SdpError("no_pending_offer", "no subscribe offer awaits an answer")
            try:
                answer = aiortc_glue.spread_bundle_candidates(sdp)
                await self._pc.setRemoteDescription(
                    RTCSessionDescription(sdp=answer, type="answer")
                )
            except Exception as exc:
                raise SdpError("invalid_sdp", f"cannot apply answer: {_short(exc)}") from None
            if aiortc_glue.ice_restart_pending(self._pc):
                self._finish_ice_restart()

    # ICE restart (RFC 8445 §9): new ICE credentials and candidates under the same DTLS
    # association and SRTP sessions, so Producers and Consumers carry on
    # (aiortc_glue/ice_restart.py).

    def restart_ice(self) -> None:
        """Restart ICE with the next subscribe offer (the client asked: its network changed).
        Media keeps flowing on the old candidate pair until a new one is nominated.
        Raises SdpError ``not_connected`` before the connection is negotiated and connected."""
        self._require("subscribe")
        if self._pc.remoteDescription is None or self.connection_state != "connected":
            raise SdpError("not_connected", "the subscribe connection is not connected yet")
        self._ice_restart_wanted = True
        self.on_renegotiation_needed()

    @property
    def ice_restarts(self) -> int:
        """ICE restarts completed on this connection (a new candidate pair carries media)."""
        return aiortc_glue.ice_restarts(self._pc)

    async def _begin_ice_restart(self) -> None:
        try:
            await aiortc_glue.begin_ice_restart(self._pc)
        except aiortc_glue.IceRestartError as exc:
            raise SdpError("not_connected", f"cannot restart ICE: {exc}") from None

    def _finish_ice_restart(self) -> None:
        def done(task: asyncio.Task[bool]) -> None:
            if not task.cancelled():
                outcome = "done" if task.result() else "failed"
                log.info("transport %s: ICE restart %s", self.id, outcome)

        self._ice_restart = aiortc_glue.finish_ice_restart(self._pc)
        self._ice_restart.add_done_callback(done)

    # both

    def _local_sdp(self) -> str:
        """Our current local description, host candidates announced as configured."""
        return ice.announce_address(
            self._pc.localDescription.sdp, self._config.ice_announced_address
        )

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Add a trickled remote candidate (``{"candidate", "sdpMid", "sdpMLineIndex"}``, as
        the browser's RTCIceCandidateInit) or None for end of candidates (RFC 8838 §4).
        Raises SdpError ``invalid_candidate``."""
        if candidate is None:
            await self._pc.addIceCandidate(None)
            return
        line = str(candidate.get("candidate", ""))
        if not line:
            return  # an empty candidate string is the browser's end-of-candidates marker
        try:
            parsed = candidate_from_sdp(
                line.split(":", 1)[1] if line.startswith("candidate:") else line
            )
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            await self._pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SdpError("invalid_candidate", f"cannot parse candidate: {_short(exc)}") from None

    def _require(self, direction: str) -> None:
        if self.closed:
            raise SdpError("invalid_sdp", "the connection is closed")
        if self.direction != direction:
            raise SdpError("wrong_connection", f"this is the {self.direction} connection")

    async def close(self) -> None:
        """Close the peer connection, its Producers and Consumers."""
        if self.closed:
            return
        self.closed = True
        self.data.close()
        self.layers.close()
        for producer_id in list(self.producers):
            self._close_producer(producer_id)
        for consumer in list(self.consumers.values()):
            consumer.close()
        await self._pc.close()


def _capabilities_for(producer: Producer) -> list[RTCRtpCodecCapability]:
    """The local codec capabilities that carry ``producer``'s codec unchanged, plus RTX."""
    codec = producer.codec
    out = []
    for cap in RTCRtpSender.getCapabilities(producer.kind).codecs:
        if cap.mimeType.lower() != codec.mime_type.lower() or cap.clockRate != codec.clock_rate:
            continue
        if codec.mime_type.lower() == "video/h264":
            same = all(
                str(cap.parameters.get(k)) == str(codec.parameters.get(k))
                for k in ("packetization-mode", "profile-level-id")
            )
            if not same:
                continue
        out.append(cap)
        break
    if out and producer.kind == "video":
        out += [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == "video/rtx"
        ]
    return out


def _short(exc: Exception) -> str:
    """An exception as one short line for an error reply (aiortc's messages can be long)."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
