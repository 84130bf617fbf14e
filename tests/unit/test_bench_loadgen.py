"""The load generator's packet accounting (benchmarks/loadgen): payloads found in raw RTP
whatever the header holds, send/receive matching inside the measurement window, SDP helpers."""

from __future__ import annotations

import time

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from benchmarks.loadgen.aiortc_hooks import payload_key
from benchmarks.loadgen.peers import Ledger, loopback_only, media_payload_types


def _ext_map() -> HeaderExtensionsMap:
    ext_map = HeaderExtensionsMap()
    uri = "urn:ietf:params:rtp-hdrext:sdes:mid"
    params = RTCRtpSendParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(1, uri)])
    ext_map.configure(params)
    return ext_map


def test_payload_key_skips_csrcs_and_extensions() -> None:
    packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=3000, ssrc=1234)
    packet.csrc = [11, 22]
    packet.extensions.mid = "video-0"
    packet.payload = b"\x90\x80payload bytes"
    assert payload_key(packet.serialize(_ext_map())) == (96, b"\x90\x80payload bytes")


def test_payload_key_drops_padding() -> None:
    plain = RtpPacket(payload_type=111, sequence_number=1, timestamp=960, ssrc=5)
    plain.payload = b"opus"
    data = bytearray(plain.serialize()) + b"\x00\x00\x03"
    data[0] |= 0x20  # P bit: the last byte counts the padding (RFC 3550 §5.1)
    assert payload_key(bytes(data)) == (111, b"opus")


def test_ledger_matches_only_packets_sent_inside_the_window() -> None:
    ledger = Ledger()
    assert not ledger.sent(b"before")
    ledger.open_window(time.perf_counter())
    assert ledger.sent(b"inside")
    ledger.close_window(time.perf_counter())
    assert not ledger.sent(b"after")
    inside = ledger.send_time(b"inside")
    assert inside is not None and ledger.t0 <= inside <= ledger.t1
    before = ledger.send_time(b"before")
    assert before is not None and before < ledger.t0
    assert ledger.send_time(b"never sent") is None


def test_sdp_helpers() -> None:
    sdp = "\r\n".join(
        [
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=rtpmap:111 opus/48000/2",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
            "a=candidate:2 1 udp 2130706431 10.1.2.3 40001 typ host",
        ]
    )
    assert media_payload_types(sdp) == {96, 111}
    kept = loopback_only(sdp)
    assert "127.0.0.1 40000" in kept and "10.1.2.3" not in kept
