"""A malicious subscriber's RTCP feedback through the real server: NACK amplification, NACKs
for numbers never sent or wrapping, PLI/FIR floods, absurd REMBs, Receiver Reports about
unknown sources, unknown packet types, compound packets whose lengths lie.

The evil subscriber is a real aiortc peer; its RTCP is built by hand and sent through its
subscribe connection's DTLS transport (SRTCP). The rule checked each time: the attack is
dropped or answered within a bound, counted, and nobody's media (the attacker's own session
included) stops, with no exception left unhandled (``ServerHealth``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
)

from switchboard.sfu import aiortc_glue
from switchboard.sfu.aiortc_glue import network
from switchboard.sfu.codecs import vp8
from switchboard.sfu.consumer import Consumer
from switchboard.sfu.rtp.seq import SeqRewriter
from switchboard.signalling.keys import ROOMS

from .conftest import Join, Peer, Server, ServerHealth


class Evil:
    """The attacking subscriber: its video receiver, the numbers and RTX it received."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        pc = peer.room.subscribe_pc
        assert pc is not None
        (self.transceiver,) = [t for t in pc.getTransceivers() if t.kind == "video"]
        self.receiver: RTCRtpReceiver = self.transceiver.receiver
        self.media_pt = aiortc_glue.negotiated_codecs(self.transceiver)[0].payloadType
        self.dtls = self.receiver.transport
        self.seqs: list[int] = []  # media sequence numbers received, in arrival order
        self.rtx = 0  # retransmissions received
        aiortc_glue.drop_received_rtp(self.receiver, self._saw)

    def _saw(self, packet: RtpPacket) -> bool:
        if packet.payload_type == self.media_pt:
            self.seqs.append(packet.sequence_number)
        else:
            self.rtx += 1
        self.peer.changed.set()
        return False

    async def send(self, *packets: Any) -> None:
        """One compound RTCP datagram (SRTCP) made of ``packets`` (objects or raw bytes)."""
        await self.dtls._send_rtp(b"".join(bytes(p) for p in packets))


async def room(join: Join) -> tuple[Peer, Peer, Peer]:
    """A publisher, the evil subscriber and a well-behaved viewer, both receiving video."""
    publisher = await join("publisher")
    evil = await join("evil", publish=False)
    viewer = await join("viewer", publish=False)
    for peer in (evil, viewer):
        await peer.until(lambda p=peer: p.frames_from(publisher, "video") >= 10, 20)  # type: ignore[misc]
    return publisher, evil, viewer


def consumer_for(
    server: Server, publisher: Peer, subscriber: Peer, kind: str = "video"
) -> Consumer:
    router = server.app[ROOMS].rooms["r1"].router
    (producer,) = [
        p
        for p in router.producers.values()
        if p.participant_id == publisher.room.participant_id and p.kind == kind
    ]
    (consumer,) = [
        c
        for c in router.consumers_of(producer.id)
        if c.subscriber_id == subscriber.room.participant_id
    ]
    return consumer


def video_sender(publisher: Peer) -> RTCRtpSender:
    assert publisher.room.publish_pc is not None
    (transceiver,) = [t for t in publisher.room.publish_pc.getTransceivers() if t.kind == "video"]
    sender: RTCRtpSender = transceiver.sender
    return sender


async def still_flowing(peer: Peer, publisher: Peer, frames: int = 20) -> None:
    seen = peer.frames_from(publisher, "video")
    await peer.until(lambda: peer.frames_from(publisher, "video") >= seen + frames, 20)


async def ping(peer: Peer) -> None:
    assert await peer.room.request("ping") == {"pong": True}


def nack(media_ssrc: int, lost: list[int]) -> RtcpRtpfbPacket:
    return RtcpRtpfbPacket(fmt=1, ssrc=0x5EED, media_ssrc=media_ssrc, lost=lost)


def raw_nack(media_ssrc: int, fcis: list[tuple[int, int]]) -> bytes:
    """A Generic NACK (RFC 4585 §6.2.1) with the (PID, BLP) pairs given, as they are."""
    body = struct.pack("!LL", 0x5EED, media_ssrc)
    body += b"".join(struct.pack("!HH", pid, blp) for pid, blp in fcis)
    return struct.pack("!BBH", 0x80 | 1, 205, len(body) // 4) + body


async def test_repeated_nacks_for_the_same_packets_are_resent_once(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """One compound RTCP packet of 60 NACK FCIs (PID + all 16 BLP bits: 17 packets each, the
    last 1020 sent), repeated 40 times in a burst: each cached packet is resent once, not 40
    times (mediasoup: not again within an RTT, 100 ms by default), the rest counted."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    await evil_peer.until(lambda: len(evil.seqs) >= 1100, 30)
    last = evil.seqs[-1]
    wanted = sorted({(last - i) % 65536 for i in range(1020)})
    packet = nack(consumer._sender.ssrc, wanted)
    assert len(bytes(packet)) < 300
    resent, rtx = consumer.packets_resent, evil.rtx
    for _ in range(40):
        await evil.send(packet)
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    await still_flowing(evil_peer, publisher)
    got = consumer.packets_resent - resent
    print(
        f"\n40 x NACK of {len(wanted)} numbers ({len(bytes(packet))} bytes): resent {got}, "
        f"RTX received {evil.rtx - rtx}, refused {consumer.resends_refused}"
    )
    assert got <= len(wanted)
    assert consumer.resends_refused >= 30 * got  # 39 x got if all 40 NACKs arrived
    assert not health.problems


async def test_nacks_naming_the_whole_cache_over_and_over_stay_within_the_media_rate(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """NACKs for the last 4000 numbers every 100 ms for 2 s (each packet may be resent again
    after 100 ms): the resends stay within what was forwarded (plus a burst allowance), not
    20 times the cache."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    await evil_peer.until(lambda: len(evil.seqs) >= 500, 30)
    resent, sent = consumer.packets_resent, consumer.packets_sent
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        last = evil.seqs[-1]
        wanted = sorted({(last - i) % 65536 for i in range(4000)})
        await evil.send(nack(consumer._sender.ssrc, wanted))
        ticks += 1

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for i in range(20):
        loop.call_later(0.1 * i, lambda: asyncio.ensure_future(tick()))
    loop.call_later(2.05, done.set)
    await asyncio.wait_for(done.wait(), 10)
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    got = consumer.packets_resent - resent
    forwarded = consumer.packets_sent - sent
    print(
        f"\n{ticks} NACKs of 4000 numbers: resent {got}, forwarded {forwarded} meanwhile, "
        f"refused {consumer.resends_refused}"
    )
    assert got <= forwarded + Consumer.RESEND_BURST
    assert not health.problems


async def test_nacks_never_sent_future_and_wrapping_do_not_raise_nor_flood_upstream(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """NACKs whose BLP runs past 65535 (aiortc parses PID 65535 + bit 0 as 65536: a real
    wrap), numbers far ahead of anything sent, every PID with every bit, in one 1216-byte
    packet per send: nothing raises (a resend of 65536 raised struct.error in a task), the
    publisher gets no NACK storm, everybody's video goes on."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    ssrc = consumer._sender.ssrc
    sender = video_sender(publisher)
    upstream: list[int] = []
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:
            upstream.extend(packet.lost)
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    await evil_peer.until(lambda: len(evil.seqs) >= 200, 30)
    last = evil.seqs[-1]
    resent = consumer.packets_resent
    for i in range(200):
        base = (last + 1000 + 17 * 300 * i) % 65536
        fcis = [((base + 17 * k) % 65536, 0xFFFF) for k in range(300)]
        await evil.send(raw_nack(ssrc, [(65535, 0xFFFF), *fcis]))
        if i % 20 == 0:
            await asyncio.sleep(0.005)  # pace the socket: the loopback buffer is small
    # a real wrap: the subscriber lost 65535 and 0..15 of its own numbering
    await evil.send(raw_nack(ssrc, [(last, 0xFFFF)]))
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    await still_flowing(evil_peer, publisher)
    print(
        f"\n200 x 301 NACK FCIs: resent {consumer.packets_resent - resent}, "
        f"NACKs to the publisher {len(upstream)}, refused {consumer.resends_refused}"
    )
    assert len(upstream) <= 50
    assert not health.problems


async def test_nacks_for_a_packet_missing_upstream_do_not_flood_the_publisher(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """A publisher packet that never reaches the SFU; meanwhile the evil subscriber NACKs the
    numbers around the last it got 300 times in a burst: the SFU NACKs the publisher for the
    missing packet no more than its own schedule allows (``RtpStreamRecv``: 5 NACKs, 100 ms
    apart), not once per subscriber NACK."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    sender = video_sender(publisher)
    target: int | None = None
    upstream: list[int] = []
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:
            upstream.extend(packet.lost)
        await handle(packet)

    def drop(packet: RtpPacket) -> bool:
        nonlocal target
        if packet.ssrc == sender._ssrc:
            if target is None and not vp8.is_key_frame(packet.payload):
                target = packet.sequence_number
            return packet.sequence_number == target
        return target is not None and packet.payload[:2] == target.to_bytes(2, "big")  # RTX

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    ssrcs = {sender._ssrc, sender._rtx_ssrc}
    aiortc_glue.drop_sent_rtp(sender, lambda p: p.ssrc in ssrcs and drop(p))
    stream = consumer.producer.stream
    await evil_peer.until(lambda: bool(stream.missing), 10)
    # Whatever numbers the subscriber may take for the missing packet: around the last it got.
    last = evil.seqs[-1]
    around = [((last - 16 + 17 * k) % 65536, 0xFFFF) for k in range(4)]  # 68 numbers
    for i in range(300):
        await evil.send(raw_nack(consumer._sender.ssrc, around))
        if i % 20 == 0:
            await asyncio.sleep(0.002)  # pace the attack: the loopback buffer is small
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    print(
        f"\n300 NACKs for a packet missing upstream: {upstream.count(target)} NACKs for it "
        f"reached the publisher"
    )
    assert upstream.count(target) <= stream.max_nacks + 1
    assert not health.problems


async def test_nack_across_the_wrap_is_answered(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """PID 65535 with BLP bit 0 asks for 65535 and 0 (RFC 4585 §6.2.1: numbers are mod 2^16);
    aiortc hands over 65536 for the second: it is resent as 0 (it raised struct.error in the
    resend task before, and the subscriber never got it)."""
    publisher, evil_peer, _ = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    # Bring the Consumer's numbering near the wrap: a new rewriter, synced on the next key
    # frame, twice (libsrtp takes a jump of 2^15 or more for one backwards, and refuses it).
    await evil_peer.until(lambda: bool(evil.seqs), 10)
    step = (65536 - 150 - evil.seqs[-1]) // 2
    for _ in range(2):
        first_out = evil.seqs[-1] + step
        consumer._seq = SeqRewriter(first_out=first_out)
        consumer._needs_key_frame = True
        consumer.producer.request_key_frame()
        await evil_peer.until(lambda f=first_out: f <= evil.seqs[-1] < f + 100, 10)  # type: ignore[misc]

    def wrapped() -> bool:
        pairs = zip(evil.seqs, evil.seqs[1:], strict=False)
        return any(a == 65535 and b == 0 for a, b in pairs)

    await evil_peer.until(wrapped, 30)
    resent, rtx = consumer.packets_resent, evil.rtx
    await evil.send(raw_nack(consumer._sender.ssrc, [(65535, 0x0001)]))
    with contextlib.suppress(TimeoutError):
        await evil_peer.until(lambda: evil.rtx >= rtx + 2, 5)
    await ping(evil_peer)
    assert (consumer.packets_resent - resent, evil.rtx - rtx, health.problems) == (2, 2, [])


async def test_pli_and_fir_floods_reach_the_publisher_paced(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """2000 PLIs and FIRs (with made-up FIR sequence numbers and SSRCs, RFC 5104 §4.3.1) in
    about a second: the publisher gets at most one key-frame request per 500 ms."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    ssrc = consumer._sender.ssrc
    requests: list[float] = []
    loop = asyncio.get_running_loop()
    aiortc_glue.tap_key_frame_requests(
        video_sender(publisher), lambda: requests.append(loop.time())
    )
    started = loop.time()
    for i in range(1000):
        fir_fci = struct.pack("!LB3x", (0xDEAD0000 + i) & 0xFFFFFFFF, i % 256)
        await evil.send(
            RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc),
            RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=i * 7919, fci=fir_fci * (i % 4)),
            RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=ssrc, fci=b"\xff" * 4 * (i % 13)),
        )
        if i % 50 == 0:
            await asyncio.sleep(0.05)  # spread the flood over ~1 s, so the 500 ms pacing shows
    elapsed = loop.time() - started
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    await still_flowing(evil_peer, publisher)
    during = [t for t in requests if started <= t <= started + elapsed]
    print(
        f"\n3000 PLI/FIR in {elapsed:.2f} s: {len(during)} key-frame requests reached the publisher"
    )
    assert len(during) <= elapsed / 0.5 + 2
    assert not health.problems


def remb(media_ssrc: int, fci: bytes) -> RtcpPsfbPacket:
    return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=media_ssrc, fci=fci)


async def test_absurd_rembs_reports_unknown_types_and_lying_lengths_are_dropped(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """REMBs of 0 and of the largest mantissa and exponent, listing 255 SSRCs, truncated or
    not 'REMB'; Receiver Reports of 31 blocks about unknown SSRCs (and about ours, with
    absurd LSR/DLSR); RTCP packet types no one knows; compound packets whose length fields
    claim more than there is, or less; SDES and BYE with lying counts: the attacker's session
    and everybody's media go on."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    consumer = consumer_for(server, publisher, evil_peer)
    audio = consumer_for(server, publisher, evil_peer, "audio")
    ssrcs = [consumer._sender.ssrc, audio._sender.ssrc]
    ssrc = ssrcs[0]
    blocks = [
        RtcpReceiverInfo(
            ssrc=(0x1000 + i) if i % 2 else ssrcs[i % 4 // 2],
            fraction_lost=255,
            packets_lost=-(1 << 23) if i % 3 else (1 << 23) - 1,
            highest_sequence=0xFFFFFFFF,
            jitter=0xFFFFFFFF,
            lsr=0xFFFFFFFF if i % 2 else 0,
            dlsr=0xFFFFFFFF,
        )
        for i in range(31)
    ]
    bad: list[bytes] = [
        bytes(remb(ssrc, pack_remb_fci(0, [ssrc]))),
        bytes(remb(0, pack_remb_fci((1 << 18) - 1 << 63, ssrcs))),
        bytes(remb(0, b"REMB" + struct.pack("!BBH", 255, 0xFF, 0xFFFF) + b"\0" * 4 * 255)),
        bytes(
            remb(ssrc, b"REMB" + struct.pack("!L", (255 << 24) | 1000) + struct.pack("!L", ssrc))
        ),
        bytes(remb(ssrc, b"REMB")),
        bytes(remb(ssrc, b"XXXX" + b"\0" * 8)),
        bytes(remb(ssrc, b"")),
        bytes(RtcpRrPacket(ssrc=1, reports=blocks)),
        struct.pack("!BBHL", 0x80, 199, 1, 1),  # an unknown packet type (199), well formed
        struct.pack("!BBHL", 0x9F, 207, 1, 1),  # RTCP XR (RFC 3611): aiortc has no parser
        struct.pack("!BBHLL", 0x80 | 15, 205, 2, 1, ssrc),  # TWCC, empty FCI
        struct.pack("!BBHL", 0x80, 201, 100, 1),  # RR: its length claims 400 bytes
        struct.pack("!BBHL", 0x81, 201, 1, 1),  # RR: one block announced, none there
        struct.pack("!BBHLL", 0x9F, 203, 1, 1, 2),  # BYE: 31 sources announced, one there
        struct.pack("!BBHL", 0x85, 202, 1, 1),  # SDES: 5 chunks announced
        struct.pack("!BBH", 0xA0, 201, 0),  # padding bit, nothing to pad
        struct.pack("!BBHL", 0x80 | 1, 205, 1, 1),  # NACK: no media SSRC
        struct.pack("!BBHLLH", 0x80 | 1, 205, 2, 1, ssrc, 7)[:-2] + b"\0",  # length not /4
        bytes(RtcpRtpfbPacket(fmt=3, ssrc=1, media_ssrc=ssrc, lost=[1, 2])),  # TMMBR-ish
        struct.pack("!BBHLL", 0x80 | 31, 206, 2, 1, ssrc),  # PSFB FMT 31 (AFB), empty
    ]
    for _ in range(50):
        for data in bad:
            # alone, then behind a valid RR, then followed by a valid PLI
            if len(data) >= 8:  # libsrtp protects nothing shorter
                await evil.send(data)
            await evil.send(RtcpRrPacket(ssrc=1, reports=blocks[:1]), data)
            await evil.send(data, RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc))
        await asyncio.sleep(0.01)  # pace the socket: the loopback buffer is small
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    await still_flowing(evil_peer, publisher)
    transport = server.app[ROOMS].rooms["r1"].participants[evil_peer.room.participant_id].subscribe
    assert transport.connection_state == "connected"
    assert not health.problems


async def test_nacks_on_audio_and_unknown_media_ssrcs_are_ignored(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """Audio is not cached: a NACK for it is ignored (no resend, no error); a NACK naming an
    SSRC the server never sent on reaches no Consumer."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    audio = consumer_for(server, publisher, evil_peer, "audio")
    for i in range(200):
        await evil.send(
            nack(audio._sender.ssrc, list(range(0, 65536, 257))),
            nack(0xBAD00000 + i, list(range(100))),
        )
        if i % 20 == 0:
            await asyncio.sleep(0.005)  # pace the attack: the loopback buffer is small
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    await still_flowing(evil_peer, publisher)
    assert audio.packets_resent == 0
    assert not health.problems


async def test_an_oversized_srtcp_datagram_does_not_end_the_connection(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """One 1600-byte datagram that looks like SRTCP (first byte 0x80, type 201) from the
    subscriber's own address: dropped and counted, its subscribe connection stays (pylibsrtp
    raises ValueError, not pylibsrtp.Error, for more than 1500 bytes, and aiortc's receive loop
    catches only the latter)."""
    publisher, evil_peer, viewer = await room(join)
    evil = Evil(evil_peer)
    ice: Any = evil.dtls.transport
    dropped = network.oversized_srtp_dropped
    await ice._send(struct.pack("!BBH", 0x80, 201, 399) + bytes(1596))
    await ping(evil_peer)
    await still_flowing(viewer, publisher)
    await still_flowing(evil_peer, publisher)
    transport = server.app[ROOMS].rooms["r1"].participants[evil_peer.room.participant_id].subscribe
    assert transport.connection_state == "connected"
    assert network.oversized_srtp_dropped == dropped + 1
