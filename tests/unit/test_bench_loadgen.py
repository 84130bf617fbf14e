"""The load generator's packet accounting (benchmarks/loadgen): payloads found in raw RTP
whatever the header holds, send/receive matching inside the measurement window, SDP helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from benchmarks.loadgen.aiortc_hooks import payload_key, tap_sent_rtp
from benchmarks.loadgen.pacer import INTERVAL_S, Pacer
from benchmarks.loadgen.peers import (
    Ledger,
    audio_payload_types,
    loopback_only,
    media_payload_types,
)

VP8_PT, OPUS_PT = 96, 111
KEY_FRAME_PACKETS, PACKET_BYTES = 45, 1100  # about the clip's VP8 key frame
PACING_RATE_BPS = 2_000_000


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
    assert audio_payload_types(sdp) == {111}
    kept = loopback_only(sdp)
    assert "127.0.0.1 40000" in kept and "10.1.2.3" not in kept


def _rtp(pt: int, seq: int, size: int = PACKET_BYTES) -> bytes:
    packet = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=3000, ssrc=pt)
    packet.payload = seq.to_bytes(2, "big") * ((size - 12) // 2)
    return packet.serialize()


@dataclass
class Wire:
    """What reached aiortc's ``_send_rtp`` (which would protect and send) and what the
    latency tap saw, in order, with ``time.monotonic`` times."""

    sent: list[bytes] = field(default_factory=list)
    tapped: list[tuple[float, bytes]] = field(default_factory=list)
    first_video: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, data: bytes) -> None:
        self.sent.append(data)
        if data[1] & 0x7F == VP8_PT:
            self.first_video.set()

    def on_sent(self, data: bytes) -> None:
        self.tapped.append((time.monotonic(), data))


@pytest.fixture
async def publisher() -> AsyncIterator[tuple[RTCPeerConnection, Wire]]:
    """A real aiortc publish connection (not connected: its transport's send is the wire)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly")
    wire = Wire()
    transport: Any = pc.getTransceivers()[0].receiver.transport
    transport._send_rtp = wire.send  # aiortc's SRTP + sendto, which the hooks wrap
    yield pc, wire
    await pc.close()


async def _send_key_frame(pc: RTCPeerConnection) -> None:
    """As aiortc's sender loop does: one packet after the other, each send awaited."""
    send = pc.getTransceivers()[0].receiver.transport._send_rtp
    for seq in range(KEY_FRAME_PACKETS):
        await send(_rtp(VP8_PT, seq))


async def test_pacer_spreads_a_key_frame_over_its_size_over_the_rate(
    publisher: tuple[RTCPeerConnection, Wire],
) -> None:
    pc, wire = publisher
    pacer = Pacer(PACING_RATE_BPS, unpaced_pts={OPUS_PT})
    tap_sent_rtp(pc, wire.on_sent, pacer)
    start = time.monotonic()
    await _send_key_frame(pc)
    assert [data for _, data in wire.tapped] == wire.sent  # all of it, in order
    assert len(wire.sent) == KEY_FRAME_PACKETS
    # The last packet may leave once the budget (one interval's worth at start, one more
    # from a partial first interval) covers the packets before it; a slow machine only
    # makes it later. One interval more of margin for the timer's rounding.
    before_last = (KEY_FRAME_PACKETS - 1) * PACKET_BYTES - 2 * pacer.burst_bytes
    least_s = before_last * 8 / PACING_RATE_BPS - INTERVAL_S
    assert least_s > 0.15  # the test means something: a burst, not a single packet
    assert wire.tapped[-1][0] - start >= least_s
    # The tap saw each packet when it left the pacer: not all at once.
    assert wire.tapped[-1][0] - wire.tapped[0][0] >= least_s


async def test_pacer_does_not_hold_audio_behind_video(
    publisher: tuple[RTCPeerConnection, Wire],
) -> None:
    pc, wire = publisher
    pacer = Pacer(PACING_RATE_BPS, unpaced_pts={OPUS_PT})
    tap_sent_rtp(pc, wire.on_sent, pacer)
    send = pc.getTransceivers()[0].receiver.transport._send_rtp
    video = asyncio.ensure_future(_send_key_frame(pc))
    await asyncio.wait_for(wire.first_video.wait(), 5)
    audio = _rtp(OPUS_PT, 1, 200)
    assert pacer.delay(audio) == 0  # a key frame queued ahead: audio still leaves at once
    await send(audio)  # the send returned: no pacing wait, the video burst not yet out
    assert wire.sent[-1] == audio
    assert len(wire.sent) < KEY_FRAME_PACKETS
    await asyncio.wait_for(video, 10)
    assert len(wire.sent) == KEY_FRAME_PACKETS + 1


async def test_unpaced_sends_straight_through(
    publisher: tuple[RTCPeerConnection, Wire],
) -> None:
    """--pacing-factor 0: no pacer, the key frame leaves back to back, never yielding."""
    pc, wire = publisher
    tap_sent_rtp(pc, wire.on_sent)
    other_ran = asyncio.Event()

    async def other_task() -> None:
        other_ran.set()

    other = asyncio.ensure_future(other_task())  # runs as soon as the test yields
    await _send_key_frame(pc)
    assert not other_ran.is_set()  # the loop never ran anything else meanwhile
    assert len(wire.sent) == KEY_FRAME_PACKETS
    assert [data for _, data in wire.tapped] == wire.sent
    await other


def test_pacer_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError):
        Pacer(0)
