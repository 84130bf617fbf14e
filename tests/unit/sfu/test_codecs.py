"""Key-frame detection on RTP payloads (switchboard/sfu/codecs/vp8.py, h264.py).

Payloads are built by hand from the RFC bit layouts; one VP8 stream comes from aiortc's own
encoder. Every byte that a wrong parse could mistake for the VP8 payload header is odd (P=1,
an interframe), so a parser that reads the wrong byte answers False where True is expected.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor

from switchboard.sfu.codecs import h264, vp8

# --- VP8 (RFC 7741) ---------------------------------------------------------------------------
#
# Payload descriptor (§4.2):          VP8 payload header (§4.3, RFC 6386 §9.1):
#       0 1 2 3 4 5 6 7                     0 1 2 3 4 5 6 7
#      +-+-+-+-+-+-+-+-+                   +-+-+-+-+-+-+-+-+
#      |X|R|N|S|R| PID |                   |Size0|H| VER |P|   P = 0: key frame
#      +-+-+-+-+-+-+-+-+                   +-+-+-+-+-+-+-+-+
#  X:  |I|L|T|K| RSV   |                   |     Size1     |
#      +-+-+-+-+-+-+-+-+                   +-+-+-+-+-+-+-+-+
#  I:  |M| PictureID   |                   |     Size2     |
#      +-+-+-+-+-+-+-+-+                   +-+-+-+-+-+-+-+-+
#  M:  |   PictureID   |   (15 bits)       | 9d 01 2a, width, height (key frames only)
#      +-+-+-+-+-+-+-+-+
#  L:  |   TL0PICIDX   |
#      +-+-+-+-+-+-+-+-+
#  T/K:|TID|Y| KEYIDX  |
#      +-+-+-+-+-+-+-+-+
#
# (the descriptor's bit 0 is the most significant; the payload header's P is its least)

VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00])  # 320x240, H=1
VP8_INTER = bytes([0x31, 0x02, 0x00, 0x05, 0x07])  # P=1


def vp8_descriptor(
    *,
    s: int = 1,
    pid: int = 0,
    n: int = 0,
    reserved: int = 0,
    picture_id: int | None = None,
    m: int = 0,
    tl0picidx: int | None = None,
    tid: int | None = None,
    keyidx: int | None = None,
    x: bool | None = None,
) -> bytes:
    """An RFC 7741 §4.2 payload descriptor; ``m=1`` writes a 15-bit PictureID, ``x=True``
    writes the extension byte even with no optional field."""
    i, ll, t, k = picture_id is not None, tl0picidx is not None, tid is not None, keyidx is not None
    x = x if x is not None else i or ll or t or k
    out = bytearray([x << 7 | n << 5 | s << 4 | reserved | pid])
    if x:
        out.append(i << 7 | ll << 6 | t << 5 | k << 4)
    if picture_id is not None:
        out += (0x8000 | picture_id).to_bytes(2, "big") if m else bytes([picture_id])
    if tl0picidx is not None:
        out.append(tl0picidx)
    if t or k:
        out.append((tid or 0) << 6 | 1 << 5 | (keyidx or 0))  # Y=1: the byte stays odd
    return bytes(out)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(vp8_descriptor() + VP8_KEY, True, id="key, no extension"),
        pytest.param(vp8_descriptor(x=True) + VP8_KEY, True, id="key, X with no fields"),
        pytest.param(vp8_descriptor(picture_id=0x35) + VP8_KEY, True, id="key, 7-bit PictureID"),
        pytest.param(
            vp8_descriptor(picture_id=0x1235, m=1) + VP8_KEY, True, id="key, 15-bit PictureID"
        ),
        pytest.param(vp8_descriptor(tl0picidx=0x11) + VP8_KEY, True, id="key, L"),
        pytest.param(vp8_descriptor(tid=1) + VP8_KEY, True, id="key, T"),
        pytest.param(vp8_descriptor(keyidx=3) + VP8_KEY, True, id="key, K"),
        pytest.param(
            vp8_descriptor(picture_id=0x1235, m=1, tl0picidx=0x11, tid=2, keyidx=5) + VP8_KEY,
            True,
            id="key, I (15 bits) L T K",
        ),
        pytest.param(
            vp8_descriptor(picture_id=0x35, tl0picidx=0x11, tid=0, keyidx=1) + VP8_KEY,
            True,
            id="key, I (7 bits) L T K",
        ),
        pytest.param(vp8_descriptor(reserved=0x48) + VP8_KEY, True, id="key, R bits ignored"),
        pytest.param(vp8_descriptor(s=0) + VP8_KEY[:3], False, id="S=0 continuation"),
        pytest.param(
            vp8_descriptor(s=0, picture_id=0x1235, m=1) + VP8_KEY,
            False,
            id="S=0 with a key-frame-looking payload",
        ),
        pytest.param(vp8_descriptor(pid=1) + VP8_KEY, False, id="PartID 1"),
        pytest.param(vp8_descriptor(pid=7) + VP8_KEY, False, id="PartID 7"),
        pytest.param(vp8_descriptor() + VP8_INTER, False, id="interframe P=1"),
        pytest.param(
            vp8_descriptor(picture_id=0x1234, m=1, tl0picidx=0x10, tid=1) + VP8_INTER,
            False,
            id="interframe with extensions",
        ),
        pytest.param(b"", False, id="empty"),
        pytest.param(vp8_descriptor(), False, id="descriptor only"),
        pytest.param(b"\x90", False, id="X set, extension byte missing"),
        pytest.param(b"\x90\x80", False, id="I set, PictureID missing"),
        pytest.param(b"\x90\x80\x92", False, id="15-bit PictureID cut in half"),
        pytest.param(b"\x90\x40", False, id="L set, TL0PICIDX missing"),
        pytest.param(b"\x90\x20", False, id="T set, TID byte missing"),
        pytest.param(
            vp8_descriptor(picture_id=0x1235, m=1, tl0picidx=0x11, tid=2, keyidx=5),
            False,
            id="all extensions, no payload header",
        ),
    ],
)
def test_vp8_is_key_frame(payload: bytes, expected: bool) -> None:
    assert vp8.is_key_frame(payload) is expected


NOISE = np.random.default_rng(7).integers(0, 256, (240, 320, 3), dtype=np.uint8)


def _frame(index: int) -> av.VideoFrame:
    """A 320x240 frame of noise shifted by ``index``: key frames span several packets and
    interframes carry real changes."""
    frame = av.VideoFrame.from_ndarray(np.roll(NOISE, index * 4, axis=1), format="rgb24")
    frame.pts = index * 3000
    frame.time_base = Fraction(1, 90000)
    return frame


def test_vp8_is_key_frame_on_aiortc_encoder_output() -> None:
    """aiortc's VP8 encoder (15-bit PictureID descriptors): only the first packet of a forced
    key frame is a key frame; every packet of an interframe and every continuation is not."""
    encoder = Vp8Encoder()
    encoder.picture_id = 0x1235
    first, _ = encoder.encode(_frame(0), force_keyframe=True)
    inter, _ = encoder.encode(_frame(1))
    forced, _ = encoder.encode(_frame(2), force_keyframe=True)
    later, _ = encoder.encode(_frame(3))

    for payloads in (first, forced):
        assert len(payloads) > 1  # a key frame of 320x240 spans several packets
        assert vp8.is_key_frame(payloads[0])
        assert not any(vp8.is_key_frame(p) for p in payloads[1:])
    for payloads in (inter, later):
        assert payloads  # not a dropped frame
        assert not any(vp8.is_key_frame(p) for p in payloads)
    # agrees with aiortc's own descriptor parser and RFC 6386's key-frame start code
    for payload in first + inter + forced + later:
        descriptor, data = VpxPayloadDescriptor.parse(payload)
        key = bool(descriptor.partition_start) and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"
        assert vp8.is_key_frame(payload) is key


# --- H.264 (RFC 6184) -------------------------------------------------------------------------
#
# NAL unit header (§1.3):   |F|NRI|  Type   |   Type 5 IDR slice, 7 SPS, 8 PPS, 1 non-IDR slice,
#                                               24 STAP-A, 25 STAP-B, 28 FU-A
# STAP-A (§5.7.1):          | STAP-A header | NALU 1 size (16) | NALU 1 | NALU 2 size | NALU 2 …
# FU-A (§5.8):              | FU indicator (F|NRI|28) | FU header |S|E|R| Type | | fragment …

SPS = bytes([0x67, 0x42, 0xC0, 0x1E, 0xD9, 0x00])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
NON_IDR = bytes([0x41, 0x9A, 0x02, 0x10])
SEI = bytes([0x06, 0x05, 0x01, 0x80])


def stap_a(*units: bytes, sizes: list[int] | None = None) -> bytes:
    """A STAP-A packet (NRI 3) of ``units``; ``sizes`` overrides the size fields."""
    out = bytearray([0x78])
    for unit, size in zip(units, sizes or [len(u) for u in units], strict=True):
        out += size.to_bytes(2, "big") + unit
    return bytes(out)


def fu_a(nal_header: int, *, start: bool, end: bool = False) -> bytes:
    """An FU-A fragment of a NAL unit whose header is ``nal_header``."""
    indicator = (nal_header & 0xE0) | 28
    header = start << 7 | end << 6 | (nal_header & 0x1F)
    return bytes([indicator, header, 0x88, 0x84, 0x21])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(IDR, True, id="IDR single NAL"),
        pytest.param(SPS, True, id="SPS single NAL"),
        pytest.param(bytes([0x25, 0x88]), True, id="IDR with NRI 1"),
        pytest.param(PPS, False, id="PPS alone"),
        pytest.param(NON_IDR, False, id="non-IDR slice"),
        pytest.param(SEI, False, id="SEI"),
        pytest.param(stap_a(SPS, PPS, IDR), True, id="STAP-A SPS+PPS+IDR"),
        pytest.param(stap_a(PPS, IDR), True, id="STAP-A PPS+IDR"),
        pytest.param(stap_a(SEI, NON_IDR), False, id="STAP-A SEI+non-IDR"),
        pytest.param(stap_a(SPS, PPS, IDR, sizes=[0, 4, 5]), False, id="STAP-A size 0"),
        pytest.param(stap_a(SPS, sizes=[100]), False, id="STAP-A size past the end"),
        pytest.param(stap_a(PPS, IDR, sizes=[4, 6]), False, id="STAP-A second size past the end"),
        pytest.param(
            stap_a(PPS, SEI, sizes=[2, 4]), False, id="STAP-A size too small misaligns the rest"
        ),
        pytest.param(bytes([0x78]), False, id="STAP-A header only"),
        pytest.param(bytes([0x78, 0x00, 0x05]), False, id="STAP-A size without a unit"),
        pytest.param(bytes([0x59, 0x00, 0x00]) + stap_a(IDR)[1:], False, id="STAP-B not read"),
        pytest.param(fu_a(0x65, start=True), True, id="FU-A start of IDR"),
        pytest.param(fu_a(0x65, start=False), False, id="FU-A middle of IDR"),
        pytest.param(fu_a(0x65, start=False, end=True), False, id="FU-A end of IDR"),
        pytest.param(fu_a(0x41, start=True), False, id="FU-A start of non-IDR"),
        pytest.param(bytes([0x7C]), False, id="FU-A indicator only"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_h264_is_key_frame(payload: bytes, expected: bool) -> None:
    assert h264.is_key_frame(payload) is expected
