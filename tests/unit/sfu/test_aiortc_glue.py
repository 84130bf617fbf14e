"""switchboard/sfu/aiortc_glue/: fails if aiortc or aioice change under the glue.

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
import struct
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioice
import aioice.ice
import aioice.turn
import aiortc
import av
import pylibsrtp
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
from aiortc.rtp import (
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
)

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
    # _receive_bookkeeping
    "_enabled",
    "_send_rtcp",
    "_RTCRtpReceiver__active_ssrc",
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__rtcp_ssrc",
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
TRANSPORT_NAMES = [
    "_send_rtp",
    "_rtp_header_extensions_map",
    "_state",
    "_tx_srtp",
    "_RTCDtlsTransport__tx_bytes",
    "_RTCDtlsTransport__tx_packets",
    "transport",
]
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
    original = aiortc_glue.network._original_get_host_addresses
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
    assert aiortc_glue.network._original_asyncio is asyncio
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
    original = aiortc_glue.network._original_create_turn_endpoint
    assert original.__module__ == "aioice.turn"
    assert {"server_addr", "ssl", "transport"} <= set(inspect.signature(original).parameters)
    assert "ssl=ssl" in inspect.getsource(original)
    assert aioice.turn.create_turn_endpoint is aiortc_glue.network._create_turn_endpoint


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

    monkeypatch.setattr(aiortc_glue.network, "_original_create_turn_endpoint", capture)
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


def test_receive_bookkeeping_is_aiortcs_minus_the_decoder_feed() -> None:
    """``ReceiveTap(decode=False)`` replaces aiortc's ``_handle_rtp_packet`` with
    ``_receive_bookkeeping``: the statements it keeps must still be aiortc's, in this order,
    and what it leaves out must still be only what feeds the decoder."""
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    kept = [
        "if not self._enabled:",
        "remb = self.__remote_bitrate_estimator.add(",
        "payload_size=len(packet.payload) + packet.padding_size,",
        "fmt=RTCP_PSFB_APP,",
        "fci=pack_remb_fci(*remb),",
        "self.__active_ssrc[packet.ssrc] = clock.current_datetime()",
        "codec = self.__codecs.get(packet.payload_type)",
        "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)",
        "self.__remote_streams[packet.ssrc].add(packet)",
        "original_ssrc = self.__rtx_ssrc.get(packet.ssrc)",
        'apt = codec.parameters.get("apt")',
        "packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)",
        "if self.__nack_generator is not None and self.__nack_generator.add(packet):",
        "packet.ssrc, sorted(self.__nack_generator.missing)",
        # left out from here on: what only the decoder uses
        "packet._data = depayload(codec, packet.payload)",
        "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)",
        "if self.__decoder_error.is_set():",
        "await self._send_rtcp_pli(packet.ssrc)",  # the jitter buffer's and decoder's PLIs
        "self.__decoder_queue.put((codec, encoded_frame))",
    ]
    positions = [source.find(line) for line in kept]
    assert -1 not in positions, [line for line in kept if line not in source]
    assert positions == sorted(positions)
    assert source.count("await self._send_rtcp") == 3  # REMB, NACK, PLI: no other RTCP


async def test_receive_tap_without_decode_keeps_remb_nack_rtx_and_statistics(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """Behind ``ReceiveTap(decode=False)`` a lost packet is NACKed (aiortc's generator), its
    RTX answer is seen by the tap, REMB reaches the sender, Receiver Report statistics count
    the packets, and the jitter buffer is never fed."""
    sending, receiving = pcs
    sending_transceiver = sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    sender = sending_transceiver.sender
    feedback: list[Any] = []
    handle_rtcp = sender._handle_rtcp_packet
    seen = Seen()

    async def record(packet: Any) -> None:
        feedback.append(packet)
        seen.note()
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = record  # type: ignore[method-assign]
    transceiver, started = await connect_with_tap(sending, receiving, seen, decode=False)
    receiver = transceiver.receiver
    lost: list[int] = []

    def drop_once(packet: RtpPacket) -> bool:
        # once the receiver knows the codec and the generator has a sequence to find a gap in
        started_ok = started.is_set() and len(seen.packets) >= 10
        if started_ok and not lost and packet.ssrc == sender._ssrc:
            lost.append(packet.sequence_number)
            return True
        return False

    aiortc_glue.drop_received_rtp(receiver, drop_once)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)

    def nacked() -> bool:
        return any(
            isinstance(p, RtcpRtpfbPacket) and p.fmt == 1 and lost[0] in p.lost for p in feedback
        )

    await seen.until(lambda: bool(lost) and nacked())
    await seen.until(
        lambda: any(
            p.ssrc == sender._rtx_ssrc and p.payload[:2] == lost[0].to_bytes(2, "big")
            for p in seen.packets
        )
    )
    await seen.until(lambda: any(isinstance(p, RtcpPsfbPacket) and p.fmt == 15 for p in feedback))
    # what Receiver Reports and getStats() read, per SSRC
    streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
    assert streams[sender._ssrc].packets_received >= 2 and sender._rtx_ssrc in streams
    assert receiver._RTCRtpReceiver__jitter_buffer._origin is None  # type: ignore[attr-defined]


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


# --- ForwardingSender's fast path ------------------------------------------------------------


def test_fast_path_relies_on_what_aiortc_aioice_and_pylibsrtp_do() -> None:
    """The fast path does what these do, without calling them: it must be rewritten if they
    change (aiortc's SRTP send and its counters, aioice's send on the nominated pair,
    pylibsrtp's in-place protect on its cffi binding, aiortc's NTP clock)."""
    send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
    for line in (
        "self._state != State.CONNECTED",
        "data = self._tx_srtp.protect(data)",
        "await self.transport._send(data)",
        "self.__tx_bytes += len(data)",
        "self.__tx_packets += 1",
    ):
        assert line in send_rtp
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in (
        inspect.getsource(aioice.ice.Connection.sendto)
    )
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    )
    # the ICE transport's _send is its Connection's send, unless someone replaced it
    assert "self._send = self._connection.send" in inspect.getsource(
        aiortc.RTCIceTransport.__init__
    )
    process = inspect.getsource(pylibsrtp.Session._Session__process)  # type: ignore[attr-defined]
    assert "func(self._srtp[0], self._cdata, len_p)" in process
    assert pylibsrtp.__version__ == "1.0.0" and pylibsrtp.SRTP_MAX_TRAILER_LEN == 144
    # aiortc's NTP time and abs-send-time, as the fast path computes them from time.time()
    before = aiortc.clock.current_ntp_time()
    unix = time.time()
    after = aiortc.clock.current_ntp_time()
    ntp = unix + 2208988800
    ours = (int(ntp) << 32) | int((ntp - int(ntp)) * 2**32)
    assert before - 2**22 <= ours <= after + 2**22  # within 1 ms
    assert abs(((ours >> 14) & 0xFFFFFF) - (int(unix * 262144) & 0xFFFFFF)) <= 1


async def start_forwarder(
    sending: RTCPeerConnection,
    receiving: RTCPeerConnection,
    kind: str,
    on_nack: Callable[[list[int]], None] | None = None,
) -> tuple[aiortc_glue.ForwardingSender, RTCRtpTransceiver, Seen]:
    """A ForwardingSender of ``kind`` on ``sending``, negotiated with ``receiving`` (whose
    receiver is tapped), both started."""
    hold = aiortc_glue.HoldTrack(kind, f"TR_{kind}")
    sending_transceiver = sending.addTransceiver(hold, direction="sendonly")
    seen, forwarder_started = Seen(), asyncio.Event()
    forwarder = aiortc_glue.ForwardingSender(
        sending_transceiver.sender, "PA_fast", forwarder_started.set, lambda: None, on_nack
    )
    transceiver, receiver_started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(forwarder_started.wait(), TIMEOUT_S)
    await asyncio.wait_for(receiver_started.wait(), TIMEOUT_S)
    return forwarder, transceiver, seen


async def forward_until_sent(
    forwarder: aiortc_glue.ForwardingSender, packets: list[tuple[RtpPacket, int, int, Any]]
) -> None:
    """``forward`` each (packet, seq, ts, audio level): the fast path must take them all (no
    awaitable comes back). aiortc starts senders once ICE and DTLS are connected."""
    assert forwarder._ice._connection._nominated
    for packet, seq, ts, level in packets:
        assert forwarder.forward(packet, seq, ts, level) is None  # the fast path took it
    assert forwarder._route_sendto is not None


@pytest.mark.parametrize("kind", ["audio", "video"])
async def test_fast_path_packets_parse_at_a_real_aiortc_subscriber(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection], kind: str
) -> None:
    """What the fast path sends, SRTP-decrypted and parsed by aiortc on the other side: the
    payload byte for byte, marker, PT, SSRC, seq (across the wrap), ts, MID, abs-send-time
    (near aiortc's own clock) and, for audio, the RFC 6464 level where one was given. The
    aiortc sender's statistics count them."""
    sending, receiving = pcs
    forwarder, transceiver, seen = await start_forwarder(sending, receiving, kind, lambda _: None)
    sent_plain: list[RtpPacket] = []
    aiortc_glue.tap_sent_rtp(forwarder._sender, sent_plain.append)
    (codec, *_) = aiortc_glue.negotiated_codecs(transceiver)
    seqs = [65534, 65535, 0, 1]
    levels = [(True, 30), None, (False, 127), (True, 0)] if kind == "audio" else [None] * 4
    payloads = [bytes([0x10, 0x00, i]) + bytes(range(256)) * (i + 1) for i in range(len(seqs))]
    packets = [
        (RtpPacket(payload_type=1, marker=i % 2, payload=payloads[i]), seq, 90_000 * i, level)
        for i, (seq, level) in enumerate(zip(seqs, levels, strict=True))
    ]
    await forward_until_sent(forwarder, packets)
    sent_at = aiortc.clock.current_ntp_time()
    await seen.until(lambda: len(seen.packets) >= len(seqs))

    got = seen.packets
    assert [p.payload for p in got] == payloads
    assert [p.sequence_number for p in got] == seqs
    assert [p.timestamp for p in got] == [90_000 * i for i in range(len(seqs))]
    assert [p.marker for p in got] == [i % 2 for i in range(len(seqs))]
    assert {p.payload_type for p in got} == {codec.payloadType}
    assert {p.ssrc for p in got} == {forwarder.ssrc}
    assert {p.extensions.mid for p in got} == {transceiver.mid}
    assert [p.extensions.audio_level for p in got] == levels
    if kind == "video":
        now_abs = (sent_at >> 14) & 0xFFFFFF
        assert all((now_abs - p.extensions.abs_send_time) % 2**24 < 2**18 for p in got)  # < 1 s
    assert [p.sequence_number for p in sent_plain] == seqs  # the tap saw the fast path's

    stats = await forwarder._sender.getStats()
    (outbound,) = [s for s in stats.values() if s.type == "outbound-rtp"]
    assert (outbound.packetsSent, outbound.bytesSent) == (len(seqs), sum(map(len, payloads)))


async def test_fast_path_honours_drop_sent_rtp_and_a_replaced_send(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """``drop_sent_rtp`` drops on the fast path too (and aiortc's statistics still count the
    packet as sent, as when the network loses it); a pair whose ``send_data`` someone replaced
    (fault injection on the socket) is honoured; a DTLS transport that is not connected
    raises ConnectionError; ``fast`` off goes through aiortc."""
    sending, receiving = pcs
    forwarder, _, seen = await start_forwarder(sending, receiving, "video", lambda _: None)
    aiortc_glue.drop_sent_rtp(forwarder._sender, lambda p: p.sequence_number % 2 == 1)
    packets = [(RtpPacket(payload=b"\x10\x00" + bytes([i])), i, 0, None) for i in range(1, 7)]
    await forward_until_sent(forwarder, packets)
    await seen.until(lambda: len(seen.packets) >= 3)
    assert [p.sequence_number for p in seen.packets] == [2, 4, 6]

    (pair,) = forwarder._ice._connection._nominated.values()
    blackholed: list[bytes] = []

    async def no_data(data: bytes, addr: tuple[str, int]) -> None:
        blackholed.append(data)

    pair.protocol.send_data = no_data
    pending = forwarder.forward(RtpPacket(payload=b"\x10\x00\x07"), 8, 0)
    assert pending is not None  # not the fast path: aioice's (replaced) send_data is used
    await pending
    assert len(blackholed) == 1
    del pair.protocol.send_data

    forwarder.fast = False
    pending = forwarder.forward(RtpPacket(payload=b"\x10\x00\x08"), 10, 0)
    assert pending is not None
    await pending
    forwarder.fast = True
    assert forwarder.forward(RtpPacket(payload=b"\x10\x00\x09"), 12, 0) is None
    await seen.until(lambda: len(seen.packets) >= 5)
    assert [p.sequence_number for p in seen.packets] == [2, 4, 6, 10, 12]

    await sending.close()
    with pytest.raises(ConnectionError):
        forwarder.forward(RtpPacket(payload=b"\x10\x00\x0a"), 14, 0)


async def test_fast_path_sender_reports_without_a_mapping_use_the_send_time(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """Without ``sr_mapping``, the Sender Report carries the last packet's send time (NTP,
    as aiortc's clock gives it) and RTP timestamp (RFC 3550 §6.4.1), as aiortc's own sender."""
    sending, receiving = pcs
    forwarder, transceiver, seen = await start_forwarder(sending, receiving, "video")
    reports: list[RtcpSrPacket] = []
    aiortc_glue.tap_rtcp(
        transceiver.receiver,
        lambda p: (reports.append(p), seen.note()) if isinstance(p, RtcpSrPacket) else 0,
    )
    before = aiortc.clock.current_ntp_time()
    await forward_until_sent(forwarder, [(RtpPacket(payload=b"\x10\x00\x01"), 5, 777_000, None)])
    after = aiortc.clock.current_ntp_time()
    await seen.until(lambda: any(r.ssrc == forwarder.ssrc for r in reports))
    (report, *_) = [r for r in reports if r.ssrc == forwarder.ssrc]
    info = report.sender_info
    assert info.rtp_timestamp == 777_000
    assert before - 2**22 <= info.ntp_timestamp <= after + 2**22  # within 1 ms
    assert (info.packet_count, info.octet_count) == (1, 3)


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


# --- ICE restart ------------------------------------------------------------------------------


def test_ice_restart_private_names_and_the_behaviour_the_hooks_replace() -> None:
    """The names the restart hooks touch, and the aiortc behaviour they work around: if aiortc
    learns to restart ICE itself (RTCIceTransport.start starting again, a gatherer per
    restart), these assertions fail and the hooks must be revisited."""
    from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

    gatherer = RTCIceGatherer(iceServers=[])
    ice = RTCIceTransport(gatherer)
    for name in ("_connection", "_recv", "_send", "_monitor", "_RTCIceTransport__monitor_task"):
        assert hasattr(ice, name), name
    assert hasattr(gatherer, "_connection") and gatherer._remote_candidates_end is False
    connection = ice._connection
    for name in ("_nominated", "_queue", "_protocols", "_use_ipv4", "_use_ipv6"):
        assert hasattr(connection, name), name
    assert isinstance(connection._transport_policy, aioice.ice.TransportPolicy)
    for name in ("stun_server", "turn_server", "turn_username", "turn_password", "turn_ssl"):
        assert hasattr(connection, name), name
    # start() runs once: a later call (new remote credentials) returns without touching aioice
    assert "if self.__start is not None:" in inspect.getsource(RTCIceTransport.start)
    # the gatherer's Connection is the one whose credentials and candidates SDP carries
    assert "self._connection.local_username" in inspect.getsource(RTCIceGatherer.getLocalParameters)
    dtls = inspect.getsource(RTCDtlsTransport)
    # the DTLS transport reads and writes through the ICE transport's attributes, per datagram
    assert "await self.transport._recv()" in dtls
    assert "await self.transport._send(data)" in dtls
    # a datagram starting with 0 is neither DTLS nor SRTP: ignored (the wake-up marker)
    assert "if first_byte > 19 and first_byte < 64:" in dtls
    assert "elif first_byte > 127 and first_byte < 192 and self._rx_srtp:" in dtls
    # aioice's recv ends on None in its queue (what closing the old Connection puts there)
    assert "result = await self._queue.get()" in inspect.getsource(aioice.ice.Connection.recvfrom)


async def test_native_aiortc_ignores_new_remote_ice_credentials(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """Without the hooks, an offer with new credentials changes nothing in aioice (so the
    peer's new checks would get 401): the reason the restart hooks exist."""
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    _, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    (ice,) = {t.receiver.transport.transport for t in receiving.getTransceivers()}
    remote_ufrag = ice._connection.remote_username
    offer = sending.localDescription.sdp.replace(f"a=ice-ufrag:{remote_ufrag}", "a=ice-ufrag:zzzz")
    assert aiortc_glue.is_ice_restart(receiving, offer)
    await receiving.setRemoteDescription(aiortc.RTCSessionDescription(offer, "offer"))
    await receiving.setLocalDescription(await receiving.createAnswer())
    assert ice._connection.remote_username == remote_ufrag  # still the old one
    assert ice.iceGatherer.getLocalParameters().usernameFragment in receiving.localDescription.sdp


async def test_ice_restart_moves_media_to_new_sockets_and_keeps_dtls(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offerer's network 'changes' (its sockets go silent); an ICE restart (offerer and
    answerer hooks) gathers new sockets, nominates a new pair, and media flows again through
    the same DTLS transport and SRTP sessions."""
    monkeypatch.setattr(aiortc_glue.ice_restart, "OLD_PAIR_GRACE_S", 0.2)
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    transceiver, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    await seen.until(lambda: len(seen.packets) >= 10)
    dtls = {t.receiver.transport for t in (*sending.getTransceivers(), transceiver)}
    old_credentials = aiortc_glue.ice_credentials(sending.localDescription.sdp)
    (old_ice,) = {t.receiver.transport.transport for t in sending.getTransceivers()}
    old_sockets = list(old_ice._connection._protocols)

    aiortc_glue.blackhole_ice(sending)
    before = len(seen.packets)
    await aiortc_glue.begin_ice_restart(sending)
    assert not aiortc_glue.ice_restart_pending(receiving)
    await sending.setLocalDescription(await sending.createOffer())
    offer = sending.localDescription.sdp
    assert aiortc_glue.ice_credentials(offer) not in (None, old_credentials)
    assert aiortc_glue.is_ice_restart(receiving, offer)
    await aiortc_glue.begin_ice_restart(receiving)
    await receiving.setRemoteDescription(aiortc.RTCSessionDescription(offer, "offer"))
    answered = aiortc_glue.finish_ice_restart(receiving)
    await receiving.setLocalDescription(await receiving.createAnswer())
    assert aiortc_glue.ice_restart_pending(sending)
    await sending.setRemoteDescription(receiving.localDescription)
    offered = aiortc_glue.finish_ice_restart(sending)
    assert await asyncio.wait_for(offered, TIMEOUT_S)
    assert await asyncio.wait_for(answered, TIMEOUT_S)

    await seen.until(lambda: len(seen.packets) >= before + 20)
    assert {t.receiver.transport for t in (*sending.getTransceivers(), transceiver)} == dtls
    assert {d.state for d in dtls} == {"connected"}
    assert sending.connectionState == receiving.connectionState == "connected"
    assert aiortc_glue.ice_restarts(sending) == aiortc_glue.ice_restarts(receiving) == 1
    assert old_ice._connection._protocols and not set(old_ice._connection._protocols) & set(
        old_sockets
    )
    async with asyncio.timeout(TIMEOUT_S):  # the old sockets close after the grace period
        while not all(p.transport.is_closing() for p in old_sockets):
            await asyncio.sleep(0.05)
    idle = aiortc_glue.ice_idle_s(receiving)
    assert idle is not None and idle < 1.0
    assert await aiortc_glue.finish_ice_restart(sending)  # nothing pending: done at once


async def test_ice_restart_is_refused_before_the_connection_exists() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        with pytest.raises(aiortc_glue.IceRestartError):
            await aiortc_glue.begin_ice_restart(pc)
        pc.addTransceiver("video")
        with pytest.raises(aiortc_glue.IceRestartError):
            await aiortc_glue.begin_ice_restart(pc)  # not connected yet
    finally:
        await pc.close()


async def test_closing_during_an_ice_restart_closes_both_connections(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    _, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    (ice,) = {t.receiver.transport.transport for t in sending.getTransceivers()}
    old = ice._connection
    await aiortc_glue.begin_ice_restart(sending)
    new = ice._connection
    assert new is not old and new._protocols
    sockets = [*old._protocols, *new._protocols]
    await sending.close()
    assert all(p.transport.is_closing() for p in sockets)


async def test_an_abandoned_ice_restart_leaves_the_old_credentials(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    _, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    old = aiortc_glue.ice_credentials(sending.localDescription.sdp)
    await aiortc_glue.begin_ice_restart(sending)
    assert aiortc_glue.ice_restart_pending(sending)
    offer = await sending.createOffer()
    assert aiortc_glue.ice_credentials(offer.sdp) != old
    await aiortc_glue.abandon_ice_restart(sending)  # say the answerer refused the offer
    assert not aiortc_glue.ice_restart_pending(sending)
    assert aiortc_glue.ice_credentials((await sending.createOffer()).sdp) == old
    before = len(seen.packets)
    await seen.until(lambda: len(seen.packets) >= before + 10)  # the old pair carries on


# --- simulcast and REMB hooks ------------------------------------------------------------------


def test_simulcast_hooks_private_names_and_what_they_replace(
    transceiver: RTCRtpTransceiver,
) -> None:
    from aiortc.rtp import HeaderExtensionsMap

    receiver = transceiver.receiver
    assert isinstance(transceiver._headerExtensions, list)
    # skip_jitter_buffer: one buffer per receiver, fed every packet through ``add``
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    assert callable(buffer.add)
    assert "self.__jitter_buffer.add(packet)" in inspect.getsource(
        RTCRtpReceiver._handle_rtp_packet
    )
    # unclamp_remb: the rate control and the clamp it replaces
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
    control = estimator.rate_control
    assert control.current_bitrate_initialized is False and control.current_bitrate > 0
    fresh = type(control)()
    fresh.current_bitrate = 100_000
    assert fresh._clamp_bitrate(10_000_000, 100_000) == 160_000  # 1.5x + 10 kbps
    assert "self._clamp_bitrate(new_bitrate, estimated_throughput)" in inspect.getsource(
        type(control).update
    )
    # cap_sent_remb: REMB leaves through _send_rtcp
    assert inspect.iscoroutinefunction(receiver._send_rtcp)
    assert "await self._send_rtcp(rtcp_packet)" in inspect.getsource(
        RTCRtpReceiver._handle_rtp_packet
    )
    # route_by_mid: the transport's router tables
    router = receiver.transport._rtp_router
    assert isinstance(router.ssrc_table, dict) and isinstance(router.mid_table, dict)
    # the transport parses the RID extensions once negotiated
    source = inspect.getsource(HeaderExtensionsMap.configure)
    assert aiortc_glue.RID_URI in source and aiortc_glue.REPAIRED_RID_URI in source


def test_skip_jitter_buffer_and_route_by_mid(transceiver: RTCRtpTransceiver) -> None:
    receiver = transceiver.receiver
    aiortc_glue.skip_jitter_buffer(receiver)
    buffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    assert buffer.add(RtpPacket(payload_type=96, sequence_number=1)) == (False, None)
    # two receivers with the same payload type: aiortc alone drops an unknown SSRC
    other = RTCRtpReceiver("video", receiver.transport)
    router = receiver.transport._rtp_router
    router.register_receiver(receiver, ssrcs=[], payload_types=[96], mid="1")
    router.register_receiver(other, ssrcs=[], payload_types=[96], mid="2")
    packet = RtpPacket(payload_type=96, ssrc=1234)
    packet.extensions.mid = "2"
    assert router.route_rtp(packet) is None
    aiortc_glue.route_by_mid(receiver)
    aiortc_glue.route_by_mid(receiver)  # once per transport
    assert router.route_rtp(packet) is other
    packet.extensions.mid = None
    assert router.route_rtp(packet) is other  # the SSRC is remembered


async def test_rid_extensions_are_answered_and_parsed(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    from switchboard.sfu import sdp_simulcast

    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await sending.setLocalDescription(await sending.createOffer())
    # what a browser adds for sendEncodings with RIDs (aiortc cannot send simulcast)
    offer = sending.localDescription.sdp.replace(
        "a=sendonly\r\n",
        f"a=sendonly\r\na=extmap:10 {aiortc_glue.RID_URI}\r\n"
        f"a=extmap:11 {aiortc_glue.REPAIRED_RID_URI}\r\n"
        "a=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n",
    )
    simulcast = sdp_simulcast.parse_offer(offer)
    await receiving.setRemoteDescription(aiortc.RTCSessionDescription(offer, "offer"))
    (transceiver,) = receiving.getTransceivers()
    started = asyncio.Event()
    receive = transceiver.receiver.receive

    async def receive_then_signal(parameters: Any) -> None:
        await receive(parameters)
        started.set()

    transceiver.receiver.receive = receive_then_signal  # type: ignore[method-assign]
    aiortc_glue.accept_rid_extensions(transceiver, simulcast[transceiver.mid].extmap)
    await receiving.setLocalDescription(await receiving.createAnswer())
    answer = sdp_simulcast.answer(receiving.localDescription.sdp, simulcast)
    assert f"a=extmap:10 {aiortc_glue.RID_URI}" in answer
    assert f"a=extmap:11 {aiortc_glue.REPAIRED_RID_URI}" in answer
    assert "a=rid:q recv\r\na=rid:h recv\r\na=simulcast:recv q;h\r\n" in answer
    await sending.setRemoteDescription(aiortc.RTCSessionDescription(answer, "answer"))
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    # the receiving transport now reads the RID a browser would tag its packets with
    ours = HeaderExtensionsMap()
    ours.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=10, uri=aiortc_glue.RID_URI),
                RTCRtpHeaderExtensionParameters(id=11, uri=aiortc_glue.REPAIRED_RID_URI),
            ]
        )
    )
    tagged = RtpPacket(payload_type=96, sequence_number=7, ssrc=99, payload=b"x")
    tagged.extensions.rtp_stream_id = "h"
    parsed = RtpPacket.parse(
        tagged.serialize(ours), transceiver.receiver.transport._rtp_header_extensions_map
    )
    assert parsed.extensions.rtp_stream_id == "h"


async def test_remb_tap_cap_and_unclamped_start(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    sending, receiving = pcs
    video = sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen_remb: list[tuple[int, tuple[int, ...]]] = []
    changed = asyncio.Event()

    def on_remb(bitrate: int, ssrcs: tuple[int, ...]) -> None:
        seen_remb.append((bitrate, ssrcs))
        changed.set()

    aiortc_glue.tap_remb(video.sender, on_remb)
    cap: list[int | None] = [None]
    seen = Seen()
    receiving_transceiver, started = await connect_with_tap(sending, receiving, seen, decode=False)
    receiver = receiving_transceiver.receiver
    aiortc_glue.unclamp_remb(receiver, ceiling_bps=3_000_000, start_bps=1_000_000)
    aiortc_glue.cap_sent_remb(receiver, lambda: cap[0])

    async def until(predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not predicate():
                changed.clear()
                await changed.wait()

    # at once (aiortc alone says nothing for 3 s), from the start value, above 1.5x what
    # a test pattern at aiortc's starting bitrate sends
    await until(lambda: len(seen_remb) >= 2)
    assert all(1_000_000 <= bps <= 3_000_000 for bps, _ in seen_remb)
    assert seen_remb[0][1] == (video.sender._ssrc,)
    cap[0] = 50_000
    count = len(seen_remb)
    await until(lambda: len(seen_remb) >= count + 2)
    assert seen_remb[-1][0] <= 50_000


async def test_an_ice_restart_on_a_live_path_loses_no_packet(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """Make before break: with the old path still up, every RTP packet sent across the restart
    arrives (what reaches the old pair after the switch is read too)."""
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    _, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    await seen.until(lambda: len(seen.packets) >= 5)
    for _ in range(3):
        await aiortc_glue.begin_ice_restart(sending)
        await sending.setLocalDescription(await sending.createOffer())
        await aiortc_glue.begin_ice_restart(receiving)
        await receiving.setRemoteDescription(sending.localDescription)
        answered = aiortc_glue.finish_ice_restart(receiving)
        await receiving.setLocalDescription(await receiving.createAnswer())
        await sending.setRemoteDescription(receiving.localDescription)
        assert await asyncio.wait_for(aiortc_glue.finish_ice_restart(sending), TIMEOUT_S)
        assert await asyncio.wait_for(answered, TIMEOUT_S)
    before = len(seen.packets)
    await seen.until(lambda: len(seen.packets) >= before + 20)
    numbers = sorted({p.sequence_number for p in seen.packets})
    assert numbers == list(range(numbers[0], numbers[-1] + 1))
    assert aiortc_glue.ice_restarts(receiving) == 3


async def test_send_nack_across_the_sequence_number_wrap() -> None:
    """aiortc packs a Generic NACK's lost list assuming it only increases (``1 << d`` with
    d < 0 raises): lost numbers across 65535 → 0, or out of order, must still go out, each
    once (they did not: the NACK task raised ValueError)."""
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    receiver._RTCRtpReceiver__rtcp_ssrc = 4321  # type: ignore[attr-defined]  # set by receive()
    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)

    receiver.transport._send_rtp = capture  # type: ignore[method-assign]
    try:
        await aiortc_glue.send_nack(receiver, 1234, [65533, 65535, 0, 1, 1, 40, 7])
    finally:
        await pc.close()
    packets = [p for data in sent for p in aiortc.rtp.RtcpPacket.parse(data)]
    assert all(isinstance(p, aiortc.rtp.RtcpRtpfbPacket) and p.media_ssrc == 1234 for p in packets)
    lost = [seq for p in packets for seq in p.lost]
    assert sorted(lost) == [0, 1, 7, 40, 65533, 65535]


async def test_closing_with_an_ice_restart_pending_does_not_hang(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """A peer connection closed between ``begin_ice_restart`` and the restart's answer (a
    client leaving then) must close: aiortc's stop() awaits a monitor that waits for the
    current Connection, not the pending one it closes (it hung forever)."""
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    _, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    await aiortc_glue.begin_ice_restart(sending)
    await asyncio.wait_for(sending.close(), TIMEOUT_S)


def test_route_by_mid_admit_and_forget_ssrc(transceiver: RTCRtpTransceiver) -> None:
    """``admit`` decides for each SSRC new to the transport, by MID or payload type, before
    aiortc keeps anything for it; ``forget_ssrc`` drops what aiortc keeps per SSRC."""
    receiver = transceiver.receiver
    router = receiver.transport._rtp_router
    router.register_receiver(receiver, ssrcs=[], payload_types=[96], mid="1")
    asked: list[int] = []

    def admit(packet: RtpPacket) -> bool:
        asked.append(packet.ssrc)
        return packet.ssrc < 100

    aiortc_glue.route_by_mid(receiver, admit)
    refused, accepted = RtpPacket(payload_type=96, ssrc=500), RtpPacket(payload_type=96, ssrc=7)
    refused.extensions.mid = "1"
    assert router.route_rtp(refused) is None and 500 not in router.ssrc_table
    assert router.route_rtp(accepted) is receiver  # by payload type
    assert router.route_rtp(accepted) is receiver  # known now: not asked again
    assert asked == [500, 7]
    # what aiortc's receive path fills per SSRC (the same dicts _receive_bookkeeping uses)
    private: Any = receiver
    private._RTCRtpReceiver__remote_streams[7] = object()
    private._RTCRtpReceiver__active_ssrc[7] = 0
    private._RTCRtpReceiver__lsr[7], private._RTCRtpReceiver__lsr_time[7] = 1, 1.0
    private._RTCRtpReceiver__remote_bitrate_estimator.ssrcs[7] = 0
    aiortc_glue.forget_ssrc(receiver, 7)
    assert 7 not in router.ssrc_table
    for name in ("remote_streams", "active_ssrc", "lsr", "lsr_time"):
        assert 7 not in getattr(private, f"_RTCRtpReceiver__{name}"), name
    assert 7 not in private._RTCRtpReceiver__remote_bitrate_estimator.ssrcs


async def test_closing_while_a_restart_gathers(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """A peer connection closed while ``begin_ice_restart`` gathers (a client leaving just
    after asking for a restart): the restart raises IceRestartError and its new Connection
    is closed, not left with open sockets on a stopped transport."""
    sending, receiving = pcs
    sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    seen = Seen()
    _, started = await connect_with_tap(sending, receiving, seen, decode=False)
    await asyncio.wait_for(started.wait(), TIMEOUT_S)
    created: list[aioice.ice.Connection] = []
    gathering, closed = asyncio.Event(), asyncio.Event()
    gather = aioice.ice.Connection.gather_candidates

    async def gather_slowly(self: aioice.ice.Connection) -> None:
        created.append(self)
        await gather(self)
        gathering.set()
        await closed.wait()  # a slow STUN/TURN server: the close comes meanwhile

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aioice.ice.Connection, "gather_candidates", gather_slowly)
        restart = asyncio.ensure_future(aiortc_glue.begin_ice_restart(sending))
        await asyncio.wait_for(gathering.wait(), TIMEOUT_S)
        await asyncio.wait_for(sending.close(), TIMEOUT_S)
        closed.set()
        with pytest.raises(aiortc_glue.IceRestartError):
            await asyncio.wait_for(restart, TIMEOUT_S)
    assert len(created) == 1 and not created[0]._protocols  # its sockets are closed


def test_a_truncated_remb_is_dropped_before_routing(transceiver: RTCRtpTransceiver) -> None:
    """aiortc's router and senders catch ValueError from ``unpack_remb_fci``, not the
    struct.error of an FCI shorter than its SSRC count says: the glue drops that REMB."""
    from aiortc.rtp import RTCP_PSFB_APP, pack_remb_fci, unpack_remb_fci

    router = transceiver.sender.transport._rtp_router
    router.register_sender(transceiver.sender, ssrc=transceiver.sender._ssrc)
    ssrc = transceiver.sender._ssrc
    truncated = b"REMB" + (200 << 24 | 1000).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
    with pytest.raises(struct.error):
        unpack_remb_fci(truncated)
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=ssrc, fci=truncated)
    assert router.route_rtcp(packet) == set()
    valid = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(1, [ssrc]))
    assert router.route_rtcp(valid) == {transceiver.sender}
    not_remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=ssrc, fci=b"APPX")
    assert router.route_rtcp(not_remb) == {transceiver.sender}


def _stun_lookalike_rtp() -> bytes:
    """An RTP packet (V=2) whose bytes 2..3 equal its length minus 20 and whose body reads
    as a PRIORITY attribute two bytes long: aioice's STUN parser raises struct.error on it."""
    header = bytes([0x80, 0x60]) + struct.pack("!H", 8) + bytes(16)
    return header + struct.pack("!HH", 0x0024, 2) + b"\x01\x02\x00\x00"


async def test_datagrams_are_demultiplexed_before_stun_parsing() -> None:
    """RFC 7983 §7: only a first byte of 0..3 is STUN. Without the demultiplexer aioice
    parses the packet above as STUN and the event loop's callback dies on struct.error."""
    original = aiortc_glue.network._original_datagram_received
    assert aioice.ice.StunProtocol.datagram_received is aiortc_glue.network._demultiplex_datagram
    source = inspect.getsource(original)  # what the demultiplexer hands data on to
    assert "stun.parse_message(data)" in source
    assert "self.receiver.data_received(data, self.local_candidate.component)" in source
    with pytest.raises(struct.error):
        aioice.stun.parse_message(_stun_lookalike_rtp())

    connection = aioice.ice.Connection(ice_controlling=True)
    protocol = aioice.ice.StunProtocol(connection)
    protocol.local_candidate = aioice.Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=1,
        host="127.0.0.1",
        port=9,
        type="host",
    )
    rtp = _stun_lookalike_rtp()
    protocol.datagram_received(rtp, ("127.0.0.1", 10))
    # what Connection.recv() returns once connected (it refuses before)
    assert await asyncio.wait_for(connection._queue.get(), 1) == (rtp, 1)
    await connection.close()


async def test_packets_libsrtp_refuses_are_dropped_and_counted(
    pcs: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    """A sequence number far behind libsrtp's replay window (a publisher jumping back) is
    refused by srtp_protect: dropped and counted on both paths, never raised (it used to
    raise pylibsrtp.Error for every such packet, logged by the Router each time)."""
    sending, receiving = pcs
    forwarder, _, seen = await start_forwarder(sending, receiving, "video", lambda _: None)
    await forward_until_sent(forwarder, [(RtpPacket(payload=b"\x10\x00\x01"), 5000, 0, None)])
    assert forwarder.forward(RtpPacket(payload=b"\x10\x00\x02"), 1000, 0) is None
    forwarder.fast = False
    await forwarder.send(RtpPacket(payload=b"\x10\x00\x03"), 1001, 0)
    assert forwarder.srtp_refused == 2
    forwarder.fast = True
    await forward_until_sent(forwarder, [(RtpPacket(payload=b"\x10\x00\x04"), 5001, 0, None)])
    await seen.until(lambda: len(seen.packets) >= 2)
    assert [p.sequence_number for p in seen.packets] == [5000, 5001]


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        pytest.param("1@0 1@10 1@2000", "+ + +", id="one SSRC, even after a silence"),
        pytest.param("1@0 2@10 1@20 2@999", "+ - + -", id="another while it flows"),
        pytest.param("1@0 2@999 2@1000 1@1010", "+ - +1 -", id="another after 1 s of silence"),
        pytest.param("1@0 2@500 1@900 2@1800 2@1900", "+ - + - +1", id="silence counts from last"),
    ],
)
def test_ssrc_latch(offers: str, expected: str) -> None:
    """``SsrcLatch``: ``ssrc@now_ms`` offered in turn; ``+`` taken, ``+N`` taken in place of
    N, ``-`` refused (the default 1 s of silence)."""
    latch = aiortc_glue.SsrcLatch()
    got = []
    for offer in offers.split():
        ssrc, now_ms = map(int, offer.split("@"))
        taken = latch.offer(ssrc, now_ms)
        got.append("-" if not taken else f"+{latch.replaced or ''}")
    assert " ".join(got) == expected
    assert latch.reset() is not None
    assert latch.ssrc is None and latch.offer(9, 0.0) and latch.replaced is None


def test_guard_transport_leaves_no_state_for_refused_ssrcs(
    transceiver: RTCRtpTransceiver,
) -> None:
    """``guard_transport``: a refused SSRC is routed nowhere, not kept in the SSRC table, and
    its libsrtp receive stream is dropped (a replay of its packet is then accepted again by
    libsrtp: a new stream); an admitted SSRC keeps its stream (a replay is refused)."""
    receiver = transceiver.receiver
    dtls: Any = receiver.transport
    router = dtls._rtp_router
    router.register_receiver(receiver, ssrcs=[], payload_types=[96], mid="1")
    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    dtls._rx_srtp = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    )
    aiortc_glue.guard_transport(receiver, lambda packet: packet.ssrc == 7)
    aiortc_glue.guard_transport(receiver, lambda packet: packet.ssrc == 7)  # once per transport

    def arrive(ssrc: int) -> tuple[bytes, Any]:
        data = tx.protect(RtpPacket(payload_type=96, sequence_number=1, ssrc=ssrc).serialize())
        return data, router.route_rtp(RtpPacket.parse(dtls._rx_srtp.unprotect(data)))

    refused, target = arrive(500)
    assert target is None and 500 not in router.ssrc_table
    dtls._rx_srtp.unprotect(refused)  # no replay error: libsrtp forgot SSRC 500
    admitted, target = arrive(7)
    assert target is receiver and router.ssrc_table[7] is receiver
    with pytest.raises(pylibsrtp.Error):
        dtls._rx_srtp.unprotect(admitted)  # the stream is kept: a replay
    aiortc_glue.forget_receiver_ssrc(receiver, 7)
    assert 7 not in router.ssrc_table
    dtls._rx_srtp.unprotect(admitted)  # forgotten in libsrtp too


def test_pylibsrtp_unprotects_at_most_the_bytes_the_demultiplexer_lets_through() -> None:
    """network.MAX_SRTP_DATAGRAM_BYTES is pylibsrtp's unprotect buffer: a longer datagram
    raises ValueError (not pylibsrtp.Error, the only error aiortc's receive loop catches).
    If pylibsrtp changes its buffer, the demultiplexer's bound must follow."""
    limit = aiortc_glue.network.MAX_SRTP_DATAGRAM_BYTES
    policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    session = pylibsrtp.Session(policy=policy)
    assert len(session._cdata) == limit
    with pytest.raises(ValueError, match="too long"):
        session.unprotect(bytes([0x80, 96]) + bytes(limit - 1))


def test_aiortc_hands_srtcp_to_the_handler_the_rtcp_guard_wraps() -> None:
    """``guard_rtcp_streams`` replaces ``RTCDtlsTransport._handle_rtcp_data`` on the instance:
    aiortc must call it through ``self``, with the packet libsrtp just unprotected."""
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    unprotect = source.index("data = self._rx_srtp.unprotect_rtcp(data)")
    assert source.index("await self._handle_rtcp_data(data)") > unprotect
