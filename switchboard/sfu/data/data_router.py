"""DataRouter: one room's data graph, DataProducers to DataConsumers, and its fan-out."""

from __future__ import annotations

from .data_consumer import DataConsumer
from .data_producer import DataProducer
from .envelope import Envelope


class DataRouter:
    """Relays in-call data within one room (owned by the room's ``Router``).

    Subscribers are known by participant id, one ``DataConsumer`` per channel kind
    (reliable, lossy), from the moment they join, so a message to a
    participant still joining is held by its DataConsumer rather than lost. ``relay`` is the
    one fan-out: the same outgoing bytes (one envelope with the SFU-stamped ``from``) go to
    every target of the message's kind, never back to its sender.
    """

    def __init__(self) -> None:
        self._consumers: dict[bool, dict[str, DataConsumer]] = {True: {}, False: {}}
        self.closed = False

    def add_data_consumer(self, consumer: DataConsumer) -> None:
        self._consumers[consumer.reliable][consumer.participant_id] = consumer

    def remove_data_consumer(self, consumer: DataConsumer) -> None:
        consumers = self._consumers[consumer.reliable]
        if consumers.get(consumer.participant_id) is consumer:
            del consumers[consumer.participant_id]

    def relay(self, producer: DataProducer, envelope: Envelope, size: int) -> None:
        """Send ``envelope`` from ``producer``'s participant to its targets (``to``; None:
        everyone else). Targets that are not in the room are reported to the sender as
        ``unknown_target`` (the others still get the message)."""
        if self.closed:
            return
        sender = producer.participant_id
        out = bytes(Envelope(envelope.payload, envelope.text, sender=sender))
        consumers = self._consumers[producer.reliable]
        if envelope.to is None:
            targets = [c for pid, c in consumers.items() if pid != sender]
        else:
            targets = [consumers[t] for t in envelope.to if t in consumers and t != sender]
            unknown = [t for t in envelope.to if t not in consumers]
            if unknown:
                producer.report_dropped(
                    "unknown_target", 1, size, "no participant " + ", ".join(unknown[:4])
                )
        for consumer in targets:
            consumer.send(out)

    def close(self) -> None:
        self.closed = True
        for consumers in self._consumers.values():
            for consumer in list(consumers.values()):
                consumer.close()
            consumers.clear()
