"""Producer: one incoming track of one publisher, normalised for its Consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket, RtpPacket, unwrap_rtx

from . import aiortc_glue
from .clock import monotonic_ms
from .codecs import h264, vp8
from .rtp.seq import SEQ_MOD, SeqUnwrapper
from .streams.recv import RtpStreamRecv
from .streams.rtx_buffer import RtpPacketCache

KEY_FRAME_DETECTORS: dict[str, Callable[[bytes], bool]] = {
    "video/vp8": vp8.is_key_frame,
    "video/h264": h264.is_key_frame,
}


@dataclass(frozen=True)
class Codec:
    """The codec a Producer's media stream uses, as negotiated with its publisher.

    ``clock_rate`` is the RTP clock rate in Hz; ``parameters`` the SDP fmtp parameters.
    """

    mime_type: str
    clock_rate: int
    channels: int | None
    parameters: dict[str, str | int]
    payload_type: int


ProducerRtpHandler = Callable[["Producer", RtpPacket, int, bool], Awaitable[None]]
ProducerLossHandler = Callable[["Producer"], None]


class Producer:
    """One publisher's track (one SSRC, with its RTX SSRC) entering a Router.

    Normalises ingress: RTX packets (RFC 4588 §4) are unwrapped to the original sequence
    number, RTX padding probes are dropped, sequence numbers are extended once
    (``SeqUnwrapper``) and key frames recognised once, then the Router fans the packet out.
    Packets of payload types other than the negotiated media codec and its RTX are dropped
    and counted, as are packets of any SSRC but the current media and RTX SSRCs
    (``aiortc_glue.SsrcLatch``: a new one replaces the current one only after it has been
    silent for 1 s), before aiortc or libsrtp keep state for it (``guard_transport``): a
    publisher's made-up SSRCs leave nothing behind and never disturb its real stream.
    Key-frame requests from Consumers are merged: at most one PLI per
    ``key_frame_interval_ms`` reaches the publisher; a request inside the interval is sent
    when it ends (RFC 4585 §3.4 leaves pacing to the implementation).

    Loss recovery (video): every media packet is kept in ``cache`` (``RtpPacketCache``) for
    Consumers to answer their subscribers' NACKs; gaps on the publish side are NACKed to the
    publisher by ``stream`` (``RtpStreamRecv``, in place of aiortc's one-shot NACKs) and a
    packet given up calls ``on_loss`` (the Router tells the Consumers to wait for a key frame).
    ``sr_mapping`` is the (NTP, RTP timestamp) pair of the publisher's last Sender Report
    (RFC 3550 §6.4.1), the clock every Consumer's own Sender Reports are derived from.
    """

    __slots__ = (
        "id",
        "kind",
        "participant_id",
        "codec",
        "closed",
        "muted",
        "packets_received",
        "packets_dropped",
        "_receiver",
        "_rtx_apt",
        "_media",
        "_rtx",
        "_unwrapper",
        "_seq_base",
        "_ext_max",
        "_is_key_frame",
        "_on_rtp",
        "_kf_interval_ms",
        "_kf_last_ms",
        "_kf_timer",
        "cache",
        "stream",
        "sr_mapping",
        "_on_loss",
    )

    def __init__(
        self,
        producer_id: str,
        kind: str,
        participant_id: str,
        receiver: RTCRtpReceiver,
        codec: Codec,
        rtx_payload_types: dict[int, int],
        on_rtp: ProducerRtpHandler,
        key_frame_interval_ms: int,
        on_loss: ProducerLossHandler | None = None,
    ) -> None:
        self.id = producer_id
        self.kind = kind
        self.participant_id = participant_id
        self.codec = codec
        self.closed = False
        self.muted = False
        self.packets_received = 0
        self.packets_dropped = 0
        self._receiver = receiver
        self._rtx_apt = rtx_payload_types  # RTX payload type -> media payload type
        self._media = aiortc_glue.SsrcLatch()  # the media SSRC: one at a time
        self._rtx = aiortc_glue.SsrcLatch()  # its RTX SSRC
        self._unwrapper = SeqUnwrapper()  # of the current media SSRC
        self._seq_base = 0  # added to its extended numbers: one sequence across SSRC changes
        self._ext_max = -1  # the highest extended number so far
        self._is_key_frame = KEY_FRAME_DETECTORS.get(codec.mime_type.lower())
        self._on_rtp = on_rtp
        self._kf_interval_ms = key_frame_interval_ms
        self._kf_last_ms = -1e12
        self._kf_timer: asyncio.TimerHandle | None = None
        self.cache = RtpPacketCache() if kind == "video" else None
        self.stream = RtpStreamRecv()
        self.sr_mapping: tuple[int, int] | None = None
        self._on_loss = on_loss
        aiortc_glue.ReceiveTap(receiver, self._receive, decode=False)
        aiortc_glue.tap_rtcp(receiver, self._on_rtcp)
        aiortc_glue.guard_transport(receiver, self._admit)
        if kind == "video":
            aiortc_glue.disable_nack_generator(receiver)

    def _on_rtcp(self, packet: object) -> None:
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self._media.ssrc:
            info = packet.sender_info
            self.sr_mapping = (info.ntp_timestamp, info.rtp_timestamp)

    def _admit(self, packet: RtpPacket) -> bool:
        """Whether a packet of an SSRC its transport has not seen may reach the receiver (so
        that aiortc keeps state for the SSRC): only one this Producer takes (``_take``)."""
        if not self.closed and self._take(packet, monotonic_ms()):
            return True
        self.packets_received += 1
        self.packets_dropped += 1
        return False

    def _take(self, packet: RtpPacket, now_ms: float) -> bool:
        """Whether ``packet`` is on the current media or RTX SSRC, or may replace it
        (``SsrcLatch``): anything else is a made-up SSRC. A replaced SSRC is forgotten (aiortc,
        libsrtp); a new media SSRC continues the extended sequence numbers and makes the
        Consumers wait for a key frame (its packets are another encoder's)."""
        ssrc, pt = packet.ssrc, packet.payload_type
        if pt == self.codec.payload_type:
            media = self._media
            if not media.offer(ssrc, now_ms):
                return False
            old = media.replaced
            if old is not None:
                self._unwrapper = SeqUnwrapper()
                self._seq_base = self._ext_max + 1 - (packet.sequence_number + SEQ_MOD)
                aiortc_glue.forget_receiver_ssrc(self._receiver, old)
                old_rtx = self._rtx.reset()
                if old_rtx is not None:
                    aiortc_glue.forget_receiver_ssrc(self._receiver, old_rtx)
                if self._on_loss is not None:
                    self._on_loss(self)
            return True
        if self._rtx_apt.get(pt) != self.codec.payload_type or self._media.ssrc is None:
            return False
        rtx = self._rtx
        if not rtx.offer(ssrc, now_ms):
            return False
        if rtx.replaced is not None:
            aiortc_glue.forget_receiver_ssrc(self._receiver, rtx.replaced)
        return True

    async def _receive(self, packet: RtpPacket) -> bool | None:
        """One packet from the receiver: False drops it before aiortc's bookkeeping."""
        if self.closed:
            return False
        self.packets_received += 1
        now_ms = monotonic_ms()
        media = self._media
        if packet.ssrc == media.ssrc and packet.payload_type == self.codec.payload_type:
            media.last_ms = now_ms  # the common case, inline
        elif not self._take(packet, now_ms):
            self.packets_dropped += 1
            return False
        elif packet.payload_type != self.codec.payload_type:  # RTX of the media
            if len(packet.payload) <= 2 or media.ssrc is None:  # padding probe: nothing to forward
                return None
            packet = unwrap_rtx(packet, payload_type=packet.payload_type, ssrc=media.ssrc)
            packet.payload_type = self.codec.payload_type
        ext_seq = self._unwrapper.unwrap(packet.sequence_number) + self._seq_base
        if ext_seq > self._ext_max:
            self._ext_max = ext_seq
        key_frame = self._is_key_frame is not None and self._is_key_frame(packet.payload)
        if self.cache is not None:
            self.cache.add(ext_seq, packet, now_ms)
            verdict = self.stream.on_packet(ext_seq, now_ms)
            if verdict.nack:
                self._send_nack(verdict.nack)
            if verdict.lost and self._on_loss is not None:
                self._on_loss(self)
        await self._on_rtp(self, packet, ext_seq, key_frame)
        return None

    def request_retransmission(self, ext_seqs: list[int]) -> None:
        """Subscribers asked for ``ext_seqs`` and the cache had none of them: NACK to the
        publisher those still missing here (RFC 4585 §6.2.1), unless NACKed just now."""
        if self.closed or not ext_seqs:
            return
        self._send_nack(self.stream.nack_now(ext_seqs, monotonic_ms()))

    def _send_nack(self, ext_seqs: list[int]) -> None:
        ssrc = self._media.ssrc
        if ext_seqs and ssrc is not None:
            lost = [(seq - self._seq_base) % SEQ_MOD for seq in ext_seqs]
            asyncio.ensure_future(aiortc_glue.send_nack(self._receiver, ssrc, lost))

    def request_key_frame(self) -> None:
        """Ask the publisher for a key frame, merged and paced as the class says."""
        if self.kind != "video" or self.closed or self._kf_timer is not None:
            return
        wait_ms = self._kf_last_ms + self._kf_interval_ms - monotonic_ms()
        loop = asyncio.get_running_loop()
        if wait_ms <= 0:
            self._send_pli()
        else:
            self._kf_timer = loop.call_later(wait_ms / 1000.0, self._send_pli)

    def _send_pli(self) -> None:
        self._kf_timer = None
        ssrc = self._media.ssrc
        if self.closed or ssrc is None:
            # Nothing received yet: the first packets will come with a key frame anyway
            # (encoders start with one); let the next request through at once.
            return
        self._kf_last_ms = monotonic_ms()
        asyncio.ensure_future(aiortc_glue.send_pli(self._receiver, ssrc))

    def close(self) -> None:
        """Stop forwarding; the Router closes this Producer's Consumers."""
        self.closed = True
        if self._kf_timer is not None:
            self._kf_timer.cancel()
            self._kf_timer = None
