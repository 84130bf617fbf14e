"""H.264 RTP payload (RFC 6184): key-frame detection without decoding."""

from __future__ import annotations

_IDR, _SPS, _STAP_A, _FU_A = 5, 7, 24, 28


def is_key_frame(payload: bytes) -> bool:
    """True when ``payload`` carries an IDR slice or a sequence parameter set.

    Single NAL units (types 1-23), STAP-A aggregates (RFC 6184 §5.7.1, each unit prefixed by a
    16-bit size) and the first fragment of an FU-A (§5.8, S bit set) are read; other
    packetizations give False, as do malformed payloads.
    """
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_IDR, _SPS):
        return True
    if nal_type == _STAP_A:
        i, n = 1, len(payload)
        while i + 2 < n:
            size = (payload[i] << 8) | payload[i + 1]
            if size == 0 or i + 2 + size > n:
                return False
            if payload[i + 2] & 0x1F in (_IDR, _SPS):
                return True
            i += 2 + size
        return False
    if nal_type == _FU_A and len(payload) > 1:
        fu_header = payload[1]
        return bool(fu_header & 0x80) and (fu_header & 0x1F) in (_IDR, _SPS)
    return False
