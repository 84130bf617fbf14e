"""A publisher sends RTP on made-up SSRCs with its real payload types, through its own DTLS
transport (so properly SRTP-protected), mixed with its real media.

aiortc's RtpRouter learns every unknown SSRC whose payload type matches one receiver, and the
receiver then keeps state per SSRC: statistics, active SSRCs, the REMB estimator's list, one
Receiver Report block each (its RTCP task dies packing more than 255; more than 31 make a
malformed packet). The rule checked: the made-up SSRCs are dropped and counted, the server keeps
a bounded number of SSRCs for the publisher, its Receiver Reports and REMB go on, and the
subscriber keeps decoding the real video. A real sender that changes its SSRC goes on too.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pylibsrtp
from aiortc import RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.rtcrtpparameters import RTCRtpParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtpPacket,
)

from switchboard.sfu import aiortc_glue
from switchboard.sfu.aiortc_glue import ssrc_guard
from switchboard.sfu.producer import Producer
from switchboard.signalling.keys import ROOMS

from .conftest import Join, Peer, Server, ServerHealth

FLOOD_PACKETS = 3000


class RtcpSeen:
    """The RTCP the publisher's video sender gets from the server: Receiver Report blocks
    about its SSRC and REMBs, counted; each sets the peer's ``changed`` event."""

    def __init__(self, peer: Peer, sender: RTCRtpSender) -> None:
        self.rr_blocks = 0
        self.rembs = 0
        handle = sender._handle_rtcp_packet

        async def handle_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpRrPacket):
                self.rr_blocks += sum(r.ssrc == sender._ssrc for r in packet.reports)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                self.rembs += 1
            peer.changed.set()
            await handle(packet)

        sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def publish_transceiver(peer: Peer, kind: str) -> RTCRtpTransceiver:
    assert peer.room.publish_pc is not None
    (found,) = [t for t in peer.room.publish_pc.getTransceivers() if t.kind == kind]
    return found


def producers_of(server: Server, peer: Peer) -> dict[str, Producer]:
    """The publisher's Producers by kind."""
    router = server.app[ROOMS].rooms["r1"].router
    return {
        p.kind: p for p in router.producers.values() if p.participant_id == peer.room.participant_id
    }


def server_ssrc_state(producer: Producer) -> dict[str, int]:
    """How many SSRCs the server keeps for ``producer``'s receiver, per structure."""
    receiver: Any = producer._receiver
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator
    router = receiver.transport._rtp_router
    return {
        "remote_streams": len(receiver._RTCRtpReceiver__remote_streams),
        "active_ssrc": len(receiver._RTCRtpReceiver__active_ssrc),
        "estimator": len(estimator.ssrcs) if estimator is not None else 0,
        "ssrc_table": sum(r is receiver for r in router.ssrc_table.values()),
    }


async def room(join: Join) -> tuple[Peer, Peer]:
    publisher = await join("pub")
    subscriber = await join("sub", publish=False)
    await subscriber.until(lambda: subscriber.frames_from(publisher, "video") >= 10, 20)
    return publisher, subscriber


async def flood(publisher: Peer, packets: int) -> None:
    """``packets`` RTP packets on made-up SSRCs with the publisher's real payload types (video,
    its RTX, audio), half with the MID and abs-send-time extensions, sent while its real
    media goes on."""
    video, audio = publish_transceiver(publisher, "video"), publish_transceiver(publisher, "audio")
    targets = []
    for transceiver in (video, audio):
        ext = HeaderExtensionsMap()
        ext.configure(RTCRtpParameters(headerExtensions=transceiver._headerExtensions))
        media, *others = aiortc_glue.negotiated_codecs(transceiver)
        rtx = [
            c
            for c in others
            if c.name.lower() == "rtx" and c.parameters["apt"] == media.payloadType
        ]
        for codec in (media, *rtx):
            targets.append((codec.payloadType, transceiver.mid, ext))
    assert len(targets) == 3  # VP8, its RTX, Opus
    dtls = video.sender.transport
    for i in range(packets):
        pt, mid, ext = random.choice(targets)
        packet = RtpPacket(
            payload_type=pt,
            sequence_number=random.getrandbits(16),
            timestamp=random.getrandbits(32),
            ssrc=random.getrandbits(32),
            payload=b"\x10\x00" + random.randbytes(40),
        )
        if i % 2:
            packet.extensions.mid = mid
            packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0xFFFFFF
        try:
            await dtls._send_rtp(packet.serialize(ext))
        except pylibsrtp.Error:
            pass
        if i % 50 == 0:
            await asyncio.sleep(0.005)  # pace the socket: the loopback buffer is small


async def test_made_up_ssrcs_are_dropped_and_leave_no_state(
    server: Server, join: Join, health: ServerHealth
) -> None:
    publisher, subscriber = await room(join)
    producers = producers_of(server, publisher)
    rtcp = RtcpSeen(publisher, publish_transceiver(publisher, "video").sender)
    dropped = sum(p.packets_dropped for p in producers.values())

    await flood(publisher, FLOOD_PACKETS)

    frames, blocks, rembs = subscriber.frames_from(publisher, "video"), rtcp.rr_blocks, rtcp.rembs
    await publisher.until(lambda: rtcp.rr_blocks >= blocks + 2 and rtcp.rembs >= rembs + 2, 20)
    await subscriber.until(lambda: subscriber.frames_from(publisher, "video") >= frames + 30, 20)
    for kind, producer in producers.items():
        state = server_ssrc_state(producer)
        assert all(n <= 2 for n in state.values()), (kind, state)
        receiver: Any = producer._receiver
        assert not receiver._RTCRtpReceiver__rtcp_task.done()
    # Loopback UDP may lose some of the flood; most must have been seen and dropped.
    assert sum(p.packets_dropped for p in producers.values()) >= dropped + FLOOD_PACKETS // 2
    assert not health.problems


async def test_a_publisher_changing_its_ssrc_goes_on(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """A sender that moves its video to new SSRCs (media and RTX) without renegotiating, as
    a sender resolving an SSRC collision does (RFC 3550 §8.2): the old ones fall silent, the
    new ones are taken, the old ones forgotten."""
    publisher, subscriber = await room(join)
    producer = producers_of(server, publisher)["video"]
    sender = publish_transceiver(publisher, "video").sender
    old = sender._ssrc
    sender._ssrc, sender._rtx_ssrc = random.getrandbits(32), random.getrandbits(32)
    sender.transport._rtp_router.register_sender(sender, sender._ssrc)  # PLIs find it
    frames = subscriber.frames_from(publisher, "video")
    await subscriber.until(lambda: subscriber.frames_from(publisher, "video") >= frames + 30, 20)
    receiver: Any = producer._receiver
    streams = receiver._RTCRtpReceiver__remote_streams
    assert sender._ssrc in streams and old not in streams
    assert not health.problems


RTCP_FLOOD_PACKETS = 400


async def test_rtcp_from_made_up_ssrcs_leaves_bounded_srtp_state(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """A publisher sends Receiver Reports from ever new sender SSRCs (properly SRTCP-protected:
    libsrtp keeps a stream for each SSRC it authenticates, RFC 3711 §3.4). The server keeps
    streams for a bounded number of them, drops and counts the rest, and media goes on."""
    publisher, subscriber = await room(join)
    server_dtls: Any = producers_of(server, publisher)["video"]._receiver.transport
    forgotten = ssrc_guard.rtcp_streams_forgotten
    dtls = publish_transceiver(publisher, "video").sender.transport
    ssrcs = [random.getrandbits(32) for _ in range(RTCP_FLOOD_PACKETS)]
    for i, ssrc in enumerate(ssrcs):
        await dtls._send_rtp(bytes(RtcpRrPacket(ssrc=ssrc)))
        if i % 50 == 0:
            await asyncio.sleep(0.005)  # pace the socket: the loopback buffer is small

    # media sent after the flood has been decoded: the server has handled the flood
    frames = subscriber.frames_from(publisher, "video")
    await subscriber.until(lambda: subscriber.frames_from(publisher, "video") >= frames + 30, 20)
    kept = 0
    for ssrc in ssrcs:
        try:
            server_dtls._rx_srtp.remove_stream(ssrc)  # raises when libsrtp keeps none
            kept += 1
        except pylibsrtp.Error:
            pass
    router = server_dtls._rtp_router
    assert kept <= ssrc_guard.RTCP_SSRCS_FREE + 2 * (len(router.receivers) + len(router.senders))
    # Loopback UDP may lose some of the flood; most must have been seen and forgotten.
    assert ssrc_guard.rtcp_streams_forgotten >= forgotten + RTCP_FLOOD_PACKETS // 2
    assert not health.problems
