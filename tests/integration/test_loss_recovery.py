"""Loss recovery through the SFU (RFC 4585 NACK, RFC 4588 RTX, PLI) and lip sync (RFC 3550
Sender Reports), with faults injected into real aiortc peers: a drop hook on the subscriber's
receiver (loss between SFU and subscriber) or on the publisher's sender (publisher to SFU)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket, RtpPacket

from switchboard.client import RemoteTrack, ToneTrack, VideoTestPattern
from switchboard.sfu import aiortc_glue
from switchboard.sfu.codecs import vp8
from switchboard.sfu.consumer import Consumer
from switchboard.signalling.keys import ROOMS
from tests.helpers.media import IndexedPattern, LossPattern, read_index

from .conftest import Join, Peer, Server

WINDOW_FRAMES = 150  # 5 s of 30 frames/s video per measurement


@dataclass
class Decoded:
    """What a subscriber decoded of one IndexedPattern track: (monotonic s, index or None)."""

    frames: list[tuple[float, int | None]] = field(default_factory=list)
    receiver: RTCRtpReceiver | None = None
    media_pt: int | None = None

    @property
    def corrupted(self) -> int:
        return sum(index is None for _, index in self.frames)

    @property
    def last_index(self) -> int:
        return max((i for _, i in self.frames if i is not None), default=-1)

    def distinct_in(self, first: int, count: int) -> int:
        return len({i for _, i in self.frames if i is not None and first <= i < first + count})


def watch_video(subscriber: Peer, decoded: Decoded) -> None:
    """Decode the subscriber's video track here, reading each frame's index."""
    on_track = subscriber.room.on_track

    def on_remote(remote: RemoteTrack) -> None:
        if remote.kind != "video":
            on_track(remote)
            return
        assert subscriber.room.subscribe_pc is not None
        (transceiver,) = [
            t
            for t in subscriber.room.subscribe_pc.getTransceivers()
            if t.receiver.track is remote.track
        ]
        decoded.receiver = transceiver.receiver
        decoded.media_pt = aiortc_glue.negotiated_codecs(transceiver)[0].payloadType
        asyncio.ensure_future(read_frames(remote))

    async def read_frames(remote: RemoteTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await remote.track.recv()
                decoded.frames.append((time.monotonic(), read_index(frame)))
                subscriber.changed.set()

    subscriber.room.on_track = on_remote


def video_sender(publisher: Peer) -> RTCRtpSender:
    assert publisher.room.publish_pc is not None
    (sender,) = [t.sender for t in publisher.room.publish_pc.getTransceivers() if t.kind == "video"]
    return sender


def video_consumer(server: Server, publisher: Peer) -> Consumer:
    router = server.app[ROOMS].rooms["r1"].router
    (producer,) = [
        p
        for p in router.producers.values()
        if p.participant_id == publisher.room.participant_id and p.kind == "video"
    ]
    (consumer,) = router.consumers_of(producer.id)
    return consumer


async def publish_indexed(publisher: Peer, subscriber: Peer) -> tuple[IndexedPattern, Decoded]:
    decoded = Decoded()
    watch_video(subscriber, decoded)
    pattern = IndexedPattern()
    await publisher.room.publish([ToneTrack(), pattern])
    await subscriber.until(lambda: len(decoded.frames) >= 30, timeout=20)
    return pattern, decoded


def inject(
    direction: str, publisher: Peer, decoded: Decoded, drop: Callable[[RtpPacket], bool]
) -> None:
    """Install ``drop`` on the subscriber's video receiver (downlink) or on the publisher's
    video packets, RTX included (uplink)."""
    if direction == "downlink":
        assert decoded.receiver is not None
        aiortc_glue.drop_received_rtp(decoded.receiver, drop)
    else:
        sender = video_sender(publisher)
        video_ssrcs = {sender._ssrc, sender._rtx_ssrc}
        aiortc_glue.drop_sent_rtp(sender, lambda p: p.ssrc in video_ssrcs and drop(p))


@pytest.mark.parametrize("direction", ["downlink", "uplink"])
async def test_five_percent_video_loss_is_repaired(
    server: Server, join: Join, direction: str
) -> None:
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    pattern, decoded = await publish_indexed(publisher, subscriber)
    loss = LossPattern(0.05)
    inject(direction, publisher, decoded, lambda p: loss.drop())

    # the no-loss run, then the same length with 5% of video packets dropped
    base_first = decoded.last_index + 1
    await subscriber.until(lambda: decoded.last_index >= base_first + WINDOW_FRAMES, timeout=30)
    loss.active = True
    lossy_first = pattern.index  # the first frame encoded after loss began
    await subscriber.until(lambda: decoded.last_index >= lossy_first + WINDOW_FRAMES, timeout=30)
    loss.active = False
    base = decoded.distinct_in(base_first, WINDOW_FRAMES)
    lossy = decoded.distinct_in(lossy_first, WINDOW_FRAMES)
    consumer = video_consumer(server, publisher)
    print(
        f"\n{direction}: decoded {base}/{WINDOW_FRAMES} frames without loss, "
        f"{lossy}/{WINDOW_FRAMES} with {loss.dropped}/{loss.seen} video packets dropped; "
        f"{decoded.corrupted} corrupted; SFU resent {consumer.packets_resent}, "
        f"NACKed upstream {consumer.producer.stream.nacked}"
    )
    assert loss.dropped >= 10
    assert decoded.corrupted == 0
    assert lossy >= base - 0.03 * WINDOW_FRAMES
    if direction == "downlink":
        assert consumer.packets_resent >= loss.dropped // 2
    else:
        assert consumer.producer.stream.nacked >= loss.dropped // 2


@pytest.mark.parametrize("direction", ["downlink", "uplink"])
async def test_lost_key_frame_is_recovered_within_one_second(
    server: Server, join: Join, direction: str
) -> None:
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    _, decoded = await publish_indexed(publisher, subscriber)
    armed = False
    key_ts: int | None = None
    dropped_at: float | None = None
    dropped = 0
    media_ssrc: int | None = None

    def drop(packet: RtpPacket) -> bool:
        """Drop the first transmission of every packet of the next key frame."""
        nonlocal armed, key_ts, dropped_at, dropped, media_ssrc
        rtx = direction == "downlink" and packet.payload_type != decoded.media_pt
        if direction == "uplink":
            rtx = packet.ssrc != video_sender(publisher)._ssrc
        if rtx:
            return False
        media_ssrc = packet.ssrc
        if armed and key_ts is None and vp8.is_key_frame(packet.payload):
            key_ts, armed = packet.timestamp, False
            dropped_at = time.monotonic()
        if key_ts is not None and packet.timestamp == key_ts:
            dropped += 1
            return True
        return False

    inject(direction, publisher, decoded, drop)
    await subscriber.until(lambda: media_ssrc is not None)
    armed = True
    assert decoded.receiver is not None and media_ssrc is not None
    if direction == "downlink":
        await aiortc_glue.send_pli(decoded.receiver, media_ssrc)
    else:
        video_consumer(server, publisher).producer.request_key_frame()
    await subscriber.until(lambda: dropped_at is not None, timeout=5)
    assert dropped_at is not None
    before = len([t for t, _ in decoded.frames if t < dropped_at])
    await subscriber.until(lambda: len(decoded.frames) >= before + 30, timeout=10)
    times = [t for t, _ in decoded.frames[max(0, before - 1) :]]
    stall = max(b - a for a, b in zip(times, times[1:], strict=False))
    print(f"\n{direction}: key frame of {dropped} packets dropped; longest stall {stall:.3f} s")
    assert dropped >= 1
    assert decoded.corrupted == 0
    assert stall < 1.0


async def test_audio_and_video_map_to_the_same_wall_clock(join: Join) -> None:
    """Lip sync: each stream's arrival time minus its RTP time mapped through our Sender
    Reports (RFC 3550 §6.4.1) is the same for audio and video within 50 ms."""
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    reports: dict[str, tuple[int, int]] = {}
    offsets: dict[str, list[float]] = {"audio": [], "video": []}
    clock_rates = {"audio": 48_000, "video": 90_000}

    def tap(remote: RemoteTrack) -> None:
        assert subscriber.room.subscribe_pc is not None
        (transceiver,) = [
            t
            for t in subscriber.room.subscribe_pc.getTransceivers()
            if t.receiver.track is remote.track
        ]
        kind, media_pt = remote.kind, aiortc_glue.negotiated_codecs(transceiver)[0].payloadType

        def on_rtcp(packet: object) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                reports[kind] = (info.ntp_timestamp, info.rtp_timestamp)

        async def on_rtp(packet: RtpPacket) -> None:
            if packet.payload_type != media_pt or kind not in reports:
                return
            sr_ntp, sr_ts = reports[kind]
            delta_ts = (packet.timestamp - sr_ts + (1 << 31)) % (1 << 32) - (1 << 31)
            sent_s = sr_ntp / (1 << 32) + delta_ts / clock_rates[kind]
            offsets[kind].append(clock.current_ntp_time() / (1 << 32) - sent_s)
            subscriber.changed.set()

        aiortc_glue.tap_rtcp(transceiver.receiver, on_rtcp)
        aiortc_glue.ReceiveTap(transceiver.receiver, on_rtp, decode=True)

    on_track = subscriber.room.on_track
    subscriber.room.on_track = lambda remote: (tap(remote), on_track(remote))
    await publisher.room.publish([ToneTrack(), VideoTestPattern(320, 240)])
    await subscriber.until(lambda: min(map(len, offsets.values())) >= 200, timeout=20)
    audio, video = (statistics.median(offsets[k]) for k in ("audio", "video"))
    print(f"\nA/V offset at the subscriber: {(audio - video) * 1000:+.1f} ms")
    assert abs(audio - video) < 0.050


async def test_packet_lost_for_good_upstream_makes_consumers_wait_for_a_key_frame(
    server: Server, join: Join
) -> None:
    """A publisher packet that never arrives, nor any retransmission of it: the SFU gives it
    up after its NACKs (RFC 4585 §6.2.1), its Consumer forwards nothing until the key frame it
    asks for (PLI, RFC 4585 §6.3.1)."""
    publisher = await join("publisher", publish=False)
    subscriber = await join("subscriber", publish=False)
    _, decoded = await publish_indexed(publisher, subscriber)
    sender = video_sender(publisher)
    target: int | None = None
    key_frame_requests: list[float] = []
    aiortc_glue.tap_key_frame_requests(sender, lambda: key_frame_requests.append(time.monotonic()))

    def drop(packet: RtpPacket) -> bool:
        nonlocal target
        if packet.ssrc == sender._ssrc:
            if target is None and not vp8.is_key_frame(packet.payload):
                target = packet.sequence_number
            return packet.sequence_number == target
        return target is not None and packet.payload[:2] == target.to_bytes(2, "big")

    consumer = video_consumer(server, publisher)
    before = len(decoded.frames)
    inject("uplink", publisher, decoded, drop)
    await subscriber.until(lambda: consumer.key_frame_waits >= 1, timeout=5)
    waited_at = time.monotonic()
    await subscriber.until(lambda: bool(key_frame_requests) and key_frame_requests[-1] >= waited_at)
    await subscriber.until(lambda: len(decoded.frames) >= before + 60, timeout=10)
    print(
        f"\ngave up after {consumer.producer.stream.nacked} NACKs; "
        f"corrupted frames at the subscriber {decoded.corrupted}"
    )
    assert consumer.producer.stream.lost == 1
    assert consumer.key_frame_waits == 1
    # Frames sent while the hole was being NACKed are undecodable; a libwebrtc receiver skips
    # them, aiortc's jitter buffer decodes them after 128 packets. From the key frame on, all
    # is clean again.
    await subscriber.until(lambda: len(decoded.frames) >= before + 90, timeout=10)
    assert all(index is not None for _, index in decoded.frames[-30:])
