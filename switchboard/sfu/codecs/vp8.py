"""VP8 RTP payload (RFC 7741): key-frame detection without decoding."""

from __future__ import annotations


def is_key_frame(payload: bytes) -> bool:
    """True when ``payload`` starts a VP8 key frame.

    Reads the payload descriptor (RFC 7741 §4.2: X, S, PartID; the optional I/L/T/K bytes and
    the 7- or 15-bit PictureID) and then the first byte of the VP8 payload header, whose
    lowest bit P is 0 for a key frame (RFC 7741 §4.3, RFC 6386 §9.1). Only the first packet
    of partition 0 (S=1, PartID=0) can say so. Malformed payloads give False.
    """
    n = len(payload)
    if n < 1:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x07):  # S must be 1, PartID 0 (R bits ignored, §4.2)
        return False
    i = 1
    if b0 & 0x80:  # X: extension byte follows
        if n < 2:
            return False
        x = payload[1]
        i = 2
        if x & 0x80:  # I: PictureID, M bit says 15 bits
            if n <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            i += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX byte
            i += 1
    return n > i and not (payload[i] & 0x01)


def _descriptor_size(payload: bytes) -> int | None:
    """Bytes of the RFC 7741 §4.2 payload descriptor at the start of ``payload``, or None."""
    n = len(payload)
    if n < 1:
        return None
    i = 1
    if payload[0] & 0x80:
        if n < 2:
            return None
        x = payload[1]
        i = 2
        if x & 0x80:
            if n <= i:
                return None
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return i if i < n else None


def key_frame_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels of the VP8 key frame ``payload`` starts, or None.

    Reads the key frame header after the 3-byte frame tag: the start code 9d 01 2a and two
    16-bit little-endian fields whose low 14 bits are width and height (RFC 6386 §9.1); the
    upscaling bits are ignored. Only the first packet of a key frame has it.
    """
    if not is_key_frame(payload):
        return None
    i = _descriptor_size(payload)
    if i is None or len(payload) < i + 10 or payload[i + 3 : i + 6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(payload[i + 6 : i + 8], "little") & 0x3FFF
    height = int.from_bytes(payload[i + 8 : i + 10], "little") & 0x3FFF
    return width, height


def picture_ids(payload: bytes) -> tuple[int | None, int, int | None]:
    """(PictureID, its width in bits (7 or 15, 0 when absent), TL0PICIDX) of the payload
    descriptor (RFC 7741 §4.2); None where absent or truncated."""
    n = len(payload)
    if n < 2 or not payload[0] & 0x80:
        return None, 0, None
    x = payload[1]
    i, picture_id, bits, tl0 = 2, None, 0, None
    if x & 0x80:
        if n <= i or (payload[i] & 0x80 and n <= i + 1):
            return None, 0, None
        if payload[i] & 0x80:
            picture_id, bits = ((payload[i] & 0x7F) << 8) | payload[i + 1], 15
            i += 2
        else:
            picture_id, bits = payload[i] & 0x7F, 7
            i += 1
    if x & 0x40 and n > i:
        tl0 = payload[i]
    return picture_id, bits, tl0


def with_picture_ids(payload: bytes, picture_id: int | None, tl0: int | None) -> bytes:
    """``payload`` with its descriptor's PictureID and TL0PICIDX replaced (those present;
    same widths). The forwarding path's only payload edit: a SimulcastConsumer keeps them
    continuous across layers, as mediasoup does, for receivers that order frames by them
    (Chromium 1xx tolerates the jump on a key frame: measured without the rewrite)."""
    out = bytearray(payload)
    i = 2
    if out[1] & 0x80:
        if out[i] & 0x80:
            if picture_id is not None:
                out[i], out[i + 1] = 0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF
            i += 2
        else:
            if picture_id is not None:
                out[i] = picture_id & 0x7F
            i += 1
    if out[1] & 0x40 and tl0 is not None:
        out[i] = tl0 & 0xFF
    return bytes(out)
