"""benchmarks/hot_path.py: the benchmarked path forwards what the SFU really forwards.

A correctness test, not a timing test: a few SRTP packets go through the wired Producer →
Router → Consumer → ForwardingSender path once, and each sink must hold exactly those packets,
decryptable with its subscriber's SRTP key, with the subscriber's SSRC, payload type and MID
and the publisher's payload bytes unchanged.
"""

from __future__ import annotations

import os

import pytest
from aiortc.rtcdtlstransport import SRTP_PROFILES, SRTPProtectionProfile
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from benchmarks import hot_path
from benchmarks.hot_path import AUDIO, SUBSCRIBER_EXT_IDS, VIDEO, HotPath, MediaKind

PACKETS = 7  # two full video frames and the first packet of a third
SUBSCRIBERS = 2


def _subscriber_ext_map(kind: MediaKind) -> HeaderExtensionsMap:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpSendParameters(headerExtensions=hot_path._ext_params(SUBSCRIBER_EXT_IDS, kind))
    )
    return ext_map


@pytest.mark.parametrize("ingress", hot_path.INGRESSES)
@pytest.mark.parametrize("send_path", hot_path.PATHS)
@pytest.mark.parametrize("profile", SRTP_PROFILES, ids=lambda p: p.openssl_profile.decode())
@pytest.mark.parametrize("kind", [AUDIO, VIDEO], ids=lambda k: k.name)
async def test_sink_gets_decryptable_rewritten_packets(
    kind: MediaKind, profile: SRTPProtectionProfile, send_path: str, ingress: str
) -> None:
    """Two subscribers, so that their senders take turns on the fast path's shared buffer."""
    path = await HotPath.create(kind, SUBSCRIBERS, profile, send_path, ingress)
    try:
        plain, protected = path.publisher.packets(PACKETS)
        await path.forward(protected)
        received = path.drain_sinks()
        for subscriber in path.subscribers:
            assert subscriber.consumer.packets_sent == PACKETS
            # the fast paths really ran (the send side resolved the nominated pair, the
            # receive side never fed aiortc's jitter buffer), or really did not
            assert (subscriber.sender._route_sendto is not None) == (send_path == "fast")
        jitter_buffer = path.producer._receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        assert (jitter_buffer._origin is None) == (send_path == "fast")
    finally:
        path.close()

    ext_map = _subscriber_ext_map(kind)
    publisher_ext_map = HeaderExtensionsMap()
    publisher_ext_map.configure(
        RTCRtpSendParameters(
            headerExtensions=hot_path._ext_params(hot_path.PUBLISHER_EXT_IDS, kind)
        )
    )
    assert len({s.sender.ssrc for s in path.subscribers}) == SUBSCRIBERS
    for subscriber, got_all in zip(path.subscribers, received, strict=True):
        assert len(got_all) == PACKETS
        rx = hot_path._srtp_session(subscriber.key, profile, outbound=False)
        first_seq = None
        for index, (sent, got) in enumerate(zip(plain, got_all, strict=True)):
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


def test_table_and_json_shape() -> None:
    """Both send paths, event loops and ingresses, side by side in one run (a sync test: each
    measurement runs in its own new event loop)."""
    settings = hot_path.Settings(subscribers=(1,), sends_per_rep=6, min_packets=6, repetitions=1)
    document = hot_path.run(
        settings, SRTP_PROFILES[0], hot_path.PATHS, hot_path.LOOPS, hot_path.INGRESSES
    )
    assert {
        (r["kind"], r["subscribers"], r["ingress"], r["path"], r["loop"])
        for r in document["results"]
    } == {
        (kind, 1, ingress, path, loop)
        for kind in ("audio", "video")
        for ingress in ("deque", "socket")
        for path in ("aiortc", "fast")
        for loop in ("asyncio", "uvloop")
    }
    for result in document["results"]:
        assert set(result) >= {"kind", "subscribers", "min_us", "median_us", "max_us"}
        assert result["delivered"] == 1.0
    table = hot_path.format_table(document)
    assert "video" in table and "uvloop" in table and "aiortc" in table
    # the C floor ran in the same run, for the same kinds and N, and each row has its ratio
    # (where it can be built: scripts/ensure-libsrtp-dev; under CI it must be)
    if not document["c_floor"] and os.environ.get("CI", "").lower() != "true":
        pytest.skip("the C floor cannot be built here (gcc, libsrtp2-dev)")
    floor = {(r["kind"], r["subscribers"], r["variant"]) for r in document["c_floor"]}
    assert floor == {(k, 1, v) for k in ("audio", "video") for v in ("sendto", "sendmmsg_shared")}
    assert all(r["delivered"] == 1.0 for r in document["c_floor"])
    assert "n/a" not in table and "c_floor sendmmsg_shared" in table
