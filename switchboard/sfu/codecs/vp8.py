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
