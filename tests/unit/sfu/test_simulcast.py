"""SimulcastProducer and SimulcastConsumer fed real RTP packets: layer mapping and switching.

A Producer on an aiortc receiver and a Consumer on a ForwardingSender of an (unconnected) aiortc
peer connection, with the Router between them; packets are built and parsed with RID header
extensions as a browser sends them, and what the Consumer sends is read from the transport
(``tap_sent_rtp``; the send itself fails, nothing is connected).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpSenderInfo, RtcpSrPacket, RtpPacket, wrap_rtx

from switchboard.sfu import aiortc_glue
from switchboard.sfu.codecs import vp8
from switchboard.sfu.producer import Codec
from switchboard.sfu.router import Router
from switchboard.sfu.simulcast import SimulcastConsumer, SimulcastProducer
from switchboard.sfu.simulcast.consumer import Preference, preferred_layer, ts_diff

PT, RTX_PT = 96, 97
RIDS = ("q", "h", "f")
SSRC = {"q": 1111, "h": 2222, "f": 3333}
RTX_SSRC = {"q": 4111, "h": 4222, "f": 4333}
SEQ0 = {"q": 100, "h": 30000, "f": 65500}  # f wraps around
TS0 = {"q": 1_000, "h": 4_000_000_000, "f": 123_456_789}  # h wraps around
SIZE = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
PID0 = {"q": 5, "h": 32760, "f": 20000}  # VP8 PictureIDs (h wraps), one space per layer
TL0 = {"q": 250, "h": 7, "f": 100}
FRAME_TICKS = 3000  # 30 fps at 90 kHz

EXTENSIONS = HeaderExtensionsMap()
EXTENSIONS.configure(
    RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=10, uri=aiortc_glue.RID_URI),
            RTCRtpHeaderExtensionParameters(id=11, uri=aiortc_glue.REPAIRED_RID_URI),
        ]
    )
)


def vp8_payload(rid: str, key: bool, first: bool, frame: int | None = None) -> bytes:
    """A VP8 payload (RFC 7741): descriptor S bit on the first packet, with the layer's
    15-bit PictureID and TL0PICIDX of ``frame`` when given; a key frame header with the
    layer's size (RFC 6386 §9.1) or an inter frame tag."""
    descriptor = bytes([0x10 if first else 0x00])
    if frame is not None:
        picture_id, tl0 = (PID0[rid] + frame) % 32768, (TL0[rid] + frame) % 256
        ids = bytes([0xC0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0])
        descriptor = bytes([0x80 | descriptor[0]]) + ids
    if not first:
        return descriptor + b"\x01rest-of-frame"
    if not key:
        return descriptor + b"\x01\x00\x00inter-frame"
    width, height = SIZE[rid]
    header = (
        b"\x00\x00\x00\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    )
    return descriptor + header + b"key-frame"


class SentPackets(list[RtpPacket]):
    """RTP packets a tapped DTLS transport sent; ``until(n)`` waits for the n-th."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def append(self, packet: RtpPacket) -> None:
        super().append(packet)
        self._changed.set()

    async def until(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self) < count:
                self._changed.clear()
                await self._changed.wait()


class Publisher:
    """Three simulcast layers as a browser sends them: RID tags, own SSRC/seq/ts each."""

    def __init__(self, producer: SimulcastProducer) -> None:
        self.producer = producer
        self.frame = {rid: 0 for rid in RIDS}
        self.seq = dict(SEQ0)
        self.sent: dict[tuple[str, int], RtpPacket] = {}  # (rid, seq) -> packet

    def ts(self, rid: str, frame: int) -> int:
        return (TS0[rid] + FRAME_TICKS * frame) % (1 << 32)

    async def send_frame(self, rid: str, key: bool = False) -> None:
        frame = self.frame[rid]
        for part in (0, 1):
            packet = RtpPacket(
                payload_type=PT,
                marker=part == 1,
                sequence_number=self.seq[rid] % 65536,
                timestamp=self.ts(rid, frame),
                ssrc=SSRC[rid],
                payload=vp8_payload(rid, key, part == 0, frame),
            )
            packet.extensions.rtp_stream_id = rid  # a browser tags until RTCP acknowledges
            parsed = RtpPacket.parse(packet.serialize(EXTENSIONS), EXTENSIONS)
            self.sent[(rid, self.seq[rid] % 65536)] = parsed
            self.seq[rid] += 1
            await self.producer._receive(parsed)
        self.frame[rid] += 1

    async def send_rtx(self, rid: str, seq: int) -> None:
        rtx = wrap_rtx(self.sent[(rid, seq)], RTX_PT, seq, RTX_SSRC[rid])
        rtx.extensions.repaired_rtp_stream_id = rid
        await self.producer._receive(RtpPacket.parse(rtx.serialize(EXTENSIONS), EXTENSIONS))

    def sender_report(self, rid: str, ntp: int, frame: int) -> None:
        info = RtcpSenderInfo(ntp, self.ts(rid, frame), 0, 0)
        self.producer._on_rtcp(RtcpSrPacket(ssrc=SSRC[rid], sender_info=info))


@pytest.fixture
async def wired() -> AsyncIterator[tuple[Publisher, SimulcastConsumer, SentPackets]]:
    """The Producer's receiver is never connected (the test feeds it); the Consumer's sender
    is connected to an aiortc subscriber over loopback."""
    aiortc_glue.use_host_addresses(["127.0.0.1"])
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(3)]
    publish, sfu, subscriber = pcs
    router = Router("RT_test", key_frame_interval_ms=0)
    receiver = publish.addTransceiver("video", direction="recvonly").receiver
    codec = Codec("video/VP8", 90000, None, {}, PT)
    producer = SimulcastProducer(
        "TR_test",
        "PA_pub",
        receiver,
        codec,
        {RTX_PT: PT},
        RIDS,
        router._on_producer_rtp,
        router.key_frame_interval_ms,
        router._on_producer_loss,
    )
    router.add_producer(producer)
    sender = sfu.addTransceiver(aiortc_glue.HoldTrack("video", producer.id), "sendonly").sender
    started = asyncio.Event()
    holder: list[SimulcastConsumer] = []
    forwarding = aiortc_glue.ForwardingSender(
        sender, "PA_pub", started.set, lambda: None, lambda lost: holder[0].on_nack(lost)
    )
    consumer = SimulcastConsumer("CO_test", producer, "PA_sub", forwarding)
    holder.append(consumer)
    router.add_consumer(consumer)
    sent = SentPackets()
    aiortc_glue.tap_sent_rtp(sender, sent.append)
    await sfu.setLocalDescription(await sfu.createOffer())
    await subscriber.setRemoteDescription(sfu.localDescription)

    async def ignore(packet: RtpPacket) -> None:
        pass

    (receiving,) = subscriber.getTransceivers()
    aiortc_glue.ReceiveTap(receiving.receiver, ignore, decode=False)  # our payloads are fake
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    await sfu.setRemoteDescription(subscriber.localDescription)
    await asyncio.wait_for(started.wait(), 10)
    yield Publisher(producer), consumer, sent
    for pc in pcs:
        await pc.close()


def is_continuous(packets: list[RtpPacket]) -> bool:
    seqs = [p.sequence_number for p in packets]
    return all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))


async def test_layers_are_mapped_by_rid_and_measured(wired) -> None:
    publisher, consumer, _ = wired
    producer = publisher.producer
    for rid in RIDS:
        await publisher.send_frame(rid, key=True)
        await publisher.send_frame(rid)
    await publisher.send_rtx("h", SEQ0["h"] + 1)
    await publisher.send_rtx("h", SEQ0["h"] + 1)  # learnt once, then by SSRC
    stray = RtpPacket(payload_type=PT, sequence_number=1, ssrc=999, payload=b"\x10\x01")
    await producer._receive(stray)  # an SSRC no RID tag placed
    for index, rid in enumerate(RIDS):
        layer = producer.layers[index]
        assert (layer.rid, layer.ssrc, layer.width, layer.height) == (rid, SSRC[rid], *SIZE[rid])
        assert layer.packets == 4 + (2 if rid == "h" else 0) and layer.key_frames == 1
        assert producer.layer_of(SSRC[rid]) is layer
    assert producer.layers[1].rtx_ssrc == RTX_SSRC["h"]
    assert producer.packets_dropped == 1
    assert producer.layers[2].bitrate_bps(producer.layers[2].last_packet_ms) > 0


async def test_switches_on_key_frames_with_continuous_seq_and_ts(wired) -> None:
    publisher, consumer, sent = wired
    producer = publisher.producer
    # Starts on the top layer, at its key frame; other layers are not forwarded.
    for rid in RIDS:
        await publisher.send_frame(rid, key=rid != "f")
    assert sent == [] and consumer.current_layer is None
    await publisher.send_frame("f", key=True)
    for _ in range(3):
        for rid in RIDS:
            await publisher.send_frame(rid)
    assert consumer.current_layer == 2 and len(sent) == 8
    assert {p.ssrc for p in sent} == {forwarding_ssrc(consumer)}
    assert {p.payload_type for p in sent} == {consumer._sender.payload_type}
    assert [p.timestamp for p in sent[::2]] == [publisher.ts("f", k) for k in (1, 2, 3, 4)]

    # Down to q: f goes on until q's key frame, which was asked for (PLI on q's SSRC).
    consumer.set_target(0)
    assert producer.layers[0].kf_last_ms > 0
    for rid in RIDS:
        await publisher.send_frame(rid)
    assert consumer.current_layer == 2 and len(sent) == 10
    last_f_ts = sent[-1].timestamp
    await publisher.send_frame("q", key=True)
    assert consumer.current_layer == 0 and consumer.switches == 2
    await publisher.send_frame("f")  # no longer forwarded
    await publisher.send_frame("q")
    assert len(sent) == 14 and is_continuous(sent)
    after = [p.timestamp for p in sent[10:]]
    # no Sender Reports yet: the offset comes from the time elapsed (here ~0: one tick on)
    assert ts_diff(after[0], last_f_ts) > 0 and ts_diff(after[2], after[0]) == FRAME_TICKS
    assert sent[10].payload[5:] == publisher.sent[("q", SEQ0["q"] + 10)].payload[5:]  # frame 5

    # Back up to f with Sender Reports of both layers at the same instant (frame 0): f's
    # key frame k lands where q's frame k would have.
    ntp = 0xE000_0000_0000_0000
    publisher.sender_report("q", ntp, 0)
    publisher.sender_report("f", ntp, 0)
    consumer.set_target(2)
    await publisher.send_frame("f", key=True)
    f_frame = publisher.frame["f"] - 1
    q_out_per_in = ts_diff(after[0], publisher.ts("q", publisher.frame["q"] - 2))
    expected = (publisher.ts("q", f_frame) + q_out_per_in) % (1 << 32)
    assert consumer.current_layer == 2 and sent[-2].timestamp == expected
    await publisher.send_frame("f")
    assert is_continuous(sent)
    assert ts_diff(sent[-1].timestamp, sent[-3].timestamp) == FRAME_TICKS
    # VP8 PictureID and TL0PICIDX go on by one per frame across both switches
    ids = [vp8.picture_ids(p.payload) for p in sent]
    assert [(i[0] - ids[0][0]) % 32768 for i in ids[::2]] == list(range(len(sent) // 2))
    assert [(i[2] - ids[0][2]) % 256 for i in ids[::2]] == list(range(len(sent) // 2))
    assert all(a == b for a, b in zip(ids[::2], ids[1::2], strict=True))  # same per frame
    assert all(vp8.is_key_frame(p.payload) == (p in (sent[10], sent[-4])) for p in sent[1:])
    # Our Sender Reports follow the layer sent, shifted onto the subscriber's timeline.
    mapping = consumer._sender.sr_mapping
    assert mapping is not None and mapping[0] == ntp
    assert mapping[1] == (publisher.ts("f", 0) + ts_diff(expected, publisher.ts("f", f_frame))) % (
        1 << 32
    )


async def test_pause_and_nack_from_the_layer_cache(wired) -> None:
    publisher, consumer, sent = wired
    events: list[str | None] = []
    consumer.on_layer_changed = lambda c, layer: events.append(layer.rid if layer else None)
    consumer.set_target(0)
    await publisher.send_frame("q", key=True)
    await publisher.send_frame("q")
    assert len(sent) == 4 and events == ["q"]
    lost = sent[1]
    consumer.on_nack([lost.sequence_number])
    await sent.until(5)  # the resend runs as a task
    assert consumer.packets_resent == 1 and len(sent) == 5
    resent = sent[-1]
    # as RTX (RFC 4588 §4): the original sequence number, then the payload
    assert resent.payload_type != lost.payload_type and resent.timestamp == lost.timestamp
    assert resent.payload == lost.sequence_number.to_bytes(2, "big") + lost.payload
    consumer.set_target(None)
    await publisher.send_frame("q", key=True)
    assert len(sent) == 5 and events == ["q", None]
    consumer.set_target(0)
    await publisher.send_frame("q")  # waits for a key frame
    await publisher.send_frame("q", key=True)
    assert len(sent) == 7 and is_continuous([p for p in sent if p is not resent])
    assert events == ["q", None, "q"]


async def test_preferred_layer_and_dynacast_wants(wired) -> None:
    publisher, consumer, _ = wired
    producer = publisher.producer
    layers = producer.layers
    for rid in RIDS:
        await publisher.send_frame(rid, key=True)
    now = layers[2].last_packet_ms
    assert preferred_layer(layers, Preference(), now, True) == 2
    assert preferred_layer(layers, Preference(max_width=700), now, True) == 1
    assert preferred_layer(layers, Preference(max_height=100), now, True) == 0  # the lowest
    assert preferred_layer(layers, Preference(paused=True), now, True) is None
    # max_fps passes a layer over only for one within the size limits that sends no more
    assert preferred_layer(layers, Preference(max_fps=30), now, True) == 2
    assert preferred_layer(layers, Preference(max_fps=0.01), now, True) == 2  # none does
    await publisher.send_frame("f")
    await publisher.send_frame("f")
    low_rate = layers[0].meter.fps(now) + 0.1
    assert preferred_layer(layers, Preference(max_fps=low_rate / 1.2), now, True) == 1
    assert preferred_layer(layers, Preference(), now + 5000, True) is None  # none sends
    changes: list[list[str]] = []
    producer.on_active_layers = lambda p, rids: changes.append(rids)
    producer.set_wanted("CO_a", 0)
    producer.set_wanted("CO_b", 2)
    assert changes == []  # all were on
    producer.set_wanted("CO_b", 0)
    assert changes == []  # switching off waits (DYNACAST_OFF_DELAY_MS)
    producer._dynacast_off()  # what the delay's timer runs
    assert changes == [["q"]]
    producer.set_wanted("CO_a", 1)
    assert changes == [["q"], ["q", "h"]]  # switching on is at once
    producer.set_wanted("CO_a", None)
    producer.set_wanted("CO_b", None)
    assert changes[-1] == ["q", "h", "f"]  # no Consumer: as the publisher started


def forwarding_ssrc(consumer: SimulcastConsumer) -> int:
    return consumer._sender.ssrc


def test_vp8_key_frame_size_and_picture_ids() -> None:
    assert vp8.key_frame_size(vp8_payload("f", True, True)) == (1280, 720)
    assert vp8.key_frame_size(vp8_payload("f", True, True, 3)) == (1280, 720)
    assert vp8.key_frame_size(vp8_payload("f", False, True)) is None
    payload = vp8_payload("h", True, True, 2)
    assert vp8.picture_ids(payload) == ((32760 + 2) % 32768, 15, 9)
    rewritten = vp8.with_picture_ids(payload, 12345, 200)
    assert vp8.picture_ids(rewritten) == (12345, 15, 200)
    assert rewritten[5:] == payload[5:] and vp8.key_frame_size(rewritten) == (640, 360)
    seven_bit = bytes([0x90, 0x80, 0x05]) + b"\x01"
    assert vp8.picture_ids(seven_bit) == (5, 7, None)
    assert vp8.picture_ids(vp8.with_picture_ids(seven_bit, 130, None)) == (2, 7, None)
    assert vp8.picture_ids(b"\x10\x01") == (None, 0, None)
    assert vp8.picture_ids(b"\x90\x80\x80") == (None, 0, None)  # truncated
    assert vp8.key_frame_size(b"\x10\x00\x00\x00\x9d\x01") is None  # truncated


async def test_allocator_follows_preference_and_fits_a_falling_estimate(wired) -> None:
    from switchboard.sfu.clock import monotonic_ms
    from switchboard.sfu.simulcast import LayerAllocator

    publisher, consumer, _ = wired
    layers = publisher.producer.layers
    allocator = LayerAllocator()
    allocator.add(consumer)
    for rid in RIDS:
        await publisher.send_frame(rid, key=True)
    assert consumer.current_layer == 2
    now = monotonic_ms()
    for layer, bps in zip(layers, (150_000, 400_000, 1_000_000), strict=True):
        layer.meter.add(now, bps * 2 // 8, True)  # two seconds' worth: the meter's window
    # no REMB: the preference alone
    consumer.preference = Preference(max_width=700)
    allocator.allocate()
    assert consumer.target_layer == 1
    consumer.preference = Preference()
    allocator.allocate()
    assert consumer.target_layer == 2
    # an estimate with room: the top layer stays
    allocator.on_remb(2_000_000, (consumer._sender.ssrc,))
    allocator.allocate()
    assert consumer.target_layer == 2 and allocator.downgrades == 0
    # it falls below what the top layer sends: down to the highest layer that fits
    allocator.on_remb(500_000, (consumer._sender.ssrc,))
    allocator.allocate()
    assert consumer.target_layer == 1 and allocator.downgrades == 1
    # a report naming the same SSRC replaces the old one, it does not add up
    allocator.on_remb(100_000, (consumer._sender.ssrc, 1234))
    assert allocator.estimate_bps == 100_000
    allocator.allocate()
    assert consumer.target_layer == 0  # nothing fits: the lowest layer
    # dynacast: this Consumer may want the top layer
    assert publisher.producer._wanted == {consumer.id: 2}
    allocator.close()
