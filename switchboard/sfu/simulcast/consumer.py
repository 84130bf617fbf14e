"""SimulcastConsumer: one layer of a simulcast Producer at a time, to one subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc.rtp import RtpPacket

from ..aiortc_glue import ForwardingSender
from ..clock import monotonic_ms
from ..codecs import vp8
from ..consumer import Consumer
from .layer import ProducerLayer
from .producer import SimulcastProducer

TS_MOD = 1 << 32
LAYER_BITS = 2  # the layer index rides in the low bits of what SentSeqMap keeps (MAX_LAYERS 4)


def ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in -2^31..2^31-1 (wraparound-safe)."""
    return (a - b + (1 << 31)) % TS_MOD - (1 << 31)


@dataclass
class Preference:
    """What a subscriber asked for one track (``update_subscription``): the largest size
    (pixels) and frame rate it wants, or ``paused``. None: no limit."""

    max_width: int | None = None
    max_height: int | None = None
    max_fps: float | None = None
    paused: bool = False


def estimated_size(layers: list[ProducerLayer], index: int) -> tuple[int | None, int | None]:
    """Layer ``index``'s (width, height): read from its key frames, else derived from the
    nearest layer that has them (browser layers halve in size per step down), else unknown."""
    layer = layers[index]
    if layer.width is not None and layer.height is not None:
        return layer.width, layer.height
    known = [x for x in layers if x.width is not None and x.height is not None]
    if not known:
        return None, None
    ref = min(known, key=lambda x: abs(x.index - index))
    assert ref.width is not None and ref.height is not None
    scale = 2.0 ** (index - ref.index)
    return round(ref.width * scale), round(ref.height * scale)


def preferred_layer(
    layers: list[ProducerLayer], preference: Preference, now_ms: float, active_only: bool
) -> int | None:
    """The highest layer index within ``preference`` (the lowest if none is; None when
    paused), among the layers sending now when ``active_only`` (None if none sends).

    Size limits are hard. The frame rate is a preference among the layers within them: a
    layer sending more than ``max_fps`` (with 20 % slack for measurement) is passed over for
    one that does not, if there is one (layers' rates are measured; temporal layers are not
    selected, so no layer's rate is reduced).
    """
    if preference.paused:
        return None
    candidates = [x for x in layers if x.active(now_ms)] if active_only else list(layers)
    if not candidates:
        return None
    fitting = []
    for layer in candidates:
        width, height = estimated_size(layers, layer.index)
        if preference.max_width is not None and width is not None and width > preference.max_width:
            continue
        if (
            preference.max_height is not None
            and height is not None
            and height > preference.max_height
        ):
            continue
        fitting.append(layer)
    if not fitting:
        return candidates[0].index
    if preference.max_fps is not None:
        slow = [x for x in fitting if x.meter.fps(now_ms) <= preference.max_fps * 1.2]
        fitting = slow or fitting
    return fitting[-1].index


LayerChanged = Callable[["SimulcastConsumer", ProducerLayer | None], None]


class SimulcastConsumer(Consumer):
    """Forwards one layer of a ``SimulcastProducer`` to one subscriber (mediasoup's
    SimulcastConsumer).

    ``target_layer`` (set by the subscriber's ``LayerAllocator``) is the layer wanted; the
    Consumer keeps forwarding ``current_layer`` until a key frame of the target arrives (it
    asks for one, PLI on the target's SSRC), then switches: sequence numbers continue
    (``SeqRewriter.sync``), and so do RTP timestamps: the new layer's timestamps are offset to
    the old layer's timeline through both layers' Sender Report (NTP, RTP) mappings (RFC 3550
    §6.4.1), or, before both have a Sender Report, by the time elapsed since the last packet
    sent (as mediasoup); VP8 PictureID and TL0PICIDX continue too (RFC 7741 §4.2, a copy of
    the payload with the descriptor rewritten, the only payload edit on the forwarding path).
    ``target_layer`` None pauses forwarding. Our Sender Reports carry the
    current layer's mapping shifted by its offset. NACKs are answered from the cache of the
    layer the NACKed packet came from. ``on_layer_changed(self, layer)`` runs after each switch
    (None: paused).
    """

    _SENT_STEP = 1 << LAYER_BITS  # ``_sent`` holds (ext seq << LAYER_BITS) | layer index

    __slots__ = (
        "preference",
        "raised_ms",
        "target_layer",
        "current_layer",
        "on_layer_changed",
        "switches",
        "_offsets",
        "_pid_offsets",
        "_tl0_offsets",
        "_last_pid",
        "_last_tl0",
        "_vp8",
        "_last_ts",
        "_last_ms",
        "_paused_sent",
    )

    producer: SimulcastProducer

    def __init__(
        self,
        consumer_id: str,
        producer: SimulcastProducer,
        subscriber_id: str,
        sender: ForwardingSender,
    ) -> None:
        super().__init__(consumer_id, producer, subscriber_id, sender)
        self.preference = Preference()
        self.raised_ms = -1e12  # when the subscriber last changed its preference
        self.target_layer: int | None = len(producer.layers) - 1
        self.current_layer: int | None = None
        self.on_layer_changed: LayerChanged = lambda consumer, layer: None
        self.switches = 0
        self._offsets = [0] * len(producer.layers)  # out ts = in ts + offset, per layer
        # VP8 PictureID / TL0PICIDX: out = in + offset, per layer (RFC 7741 §4.2)
        self._pid_offsets = [0] * len(producer.layers)
        self._tl0_offsets = [0] * len(producer.layers)
        self._last_pid: tuple[int, int] | None = None  # (last PictureID sent, its bits)
        self._last_tl0: int | None = None
        self._vp8 = producer.codec.mime_type.lower() == "video/vp8"
        self._last_ts: int | None = None  # last RTP timestamp sent (output timeline)
        self._last_ms = 0.0
        self._paused_sent = False

    def set_target(self, layer: int | None) -> None:
        """Forward layer index ``layer`` from its next key frame on (None: pause now)."""
        if layer == self.target_layer:
            return
        self.target_layer = layer
        if layer is None:
            self.current_layer = None
            self._needs_key_frame = True
            if not self._paused_sent:
                self._paused_sent = True
                self.on_layer_changed(self, None)
        elif self._sender.started:
            self.producer.request_key_frame(layer)

    def on_started(self) -> None:
        if self.target_layer is not None:
            self.producer.request_key_frame(self.target_layer)

    def on_key_frame_requested(self) -> None:
        layer = self.target_layer if self.current_layer is None else self.current_layer
        if layer is not None:
            self.producer.request_key_frame(layer)

    def on_producer_loss(self) -> None:
        if self.closed or self.producer.lost_layer != self.current_layer:
            return
        if not self._needs_key_frame:
            self._needs_key_frame = True
            self.key_frame_waits += 1
            self.current_layer = None  # wait for a key frame of the target
            if self.target_layer is not None:
                self.producer.request_key_frame(self.target_layer)

    def forward_rtp(
        self, packet: RtpPacket, ext_seq: int, key_frame: bool
    ) -> Awaitable[None] | None:
        """Layer switching needs the whole of ``send_rtp``: always an awaitable."""
        return self.send_rtp(packet, ext_seq, key_frame)

    async def send_rtp(self, packet: RtpPacket, ext_seq: int, key_frame: bool) -> None:
        """Forward ``packet`` (of the Producer layer its SSRC names) if it belongs to the
        layer sent now, switching to the target layer on its key frame."""
        if self.closed or not self._sender.started:
            return
        layer = self.producer.layer_of(packet.ssrc)
        if layer is None:
            return
        if self.producer.muted:
            self._paused_by_mute = True
            return
        if self._paused_by_mute:
            self._paused_by_mute = False
            self._needs_key_frame = True
            self.current_layer = None
        index = layer.index
        if index == self.target_layer and (self._needs_key_frame or index != self.current_layer):
            if not key_frame:
                self.producer.request_key_frame(index)
                return
            self._switch(layer, packet.timestamp, ext_seq)
            if self._vp8:
                self._picture_id_offsets(layer, packet.payload)
        elif index != self.current_layer or self._needs_key_frame:
            return
        if not packet.payload:
            self._seq.drop(ext_seq)
            return
        seq = self._seq.rewrite(ext_seq)
        if seq is None:
            return
        self._sent.add(seq, (ext_seq << LAYER_BITS) | index)
        if self._vp8:
            packet = self._rewrite_picture_ids(packet, index, True)
        ts = (packet.timestamp + self._offsets[index]) % TS_MOD
        if self._last_ts is None or ts_diff(ts, self._last_ts) > 0:
            self._last_ts, self._last_ms = ts, monotonic_ms()
        mapping = layer.sr_mapping
        self._sender.sr_mapping = (
            None if mapping is None else (mapping[0], (mapping[1] + self._offsets[index]) % TS_MOD)
        )
        try:
            await self._sender.send(packet, seq, ts, None)
        except ConnectionError:  # (what libsrtp refuses, ForwardingSender drops and counts)
            self.send_errors += 1
            return
        self.packets_sent += 1

    def _rewrite_picture_ids(self, packet: RtpPacket, index: int, track: bool) -> RtpPacket:
        """``packet`` with its VP8 PictureID and TL0PICIDX shifted by layer ``index``'s
        offsets (a copy when they change; the Producer's packet is shared); ``track``: note
        the last ones sent."""
        picture_id, bits, tl0 = vp8.picture_ids(packet.payload)
        if picture_id is None and tl0 is None:
            return packet
        if picture_id is not None:
            picture_id = (picture_id + self._pid_offsets[index]) % (1 << bits)
            if track:
                self._last_pid = (picture_id, bits)
        if tl0 is not None:
            tl0 = (tl0 + self._tl0_offsets[index]) % 256
            if track:
                self._last_tl0 = tl0
        if not self._pid_offsets[index] and not self._tl0_offsets[index]:
            return packet
        out = RtpPacket(
            payload_type=packet.payload_type,
            marker=packet.marker,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            payload=vp8.with_picture_ids(packet.payload, picture_id, tl0),
        )
        out.extensions = packet.extensions
        return out

    def _picture_id_offsets(self, layer: ProducerLayer, payload: bytes) -> None:
        """Make the key frame ``payload`` of ``layer`` follow the last PictureID and
        TL0PICIDX sent (a receiver may drop frames that look older than those it decoded)."""
        picture_id, bits, tl0 = vp8.picture_ids(payload)
        if picture_id is not None and self._last_pid is not None:
            last, _ = self._last_pid
            self._pid_offsets[layer.index] = (last + 1 - picture_id) % (1 << bits)
        if tl0 is not None and self._last_tl0 is not None:
            self._tl0_offsets[layer.index] = (self._last_tl0 + 1 - tl0) % 256

    def _switch(self, layer: ProducerLayer, ts_in: int, ext_seq: int) -> None:
        """Start forwarding ``layer`` with the key frame ``ts_in``/``ext_seq``."""
        clock_rate = self.producer.codec.clock_rate
        old = self.current_layer
        if self._last_ts is not None:
            now_ms = monotonic_ms()
            out: int | None = None
            prev = self.producer.layers[old] if old is not None else None
            if prev is not None and prev.sr_mapping is not None and layer.sr_mapping is not None:
                ntp_old, rtp_old = prev.sr_mapping
                ntp_new, rtp_new = layer.sr_mapping
                # ts_in on the new layer's clock -> the same instant on the old layer's clock
                seconds = (ntp_new - ntp_old) / (1 << 32)
                equivalent = rtp_old + ts_diff(ts_in, rtp_new) + round(seconds * clock_rate)
                out = (equivalent + self._offsets[prev.index]) % TS_MOD
                # an SR mapping older than the gap since the last packet is not trusted
                elapsed = (now_ms - self._last_ms) * clock_rate / 1000
                if abs(ts_diff(out, self._last_ts) - elapsed) > clock_rate:
                    out = None
            if out is None:
                out = (self._last_ts + round((now_ms - self._last_ms) * clock_rate / 1000)) % TS_MOD
            if ts_diff(out, self._last_ts) <= 0:
                out = (self._last_ts + 1) % TS_MOD  # a new frame must not go back in time
            self._offsets[layer.index] = (out - ts_in) % TS_MOD
        self._seq.sync(ext_seq)  # the key frame follows the last packet sent, no gap
        self._needs_key_frame = False
        self._paused_sent = False
        self.current_layer = layer.index
        if old != layer.index:
            self.switches += 1
            self.on_layer_changed(self, layer)

    def on_nack(self, lost: list[int]) -> None:
        """The subscriber NACKed ``lost`` (RFC 4585 §6.2.1): resend from the layer caches."""
        if self.closed:
            return
        upstream: dict[int, list[int]] = {}
        mask = (1 << LAYER_BITS) - 1
        now_ms = monotonic_ms()
        for seq in self._nacked(lost):
            key = self._producer_seq(seq)
            if key is None:
                continue
            ext_in, index = key >> LAYER_BITS, key & mask
            packet = self.producer.layers[index].cache.get(ext_in)
            if packet is None:
                upstream.setdefault(index, []).append(ext_in)
                continue
            self._sent.add(seq, key)
            if not self._may_resend(seq, now_ms):
                continue
            self.packets_resent += 1
            if self._vp8:
                packet = self._rewrite_picture_ids(packet, index, False)
            ts = (packet.timestamp + self._offsets[index]) % TS_MOD
            asyncio.ensure_future(self._resend_at(packet, seq, ts))
        for index, ext_seqs in upstream.items():
            self.producer.request_retransmission(ext_seqs, index)

    async def _resend_at(self, packet: RtpPacket, seq: int, ts: int) -> None:
        try:
            await self._sender.resend(packet, seq, ts)
        except ConnectionError:
            self.send_errors += 1

    def close(self) -> None:
        if not self.closed:
            self.producer.set_wanted(self.id, None)
        super().close()
