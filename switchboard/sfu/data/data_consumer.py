"""DataConsumer: one data channel the SFU sends on to one participant."""

from __future__ import annotations

import logging
import secrets
from collections import deque

from aiortc import RTCDataChannel

log = logging.getLogger(__name__)


class DataConsumer:
    """The ``reliable`` or ``lossy`` data channel the SFU sends on to one participant
    (RFC 8831).

    The DataConsumer exists from the subscriber's join; its channel is the one of the same
    label the subscriber opened on its publish connection (``attach``), bidirectional. Until
    it is attached and open, ``send`` holds reliable messages, in order, up to
    ``max_held_bytes`` (beyond it the oldest are dropped) and delivers them when the channel
    opens: a participant still joining loses none. Lossy messages are not held. Once open,
    a message is dropped when more than ``max_buffered_bytes`` wait in the channel already (a
    subscriber slower than the room must not grow the SFU's memory). ``dropped`` counts every
    message not delivered; ``held_total`` those delivered late, at open.
    """

    __slots__ = (
        "id",
        "participant_id",
        "reliable",
        "closed",
        "messages",
        "bytes",
        "dropped",
        "held_total",
        "_channel",
        "_held",
        "_held_bytes",
        "_max_held_bytes",
        "_max_buffered_bytes",
    )

    def __init__(
        self,
        participant_id: str,
        channel: RTCDataChannel | None,
        reliable: bool,
        max_held_bytes: int,
        max_buffered_bytes: int,
    ) -> None:
        self.id = "DC_" + secrets.token_urlsafe(9)
        self.participant_id = participant_id
        self.reliable = reliable
        self.closed = False
        self.messages = 0
        self.bytes = 0
        self.dropped = 0
        self.held_total = 0
        self._channel = channel
        self._held: deque[bytes] = deque()
        self._held_bytes = 0
        self._max_held_bytes = max_held_bytes
        self._max_buffered_bytes = max_buffered_bytes
        if channel is not None:
            self.attach(channel)

    def attach(self, channel: RTCDataChannel) -> None:
        """Send on ``channel``; held messages go out when it is open (at once if it is)."""
        if self._channel is not None:
            self._channel.remove_listener("open", self._on_open)
        self._channel = channel
        channel.on("open", self._on_open)
        if channel.readyState == "open":
            self._on_open()

    @property
    def open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def send(self, data: bytes) -> None:
        """Send one envelope (``envelope.Envelope`` bytes, at most 256 KiB), or hold it."""
        if self.closed:
            return
        state = "connecting" if self._channel is None else self._channel.readyState
        if state == "open" and not self._held:
            self._send(data)
        elif state == "connecting" and self.reliable:
            self._held.append(data)
            self._held_bytes += len(data)
            while self._held_bytes > self._max_held_bytes:
                self._held_bytes -= len(self._held.popleft())
                self.dropped += 1
        else:
            self.dropped += 1

    def _send(self, data: bytes) -> None:
        assert self._channel is not None
        if self._channel.bufferedAmount > self._max_buffered_bytes:
            self.dropped += 1
            return
        try:
            self._channel.send(data)
        except Exception as exc:  # closed under us, or over the peer's max-message-size
            self.dropped += 1
            log.debug("data consumer %s: message dropped: %s", self.id, exc)
            return
        self.messages += 1
        self.bytes += len(data)

    def _on_open(self) -> None:
        held, self._held, self._held_bytes = self._held, deque(), 0
        self.held_total += len(held)
        for data in held:
            self._send(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.dropped += len(self._held)
        self._held.clear()
        self._held_bytes = 0
        if self._channel is not None:
            self._channel.remove_listener("open", self._on_open)
