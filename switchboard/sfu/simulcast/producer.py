"""SimulcastProducer: one published track sent as several encodings (RFC 8853)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket, RtpPacket, unwrap_rtx

from .. import aiortc_glue
from ..clock import monotonic_ms
from ..codecs import vp8
from ..producer import Codec, Producer, ProducerLossHandler, ProducerRtpHandler
from ..rtp.seq import SEQ_MOD
from .layer import ProducerLayer

DYNACAST_OFF_DELAY_MS = 2000  # a layer no Consumer needs is stopped after this long
REMB_CEILING_BPS = 6_000_000  # the most our REMB lets a simulcast publisher send
REMB_START_BPS = 1_500_000  # what our first REMB allows: three layers start at once

ActiveLayersHandler = Callable[["SimulcastProducer", list[str]], None]


class SimulcastProducer(Producer):
    """A Producer whose publisher sends one SSRC per layer, tagged with its RID (RFC 8852).

    ``layers`` are ordered lowest quality first (the offer's ``a=simulcast`` order). Each
    packet's SSRC is mapped to its layer from the ``rtp-stream-id`` extension (RTX SSRCs from
    ``repaired-rtp-stream-id``) the first time it is seen; packets of an SSRC no tag placed are
    dropped and counted. Per layer: extended sequence numbers, cache, NACKs to the publisher,
    Sender Report mapping, key-frame pacing (one PLI per ``key_frame_interval_ms`` per layer,
    on that layer's SSRC), bitrate and resolution (``ProducerLayer``). The Router fans every
    layer's packets out to the ``SimulcastConsumer``s, which pick theirs by SSRC
    (``layer_of``). ``lost_layer`` is the index of the layer whose loss ``on_loss`` reports.

    Dynacast: each Consumer says the highest layer it may want (``set_wanted``); layers above
    every Consumer's want are switched off at the publisher through ``on_active_layers(self,
    rids)`` (enabling at once, disabling after ``DYNACAST_OFF_DELAY_MS``); with no Consumer
    every layer is on, as the publisher starts.
    """

    __slots__ = (
        "layers",
        "lost_layer",
        "active_rids",
        "on_active_layers",
        "_by_ssrc",
        "_by_rtx_ssrc",
        "_by_rid",
        "_wanted",
        "_dynacast_timer",
    )

    def __init__(
        self,
        producer_id: str,
        participant_id: str,
        receiver: RTCRtpReceiver,
        codec: Codec,
        rtx_payload_types: dict[int, int],
        rids: tuple[str, ...],
        on_rtp: ProducerRtpHandler,
        key_frame_interval_ms: int,
        on_loss: ProducerLossHandler | None = None,
    ) -> None:
        super().__init__(
            producer_id,
            "video",
            participant_id,
            receiver,
            codec,
            rtx_payload_types,
            on_rtp,
            key_frame_interval_ms,
            on_loss,
        )
        self.cache = None  # per layer instead
        self.layers = [ProducerLayer(i, rid) for i, rid in enumerate(rids)]
        self.lost_layer = 0
        self.active_rids = list(rids)
        self.on_active_layers: ActiveLayersHandler = lambda producer, rids: None
        self._by_ssrc: dict[int, ProducerLayer] = {}
        self._by_rtx_ssrc: dict[int, ProducerLayer] = {}
        self._by_rid = {layer.rid: layer for layer in self.layers}
        self._wanted: dict[str, int] = {}  # consumer id -> highest layer index it may want
        self._dynacast_timer: asyncio.TimerHandle | None = None
        aiortc_glue.skip_jitter_buffer(receiver)
        aiortc_glue.route_by_mid(receiver, self._admit)
        aiortc_glue.unclamp_remb(receiver, REMB_CEILING_BPS, REMB_START_BPS)

    def layer_of(self, ssrc: int) -> ProducerLayer | None:
        """The layer whose media SSRC is ``ssrc``."""
        return self._by_ssrc.get(ssrc)

    def _on_rtcp(self, packet: object) -> None:
        if isinstance(packet, RtcpSrPacket):
            layer = self._by_ssrc.get(packet.ssrc)
            if layer is not None:
                info = packet.sender_info
                layer.sr_mapping = (info.ntp_timestamp, info.rtp_timestamp)

    def _admit(self, packet: RtpPacket) -> bool:
        """Whether a packet of an SSRC the transport has not seen may reach the receiver: only
        one its RID tags place (a made-up SSRC is dropped and counted before aiortc keeps
        state for it)."""
        if not self.closed and self._learn(packet)[0] is not None:
            return True
        self.packets_received += 1
        self.packets_dropped += 1
        return False

    def _learn(self, packet: RtpPacket) -> tuple[ProducerLayer | None, bool]:
        """Place a packet of a new SSRC from its RID tags: (layer, is RTX)."""
        ext = packet.extensions
        rtx = packet.payload_type in self._rtx_apt
        rid = ext.repaired_rtp_stream_id if rtx else None
        rid = rid or ext.rtp_stream_id
        layer = self._by_rid.get(rid) if rid is not None else None
        if layer is None:
            return None, False
        table = self._by_rtx_ssrc if rtx else self._by_ssrc
        old = layer.rtx_ssrc if rtx else layer.ssrc
        if old is not None and old != packet.ssrc:
            table.pop(old, None)  # the publisher changed the layer's SSRC
            aiortc_glue.forget_receiver_ssrc(self._receiver, old)  # libsrtp too
        table[packet.ssrc] = layer
        if rtx:
            layer.rtx_ssrc = packet.ssrc
        else:
            layer.ssrc = packet.ssrc
        return layer, rtx

    async def _receive(self, packet: RtpPacket) -> None:
        if self.closed:
            return
        self.packets_received += 1
        ssrc = packet.ssrc
        layer = self._by_ssrc.get(ssrc)
        rtx = False
        if layer is None:
            layer = self._by_rtx_ssrc.get(ssrc)
            rtx = layer is not None
            if layer is None:
                layer, rtx = self._learn(packet)
                if layer is None:
                    self.packets_dropped += 1
                    return
        pt = packet.payload_type
        if rtx:
            if self._rtx_apt.get(pt) != self.codec.payload_type or layer.ssrc is None:
                self.packets_dropped += 1
                return
            if len(packet.payload) <= 2:  # RTX padding probe
                return
            packet = unwrap_rtx(packet, payload_type=pt, ssrc=layer.ssrc)
            packet.payload_type = self.codec.payload_type
        elif pt != self.codec.payload_type:
            self.packets_dropped += 1
            return
        now_ms = monotonic_ms()
        ext_seq = layer.unwrapper.unwrap(packet.sequence_number)
        key_frame = self._is_key_frame is not None and self._is_key_frame(packet.payload)
        if key_frame:
            layer.key_frames += 1
            size = vp8.key_frame_size(packet.payload)
            if size is not None:
                layer.width, layer.height = size
        layer.packets += 1
        layer.last_packet_ms = now_ms
        layer.meter.add(now_ms, len(packet.payload) + 12, bool(packet.marker))
        layer.cache.add(ext_seq, packet, now_ms)
        verdict = layer.stream.on_packet(ext_seq, now_ms)
        if verdict.nack:
            self._send_layer_nack(layer, verdict.nack)
        if verdict.lost and self._on_loss is not None:
            self.lost_layer = layer.index
            self._on_loss(self)
        await self._on_rtp(self, packet, ext_seq, key_frame)

    def request_retransmission(self, ext_seqs: list[int], layer: int = 0) -> None:
        """NACK to the publisher those of ``ext_seqs`` (of layer index ``layer``) still missing
        here and not NACKed just now (RFC 4585 §6.2.1)."""
        if self.closed or not ext_seqs:
            return
        found = self.layers[layer]
        self._send_layer_nack(found, found.stream.nack_now(ext_seqs, monotonic_ms()))

    def _send_layer_nack(self, layer: ProducerLayer, ext_seqs: list[int]) -> None:
        if ext_seqs and layer.ssrc is not None:
            lost = [seq % SEQ_MOD for seq in ext_seqs]
            asyncio.ensure_future(aiortc_glue.send_nack(self._receiver, layer.ssrc, lost))

    def request_key_frame(self, layer: int | None = None) -> None:
        """Ask for a key frame of layer index ``layer`` (None: every layer), at most one PLI
        per layer per key-frame interval; a request inside it is sent when it ends."""
        if self.closed:
            return
        for found in self.layers if layer is None else [self.layers[layer]]:
            if found.kf_timer is not None:
                continue
            wait_ms = found.kf_last_ms + self._kf_interval_ms - monotonic_ms()
            if wait_ms <= 0:
                self._send_layer_pli(found)
            else:
                loop = asyncio.get_running_loop()
                found.kf_timer = loop.call_later(wait_ms / 1000.0, self._send_layer_pli, found)

    def _send_layer_pli(self, layer: ProducerLayer) -> None:
        layer.kf_timer = None
        if self.closed or layer.ssrc is None:
            return  # nothing received yet: its first packets bring a key frame
        layer.kf_last_ms = monotonic_ms()
        asyncio.ensure_future(aiortc_glue.send_pli(self._receiver, layer.ssrc))

    # dynacast

    def set_wanted(self, consumer_id: str, layer: int | None) -> None:
        """Consumer ``consumer_id`` may want layers up to index ``layer`` (-1: none, paused);
        None forgets it (it closed)."""
        if layer is None:
            self._wanted.pop(consumer_id, None)
        elif self._wanted.get(consumer_id) == layer:
            return
        else:
            self._wanted[consumer_id] = layer
        self._update_active_layers()

    def _update_active_layers(self) -> None:
        if self.closed:
            return
        top = max(self._wanted.values()) if self._wanted else len(self.layers) - 1
        rids = [layer.rid for layer in self.layers[: max(top, 0) + 1]]
        if rids == self.active_rids:
            self._cancel_dynacast_timer()
        elif len(rids) > len(self.active_rids):
            self._cancel_dynacast_timer()
            self._set_active(rids)
        elif self._dynacast_timer is None:
            loop = asyncio.get_running_loop()
            self._dynacast_timer = loop.call_later(
                DYNACAST_OFF_DELAY_MS / 1000.0, self._dynacast_off
            )

    def _dynacast_off(self) -> None:
        self._dynacast_timer = None
        top = max(self._wanted.values()) if self._wanted else len(self.layers) - 1
        rids = [layer.rid for layer in self.layers[: max(top, 0) + 1]]
        if rids != self.active_rids and not self.closed:
            self._set_active(rids)

    def _set_active(self, rids: list[str]) -> None:
        self.active_rids = rids
        self.on_active_layers(self, rids)

    def _cancel_dynacast_timer(self) -> None:
        if self._dynacast_timer is not None:
            self._dynacast_timer.cancel()
            self._dynacast_timer = None

    def close(self) -> None:
        super().close()
        self._cancel_dynacast_timer()
        for layer in self.layers:
            if layer.kf_timer is not None:
                layer.kf_timer.cancel()
                layer.kf_timer = None
