"""benchmarks/c_floor.py: the C floor really forwards, so it does not time a no-op.

A correctness test, not a timing test: the C program forwards a few packets to a few
subscribers; every sink must get every packet, and the last packet each sink got must decrypt
(pylibsrtp, with that subscriber's key, which the program prints in its debug mode) to an RTP
packet with the subscriber's SSRC, payload type, sequence number, timestamp and MID, carrying
the publisher's payload bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from benchmarks import c_floor

PACKETS = 7  # received packets per repetition: two full video frames and one more packet
REPETITIONS = 2  # plus the warm-up: 21 packets in all
SUBSCRIBERS = 3
KINDS = {  # subscriber PT, payload bytes, RTP ts step per frame, packets per frame
    "audio": (109, 100, 960, 1),
    "video": (98, 1100, 3000, 3),
}
SENDING = tuple(v for v in c_floor.VARIANTS if v != "no_send")


@pytest.fixture(scope="module")
def floor() -> Path:
    try:
        return c_floor.build_floor()
    except c_floor.FloorUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the C floor cannot be built under CI: {exc}")
        pytest.skip(str(exc))


def _decrypt(key_hex: str, packet_hex: str) -> bytes:
    policy = Policy(
        key=bytes.fromhex(key_hex),
        ssrc_type=Policy.SSRC_ANY_INBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    )
    return Session(policy).unprotect(bytes.fromhex(packet_hex))


def _check_last_packets(out: dict[str, Any], kind: str, ingress: str) -> None:
    pt, payload_bytes, ts_step, per_frame = KINDS[kind]
    total = PACKETS * (REPETITIONS + 1)
    last_k = out["last_k"]
    assert last_k == total - 1
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpSendParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(
                    id=5, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=6, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
            ]
        )
    )
    ssrcs = set()
    for sub in out["subscribers_debug"]:
        assert sub["received"] == total
        packet = RtpPacket.parse(_decrypt(sub["key"], sub["last_packet"]), ext_map)
        ssrcs.add(packet.ssrc)
        assert packet.ssrc == sub["ssrc"]
        assert packet.payload_type == pt
        assert packet.sequence_number == (sub["first_seq"] + total - 1) & 0xFFFF
        assert packet.timestamp == (last_k // per_frame * ts_step + sub["ts_offset"]) & 0xFFFFFFFF
        assert packet.marker == (last_k % per_frame == per_frame - 1)
        assert packet.extensions.mid == "0"
        assert packet.extensions.abs_send_time is not None
        assert (packet.extensions.audio_level is not None) == (kind == "audio")
        if ingress == "unprotect":
            assert packet.payload == bytes((last_k + i) & 0xFF for i in range(payload_bytes))
        else:  # no unprotect: the publisher's ciphertext is forwarded as the payload
            assert len(packet.payload) == payload_bytes
    assert len(ssrcs) == SUBSCRIBERS


@pytest.mark.parametrize("ingress", c_floor.INGRESSES)
@pytest.mark.parametrize("variant", SENDING)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_sink_gets_every_packet_decryptable(
    floor: Path, kind: str, variant: str, ingress: str
) -> None:
    out = c_floor.run_floor(
        floor, kind, SUBSCRIBERS, variant, PACKETS, REPETITIONS, ingress, debug=True
    )
    expected = PACKETS * (REPETITIONS + 1) * SUBSCRIBERS
    assert out["send_errors"] == 0
    assert out["sent"] == out["received"] == out["expected"] == expected
    assert out["plain_bytes"] == 12 + 12 + KINDS[kind][1]  # header + extension block
    assert out["srtp_bytes"] == out["plain_bytes"] + 16  # the GCM tag
    assert len(out["samples_us"]) == REPETITIONS
    _check_last_packets(out, kind, ingress)


def test_no_send_protects_every_packet(floor: Path) -> None:
    out = c_floor.run_floor(floor, "video", SUBSCRIBERS, "no_send", PACKETS, REPETITIONS)
    assert out["sent"] == out["expected"] == PACKETS * (REPETITIONS + 1) * SUBSCRIBERS
    assert out["srtp_bytes"] == out["plain_bytes"] + 16


def test_measure_and_table(floor: Path) -> None:
    settings = c_floor.Settings(subscribers=(1, 2), sends_per_rep=10, min_packets=5, repetitions=1)
    results = c_floor.measure(settings, ("audio",), ("sendto", "sendmmsg_shared"), binary=floor)
    assert [(r["subscribers"], r["variant"]) for r in results] == [
        (1, "sendto"),
        (1, "sendmmsg_shared"),
        (2, "sendto"),
        (2, "sendmmsg_shared"),
    ]
    assert all(r["delivered"] == 1.0 for r in results)
    table = c_floor.format_table({"results": results, "machine": c_floor.machine(settings)})
    assert "sendmmsg_shared" in table
