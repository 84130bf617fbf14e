"""The envelope of an in-call data message: who it is for (client → SFU) or from (SFU → client).

Every message on the ``reliable`` and ``lossy`` data channels is one binary message (RFC 8831
§6.6, PPID 53 "WebRTC Binary") holding::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +---------------+-------------+-+-------------------------------+
    |  version = 1  |  reserved=0 |T|   header length (bytes, BE)   |
    +---------------+-------------+-+-------------------------------+
    |  header: a UTF-8 JSON object, header-length bytes ...         |
    +---------------------------------------------------------------+
    |  payload: the rest of the message (UTF-8 text if T = 1) ...   |
    +---------------------------------------------------------------+

Header, client → SFU: ``{"to": ["PA_…", …]}`` for the listed participants (1 to
``MAX_TARGETS``), ``{}`` for everyone else in the room. SFU → client: ``{"from": "PA_…"}``,
the sender's participant id as the SFU knows it (a ``from`` a client writes is ignored: the SFU
builds every outgoing header itself). Unknown header keys are ignored.

Limits (measured, docs/protocol.md "In-call data"): Chromium 156 and aiortc 1.16 both
advertise ``a=max-message-size:262144`` (RFC 8841 §6) and refuse to send more than the peer
advertised (Chromium's ``send()`` throws ``TypeError``, aiortc raises ``ValueError``). So a
whole envelope is at most ``MAX_MESSAGE_BYTES`` (256 KiB) and a payload at most
``MAX_PAYLOAD_BYTES`` (255 KiB): the 1 KiB left holds any header the SFU writes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

VERSION = 1
FLAG_TEXT = 0x01
PREFIX = struct.Struct("!BBH")  # version, flags, header length
MAX_MESSAGE_BYTES = 256 * 1024  # one SCTP user message, envelope included (RFC 8841 §6)
MAX_PAYLOAD_BYTES = 255 * 1024  # leaves 1 KiB for the SFU's header
MAX_TARGETS = 256
MAX_ID_CHARS = 64  # a participant id (signalling/calls/protocol.py allows 64 too)


class EnvelopeError(ValueError):
    """A message that is not a valid envelope; ``reason`` is ``malformed`` or ``too_large``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope:
    """One in-call data message. ``to``: the targets (None: everyone), client → SFU only;
    ``sender``: the SFU-stamped participant id, SFU → client only; ``text``: the payload is
    UTF-8 text (else bytes)."""

    payload: bytes
    text: bool = False
    to: tuple[str, ...] | None = None
    sender: str | None = None

    @classmethod
    def parse(cls, data: bytes | str) -> Envelope:
        """Parse one data channel message. Raises EnvelopeError (``too_large`` for a message
        over ``MAX_MESSAGE_BYTES`` or a payload over ``MAX_PAYLOAD_BYTES``, ``malformed``
        otherwise: a text message, a short or unknown prefix, a bad header, text that is not
        UTF-8)."""
        if isinstance(data, str):
            raise EnvelopeError("malformed", "an envelope is a binary message, not text")
        if len(data) > MAX_MESSAGE_BYTES:
            raise EnvelopeError("too_large", f"message over {MAX_MESSAGE_BYTES} bytes")
        if len(data) < PREFIX.size:
            raise EnvelopeError("malformed", "message shorter than the envelope prefix")
        version, flags, header_length = PREFIX.unpack_from(data)
        if version != VERSION or flags & ~FLAG_TEXT:
            raise EnvelopeError("malformed", f"unknown envelope version {version}/flags {flags}")
        end = PREFIX.size + header_length
        if end > len(data):
            raise EnvelopeError("malformed", "header longer than the message")
        try:
            header = json.loads(data[PREFIX.size : end].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise EnvelopeError("malformed", "header is not a UTF-8 JSON object") from None
        if not isinstance(header, dict):
            raise EnvelopeError("malformed", "header is not a JSON object")
        payload = bytes(data[end:])
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise EnvelopeError("too_large", f"payload over {MAX_PAYLOAD_BYTES} bytes")
        text = bool(flags & FLAG_TEXT)
        if text:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise EnvelopeError("malformed", "text payload is not UTF-8") from None
        to = header.get("to")
        if to is not None:
            if (
                not isinstance(to, list)
                or not 1 <= len(to) <= MAX_TARGETS
                or not all(isinstance(t, str) and 0 < len(t) <= MAX_ID_CHARS for t in to)
            ):
                raise EnvelopeError(
                    "malformed", f"'to' must list 1 to {MAX_TARGETS} participant ids"
                )
            to = tuple(dict.fromkeys(to))
        sender = header.get("from")
        return cls(payload, text, to, sender if isinstance(sender, str) else None)

    def __bytes__(self) -> bytes:
        header: dict[str, object] = {}
        if self.to is not None:
            header["to"] = list(self.to)
        if self.sender is not None:
            header["from"] = self.sender
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        flags = FLAG_TEXT if self.text else 0
        return PREFIX.pack(VERSION, flags, len(encoded)) + encoded + self.payload
