"""switchboard/sfu/aiortc_glue.py: fails if aiortc or aioice change under the glue.

Three layers: the pinned versions are the installed ones; every private name the glue
touches exists on real aiortc objects; and the hooks work between two aiortc peer connections
over loopback (ICE, DTLS and SRTP for real, no server).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import ssl
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioice
import aioice.ice
import aioice.turn
import aiortc
import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RTP_HISTORY_SIZE, RtcpSrPacket, RtpPacket

from switchboard.sfu import aiortc_glue

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
TIMEOUT_S = 10.0


def pinned(name: str) -> str:
    """The ``==`` version of ``name`` in pyproject.toml's dependencies."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (version,) = [m[1] for d in dependencies if (m := re.fullmatch(rf"{name}==(\S+)", d))]
    return version


@pytest.mark.parametrize(("name", "module"), [("aiortc", aiortc), ("aioice", aioice)])
def test_installed_version_is_the_pinned_one(name: str, module: Any) -> None:
    assert module.__version__ == pinned(name)


def test_pins_are_the_versions_this_test_was_written_for() -> None:
    """Changing a pin means reading this module's hooks against the new release first."""
    assert (pinned("aiortc"), pinned("aioice")) == ("1.16.0", "0.13.0")


# --- every private name the glue uses -------------------------------------------------------

RECEIVER_NAMES = [
    "_handle_rtp_packet",
    "_handle_rtcp_packet",
    "_send_rtcp_nack",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__stop_decoder",
    "_send_rtcp_pli",
    "receive",
    "transport",
]
SENDER_NAMES = [
    "_RTCRtpSender__rtp_header_extensions_map",
    "_RTCRtpSender__rtp_history",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__packet_count",
    "_handle_rtcp_packet",
    "_retransmit",
    "_send_keyframe",
    "_ssrc",
    "_stream_id",
    "_track_id",
    "send",
    "transport",
]
TRANSPORT_NAMES = ["_send_rtp", "_rtp_header_extensions_map"]
TRANSCEIVER_NAMES = ["_codecs"]


@pytest.fixture
async def transceiver() -> AsyncIterator[RTCRtpTransceiver]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    yield pc.addTransceiver("video")
    await pc.close()


@pytest.mark.parametrize(
    ("owner", "names"),
    [
        pytest.param("receiver", RECEIVER_NAMES, id="RTCRtpReceiver"),
        pytest.param("sender", SENDER_NAMES, id="RTCRtpSender"),
        pytest.param("transport", TRANSPORT_NAMES, id="RTCDtlsTransport"),
        pytest.param("transceiver", TRANSCEIVER_NAMES, id="RTCRtpTransceiver"),
    ],
)
def test_private_names_exist(transceiver: RTCRtpTransceiver, owner: str, names: list[str]) -> None:
    obj = {
        "receiver": transceiver.receiver,
        "sender": transceiver.sender,
        "transport": transceiver.sender.transport,
        "transceiver": transceiver,
    }[owner]
    assert [n for n in names if not hasattr(obj, n)] == []


def test_private_names_have_the_types_the_glue_assumes(transceiver: RTCRtpTransceiver) -> None:
    sender, receiver = transceiver.sender, transceiver.receiver
    assert isinstance(sender, RTCRtpSender) and isinstance(receiver, RTCRtpReceiver)
    assert isinstance(sender.transport, RTCDtlsTransport)
    assert sender._RTCRtpSender__rtp_history == {}  # type: ignore[attr-defined]
    for counter in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count"):
        assert getattr(sender, f"_RTCRtpSender__{counter}") == 0
    assert isinstance(sender._ssrc, int) and isinstance(sender._stream_id, str)
    assert isinstance(transceiver._codecs, list)
    assert inspect.iscoroutinefunction(receiver._handle_rtp_packet)
    assert inspect.iscoroutinefunction(sender._handle_rtcp_packet)
    assert inspect.iscoroutinefunction(sender.transport._send_rtp)
    assert list(inspect.signature(receiver._handle_rtp_packet).parameters) == [
        "packet",
        "arrival_time_ms",
    ]
    # aiortc's retransmission looks a NACKed number up in the history the way the glue fills it
    assert "self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)" in inspect.getsource(
        RTCRtpSender._retransmit
    )
    assert RTP_HISTORY_SIZE > 0


def test_aioice_host_address_hook() -> None:
    original = aiortc_glue._original_get_host_addresses
    assert original.__module__ == "aioice.ice"
    assert list(inspect.signature(original).parameters) == ["use_ipv4", "use_ipv6"]
    # aioice looks the function up in its module when it gathers, so replacing it works
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)
    aiortc_glue.use_host_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    aiortc_glue.use_host_addresses(["127.0.0.1"])


def _free_udp_ports(count: int) -> int:
    """The first of ``count`` consecutive UDP ports free on 127.0.0.1 right now."""
    for base in range(42000, 60000, count):
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


async def _gathered_host_ports() -> list[int]:
    connection = aioice.Connection(ice_controlling=True)
    try:
        await connection.gather_candidates()
        return [c.port for c in connection.local_candidates if c.type == "host"]
    finally:
        await connection.close()


async def test_aioice_udp_port_range_hook() -> None:
    # aioice binds each host candidate with the loop it looks up through its `asyncio`, port 0
    source = inspect.getsource(aioice.ice.Connection.get_component_candidates)
    assert "loop = asyncio.get_running_loop()" in source
    assert "loop.create_datagram_endpoint(" in source and "local_addr=(address, 0)" in source
    assert aiortc_glue._original_asyncio is asyncio
    aiortc_glue.use_host_addresses(["127.0.0.1"])
    base = _free_udp_ports(4)
    aiortc_glue.use_udp_port_range((base, base + 3))
    try:
        ports = await _gathered_host_ports() + await _gathered_host_ports()
        assert len(ports) == 2 and all(base <= p <= base + 3 for p in ports), ports
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", base))
            aiortc_glue.use_udp_port_range((base, base))
            assert await _gathered_host_ports() == []  # range exhausted: aioice logs, skips
    finally:
        aiortc_glue.use_udp_port_range(None)
    assert await _gathered_host_ports() != []


def test_aioice_turn_endpoint_hook() -> None:
    # aioice looks create_turn_endpoint up in aioice.turn at each allocation, passing ssl=bool
    source = inspect.getsource(aioice.ice.relayed_candidate)
    assert "turn.create_turn_endpoint(" in source and "ssl=turn_ssl," in source
    original = aiortc_glue._original_create_turn_endpoint
    assert original.__module__ == "aioice.turn"
    assert {"server_addr", "ssl", "transport"} <= set(inspect.signature(original).parameters)
    assert "ssl=ssl" in inspect.getsource(original)
    assert aioice.turn.create_turn_endpoint is aiortc_glue._create_turn_endpoint


async def test_turn_hook_records_errors_and_swaps_the_tls_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:  # a TCP port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aiortc_glue.last_turn_error(clear=True)
    connection = aioice.Connection(
        ice_controlling=True,
        turn_server=("127.0.0.1", port),
        turn_username="u",
        turn_password="secret-password",
        turn_transport="tcp",
    )
    await connection.gather_candidates()
    await connection.close()
    error = aiortc_glue.last_turn_error(clear=True)
    assert error is not None and error.startswith(f"127.0.0.1:{port}: ")
    assert "secret-password" not in error
    assert aiortc_glue.last_turn_error() is None

    seen: dict[str, Any] = {}

    async def capture(protocol_factory: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise ConnectionRefusedError("captured")

    monkeypatch.setattr(aiortc_glue, "_original_create_turn_endpoint", capture)
    context = ssl.create_default_context()
    aiortc_glue.use_turn_tls_context(context)
    try:
        with pytest.raises(ConnectionRefusedError):
            await aioice.turn.create_turn_endpoint(object, server_addr=("h", 1), ssl=True)
        assert seen["ssl"] is context
        with pytest.raises(ConnectionRefusedError):
            await aioice.turn.create_turn_endpoint(object, server_addr=("h", 1), ssl=False)
        assert seen["ssl"] is False
    finally:
        aiortc_glue.use_turn_tls_context(None)


# --- the hooks between two real peer connections over loopback ------------------------------


class Seen:
    """Things that happened, with a way to wait for a condition on them."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.packets: list[RtpPacket] = []
        self.key_frame_requests = 0

    def note(self) -> None:
        self.changed.set()

    async def on_rtp(self, packet: RtpPacket) -> None:
        self.packets.append(packet)
        self.note()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def pcs() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """(sending side, receiving side), gathering on 127.0.0.1 only, no STUN."""
    aiortc_glue.use_host_addresses(["127.0.0.1"])
    pair = (
        RTCPeerConnection(RTCConfiguration(iceServers=[])),
        RTCPeerConnection(RTCConfiguration(iceServers=[])),
    )
    yield pair
    for pc in pair:
        await pc.close()


async def connect_with_tap(
    sending: RTCPeerConnection, receiving: RTCPeerConnection, seen: Seen, decode: bool
) -> tuple[RTCRtpTransceiver, asyncio.Event]:
    """Offer from ``sending``, answer from ``receiving`` with a ReceiveTap on its video
    receiver. Returns that transceiver and an event set once its receiver has started."""
    offer = await sending.createOffer()
    await sending.setLocalDescription(offer)
    hosts = re.findall(
        r"a=candidate:\S+ \d \w+ \d+ (\S+) \d+ typ host", sending.localDescription.sdp
    )
    assert hosts and set(hosts) == {"127.0.0.1"}
    await receiving.setRemoteDescription(sending.localDescription)
    (transceiver,) = receiving.getTransceivers()
    receiver = transceiver.receiver
    aiortc_glue.ReceiveTap(receiver, seen.on_rtp, decode=decode)
    started = asyncio.Event()
    receive = receiver.receive

    async def receive_then_signal(parameters: Any) -> None:
        await receive(parameters)
        started.set()

    receiver.receive = receive_then_signal  # type: ignore[method-assign]
    await receiving.setLocalDescription(await receiving.createAnswer())
    await sending.setRemoteDescription(receiving.localDescription)
    return transceiver, started


async def test_receive_tap_sees_packets_and_stops_the_decoder(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    transceiver, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    (sender,) = sending.getSenders()

    await seen.until(lambda: len(seen.packets) >= 20)
    assert {p.ssrc for p in seen.packets} == {sender._ssrc}
    # the decoder thread is gone: the track ends instead of yielding a frame
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(transceiver.receiver.track.recv(), TIMEOUT_S)
    # aiortc's own receive bookkeeping still runs behind the tap
    stats = await transceiver.receiver.getStats()
    inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
    assert inbound and inbound[0].packetsReceived >= 20


async def test_receive_tap_with_decode_keeps_decoding(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    transceiver, _ = await connect_with_tap(sending, receiving, seen, decode=True)
    frame = await asyncio.wait_for(transceiver.receiver.track.recv(), TIMEOUT_S)
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (640, 480)
    assert seen.packets


async def test_forwarding_sender(pcs: tuple[RTCPeerConnection, RTCPeerConnection]) -> None:
    """Prepared packets leave with the negotiated payload type and the SDP's SSRC, under
    SRTP; aiortc answers a NACK for one of them from the glue's history (as RTX); a PLI
    reaches ``on_key_frame_request``; aiortc's sender statistics count what was forwarded."""
    sending, receiving = pcs
    hold = aiortc_glue.HoldTrack("video", "TR_glue")
    sending_transceiver = sending.addTransceiver(hold, direction="sendonly")
    seen, forwarder_started = Seen(), asyncio.Event()

    def on_key_frame_request() -> None:
        seen.key_frame_requests += 1
        seen.note()

    forwarder = aiortc_glue.ForwardingSender(
        sending_transceiver.sender, "PA_glue", forwarder_started.set, on_key_frame_request
    )
    sent_before_srtp: list[RtpPacket] = []
    transceiver, receiver_started = await connect_with_tap(sending, receiving, seen, decode=False)
    assert "a=msid:PA_glue TR_glue" in sending.localDescription.sdp
    aiortc_glue.tap_sent_rtp(sending_transceiver.sender, sent_before_srtp.append)
    await asyncio.wait_for(forwarder_started.wait(), TIMEOUT_S)
    await asyncio.wait_for(receiver_started.wait(), TIMEOUT_S)

    (vp8, *_) = aiortc_glue.negotiated_codecs(transceiver)
    assert vp8.mimeType == "video/VP8"
    assert forwarder.started and forwarder.payload_type == vp8.payloadType
    assert forwarder.ssrc == sending_transceiver.sender._ssrc
    assert f"a=ssrc:{forwarder.ssrc} " in sending.localDescription.sdp

    seqs = [65533, 65534, 65535, 0, 1]  # across the 16-bit wrap
    payloads = [bytes([0x10, 0x00, i, 0x9D, 0x01, 0x2A]) for i in range(len(seqs))]
    for i, (seq, payload) in enumerate(zip(seqs, payloads, strict=True)):
        source = RtpPacket(
            payload_type=111,
            marker=i % 2,
            sequence_number=9,
            timestamp=7,
            ssrc=0xDEADBEEF,
            payload=payload,
        )
        await forwarder.send(source, seq, 1_000_000 + 3000 * i)
    await seen.until(lambda: len(seen.packets) >= len(seqs))

    got = seen.packets[: len(seqs)]
    assert [p.payload_type for p in got] == [vp8.payloadType] * len(seqs)
    assert [p.ssrc for p in got] == [forwarder.ssrc] * len(seqs)
    assert [p.sequence_number for p in got] == seqs
    assert [p.timestamp for p in got] == [1_000_000 + 3000 * i for i in range(len(seqs))]
    assert [p.marker for p in got] == [i % 2 for i in range(len(seqs))]
    assert [p.payload for p in got] == payloads
    assert {p.extensions.mid for p in got} == {transceiver.mid}
    assert [p.sequence_number for p in sent_before_srtp] == seqs

    stats = await sending_transceiver.sender.getStats()
    (outbound,) = [s for s in stats.values() if s.type == "outbound-rtp"]
    assert (outbound.packetsSent, outbound.bytesSent) == (len(seqs), sum(map(len, payloads)))

    # NACK for 65535: aiortc resends it from the history the glue filled, as RTX (RFC 4588)
    await transceiver.receiver._send_rtcp_nack(forwarder.ssrc, [65535])
    await seen.until(lambda: len(seen.packets) > len(seqs))
    rtx = seen.packets[len(seqs)]
    assert rtx.ssrc != forwarder.ssrc and rtx.payload_type != vp8.payloadType
    assert rtx.payload == (65535).to_bytes(2, "big") + payloads[2]  # OSN, then the payload

    requests = seen.key_frame_requests
    await aiortc_glue.send_pli(transceiver.receiver, forwarder.ssrc)
    await seen.until(lambda: seen.key_frame_requests > requests)
    hold.stop()


async def test_forwarding_sender_nacks_resend_and_report_mapping(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """With ``on_nack`` the glue gets the subscriber's NACKs (aiortc does not answer them);
    ``resend`` goes out as RTX; Sender Reports carry ``sr_mapping``; ``drop_received_rtp``
    loses packets before the receiver; ``tap_rtcp`` sees the SRs; ``send_nack`` and
    ``disable_nack_generator`` work on a receiver."""
    sending, receiving = pcs
    hold = aiortc_glue.HoldTrack("video", "TR_glue")
    sending_transceiver = sending.addTransceiver(hold, direction="sendonly")
    seen, forwarder_started = Seen(), asyncio.Event()
    nacks: list[list[int]] = []
    reports: list[RtcpSrPacket] = []

    def on_nack(lost: list[int]) -> None:
        nacks.append(lost)
        seen.note()

    forwarder = aiortc_glue.ForwardingSender(
        sending_transceiver.sender, "PA_glue", forwarder_started.set, lambda: None, on_nack
    )
    transceiver, receiver_started = await connect_with_tap(sending, receiving, seen, decode=False)
    receiver = transceiver.receiver
    aiortc_glue.drop_received_rtp(receiver, lambda p: p.sequence_number == 11)
    aiortc_glue.tap_rtcp(
        receiver, lambda p: (reports.append(p), seen.note()) if isinstance(p, RtcpSrPacket) else 0
    )
    aiortc_glue.disable_nack_generator(receiver)
    assert receiver._RTCRtpReceiver__nack_generator is None  # type: ignore[attr-defined]
    await asyncio.wait_for(forwarder_started.wait(), TIMEOUT_S)
    await asyncio.wait_for(receiver_started.wait(), TIMEOUT_S)

    forwarder.sr_mapping = (0x1234_5678_9ABC_DEF0, 4242)
    source = RtpPacket(payload_type=96, sequence_number=1, timestamp=7, payload=b"\x10\x00abc")
    for seq in (10, 11, 12):
        await forwarder.send(source, seq, 9000)
    await seen.until(lambda: len(seen.packets) >= 2)
    assert [p.sequence_number for p in seen.packets] == [10, 12]  # 11 was "lost"

    await aiortc_glue.send_nack(receiver, forwarder.ssrc, [11])
    await seen.until(lambda: bool(nacks))
    assert nacks == [[11]]
    await forwarder.resend(source, 11, 9000)
    await aiortc_glue.send_nack(receiver, forwarder.ssrc, [12])  # aiortc must not answer it
    await seen.until(lambda: len(nacks) == 2)
    await seen.until(lambda: len(seen.packets) >= 3)
    rtx = seen.packets[2]
    assert rtx.ssrc != forwarder.ssrc and rtx.payload == (11).to_bytes(2, "big") + b"\x10\x00abc"
    assert len(seen.packets) == 3  # aiortc did not answer the second NACK itself

    await seen.until(lambda: any(r.ssrc == forwarder.ssrc for r in reports))
    (report, *_) = [r for r in reports if r.ssrc == forwarder.ssrc]
    info = report.sender_info
    assert (info.ntp_timestamp, info.rtp_timestamp) == (0x1234_5678_9ABC_DEF0, 4242)
    hold.stop()


def test_spread_bundle_candidates_copies_the_first_sections_candidates() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
    )
    out = aiortc_glue.spread_bundle_candidates(sdp)
    sections = out.split("m=")[1:]
    assert all("a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\n" in s for s in sections)
    assert all(s.count("a=end-of-candidates") == 1 for s in sections)
    assert out.endswith("\r\n") and "\n\n" not in out.replace("\r\n", "")
    single = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    assert aiortc_glue.spread_bundle_candidates(single) == single
