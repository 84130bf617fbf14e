"""DataProducer: one data channel a participant sends on (its publish connection)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc import RTCDataChannel

from .. import clock
from .envelope import Envelope, EnvelopeError
from .rate_limit import RateLimiter

if TYPE_CHECKING:
    from .data_router import DataRouter

Dropped = Callable[[str, int, int, str], None]  # reason, messages, bytes, detail


class DataProducer:
    """One incoming data channel (RFC 8831) of one participant: ``reliable`` or ``lossy``.

    Each message is parsed as an envelope (``envelope.py``), charged to the sender's
    ``RateLimiter`` (shared by its channels) and handed to the room's ``DataRouter``, which
    stamps the sender and fans it out. What is refused goes to ``on_dropped(reason, messages,
    bytes, detail)`` with ``reason`` one of ``too_large``, ``malformed``, ``rate_limited``,
    ``unknown_target``; never an exception into aiortc. ``messages``/``bytes`` count what was
    relayed (envelope bytes as received).
    """

    __slots__ = (
        "id",
        "participant_id",
        "label",
        "reliable",
        "closed",
        "messages",
        "bytes",
        "_channel",
        "_router",
        "_limiter",
        "_on_dropped",
    )

    def __init__(
        self,
        participant_id: str,
        channel: RTCDataChannel,
        reliable: bool,
        router: DataRouter,
        limiter: RateLimiter,
        on_dropped: Dropped,
    ) -> None:
        self.id = "DP_" + secrets.token_urlsafe(9)
        self.participant_id = participant_id
        self.label = channel.label
        self.reliable = reliable
        self.closed = False
        self.messages = 0
        self.bytes = 0
        self._channel = channel
        self._router = router
        self._limiter = limiter
        self._on_dropped = on_dropped
        channel.on("message", self._on_message)

    def _on_message(self, data: bytes | str) -> None:
        if self.closed:
            return
        size = len(data)
        try:
            envelope = Envelope.parse(data)
        except EnvelopeError as exc:
            self._on_dropped(exc.reason, 1, size, str(exc))
            return
        if not self._limiter.allow(size, clock.monotonic_ms()):
            self._on_dropped("rate_limited", 1, size, "over the room's per-sender data rate")
            return
        self.messages += 1
        self.bytes += size
        self._router.relay(self, envelope, size)

    def report_dropped(self, reason: str, messages: int, size: int, detail: str) -> None:
        """Tell the sender that (part of) a message was not delivered (the router's verdict)."""
        self._on_dropped(reason, messages, size, detail)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._channel.remove_listener("message", self._on_message)
