"""Consumer: one Producer's stream sent to one subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiortc.rtp import RtpPacket

from .aiortc_glue import ForwardingSender
from .clock import monotonic_ms
from .producer import Producer
from .rtp.seq import SEQ_MOD, SeqRewriter
from .streams.send import SentSeqMap

NACK_SEARCH_BACK = 32  # sent numbers searched below a NACKed one never sent (a gap upstream)
# Per NACK packet: distinct numbers looked at (libwebrtc's receiver keeps at most 1000
# outstanding, kMaxNackPackets), and of those never sent, how many are placed by searching back
# (the rest are left to the Producer's own NACKs): one packet's work is bounded, whatever its FCIs.
MAX_NACKED_SEQS = 1024
MAX_NACK_SEARCHES = 64


class Consumer:
    """Forwards one Producer to one subscriber without decoding (a mediasoup SimpleConsumer).

    Per packet it rewrites SSRC and payload type (to what this subscriber negotiated), the
    sequence number (gap-free across withheld packets, ``SeqRewriter``) and keeps the RTP
    timestamp (one source per Consumer, so the publisher's timeline is already continuous).
    A video Consumer forwards nothing until a key frame: it asks its Producer for one when it
    starts and keeps asking (paced by the Producer) until one arrives, so that the subscriber
    never gets frames it cannot decode. Padding-only packets are withheld.

    Loss recovery: the subscriber's Generic NACKs (RFC 4585 §6.2.1) are answered from the
    Producer's cache, as RTX where negotiated (RFC 4588 §4), through ``SentSeqMap`` (sent
    number → Producer number; a number never sent, because the SFU itself lacks the packet,
    is placed from the nearest sent one below it). Numbers no cache can serve go to the
    Producer, which NACKs the publisher. When the Producer gives a packet up
    (``on_producer_loss``) a video Consumer has lost its reference: it forwards nothing more
    until the next key frame, which it asks for. Sender Reports (RFC 3550 §6.4.1) carry the
    publisher's NTP/RTP mapping (the timestamp is not rewritten), so audio and video of one
    publisher stay lip-synced at the subscriber.

    Limits (a subscriber's NACKs must not make the SFU send without bound): a packet is resent
    at most once per ``RESEND_INTERVAL_MS`` (mediasoup: not again within an RTT, 100 ms when
    unknown; the subscriber's RTT is not used, its Receiver Reports could fake it); resends
    spend a credit that each packet forwarded earns, held to ``RESEND_BURST`` (so resends stay
    within the media rate plus one burst, as libwebrtc caps retransmissions at its send rate);
    one NACK packet is looked at for ``MAX_NACKED_SEQS`` distinct numbers. What is refused is
    counted in ``resends_refused``.
    """

    RESEND_INTERVAL_MS = 100.0
    RESEND_BURST = 512  # packets, ~600 KB: a whole lost key frame, ~1 s of 4 Mbit/s video

    __slots__ = (
        "id",
        "producer",
        "subscriber_id",
        "closed",
        "packets_sent",
        "send_errors",
        "_sender",
        "_seq",
        "_paused_by_mute",
        "paused",
        "_needs_key_frame",
        "_on_closed",
        "_sent",
        "packets_resent",
        "key_frame_waits",
        "resends_refused",
        "_resend_credit",
        "_credit_sent",
        "_nack_searches",
    )

    def __init__(
        self,
        consumer_id: str,
        producer: Producer,
        subscriber_id: str,
        sender: ForwardingSender,
    ) -> None:
        self.id = consumer_id
        self.producer = producer
        self.subscriber_id = subscriber_id
        self.closed = False
        self.packets_sent = 0
        self.send_errors = 0
        self._sender = sender
        self._seq = SeqRewriter()
        self._needs_key_frame = producer.kind == "video"
        self._paused_by_mute = False
        self.paused = False  # by the subscriber (update_subscription): forward nothing
        self._on_closed: list[Callable[[Consumer], None]] = []
        self._sent = SentSeqMap()
        self.packets_resent = 0
        self.key_frame_waits = 0  # times the reference was lost and a key frame awaited
        self.resends_refused = 0  # NACKed numbers not resent: too soon, no credit, too many
        self._resend_credit = self.RESEND_BURST
        self._credit_sent = 0  # packets_sent when the credit was last topped up
        self._nack_searches = 0

    def on_started(self) -> None:
        """The subscriber's connection negotiated this stream: get a key frame coming."""
        if self._needs_key_frame:
            self.producer.request_key_frame()

    def on_key_frame_requested(self) -> None:
        """The subscriber sent PLI or FIR."""
        self.producer.request_key_frame()

    def on_producer_loss(self) -> None:
        """The Producer gave a packet up: wait for (and ask for) the next key frame."""
        if self.producer.kind == "video" and not self._needs_key_frame and not self.closed:
            self._needs_key_frame = True
            self.key_frame_waits += 1
            self.producer.request_key_frame()

    def on_nack(self, lost: list[int]) -> None:
        """The subscriber NACKed the 16-bit sequence numbers ``lost`` (RFC 4585 §6.2.1)."""
        cache = self.producer.cache
        if self.closed or cache is None:
            return
        upstream: list[int] = []
        now_ms = monotonic_ms()
        for seq in self._nacked(lost):
            ext_in = self._producer_seq(seq)
            if ext_in is None:
                continue
            packet = cache.get(ext_in)
            if packet is None:
                upstream.append(ext_in)
                continue
            self._sent.add(seq, ext_in)
            if not self._may_resend(seq, now_ms):
                continue
            self.packets_resent += 1
            asyncio.ensure_future(self._resend(packet, seq))
        self.producer.request_retransmission(upstream)

    def _nacked(self, lost: list[int]) -> list[int]:
        """The distinct 16-bit numbers among the first ``MAX_NACKED_SEQS`` of one NACK (the
        rest counted as refused), and a fresh search budget and resend credit for them."""
        if len(lost) > MAX_NACKED_SEQS:
            self.resends_refused += len(lost) - MAX_NACKED_SEQS
            lost = lost[:MAX_NACKED_SEQS]
        self._nack_searches = MAX_NACK_SEARCHES
        sent = self.packets_sent
        self._resend_credit = min(self.RESEND_BURST, self._resend_credit + sent - self._credit_sent)
        self._credit_sent = sent
        return list(dict.fromkeys(seq & 0xFFFF for seq in lost))  # aiortc gives 65536+ at a wrap

    def _may_resend(self, seq: int, now_ms: float) -> bool:
        """Whether the packet sent as ``seq`` may be resent now (see the class's limits)."""
        if self._resend_credit <= 0 or not self._sent.may_resend(
            seq, now_ms, self.RESEND_INTERVAL_MS
        ):
            self.resends_refused += 1
            return False
        self._resend_credit -= 1
        return True

    _SENT_STEP = 1  # what one sent number back adds to the value ``_sent`` holds

    def _producer_seq(self, seq: int) -> int | None:
        """What ``_sent`` holds for the sent number ``seq``; for a number never sent (a gap
        upstream), placed from the nearest sent one below it, while the NACK's search budget
        lasts."""
        ext_in = self._sent.get(seq)
        if ext_in is not None:
            return ext_in
        if self._nack_searches <= 0:
            return None
        self._nack_searches -= 1
        for back in range(1, NACK_SEARCH_BACK + 1):
            below = self._sent.get((seq - back) % SEQ_MOD)
            if below is not None:
                return below + back * self._SENT_STEP
        return None

    async def _resend(self, packet: RtpPacket, seq: int) -> None:
        try:
            await self._sender.resend(packet, seq, packet.timestamp)
        except ConnectionError:
            self.send_errors += 1

    async def send_rtp(self, packet: RtpPacket, ext_seq: int, key_frame: bool) -> None:
        """Forward one packet of the Producer (``ext_seq``: its extended sequence number)."""
        pending = self.forward_rtp(packet, ext_seq, key_frame)
        if pending is not None:
            await pending

    def forward_rtp(
        self, packet: RtpPacket, ext_seq: int, key_frame: bool
    ) -> Awaitable[None] | None:
        """``send_rtp`` without a coroutine when the sender's fast path takes the packet (the
        Router's fan-out calls this): None when done, else an awaitable that finishes it."""
        if self.closed or not self._sender.started:
            return None
        if self.producer.muted or self.paused:  # muted (owner or presenter) or paused
            self._paused_by_mute = True
            return None
        if self._paused_by_mute:  # unmuted: resume without a sequence gap, video on a key frame
            self._paused_by_mute = False
            if self.producer.kind == "video":
                self._needs_key_frame = True
            else:
                self._seq.sync(ext_seq)
        if self._needs_key_frame:
            if not key_frame:
                self.producer.request_key_frame()
                return None
            self._needs_key_frame = False
            self._seq.sync(ext_seq)  # the key frame follows the last packet sent, no gap
        if not packet.payload:
            self._seq.drop(ext_seq)
            return None
        seq = self._seq.rewrite(ext_seq)
        if seq is None:
            return None
        self._sent.add(seq, ext_seq)
        sender = self._sender
        sender.sr_mapping = self.producer.sr_mapping
        try:
            pending = sender.forward(packet, seq, packet.timestamp, packet.extensions.audio_level)
        except ConnectionError:
            self.send_errors += 1
            return None
        if pending is None:
            self.packets_sent += 1
            return None
        return self._finish(pending)

    async def _finish(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except ConnectionError:
            self.send_errors += 1
            return
        self.packets_sent += 1

    def add_close_listener(self, listener: Callable[[Consumer], None]) -> None:
        """Call ``listener(consumer)`` once when this Consumer closes."""
        self._on_closed.append(listener)

    def close(self) -> None:
        """Stop forwarding and tell the listeners (the subscribe transport)."""
        if self.closed:
            return
        self.closed = True
        for listener in self._on_closed:
            listener(self)
