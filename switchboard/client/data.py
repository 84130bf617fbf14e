"""In-call data for the Python SDK: the two data channels of each peer connection.

The client opens ``reliable`` (ordered) and ``lossy`` (unordered, ``maxRetransmits=0``) data
channels (RFC 8831) on its publish connection; the SFU sends the room's messages back on the
same channels. Every message is an envelope (``sfu/data/envelope.py``,
docs/protocol.md "In-call data"): targets on the way in, the SFU-stamped sender on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from aiortc import RTCDataChannel, RTCPeerConnection

from ..sfu.data.envelope import MAX_PAYLOAD_BYTES, Envelope, EnvelopeError

RELIABLE, LOSSY = "reliable", "lossy"
OPEN_TIMEOUT_S = 15.0


class DataTooLarge(ValueError):
    """A payload over ``MAX_PAYLOAD_BYTES`` (255 KiB): refused before sending, never cut."""


class DataChannels:
    """One Room's in-call data. ``open_publish`` makes the publish connection's two channels
    (before its first offer); they carry both directions. Until they are open (``open``, or
    the first ``send`` or ``Room.publish``), messages for this participant wait at the SFU.

    ``on_data(sender_id, payload, reliable)`` runs for each message (``payload``: ``str`` for
    text, ``bytes`` for binary); ``on_dropped(reason, messages, bytes, detail)`` for each
    ``data_dropped`` report of the server, whose counts add up in ``dropped`` (reason →
    messages). ``received_malformed`` counts messages from the SFU that were not envelopes.
    """

    def __init__(self, ensure_publish: Callable[[], Awaitable[None]]) -> None:
        self._ensure_publish = ensure_publish
        self._send_channels: dict[str, RTCDataChannel] = {}
        self.on_data: Callable[[str, bytes | str, bool], None] = lambda s, p, r: None
        self.on_dropped: Callable[[str, int, int, str], None] = lambda r, m, b, d: None
        self.dropped: dict[str, int] = {}
        self.received_malformed = 0

    def open_publish(self, pc: RTCPeerConnection) -> None:
        """Create the two channels on the publish connection, once, before its offer and after its
        transceivers (aiortc 1.16 stops a max-bundle transport whose SCTP predates them)."""
        if self._send_channels:
            return
        self._send_channels = {
            RELIABLE: pc.createDataChannel(RELIABLE, ordered=True),
            LOSSY: pc.createDataChannel(LOSSY, ordered=False, maxRetransmits=0),
        }
        for label, channel in self._send_channels.items():
            self._receive(channel, label == RELIABLE)

    async def open(self) -> None:
        """Open the channels (a data-only publish connection if nothing is published) and wait
        until both are open. Raises TimeoutError after 15 s."""
        if not self._send_channels:
            await self._ensure_publish()
        for channel in self._send_channels.values():
            await _wait_open(channel)

    def _receive(self, channel: RTCDataChannel, reliable: bool) -> None:

        @channel.on("message")
        def on_message(data: bytes | str) -> None:
            try:
                envelope = Envelope.parse(data)
            except EnvelopeError:
                self.received_malformed += 1
                return
            payload: bytes | str = envelope.payload.decode() if envelope.text else envelope.payload
            self.on_data(envelope.sender or "", payload, reliable)

    def on_dropped_event(self, message: dict[str, object]) -> None:
        """The server's ``data_dropped`` event."""
        reason, messages = str(message["reason"]), int(message["messages"])  # type: ignore[call-overload]
        self.dropped[reason] = self.dropped.get(reason, 0) + messages
        self.on_dropped(reason, messages, int(message["bytes"]), str(message["detail"]))  # type: ignore[call-overload]

    async def send(
        self, payload: bytes | str, reliable: bool = True, to: Sequence[str] | None = None
    ) -> None:
        """Send ``payload`` to everyone else in the room, or to the participant ids ``to``.

        Opens the publish connection (data only) if nothing is published yet, and waits for
        the channel to open. Raises DataTooLarge over 255 KiB, ValueError for an empty ``to``,
        TimeoutError if the channel does not open within 15 s.
        """
        text = isinstance(payload, str)
        raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise DataTooLarge(
                f"payload of {len(raw)} bytes; in-call data messages are at most "
                f"{MAX_PAYLOAD_BYTES} bytes"
            )
        if to is not None and not to:
            raise ValueError("'to' lists no participant (None sends to everyone)")
        if not self._send_channels:
            await self._ensure_publish()
        channel = self._send_channels[RELIABLE if reliable else LOSSY]
        await _wait_open(channel)
        channel.send(bytes(Envelope(raw, text, tuple(to) if to is not None else None)))


async def _wait_open(channel: RTCDataChannel) -> None:
    if channel.readyState == "open":
        return
    opened = asyncio.Event()
    channel.on("open", opened.set)
    try:
        if channel.readyState != "open":
            await asyncio.wait_for(opened.wait(), OPEN_TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            channel.remove_listener("open", opened.set)
