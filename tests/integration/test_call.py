"""Calls through the SFU with real aiortc peers over loopback."""

from __future__ import annotations

import asyncio
import itertools
import time

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket

from switchboard.client import RemoteTrack, ToneTrack, VideoTestPattern
from switchboard.sfu import aiortc_glue
from switchboard.sfu.codecs import h264, vp8
from switchboard.signalling.keys import ROOMS, SFU

from .conftest import Join, Peer, Server


def receives_all(peers: list[Peer], frames: int) -> bool:
    return all(
        p.frames_from(q, kind) >= frames
        for p, q in itertools.permutations(peers, 2)
        for kind in ("audio", "video")
    )


async def test_three_participants_receive_each_other(join: Join) -> None:
    a, b, c = [await join(name) for name in ("a", "b", "c")]
    await a.until(lambda: receives_all([a, b, c], 10), timeout=30)
    for p, q in itertools.permutations([a, b, c], 2):
        (video,) = [
            t
            for t in p.tracks.values()
            if t.participant_id == q.room.participant_id and t.kind == "video"
        ]
        assert p.sizes[video.track_id] == (320, 240)
    names = {t.participant_name for t in a.tracks.values()}
    assert names == {"b", "c"}


async def test_forwarded_payloads_equal_sent_payloads(join: Join) -> None:
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    received: list[bytes] = []

    def tap(remote: RemoteTrack) -> None:
        (transceiver,) = [
            t
            for t in subscriber.room.subscribe_pc.getTransceivers()
            if t.receiver.track is remote.track
        ]

        async def record(packet: RtpPacket) -> None:
            if remote.kind == "video":
                received.append(packet.payload)

        aiortc_glue.ReceiveTap(transceiver.receiver, record, decode=True)

    on_track = subscriber.room.on_track
    subscriber.room.on_track = lambda remote: (tap(remote), on_track(remote))
    await publisher.room.publish([ToneTrack(), VideoTestPattern(320, 240)])
    (video_sender,) = [
        t.sender for t in publisher.room.publish_pc.getTransceivers() if t.kind == "video"
    ]
    sent: set[bytes] = set()
    aiortc_glue.tap_sent_rtp(
        video_sender, lambda p: sent.add(p.payload) if p.ssrc == video_sender._ssrc else None
    )
    await subscriber.until(
        lambda: len(received) >= 200 and subscriber.frames_from(publisher, "video") >= 20
    )
    assert all(payload in sent for payload in received)
    assert len(set(received)) >= 200


async def test_late_joiner_gets_a_key_frame_first_and_within_a_second(join: Join) -> None:
    a = await join("a")
    b = await join("b")
    await a.until(lambda: receives_all([a, b], 30))  # a's encoder is well past its key frame
    late = await join("late", publish=False)
    await late.until(
        lambda: late.frames_from(a, "video") >= 1 and late.frames_from(b, "video") >= 1, timeout=5
    )
    for remote in late.tracks.values():
        if remote.kind == "video":
            assert remote.first_packet is not None
            assert vp8.is_key_frame(remote.first_packet.payload)
            waited = late.first_frame_at[remote.track_id] - late.track_at[remote.track_id]
            assert waited < 1.0, f"first frame {waited:.2f} s after subscribing"


async def test_leave_and_abrupt_disconnect_remove_tracks(server: Server, join: Join) -> None:
    a, b, c = [await join(name) for name in ("a", "b", "c")]
    await a.until(lambda: receives_all([a, b, c], 5), timeout=30)
    b_tracks = {t.track_id for t in a.tracks.values() if t.participant_id == b.room.participant_id}
    c_tracks = {t.track_id for t in a.tracks.values() if t.participant_id == c.room.participant_id}

    await b.room.leave()
    await a.until(lambda: b_tracks <= a.ended and a.left.get(b.room.participant_id) == "left")
    await c.until(lambda: c.left.get(b.room.participant_id) == "left")

    await c.room.close()  # no leave: the socket just goes away
    await a.until(
        lambda: c_tracks <= a.ended and a.left.get(c.room.participant_id) == "disconnected"
    )
    room = server.app[ROOMS].rooms["r1"]
    assert list(room.participants) == [a.room.participant_id]
    assert {p.participant_id for p in room.router.producers.values()} == {a.room.participant_id}
    # a's subscribe connection was renegotiated: its m-sections of b and c are inactive
    await a.until(
        lambda: all(t.currentDirection == "inactive" for t in a.room.subscribe_pc.getTransceivers())
    )

    await a.room.leave()
    await a.room.closed.wait()
    assert "r1" not in server.app[ROOMS].rooms
    assert server.app[SFU].routers == {}


async def test_h264_is_forwarded_and_decoded(join: Join) -> None:
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    await publisher.room.publish([VideoTestPattern(320, 240)], video_codec="H264")
    await subscriber.until(lambda: subscriber.frames_from(publisher, "video") >= 10)
    (remote,) = subscriber.tracks.values()
    assert remote.first_packet is not None
    assert h264.is_key_frame(remote.first_packet.payload)
    (transceiver,) = subscriber.room.subscribe_pc.getTransceivers()
    assert [c.mimeType for c in transceiver._codecs][:1] == ["video/H264"]


async def test_subscriber_pli_reaches_publisher_paced(join: Join) -> None:
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    await publisher.room.publish([VideoTestPattern(320, 240)])
    (video_sender,) = [t.sender for t in publisher.room.publish_pc.getTransceivers()]
    requests: list[float] = []
    got_request = asyncio.Event()

    def on_request() -> None:
        requests.append(time.monotonic())
        got_request.set()

    aiortc_glue.tap_key_frame_requests(video_sender, on_request)

    def quiet() -> bool:  # decoding, and the Consumer's own requests are over 600 ms old
        last = requests[-1] if requests else 0.0
        return subscriber.frames_from(publisher, "video") >= 5 and time.monotonic() - last > 0.6

    await subscriber.until(quiet)  # re-checked on every decoded frame
    (transceiver,) = subscriber.room.subscribe_pc.getTransceivers()
    (remote,) = subscriber.tracks.values()
    assert remote.first_packet is not None
    ssrc = remote.first_packet.ssrc
    requests.clear()
    got_request.clear()
    start = time.monotonic()
    for _ in range(20):  # a burst of PLIs from one subscriber
        await aiortc_glue.send_pli(transceiver.receiver, ssrc)
    await asyncio.wait_for(got_request.wait(), 2)
    # the first reaches the publisher at once; the rest merge into at most one more, 500 ms on
    assert requests[0] - start < 0.5
    got_request.clear()
    await asyncio.wait_for(got_request.wait(), 2)
    assert len(requests) == 2
    assert requests[1] - requests[0] >= 0.45


def candidates_on_first_section_only(sdp: str) -> str:
    """Rewrite an aiortc SDP the way a browser bundles it: candidates on the first m-section."""
    out, section = [], -1
    for line in sdp.split("\r\n"):
        section += line.startswith("m=")
        if section > 0 and line.startswith(("a=candidate:", "a=end-of-candidates")):
            continue
        out.append(line)
    return "\r\n".join(out)


async def test_browser_style_bundle_candidates_then_end_of_candidates(join: Join) -> None:
    subscriber = await join("subscriber", publish=False)
    publisher = await join("publisher", publish=False)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        pc.addTransceiver(ToneTrack(), direction="sendonly")
        pc.addTransceiver(VideoTestPattern(320, 240), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = candidates_on_first_section_only(pc.localDescription.sdp)
        assert offer.count("a=candidate:") < pc.localDescription.sdp.count("a=candidate:")
        result = await publisher.room.request("publish_offer", sdp=offer)
        await publisher.room.request("trickle", target="publish", candidate=None)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=result["sdp"], type="answer"))
        await subscriber.until(lambda: subscriber.frames_from(publisher, "video") >= 5)
    finally:
        await pc.close()
