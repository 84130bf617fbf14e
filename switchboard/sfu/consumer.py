"""Consumer: one Producer's stream sent to one subscriber."""

from __future__ import annotations

from collections.abc import Callable

from aiortc.rtp import RtpPacket

from .aiortc_glue import ForwardingSender
from .producer import Producer
from .rtp.seq import SeqRewriter


class Consumer:
    """Forwards one Producer to one subscriber without decoding (a mediasoup SimpleConsumer).

    Per packet it rewrites SSRC and payload type (to what this subscriber negotiated), the
    sequence number (gap-free across withheld packets, ``SeqRewriter``) and keeps the RTP
    timestamp (one source per Consumer, so the publisher's timeline is already continuous).
    A video Consumer forwards nothing until a key frame: it asks its Producer for one when it
    starts and keeps asking (paced by the Producer) until one arrives, so that the subscriber
    never gets frames it cannot decode. Padding-only packets are withheld.
    """

    __slots__ = (
        "id",
        "producer",
        "subscriber_id",
        "closed",
        "packets_sent",
        "send_errors",
        "_sender",
        "_seq",
        "_needs_key_frame",
        "_on_closed",
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
        self._on_closed: list[Callable[[Consumer], None]] = []

    def on_started(self) -> None:
        """The subscriber's connection negotiated this stream: get a key frame coming."""
        if self._needs_key_frame:
            self.producer.request_key_frame()

    def on_key_frame_requested(self) -> None:
        """The subscriber sent PLI or FIR."""
        self.producer.request_key_frame()

    async def send_rtp(self, packet: RtpPacket, ext_seq: int, key_frame: bool) -> None:
        """Forward one packet of the Producer (``ext_seq``: its extended sequence number)."""
        if self.closed or not self._sender.started:
            return
        if self._needs_key_frame:
            if not key_frame:
                self.producer.request_key_frame()
                return
            self._needs_key_frame = False
        if not packet.payload:
            self._seq.drop(ext_seq)
            return
        seq = self._seq.rewrite(ext_seq)
        if seq is None:
            return
        try:
            await self._sender.send(packet, seq, packet.timestamp, packet.extensions.audio_level)
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
