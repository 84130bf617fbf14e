"""benchmarks/hot_path.py: the benchmarked path forwards what the SFU really forwards.

A correctness test, not a timing test: a few SRTP packets go through the wired Producer →
Router → Consumer → ForwardingSender path once, and each sink must hold exactly those packets,
decryptable with its subscriber's SRTP key, with the subscriber's SSRC, payload type and MID
and the publisher's payload bytes unchanged.
"""

from __future__ import annotations

import pytest
from aiortc.rtcdtlstransport import SRTP_PROFILES, SRTPProtectionProfile
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from benchmarks import hot_path
from benchmarks.hot_path import AUDIO, SUBSCRIBER_EXT_IDS, VIDEO, HotPath, MediaKind

PACKETS = 7  # two full video frames and the first packet of a third


def _subscriber_ext_map(kind: MediaKind) -> HeaderExtensionsMap:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpSendParameters(headerExtensions=hot_path._ext_params(SUBSCRIBER_EXT_IDS, kind))
    )
    return ext_map


@pytest.mark.parametrize("profile", SRTP_PROFILES, ids=lambda p: p.openssl_profile.decode())
@pytest.mark.parametrize("kind", [AUDIO, VIDEO], ids=lambda k: k.name)
async def test_sink_gets_decryptable_rewritten_packets(
    kind: MediaKind, profile: SRTPProtectionProfile
) -> None:
    path = await HotPath.create(kind, 1, profile)
    try:
        plain, protected = path.publisher.packets(PACKETS)
        await path.forward(protected)
        (received,) = path.drain_sinks()
        subscriber = path.subscribers[0]
        assert subscriber.consumer.packets_sent == PACKETS
    finally:
        path.close()

    assert len(received) == PACKETS
    rx = hot_path._srtp_session(subscriber.key, profile, outbound=False)
    ext_map = _subscriber_ext_map(kind)
    publisher_ext_map = HeaderExtensionsMap()
    publisher_ext_map.configure(
        RTCRtpSendParameters(
            headerExtensions=hot_path._ext_params(hot_path.PUBLISHER_EXT_IDS, kind)
        )
    )
    first_seq = None
    for index, (sent, got) in enumerate(zip(plain, received, strict=True)):
        original = RtpPacket.parse(sent, publisher_ext_map)
        data = rx.unprotect(got)
        packet = RtpPacket.parse(data, ext_map)
        assert packet.ssrc == subscriber.sender.ssrc != original.ssrc
        assert packet.payload_type == kind.subscriber_pt != original.payload_type
        assert packet.payload == original.payload  # byte-exact
        assert data.endswith(original.payload)
        assert packet.marker == original.marker
        assert packet.timestamp == original.timestamp
        assert packet.extensions.mid == hot_path.MID
        assert packet.extensions.abs_send_time is not None
        assert packet.extensions.audio_level == original.extensions.audio_level
        if first_seq is None:
            first_seq = packet.sequence_number
        assert packet.sequence_number == (first_seq + index) & 0xFFFF  # gap-free


def test_srtp_floor_and_parse_references_run() -> None:
    profile = SRTP_PROFILES[0]
    for measure in (hot_path.measure_srtp_sendto_floor, hot_path.measure_parse_serialize):
        stats = measure(AUDIO, 5, 2, profile)
        assert 0 <= stats.min_us <= stats.median_us <= stats.max_us


async def test_table_and_json_shape() -> None:
    settings = hot_path.Settings(subscribers=(1,), sends_per_rep=6, min_packets=6, repetitions=1)
    document = await hot_path.run(settings, SRTP_PROFILES[0])
    assert {(r["kind"], r["subscribers"]) for r in document["results"]} == {
        ("audio", 1),
        ("video", 1),
    }
    for result in document["results"]:
        assert set(result) >= {"kind", "subscribers", "min_us", "median_us", "max_us"}
        assert result["delivered"] == 1.0
    assert "video" in hot_path.format_table(document)
