"""Hostile simulcast input through the real server: bad ``a=rid``/``a=simulcast`` offers, RTP with
garbage RIDs, REMB floods and ``update_subscription`` abuse.

aiortc cannot publish simulcast, so ``SimulcastPublisher`` does what a browser does by hand: it
munges its offer (``a=rid``, ``a=simulcast``, the RID header extensions) and sends VP8 (aiortc's
encoder) on one SSRC per layer, tagged with its RID, straight through its DTLS transport. A
well-behaved participant publishes in the same room; the rule checked each time is that the
attack gets a clear error or is dropped, and that the others' media, the process and the log
stay unharmed (``ServerHealth``).
"""

from __future__ import annotations

import asyncio
import fractions
import random
import re
import struct
import time
from collections.abc import Callable
from typing import Any

import av
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import RTCP_PSFB_APP, HeaderExtensionsMap, RtcpPsfbPacket, RtpPacket, pack_remb_fci

from switchboard.client import SignallingError
from switchboard.sfu import aiortc_glue
from switchboard.sfu.simulcast import SimulcastProducer
from switchboard.signalling.keys import ROOMS

from .conftest import Join, Peer, Server, ServerHealth

RIDS = ("q", "h", "f")
SIZES = {"q": (80, 60), "h": (160, 120), "f": (320, 240)}
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_ID, RRID_ID = 10, 11


class SilentTrack(MediaStreamTrack):
    """A video track that never yields a frame: aiortc's own sender stays idle, the test sends."""

    kind = "video"

    async def recv(self) -> Any:
        await asyncio.Future()


def simulcast_lines(rids: tuple[str, ...] = RIDS, rid_id: int = RID_ID) -> list[str]:
    return [
        f"a=extmap:{rid_id} {aiortc_glue.RID_URI}",
        f"a=extmap:{RRID_ID} {aiortc_glue.REPAIRED_RID_URI}",
        *(f"a=rid:{rid} send" for rid in rids),
        "a=simulcast:send " + ";".join(rids),
    ]


def munge(sdp: str, lines: list[str], kind: str = "video") -> str:
    """``sdp`` with ``lines`` added to its first m-section of ``kind``."""
    out, done = [], False
    for line in sdp.split("\r\n"):
        out.append(line)
        if not done and line.startswith("a=mid:") and f"m={kind} " in "\r\n".join(out[-30:]):
            last_m = max(i for i, x in enumerate(out) if x.startswith("m="))
            if out[last_m].startswith(f"m={kind} "):
                out.extend(lines)
                done = True
    return "\r\n".join(out)


class SimulcastPublisher:
    """A publish connection sending three VP8 layers with RID tags, as a browser does."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.pc = RTCPeerConnection(peer.room._config)
        peer.room.publish_pc = self.pc  # closed with the Room
        self.transceiver = self.pc.addTransceiver(SilentTrack(), direction="sendonly")
        self.track_id = ""
        self.mid = ""
        self.ssrc = {rid: random.getrandbits(32) for rid in RIDS}
        self.seq = {rid: random.getrandbits(16) for rid in RIDS}
        self.encoders = {rid: Vp8Encoder() for rid in RIDS}
        self.frame = 0
        self.ext = HeaderExtensionsMap()
        self.pt = 0
        self.mutate: Callable[[str, RtpPacket], list[RtpPacket]] = lambda rid, p: [p]
        self._task: asyncio.Task[None] | None = None

    async def offer(self, lines: list[str] | None = None, kind: str = "video") -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return munge(
            self.pc.localDescription.sdp, simulcast_lines() if lines is None else lines, kind
        )

    async def publish(self, lines: list[str] | None = None) -> dict[str, Any]:
        sdp = await self.offer(lines)
        result = await self.peer.room.request("publish_offer", sdp=sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=result["sdp"], type="answer"))
        (track,) = [t for t in result["tracks"] if t["kind"] == "video"]
        self.track_id, self.mid = track["track_id"], track["mid"]
        codecs = aiortc_glue.negotiated_codecs(self.transceiver)
        self.pt = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/vp8")
        mid_id = next(e.id for e in self.transceiver._headerExtensions if e.uri == MID_URI)
        self.ext.configure(
            RTCRtpParameters(
                headerExtensions=[
                    RTCRtpHeaderExtensionParameters(id=mid_id, uri=MID_URI),
                    RTCRtpHeaderExtensionParameters(id=RID_ID, uri=aiortc_glue.RID_URI),
                    RTCRtpHeaderExtensionParameters(id=RRID_ID, uri=aiortc_glue.REPAIRED_RID_URI),
                ]
            )
        )
        return result

    async def connected(self, timeout: float = 15.0) -> None:
        changed = asyncio.Event()
        self.pc.on("connectionstatechange", changed.set)
        try:
            async with asyncio.timeout(timeout):
                while self.pc.connectionState != "connected":
                    changed.clear()
                    await changed.wait()
        finally:
            self.pc.remove_listener("connectionstatechange", changed.set)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                await self.send_frame(key=self.frame % 30 == 0)
                await asyncio.sleep(1 / 30)  # the frame clock of the fake camera
        except ConnectionError:
            pass  # closed at the end of the test

    async def send_frame(self, key: bool = False) -> None:
        self.frame += 1
        for rid in RIDS:
            width, height = SIZES[rid]
            image = av.VideoFrame(width, height, "yuv420p")
            for plane in image.planes:
                plane.update(bytes([(self.frame * 7) % 256]) * plane.buffer_size)
            image.pts, image.time_base = self.frame * 3000, fractions.Fraction(1, 90000)
            payloads, ts = self.encoders[rid].encode(image, force_keyframe=key)
            for i, payload in enumerate(payloads):
                packet = RtpPacket(
                    payload_type=self.pt,
                    marker=i == len(payloads) - 1,
                    sequence_number=self.seq[rid],
                    timestamp=ts,
                    ssrc=self.ssrc[rid],
                    payload=payload,
                )
                self.seq[rid] = (self.seq[rid] + 1) % 65536
                packet.extensions.mid = self.mid
                packet.extensions.rtp_stream_id = rid
                for out in self.mutate(rid, packet):
                    await self.send_raw(out.serialize(self.ext))

    async def send_raw(self, data: bytes) -> None:
        try:
            await self.transceiver.sender.transport._send_rtp(data)
        except pylibsrtp.Error:
            pass  # our SRTP refuses to send an index twice (a hostile seq): not sent

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def room_with_simulcast(
    server: Server, join: Join
) -> tuple[SimulcastPublisher, Peer, Peer, SimulcastProducer]:
    """A simulcast publisher sending, a normal publisher ("good"), a viewer of both."""
    evil = SimulcastPublisher(await join("evil", publish=False))
    await evil.publish()
    await evil.connected()
    evil.start()
    good = await join("good")
    viewer = await join("viewer", publish=False)
    room = server.app[ROOMS].rooms["r1"]
    producer = room.participants[evil.peer.room.participant_id].publish.producers[evil.track_id]
    assert isinstance(producer, SimulcastProducer)
    await viewer.until(
        lambda: viewer.frames_from(good, "video") >= 5 and viewer.frames.get(evil.track_id, 0) >= 5,
        20,
    )
    return evil, good, viewer, producer


async def still_flowing(viewer: Peer, good: Peer, frames: int = 20) -> None:
    seen = viewer.frames_from(good, "video")
    await viewer.until(lambda: viewer.frames_from(good, "video") >= seen + frames)


async def test_harness_publishes_three_layers(
    server: Server, join: Join, health: ServerHealth
) -> None:
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    assert [layer.ssrc for layer in producer.layers] == [evil.ssrc[r] for r in RIDS]
    assert viewer.sizes[evil.track_id] == SIZES["f"]
    await still_flowing(viewer, good)
    assert not health.problems


def consumer_of(server: Server, viewer: Peer, track_id: str) -> Any:
    room = server.app[ROOMS].rooms["r1"]
    transport = room.participants[viewer.room.participant_id].subscribe
    (consumer,) = [c for c in transport.consumers.values() if c.producer.id == track_id]
    return transport, consumer


async def test_remb_flood_with_ever_new_ssrcs_stays_bounded(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """REMBs (draft-alvestrand-rmcat-remb) naming 255 made-up SSRCs each, thousands of them:
    routed to the simulcast Consumer by their media SSRC. The estimate's bookkeeping must not
    grow with them (nor cost the event loop more with each one)."""
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    transport, consumer = consumer_of(server, viewer, evil.track_id)
    media_ssrc = consumer._sender.ssrc
    pc = viewer.room.subscribe_pc
    assert pc is not None
    dtls = pc.getTransceivers()[0].receiver.transport
    started = time.monotonic()
    for i in range(300):
        made_up = [random.getrandbits(32) for _ in range(254)]
        remb = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=1,
            media_ssrc=media_ssrc,  # routes it to the Consumer's sender, whatever it lists
            fci=pack_remb_fci(
                (1 << 18) - 1 << 63 if i % 3 else 0,  # the largest REMB can say, and 0
                made_up if i % 2 else [media_ssrc, *made_up],
            ),
        )
        await dtls._send_rtp(bytes(remb))
        await asyncio.sleep(0.002)  # pace the socket: the loopback buffer is small
    sent_s = time.monotonic() - started
    await transport_ping(viewer)
    print(f"REMB flood: {sent_s:.2f} s to send, {len(transport.layers._remb)} sources kept")
    assert list(transport.layers._remb) == [(media_ssrc,)]
    await still_flowing(viewer, good)
    assert not health.problems


async def transport_ping(peer: Peer) -> None:
    assert await peer.room.request("ping") == {"pong": True}


def many_rids(n: int) -> list[str]:
    return simulcast_lines(tuple(f"r{i}" for i in range(n)))


async def test_unusable_simulcast_offers_are_answered_as_one_stream(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """RID extension ids RFC 8285 does not allow (0, above 255) or that another extension
    uses, simulcast on audio, RIDs with odd characters: answered without simulcast (the
    answer would carry the bad id back and the RIDs could not be read), the track published as
    one stream. 9000 RIDs: the first four answered. Nobody else notices."""
    good = await join("good")
    viewer = await join("viewer", publish=False)
    await viewer.until(lambda: viewer.frames_from(good, "video") >= 5)
    room = server.app[ROOMS].rooms["r1"]
    odd = ["a=rid:\u00fc send", "a=rid:a/b send", "a=simulcast:send \u00fc;a/b;~q,h"]
    cases: list[tuple[str, list[str] | None, str, list[str]]] = [
        ("id0", simulcast_lines(rid_id=0), "video", []),
        ("id256", simulcast_lines(rid_id=256), "video", []),
        ("idhuge", simulcast_lines(rid_id=10**40), "video", []),
        ("idmid", None, "video", []),
        ("audio", simulcast_lines(), "audio", []),
        ("odd", [*simulcast_lines()[:2], *odd], "video", []),
        ("many", many_rids(9000), "video", ["r0", "r1", "r2", "r3"]),
    ]
    for name, lines, kind, rids in cases:
        evil = SimulcastPublisher(await join(name, publish=False))
        if kind == "audio":
            evil.pc.addTransceiver("audio", direction="sendonly")
        if lines is None:  # the RID extension on the MID extension's id
            sdp = await evil.offer([], kind)
            mid_id = next(e.id for e in evil.transceiver._headerExtensions if e.uri == MID_URI)
            sdp = munge(sdp, simulcast_lines(rid_id=mid_id), kind)
        else:
            sdp = await evil.offer(lines, kind)
        result = await evil.peer.room.request("publish_offer", sdp=sdp)
        answered = re.findall(r"^a=rid:(\S+) recv", result["sdp"], re.MULTILINE)
        assert answered == rids, name
        assert ("a=simulcast:" in result["sdp"]) == bool(rids), name
        producers = room.participants[evil.peer.room.participant_id].publish.producers
        simulcast = [p for p in producers.values() if isinstance(p, SimulcastProducer)]
        assert len(simulcast) == bool(rids), name
        await transport_ping(evil.peer)
    await still_flowing(viewer, good, 10)
    assert not health.problems


async def test_garbage_rids_and_ssrc_flips_are_dropped_and_counted(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """Beside its real layers, the publisher sends packets on made-up SSRCs and on its layers'
    SSRCs: unknown, empty or missing RIDs, RIDs that move a layer to another SSRC and back,
    random sequence numbers (losses across the 65535 wrap: NACKs the SFU sends back), random
    timestamps, truncated or random VP8 payloads. Unplaceable packets are dropped and counted;
    no exception escapes (the SFU's NACK of a wrapping loss did raise); others are unharmed."""
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    dropped = producer.packets_dropped
    payloads = [b"", bytes([0x90, 0x80, 0x80]), bytes([0x90, 0xC0, 0x80, 1, 2])]

    def garbage(rid: str, packet: RtpPacket) -> list[RtpPacket]:
        out = [packet]
        if rid != "q":
            return out
        for tag in ("zz", "", None, "h" if evil.frame % 2 else "f", "q", "f"):
            bad = RtpPacket(
                payload_type=packet.payload_type,
                marker=random.random() < 0.5,
                sequence_number=random.getrandbits(16),
                timestamp=random.getrandbits(32),
                ssrc=random.choice([random.getrandbits(32), *evil.ssrc.values()]),
                payload=random.choice(
                    [packet.payload, *payloads, random.randbytes(random.randint(0, 30))]
                ),
            )
            bad.extensions.mid = evil.mid
            bad.extensions.rtp_stream_id = tag
            out.append(bad)
        # RTX (RFC 4588) on made-up SSRCs: no RID, a repaired RID, a repaired RID unknown
        rtx = RtpPacket(
            payload_type=rtx_pt,
            sequence_number=random.getrandbits(16),
            ssrc=random.getrandbits(32),
            payload=random.randbytes(random.randint(0, 8)),
        )
        rtx.extensions.mid = evil.mid
        rtx.extensions.repaired_rtp_stream_id = random.choice([None, "q", "f", "zz"])
        out.append(rtx)
        return out

    codecs = aiortc_glue.negotiated_codecs(evil.transceiver)
    rtx_pt = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/rtx")
    evil.mutate = garbage
    until = evil.frame + 150
    await viewer.until(lambda: evil.frame > until, 30)
    assert producer.packets_dropped > dropped
    await still_flowing(viewer, good)
    await transport_ping(evil.peer)
    assert not health.problems


async def test_update_subscription_abuse(server: Server, join: Join, health: ServerHealth) -> None:
    """Out-of-range sizes and rates are refused by the schema; another participant's
    subscription cannot be touched; 200 pause/resume toggles as fast as the socket goes
    leave the server answering, the publisher's dynacast requests and the layer events few,
    and the subscriber receiving again at the end."""
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    for fields in (
        {"max_width": -1},
        {"max_width": 0},
        {"max_height": 1 << 40},
        {"max_fps": 0},
        {"max_fps": 1e308},
        {"paused": "yes"},
        {"track_id": ""},
        {"track_id": "x" * 65},
    ):
        with pytest.raises(SignallingError) as refused:
            await viewer.room.request(
                "update_subscription", **{"track_id": evil.track_id, **fields}
            )
        assert refused.value.code == "invalid_message", fields
    # the publisher does not receive its own track; good's audio is not simulcast
    with pytest.raises(SignallingError) as refused:
        await evil.peer.room.update_subscription(evil.track_id, paused=True)
    assert refused.value.code == "unknown_track"
    (audio,) = [t for t, r in viewer.tracks.items() if r.kind == "audio"]
    assert await viewer.room.update_subscription(audio, max_width=1) == []  # one layer

    events: list[dict[str, Any]] = []
    for peer in (viewer, evil.peer):
        dispatch = peer.room._dispatch

        def record(msg: dict[str, Any], dispatch: Any = dispatch) -> None:
            if msg.get("type") in ("layer_changed", "publisher_layers"):
                events.append(msg)
            dispatch(msg)

        peer.room._dispatch = record  # type: ignore[method-assign]
    replies = await asyncio.gather(
        *(
            viewer.room.update_subscription(evil.track_id, paused=i % 2 == 0, max_width=1 + i)
            for i in range(200)
        )
    )
    assert all(r == list(RIDS) for r in replies)
    frames = viewer.frames[evil.track_id]
    await viewer.room.update_subscription(evil.track_id)  # everything again
    await viewer.until(lambda: viewer.frames[evil.track_id] >= frames + 20)
    assert len(events) < 20, events
    await still_flowing(viewer, good)
    assert not health.problems


async def test_made_up_ssrcs_leave_no_state_behind(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """600 packets on made-up SSRCs with the right MID and no or unknown RIDs, and 300 that
    move a layer to a fresh SSRC each time: aiortc kept statistics per SSRC (and its RTCP task
    died packing more than 255 report blocks: no Receiver Reports to the publisher after).
    Now the unplaceable ones are dropped and counted before aiortc sees them and a replaced
    layer SSRC is forgotten."""
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    receiver: Any = producer._receiver
    dropped = producer.packets_dropped
    for i in range(900):
        bad = RtpPacket(
            payload_type=evil.pt,
            sequence_number=i,
            timestamp=i,
            ssrc=random.getrandbits(32),
            payload=b"\x10\x00inter-frame",
        )
        bad.extensions.mid = evil.mid
        bad.extensions.rtp_stream_id = ("zz", None, "f")[i % 3]
        await evil.send_raw(bad.serialize(evil.ext))
        if i % 50 == 0:
            await asyncio.sleep(0.005)  # pace the socket: the loopback buffer is small
    await still_flowing(viewer, good, 40)  # two RTCP intervals and more
    assert producer.packets_dropped >= dropped + 300  # of 600 (loopback UDP may lose some)
    assert len(receiver._RTCRtpReceiver__remote_streams) <= 2 * len(RIDS)
    assert not receiver._RTCRtpReceiver__rtcp_task.done()
    assert not health.problems


async def test_a_re_offer_cannot_change_published_layers(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """Re-offers of a published simulcast m-section with other RIDs, more RIDs, or no
    simulcast, and a one-stream track re-offered as simulcast: the answer asks only for layers
    the track's Producer has (it asked for x and y, whose packets were then all dropped), and
    the track goes on."""
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    cases = [
        (simulcast_lines(("x", "y")), []),
        (simulcast_lines(("q", "h", "f", "a")), ["q", "h", "f"]),
        (simulcast_lines(("f", "x", "q")), ["q", "f"]),
        ([], []),
        (simulcast_lines(), ["q", "h", "f"]),
    ]
    for lines, rids in cases:
        sdp = await evil.offer(lines)
        result = await evil.peer.room.request("publish_offer", sdp=sdp)
        await evil.pc.setRemoteDescription(RTCSessionDescription(sdp=result["sdp"], type="answer"))
        assert re.findall(r"^a=rid:(\S+) recv", result["sdp"], re.MULTILINE) == rids, lines
        assert [t["track_id"] for t in result["tracks"]] == [evil.track_id]
    frames = viewer.frames[evil.track_id]
    await viewer.until(lambda: viewer.frames[evil.track_id] >= frames + 20)

    plain = await join("plain")  # a one-stream video track, re-offered as simulcast
    assert plain.room.publish_pc is not None
    sdp = munge(plain.room.publish_pc.localDescription.sdp, simulcast_lines())
    result = await plain.room.request("publish_offer", sdp=sdp)
    assert "a=simulcast" not in result["sdp"] and "a=rid:" not in result["sdp"]
    await still_flowing(viewer, good)
    assert not health.problems


async def test_a_truncated_remb_does_not_end_the_connection(
    server: Server, join: Join, health: ServerHealth
) -> None:
    """A REMB whose header counts 200 SSRCs but whose FCI holds one, to a simulcast and to a
    one-stream Consumer: aiortc's router raised struct.error on it, which ended the subscribe
    connection's DTLS receive loop (the subscriber lost all its media). Now it is dropped."""
    evil, good, viewer, producer = await room_with_simulcast(server, join)
    transport, layered = consumer_of(server, viewer, evil.track_id)
    (video,) = [t for t, r in viewer.tracks.items() if r.kind == "video" and t != evil.track_id]
    _, plain = consumer_of(server, viewer, video)
    pc = viewer.room.subscribe_pc
    assert pc is not None
    dtls = pc.getTransceivers()[0].receiver.transport
    for consumer in (layered, plain):
        ssrc = consumer._sender.ssrc
        fci = b"REMB" + struct.pack("!LL", (200 << 24) | 1000, ssrc)
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=ssrc, fci=fci)
        await dtls._send_rtp(bytes(remb))
    await still_flowing(viewer, good)
    frames = viewer.frames[evil.track_id]
    await viewer.until(lambda: viewer.frames[evil.track_id] >= frames + 20)
    assert transport.connection_state == "connected"
    assert not health.problems
