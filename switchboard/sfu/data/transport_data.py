"""TransportData: the data channels of one WebRtcTransport (its DataProducers or DataConsumers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCDataChannel

from .. import clock
from .config import DataConfig
from .data_consumer import DataConsumer
from .data_producer import DataProducer
from .data_router import DataRouter
from .rate_limit import RateLimiter

log = logging.getLogger(__name__)

RELIABLE, LOSSY = "reliable", "lossy"
LABELS = {RELIABLE: True, LOSSY: False}  # data channel label -> reliable?

# (reason, messages, bytes, detail): drops since the previous report of that reason.
DropReport = Callable[[str, int, int, str], None]


class TransportData:
    """The data half of one participant's publish transport.

    ``register_consumers`` registers the participant's two DataConsumers with the room's
    DataRouter at its join: from then on they hold reliable messages for it. Each data channel
    the client opens with label ``reliable`` or ``lossy`` (others are closed; a second channel
    of a label replaces the first) becomes a DataProducer, all charged to one ``RateLimiter``
    (per sender, both channels), and carries the room's messages back as its DataConsumer
    (SCTP streams are bidirectional, RFC 8831 §6.4). Drops are counted in ``dropped`` (reason
    → messages) and reported through ``on_dropped``, merged: at most one report per reason
    every ``report_interval_ms``.

    Why not SFU-opened channels on the subscribe connection: with aiortc 1.16 and max-bundle,
    an SCTP transport created before the RTP transceivers that later bundle onto it left the
    forwarded RTP undelivered (measured: senders not started, or 0 packets at the
    subscriber); the publish connection's channels avoid that mix.
    """

    def __init__(self, router: DataRouter, participant_id: str, config: DataConfig) -> None:
        self.router = router
        self.participant_id = participant_id
        self.config = config
        self.data_producers: dict[str, DataProducer] = {}  # label -> producer
        self.data_consumers: dict[str, DataConsumer] = {}  # label -> consumer
        self.dropped: dict[str, int] = {}
        self.on_dropped: DropReport = lambda reason, messages, size, detail: None
        self.closed = False
        self._limiter = RateLimiter(
            config.max_messages_per_s,
            config.burst_messages,
            config.max_bytes_per_s,
            config.burst_bytes,
            clock.monotonic_ms(),
        )
        self._pending: dict[str, list[int | str]] = {}  # reason -> [messages, bytes, detail]
        self._last_report_ms = -float("inf")
        self._report_timer: asyncio.TimerHandle | None = None

    # publish

    def on_datachannel(self, channel: RTCDataChannel) -> None:
        """A data channel the client opened (aiortc's ``datachannel`` event)."""
        reliable = LABELS.get(channel.label)
        if self.closed or reliable is None:
            log.debug("participant %s: data channel %r ignored", self.participant_id, channel.label)
            channel.close()
            return
        previous = self.data_producers.pop(channel.label, None)
        if previous is not None:
            previous.close()
        self.data_producers[channel.label] = DataProducer(
            self.participant_id, channel, reliable, self.router, self._limiter, self._dropped
        )
        consumer = self.data_consumers.get(channel.label)
        if consumer is not None:
            consumer.attach(channel)

    def _dropped(self, reason: str, messages: int, size: int, detail: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + messages
        pending = self._pending.setdefault(reason, [0, 0, detail])
        pending[0] = int(pending[0]) + messages
        pending[1] = int(pending[1]) + size
        pending[2] = detail
        if self._report_timer is None and not self.closed:
            wait_ms = self._last_report_ms + self.config.report_interval_ms - clock.monotonic_ms()
            self._report_timer = asyncio.get_running_loop().call_later(
                max(0.0, wait_ms) / 1000.0, self._report
            )

    def _report(self) -> None:
        self._report_timer = None
        self._last_report_ms = clock.monotonic_ms()
        pending, self._pending = self._pending, {}
        for reason, (messages, size, detail) in pending.items():
            try:
                self.on_dropped(reason, int(messages), int(size), str(detail))
            except Exception:
                log.exception("data drop report failed")

    def register_consumers(self) -> None:
        """Register this subscriber's two DataConsumers (channels attached later)."""
        for label, reliable in LABELS.items():
            consumer = DataConsumer(
                self.participant_id,
                None,
                reliable,
                self.config.max_held_bytes,
                self.config.max_buffered_bytes,
            )
            self.data_consumers[label] = consumer
            self.router.add_data_consumer(consumer)

    # both

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._report_timer is not None:
            self._report_timer.cancel()
        for producer in self.data_producers.values():
            producer.close()
        for consumer in self.data_consumers.values():
            self.router.remove_data_consumer(consumer)
            consumer.close()
