"""Router: one room's media graph, Producers to Consumers, and the fan-out loop."""

from __future__ import annotations

import logging

from aiortc.rtp import RtpPacket

from .clock import monotonic_ms
from .consumer import Consumer
from .data.data_router import DataRouter
from .observers.active_speaker import ActiveSpeakerObserver
from .producer import Producer

log = logging.getLogger(__name__)


class Router:
    """Owns the Producer → Consumers graph of one room (mediasoup's Router).

    Transports register what they create here; ``_on_producer_rtp`` is the one fan-out loop.
    Closing a Producer closes its Consumers; closing the Router closes everything.
    ``active_speaker`` sees the RFC 6464 level of every audio packet (set its
    ``on_speakers_changed`` to hear who speaks).
    """

    def __init__(self, router_id: str, key_frame_interval_ms: int) -> None:
        self.id = router_id
        self.key_frame_interval_ms = key_frame_interval_ms
        self.producers: dict[str, Producer] = {}
        self._consumers: dict[str, list[Consumer]] = {}  # producer id -> its consumers
        self.data = DataRouter()  # in-call data: DataProducers -> DataConsumers
        self.closed = False
        self.active_speaker = ActiveSpeakerObserver()

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        self._consumers[producer.id] = []

    def add_consumer(self, consumer: Consumer) -> None:
        """Register ``consumer``; raises KeyError if its Producer is not (or no longer) here."""
        self._consumers[consumer.producer.id].append(consumer)
        consumer.add_close_listener(self._remove_consumer)

    async def _on_producer_rtp(
        self, producer: Producer, packet: RtpPacket, ext_seq: int, key_frame: bool
    ) -> None:
        if (level := packet.extensions.audio_level) is not None and producer.kind == "audio":
            self.active_speaker.on_audio_level(producer.participant_id, level[1], monotonic_ms())
        for consumer in self._consumers.get(producer.id, ()):
            try:
                # None when the packet is already sent (no coroutine per subscriber)
                pending = consumer.forward_rtp(packet, ext_seq, key_frame)
                if pending is not None:
                    await pending
            except Exception:  # one broken Consumer must not starve the others
                consumer.send_errors += 1
                log.exception("consumer %s failed to forward", consumer.id)

    def consumers_of(self, producer_id: str) -> list[Consumer]:
        """The open Consumers of one Producer (a copy)."""
        return list(self._consumers.get(producer_id, ()))

    def _on_producer_loss(self, producer: Producer) -> None:
        """``producer`` gave a packet up: its Consumers have lost their reference."""
        for consumer in self._consumers.get(producer.id, ()):
            consumer.on_producer_loss()

    def _remove_consumer(self, consumer: Consumer) -> None:
        consumers = self._consumers.get(consumer.producer.id)
        if consumers is not None and consumer in consumers:
            consumers.remove(consumer)

    def close_producer(self, producer_id: str) -> None:
        """Close a Producer and every Consumer of it."""
        producer = self.producers.pop(producer_id, None)
        if producer is None:
            return
        if producer.kind == "audio":
            self.active_speaker.remove(producer.participant_id)
        producer.close()
        for consumer in self._consumers.pop(producer_id, []):
            consumer.close()

    def close(self) -> None:
        """Close every Producer (and so every Consumer)."""
        self.closed = True
        self.data.close()
        for producer_id in list(self.producers):
            self.close_producer(producer_id)
