"""Forwarding hot-path benchmark: CPU time per forwarded RTP packet, in µs (issue 6).

One publisher's SRTP stream enters the SFU in-process and is forwarded to N subscribers, each
with its own SRTP session, its own aioice Connection whose nominated pair goes from its own
UDP socket to a loopback sink (127.0.0.1). A *forwarded packet* is one packet sent to one
subscriber: the figure is the process's CPU time (``time.process_time``: user + system, so
the kernel's loopback delivery counts) over a batch of received packets, divided by received
packets × N.

Inside the measured path, per received packet, all real code:

* ingress ``socket`` only: the event loop polling the SFU's publish-side UDP socket, aioice's
  ``StunProtocol.datagram_received`` (a failed STUN parse) → ``Connection`` queue →
  ``Connection.recv``;
* aiortc ``RTCDtlsTransport._recv_next``: byte counters, RFC 7983 first-byte demux, arrival
  clock, libsrtp ``unprotect`` (pylibsrtp), ``_handle_rtp_data`` (``RtpPacket.parse``, the
  ``RtpRouter`` lookup) and the receiver's ``_handle_rtp_packet`` as wrapped by
  ``aiortc_glue.ReceiveTap`` (``decode=False``);
* Switchboard: ``Producer._receive`` (extended seq, key frame, video cache and
  ``RtpStreamRecv``), ``Router._on_producer_rtp`` (active-speaker levels for audio, the fan-out
  loop), per subscriber ``Consumer.forward_rtp`` (seq rewrite, ``SentSeqMap``) and
  ``ForwardingSender.forward``:

  - path ``fast``: the prebuilt header patched in place (marker, PT, seq, ts,
    abs-send-time, audio level), the payload copied after it, libsrtp ``srtp_protect`` on
    the sender's buffer, ``sendto`` on the nominated pair's datagram transport, aiortc's
    counters;
  - path ``aiortc`` (the path before the fast ones): a new ``RtpPacket``, ``serialize``,
    aiortc ``RTCDtlsTransport._send_rtp`` (pylibsrtp ``protect``), aioice
    ``Connection.send`` → ``StunProtocol.send_data`` → ``sendto``, aiortc's counters;

  then the kernel's loopback delivery to the sink's socket;
* after the fan-out, aiortc's receive bookkeeping behind the tap (statistics for RR, remote
  bitrate estimator for REMB, RTX unwrapping; no decoder thread; path ``fast``: no
  depayloading and no jitter buffer either, as in production now; path ``aiortc``: both, as
  before).

Outside it (not measured): with ingress ``deque`` (the default), aioice and the event loop on
the way in (``RTCIceTransport._recv`` pops a deque); DTLS (the SRTP keys are random, no
handshake), the publisher's packetisation, encryption and sending (done before timing), RTCP
timers (never started) and the sinks draining their sockets (every ``SINK_CHUNK_PACKETS``
received packets, untimed). Negotiation is skipped: the transports are put in the connected
state and each ``ForwardingSender`` gets the parameters a negotiation would have given it
(``ForwardingSender.negotiated``).

Reference points, measured in the same run: ``srtp_protect_sendto``, the floor of a
Python loop (sequence number rewritten in place with ``struct.pack_into`` on a preallocated
buffer, pylibsrtp ``protect``, ``socket.send`` on a connected socket),
``rtp_parse_serialize`` (aiortc ``RtpPacket.parse`` + ``serialize``), both per packet, and
the C floor (``benchmarks/c_floor.py``: the same forwarding in C with libsrtp, per kind and
N; ``--no-c-floor`` leaves it out).

Variants, measured side by side in one run (interleaved per kind and N, each in a new event
loop): ``--path aiortc,fast``, ``--loop asyncio,uvloop``, ``--ingress deque,socket``.

Usage: ``python benchmarks/hot_path.py [--quick] [--json PATH] [--path P,...] [--loop L,...]
[--ingress I,...] [--srtp-profile NAME] [--no-c-floor]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import platform
import socket
import statistics
import struct
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aioice
import aioice.ice
from aiortc import RTCCertificate, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCDtlsTransport, SRTPProtectionProfile, State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import c_floor  # noqa: E402
from benchmarks.common import Settings, comma_list, cpu_model  # noqa: E402
from switchboard.sfu.aiortc_glue import ForwardingSender
from switchboard.sfu.consumer import Consumer
from switchboard.sfu.producer import Codec, Producer
from switchboard.sfu.router import Router

LOOPBACK = "127.0.0.1"
SINK_RCVBUF_BYTES = 64 * 1024 * 1024  # asked for; without CAP_NET_ADMIN, rmem_max caps it
# Packets forwarded between two drains of the sinks (not timed): a 4 MiB rmem_max holds about
# 3,600 video packets (2.3 KiB of skb each), so a sink never overflows.
SINK_CHUNK_PACKETS = 1000
PROCESS_TIMEOUT_S = 30.0
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
PUBLISHER_EXT_IDS = {URI_MID: 1, URI_ABS_SEND_TIME: 2, URI_AUDIO_LEVEL: 3}
SUBSCRIBER_EXT_IDS = {URI_MID: 4, URI_ABS_SEND_TIME: 5, URI_AUDIO_LEVEL: 6}
MID = "0"
T = TypeVar("T")


@dataclass(frozen=True)
class MediaKind:
    """One kind of forwarded stream: its codec and the packets a publisher sends.

    ``payload_bytes`` is the RTP payload size of every packet (a VP8 payload includes its
    RFC 7741 descriptor); ``ts_step`` the RTP timestamp increase per frame, in clock ticks;
    ``packets_per_frame`` how many packets carry one frame (marker on the last).
    """

    name: str
    mime_type: str
    clock_rate: int
    channels: int | None
    publisher_pt: int
    subscriber_pt: int
    payload_bytes: int
    ts_step: int
    packets_per_frame: int


AUDIO = MediaKind("audio", "audio/opus", 48000, 2, 111, 109, 100, 960, 1)
VIDEO = MediaKind("video", "video/VP8", 90000, None, 96, 98, 1100, 3000, 3)
KINDS = {"audio": AUDIO, "video": VIDEO}


def _ext_params(ids: dict[str, int], kind: MediaKind) -> list[RTCRtpHeaderExtensionParameters]:
    return [
        RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri)
        for uri, ext_id in ids.items()
        if uri != URI_AUDIO_LEVEL or kind is AUDIO
    ]


def _codec_params(kind: MediaKind, pt: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(
        mimeType=kind.mime_type, clockRate=kind.clock_rate, channels=kind.channels, payloadType=pt
    )


def _srtp_key(profile: SRTPProtectionProfile) -> bytes:
    """A random SRTP master key + salt for ``profile`` (what DTLS-SRTP would export)."""
    return os.urandom(profile.key_length + profile.salt_length)


def _srtp_session(key: bytes, profile: SRTPProtectionProfile, outbound: bool) -> Session:
    """A libsrtp session configured as aiortc's ``RTCDtlsTransport._setup_srtp`` does."""
    policy = Policy(
        key=key,
        ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
        srtp_profile=profile.libsrtp_profile,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def _make_sink() -> socket.socket:
    """A non-blocking UDP socket on 127.0.0.1 with a large receive buffer (bytes)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sink.setsockopt(socket.SOL_SOCKET, force, SINK_RCVBUF_BYTES)
    except OSError:  # without CAP_NET_ADMIN: capped by net.core.rmem_max
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_RCVBUF_BYTES)
    sink.bind((LOOPBACK, 0))
    sink.setblocking(False)
    return sink


def drain(sink: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sink``, oldest first."""
    out: list[bytes] = []
    while True:
        try:
            out.append(sink.recv(2048))
        except BlockingIOError:
            return out


class Publisher:
    """The publisher side: packetises a synthetic stream and encrypts it as aiortc would.

    Audio: one Opus-sized packet per 20 ms frame with an RFC 6464 level. Video: VP8 packets
    with a 4-byte descriptor (X, S, I, 15-bit PictureID: RFC 7741 §4.2); the very first frame is
    a key frame (P bit 0, RFC 6386 §9.1) so that the Consumers start forwarding. Sequence
    numbers and timestamps continue across calls of ``packets``.
    """

    def __init__(self, kind: MediaKind, profile: SRTPProtectionProfile) -> None:
        self.kind = kind
        self.ssrc = 0x11223344
        self.key = _srtp_key(profile)
        self._tx = _srtp_session(self.key, profile, outbound=True)
        self._ext_map = HeaderExtensionsMap()
        self._ext_map.configure(
            RTCRtpSendParameters(headerExtensions=_ext_params(PUBLISHER_EXT_IDS, kind))
        )
        self._seq = 1000
        self._ts = 12345
        self._picture_id = 0
        self._in_frame = 0
        self._abs_send_time = 0

    def next_plain(self) -> bytes:
        """The next RTP packet before SRTP (header, extensions, payload)."""
        kind = self.kind
        first = self._in_frame == 0
        last = self._in_frame == kind.packets_per_frame - 1
        if kind is VIDEO:
            key = first and self._picture_id == 0
            descriptor = bytes(
                (0x90 if first else 0x80, 0x80, 0x80 | (self._picture_id >> 8) & 0x7F)
            ) + bytes((self._picture_id & 0xFF,))
            vp8_header = bytes((0x10 if key else 0x11,)) if first else b"\x55"
            body = vp8_header + b"\xa5" * (kind.payload_bytes - len(descriptor) - 1)
            payload = descriptor + body
        else:
            payload = bytes((0xFC,)) + b"\x5a" * (kind.payload_bytes - 1)
        packet = RtpPacket(
            payload_type=kind.publisher_pt,
            marker=int(last),
            sequence_number=self._seq,
            timestamp=self._ts,
            ssrc=self.ssrc,
            payload=payload,
        )
        ext = packet.extensions
        ext.mid = MID
        ext.abs_send_time = self._abs_send_time
        if kind is AUDIO:
            ext.audio_level = (True, 30)
        self._seq = (self._seq + 1) & 0xFFFF
        self._abs_send_time = (self._abs_send_time + 80) & 0xFFFFFF  # ≈ 0.3 ms per packet
        if last:
            self._in_frame = 0
            self._ts = (self._ts + kind.ts_step) & 0xFFFFFFFF
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            self._in_frame += 1
        return packet.serialize(self._ext_map)

    def packets(self, count: int) -> tuple[list[bytes], list[bytes]]:
        """The next ``count`` packets: (plain RTP, SRTP-protected), in sending order."""
        plain = [self.next_plain() for _ in range(count)]
        return plain, [self._tx.protect(data) for data in plain]


@dataclass
class Subscriber:
    """One subscriber: its SFU-side transport and sender, and the sink it sends to.

    ``key`` is the SRTP master key + salt of the SFU → subscriber direction.
    """

    key: bytes
    dtls: RTCDtlsTransport
    sender: ForwardingSender
    consumer: Consumer
    sink: socket.socket
    datagram: asyncio.DatagramTransport


@dataclass
class HotPath:
    """The SFU's forwarding path for one Producer and N Consumers, wired in-process.

    See the module docstring for what ``forward`` runs. Build with ``create``, end with
    ``close``.
    """

    kind: MediaKind
    profile: SRTPProtectionProfile
    publisher: Publisher
    publish_dtls: RTCDtlsTransport
    producer: Producer
    router: Router
    subscribers: list[Subscriber] = field(default_factory=list)
    inbox: collections.deque[bytes] = field(default_factory=collections.deque)
    ingress: socket.socket | None = None  # the publisher's socket (``socket`` ingress)
    ingress_datagram: asyncio.DatagramTransport | None = None  # the SFU's publish socket

    @classmethod
    async def create(
        cls,
        kind: MediaKind,
        subscribers: int,
        profile: SRTPProtectionProfile,
        send_path: str = "fast",
        ingress: str = "deque",
    ) -> HotPath:
        """Wire a Producer of ``kind`` to ``subscribers`` Consumers, each with its own sink.

        ``send_path``: ``fast`` (``ForwardingSender``'s fast path) or ``aiortc`` (the path
        before the fast paths: the same sender with ``fast`` off, so a new ``RtpPacket``
        serialised and sent through aiortc's ``_send_rtp`` and aioice's ``Connection.send``,
        and aiortc's whole receive bookkeeping behind the Producer's tap, depayloading and
        jitter buffer included: a receiver whose ``_handle_rtp_packet`` is already an
        instance attribute keeps it under ``ReceiveTap``).
        ``ingress``: ``deque`` (the publisher's datagrams handed to aiortc's DTLS transport
        from a deque: no socket, no event loop) or ``socket`` (sent to a UDP socket of the
        publish side's aioice Connection: the event loop polls it, aioice's
        ``datagram_received`` queues each datagram and ``Connection.recv`` hands it over)."""
        certificate = RTCCertificate.generateCertificate()
        publisher = Publisher(kind, profile)
        inbox: collections.deque[bytes] = collections.deque()

        publish_dtls = _connected_dtls(certificate, profile, rx_key=publisher.key)
        ice = publish_dtls.transport
        publisher_socket: socket.socket | None = None
        ingress_datagram: asyncio.DatagramTransport | None = None
        if ingress == "socket":
            publisher_socket = _make_sink()  # also takes the SFU's RTCP, never read
            ingress_datagram = await _nominate(ice, publisher_socket.getsockname())
            ingress_datagram.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_RCVBUF_BYTES
            )
            publisher_socket.connect(ingress_datagram.get_extra_info("sockname"))
            ice._recv = ice._connection.recv  # type: ignore[method-assign]
        else:

            async def recv() -> bytes:
                return inbox.popleft()

            async def discard(data: bytes) -> None:  # the SFU's RTCP to the publisher
                pass

            ice._recv = recv  # type: ignore[method-assign]
            ice._send = discard  # type: ignore[method-assign]

        receiver = RTCRtpReceiver(kind.name, publish_dtls)
        if send_path == "aiortc":  # the path before: aiortc's whole receive bookkeeping too
            receiver._handle_rtp_packet = receiver._handle_rtp_packet  # type: ignore[method-assign]
        codec = _codec_params(kind, kind.publisher_pt)
        receive_parameters = RTCRtpReceiveParameters(
            codecs=[codec],
            encodings=[
                RTCRtpDecodingParameters(ssrc=publisher.ssrc, payloadType=kind.publisher_pt)
            ],
            headerExtensions=_ext_params(PUBLISHER_EXT_IDS, kind),
            muxId=MID,
        )
        # What RTCRtpReceiver.receive does, without the decoder thread and the RTCP task.
        receiver._RTCRtpReceiver__codecs[codec.payloadType] = codec  # type: ignore[attr-defined]
        publish_dtls._register_rtp_receiver(receiver, receive_parameters)

        router = Router("bench-router", key_frame_interval_ms=500)
        producer = Producer(
            "bench-producer",
            kind.name,
            "publisher",
            receiver,
            Codec(kind.mime_type, kind.clock_rate, kind.channels, {}, kind.publisher_pt),
            {},
            router._on_producer_rtp,
            router.key_frame_interval_ms,
            on_loss=router._on_producer_loss,
        )
        router.add_producer(producer)
        path = cls(
            kind,
            profile,
            publisher,
            publish_dtls,
            producer,
            router,
            inbox=inbox,
            ingress=publisher_socket,
            ingress_datagram=ingress_datagram,
        )

        for index in range(subscribers):
            key = _srtp_key(profile)
            dtls = _connected_dtls(certificate, profile, tx_key=key)
            sink = _make_sink()
            datagram = await _nominate(dtls.transport, sink.getsockname())
            sender = RTCRtpSender(kind.name, dtls)
            forwarding = ForwardingSender(
                sender, f"stream-{index}", _nothing, _nothing, on_nack=_ignore
            )
            # What negotiation would have set (aiortc's ``send`` and ForwardingSender's).
            parameters = RTCRtpSendParameters(
                codecs=[_codec_params(kind, kind.subscriber_pt)],
                headerExtensions=_ext_params(SUBSCRIBER_EXT_IDS, kind),
                muxId=MID,
            )
            sender._RTCRtpSender__rtp_header_extensions_map.configure(parameters)  # type: ignore[attr-defined]
            forwarding.negotiated(parameters)
            forwarding.fast = send_path == "fast"
            consumer = Consumer(f"consumer-{index}", producer, f"subscriber-{index}", forwarding)
            router.add_consumer(consumer)
            path.subscribers.append(Subscriber(key, dtls, forwarding, consumer, sink, datagram))
        return path

    async def forward(self, packets: list[bytes]) -> None:
        """Run SRTP ``packets`` from the publisher through the path, one by one."""
        self.inject(packets)
        await self.process(len(packets))

    def inject(self, packets: list[bytes]) -> None:
        """Hand SRTP ``packets`` to the ingress: the deque, or the publisher's socket (they
        wait in the SFU socket's receive buffer, up to ``SINK_CHUNK_PACKETS`` of them)."""
        if self.ingress is None:
            self.inbox.extend(packets)
        else:
            send = self.ingress.send
            for data in packets:
                send(data)

    async def process(self, count: int) -> None:
        """Let the SFU receive and forward ``count`` injected packets (aiortc's DTLS receive
        loop, ``RTCDtlsTransport.__run``, does the same)."""
        recv_next = self.publish_dtls._recv_next
        async with asyncio.timeout(PROCESS_TIMEOUT_S):  # a datagram lost on the way in
            for _ in range(count):
                await recv_next()

    def drain_sinks(self) -> list[list[bytes]]:
        """What each subscriber's sink received since the last call (SRTP, in order)."""
        return [drain(subscriber.sink) for subscriber in self.subscribers]

    def close(self) -> None:
        """Close the router, the sockets and the datagram transports."""
        self.router.close()
        if self.ingress is not None and self.ingress_datagram is not None:
            self.ingress.close()
            self.ingress_datagram.close()
        for subscriber in self.subscribers:
            subscriber.datagram.close()
            subscriber.sink.close()


def _nothing() -> None:
    pass


def _ignore(lost: list[int]) -> None:
    pass


async def _nominate(ice: RTCIceTransport, sink: tuple[str, int]) -> asyncio.DatagramTransport:
    """Give ``ice``'s aioice Connection a nominated pair from a UDP socket on 127.0.0.1 to
    ``sink``, as connectivity checks would (host candidates, component 1), and make aiortc
    send through it (``RTCIceTransport.start`` sets ``_send`` so). Returns the socket's
    datagram transport."""
    connection = ice._connection
    loop = asyncio.get_running_loop()
    datagram, protocol = await loop.create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(connection), local_addr=(LOOPBACK, 0)
    )
    local = datagram.get_extra_info("sockname")
    protocol.local_candidate = aioice.Candidate("1", 1, "udp", 1, local[0], local[1], "host")
    remote = aioice.Candidate("2", 1, "udp", 1, sink[0], sink[1], "host")
    connection._nominated[1] = aioice.ice.CandidatePair(protocol, remote)
    ice._send = connection.send  # type: ignore[method-assign]
    return datagram


def _connected_dtls(
    certificate: RTCCertificate,
    profile: SRTPProtectionProfile,
    rx_key: bytes | None = None,
    tx_key: bytes | None = None,
) -> RTCDtlsTransport:
    """A real ``RTCDtlsTransport`` in the state a finished DTLS-SRTP handshake leaves it in."""
    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [certificate])
    dtls._rx_srtp = _srtp_session(rx_key or _srtp_key(profile), profile, outbound=False)
    dtls._tx_srtp = _srtp_session(tx_key or _srtp_key(profile), profile, outbound=True)
    dtls._RTCDtlsTransport__handshake_done = True  # type: ignore[attr-defined]
    dtls.encrypted = True
    dtls._state = State.CONNECTED
    return dtls


@dataclass(frozen=True)
class Stats:
    """min/median/max of one measurement over repetitions, in µs of CPU per packet."""

    min_us: float
    median_us: float
    max_us: float

    @classmethod
    def of(cls, samples_us: list[float]) -> Stats:
        return cls(min(samples_us), statistics.median(samples_us), max(samples_us))


async def measure_hot_path(
    kind: MediaKind,
    subscribers: int,
    packets_per_rep: int,
    repetitions: int,
    profile: SRTPProtectionProfile,
    path_name: str = "fast",
    ingress: str = "deque",
) -> tuple[Stats, float]:
    """CPU µs per forwarded packet for ``subscribers`` Consumers of one ``kind`` Producer.

    Each repetition forwards ``packets_per_rep`` received packets (so ``packets_per_rep`` ×
    ``subscribers`` forwarded ones) after a warm-up of the same size. Returns the statistics
    and the fraction of forwarded packets the sinks received (below 1 only if a sink's
    receive buffer overflowed).
    """
    path = await HotPath.create(kind, subscribers, profile, path_name, ingress)
    try:
        publisher = path.publisher
        _, warmup = publisher.packets(packets_per_rep)
        for chunk in range(0, packets_per_rep, SINK_CHUNK_PACKETS):
            await path.forward(warmup[chunk : chunk + SINK_CHUNK_PACKETS])
            path.drain_sinks()
        samples_us: list[float] = []
        received = 0
        for _ in range(repetitions):
            _, batch = publisher.packets(packets_per_rep)
            gc.collect()
            elapsed = 0.0
            for chunk in range(0, packets_per_rep, SINK_CHUNK_PACKETS):
                packets = batch[chunk : chunk + SINK_CHUNK_PACKETS]
                path.inject(packets)  # not timed: the publisher's sending
                start = time.process_time()
                await path.process(len(packets))
                elapsed += time.process_time() - start
                received += sum(len(got) for got in path.drain_sinks())
            samples_us.append(elapsed * 1e6 / (packets_per_rep * subscribers))
        delivered = received / (repetitions * packets_per_rep * subscribers)
        return Stats.of(samples_us), delivered
    finally:
        path.close()


def measure_srtp_sendto_floor(
    kind: MediaKind, packets_per_rep: int, repetitions: int, profile: SRTPProtectionProfile
) -> Stats:
    """Reference (a): CPU µs per packet of the tightest Python send loop.

    A preallocated RTP packet of ``kind``'s size (12-byte header + payload) gets its sequence
    number rewritten in place (``struct.pack_into``), is protected by pylibsrtp (one
    ``bytes`` copy: pylibsrtp takes bytes only) and sent with ``socket.send`` on a connected
    UDP socket to a loopback sink, drained every ``SINK_CHUNK_PACKETS`` packets (untimed).
    """
    sink = _make_sink()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(sink.getsockname())
    protect = _srtp_session(_srtp_key(profile), profile, outbound=True).protect
    send = sock.send
    pack_into = struct.pack_into
    buf = bytearray(struct.pack("!BBHII", 0x80, kind.subscriber_pt, 0, 0, 0x55667788))
    buf += b"\xa5" * kind.payload_bytes
    samples_us: list[float] = []
    seq = 0
    try:
        for rep in range(repetitions + 1):  # the first one warms up
            gc.collect()
            elapsed = 0.0
            for chunk in range(0, packets_per_rep, SINK_CHUNK_PACKETS):
                start = time.process_time()
                for _ in range(min(SINK_CHUNK_PACKETS, packets_per_rep - chunk)):
                    seq = (seq + 1) & 0xFFFF
                    pack_into("!H", buf, 2, seq)
                    send(protect(bytes(buf)))
                elapsed += time.process_time() - start
                drain(sink)
            if rep:
                samples_us.append(elapsed * 1e6 / packets_per_rep)
    finally:
        sock.close()
        sink.close()
    return Stats.of(samples_us)


def measure_parse_serialize(
    kind: MediaKind, packets_per_rep: int, repetitions: int, profile: SRTPProtectionProfile
) -> Stats:
    """Reference (b): CPU µs per packet of aiortc ``RtpPacket.parse`` + ``serialize``,
    header extensions (MID, abs-send-time, audio level) included."""
    publisher = Publisher(kind, profile)
    plain, _ = publisher.packets(packets_per_rep)
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpSendParameters(headerExtensions=_ext_params(PUBLISHER_EXT_IDS, kind)))
    parse = RtpPacket.parse
    samples_us: list[float] = []
    for rep in range(repetitions + 1):
        gc.collect()
        start = time.process_time()
        for data in plain:
            parse(data, ext_map).serialize(ext_map)
        elapsed = time.process_time() - start
        if rep:
            samples_us.append(elapsed * 1e6 / packets_per_rep)
    return Stats.of(samples_us)


QUICK = Settings(subscribers=(1, 10, 50), sends_per_rep=5000, min_packets=150, repetitions=11)
FULL = Settings(subscribers=(1, 10, 50), sends_per_rep=20000, min_packets=600, repetitions=21)


PATHS = ("aiortc", "fast")
LOOPS = ("asyncio", "uvloop")
INGRESSES = ("deque", "socket")


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new event loop: ``asyncio`` (the default selector loop) or ``uvloop``."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _run_in(loop_name: str, coro: Coroutine[Any, Any, T]) -> T:
    loop = new_event_loop(loop_name)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def run(
    settings: Settings,
    profile: SRTPProtectionProfile,
    paths: tuple[str, ...] = ("fast",),
    loops: tuple[str, ...] = ("asyncio",),
    ingresses: tuple[str, ...] = ("deque",),
    c_floor_variants: tuple[str, ...] = ("sendto", "sendmmsg_shared"),
) -> dict[str, Any]:
    """Measure everything; returns the JSON document (``results``, ``references``, ``machine``).

    The variants (``ingresses`` × ``paths`` × ``loops``) are interleaved for each kind and N,
    each in a new event loop, so that they see the same machine noise."""
    results: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    for kind in (AUDIO, VIDEO):
        for n in settings.subscribers:
            packets = max(settings.min_packets, settings.sends_per_rep // n)
            for ingress in ingresses:
                for path in paths:
                    for loop_name in loops:
                        stats, delivered = _run_in(
                            loop_name,
                            measure_hot_path(
                                kind, n, packets, settings.repetitions, profile, path, ingress
                            ),
                        )
                        results.append(
                            {
                                "kind": kind.name,
                                "subscribers": n,
                                "ingress": ingress,
                                "path": path,
                                "loop": loop_name,
                                **_rounded(stats),
                                "delivered": delivered,
                            }
                        )
        for name, measure in (
            ("srtp_protect_sendto", measure_srtp_sendto_floor),
            ("rtp_parse_serialize", measure_parse_serialize),
        ):
            stats = measure(kind, settings.sends_per_rep, settings.repetitions, profile)
            references.append({"name": name, "kind": kind.name, **_rounded(stats)})
    return {
        "results": results,
        "references": references,
        "c_floor": _c_floor(settings, profile, c_floor_variants),
        "machine": _machine(profile, settings),
    }


def _c_floor(
    settings: Settings, profile: SRTPProtectionProfile, variants: tuple[str, ...]
) -> list[dict[str, Any]]:
    """``benchmarks/c_floor.py`` in this run, for the same kinds and N: empty when it cannot
    be built here (said on stderr), is not wanted, or the profile is not the one it uses."""
    if not variants:
        return []
    if profile.openssl_profile.decode() != c_floor.SRTP_PROFILE:
        print(f"c_floor: left out: it measures {c_floor.SRTP_PROFILE} only", file=sys.stderr)
        return []
    return c_floor.measure_floor(variants=variants, settings=settings) or []


def _rounded(stats: Stats) -> dict[str, float]:
    return {
        "min_us": round(stats.min_us, 2),
        "median_us": round(stats.median_us, 2),
        "max_us": round(stats.max_us, 2),
    }


def _machine(profile: SRTPProtectionProfile, settings: Settings) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "processor": cpu_model(),
        "platform": platform.platform(),
        "srtp_profile": profile.openssl_profile.decode(),
        "repetitions": settings.repetitions,
        "sends_per_rep": settings.sends_per_rep,
    }


def format_table(document: dict[str, Any]) -> str:
    """The results as a plain-text table, with the references and the ratios to them: each
    row to the Python floor (``×floor``) and to the C floor of the same kind and N (``×C``,
    its ``sendto`` variant: one socket per subscriber, as the SFU sends), and each variant
    to the first path and loop of the same kind and N (``×first``)."""
    floor = {r["kind"]: r for r in document["references"] if r["name"] == "srtp_protect_sendto"}
    parse = {r["kind"]: r for r in document["references"] if r["name"] == "rtp_parse_serialize"}
    c_rows = document.get("c_floor", [])
    c_sendto = {(r["kind"], r["subscribers"]): r for r in c_rows if r["variant"] == "sendto"}
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for r in document["results"]:
        first.setdefault((r["kind"], r["subscribers"]), r)
    lines = [
        "µs of CPU per forwarded packet (min / median / max over repetitions)",
        f"{'kind':<6} {'N':>3} {'ingress':<7} {'path':<7} {'loop':<8} {'min':>8} {'median':>8} "
        f"{'max':>8} {'×floor':>7} {'×C':>6} {'×first':>7} {'delivered':>9}",
    ]
    for r in document["results"]:
        ratio = r["median_us"] / floor[r["kind"]]["median_us"]
        c = c_sendto.get((r["kind"], r["subscribers"]))
        c_ratio = f"{r['median_us'] / c['median_us']:>6.2f}" if c else f"{'n/a':>6}"
        base = first[(r["kind"], r["subscribers"])]["median_us"]
        lines.append(
            f"{r['kind']:<6} {r['subscribers']:>3} {r['ingress']:<7} {r['path']:<7} "
            f"{r['loop']:<8} "
            f"{r['min_us']:>8.2f} {r['median_us']:>8.2f} {r['max_us']:>8.2f} {ratio:>7.1f} "
            f"{c_ratio} {r['median_us'] / base:>7.2f} {r['delivered']:>9.1%}"
        )
    lines.append("references, µs per packet (min / median / max)")
    for table in (floor, parse):
        for r in table.values():
            lines.append(
                f"{r['name']:<20} {r['kind']:<6} {r['min_us']:>8.2f} {r['median_us']:>8.2f} "
                f"{r['max_us']:>8.2f}"
            )
    for r in c_rows:
        name = f"c_floor {r['variant']}"
        lines.append(
            f"{name:<24} {r['kind']:<6} N={r['subscribers']:<3} {r['min_us']:>8.2f} "
            f"{r['median_us']:>8.2f} {r['max_us']:>8.2f}"
        )
    if not c_rows:
        lines.append("c_floor: not measured (see stderr)")
    machine = document["machine"]
    lines.append(
        f"Python {machine['python']}, {machine['cpus']} CPUs ({machine['processor']}), "
        f"{machine['srtp_profile']}, {machine['repetitions']} repetitions"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print the table, optionally write the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 minute)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--srtp-profile",
        default=SRTP_PROFILES[0].openssl_profile.decode(),
        choices=[p.openssl_profile.decode() for p in SRTP_PROFILES],
        help="SRTP protection profile (default: the one two aiortc peers negotiate)",
    )
    parser.add_argument(
        "--path",
        type=comma_list(PATHS),
        default=("fast",),
        help="send path(s), comma-separated, measured side by side: fast (ForwardingSender's "
        "fast path, the default) and/or aiortc (RtpPacket + aiortc's _send_rtp)",
    )
    parser.add_argument(
        "--loop",
        type=comma_list(LOOPS),
        default=("asyncio",),
        help="event loop(s), comma-separated, side by side: asyncio (default) and/or uvloop",
    )
    parser.add_argument(
        "--ingress",
        type=comma_list(INGRESSES),
        default=("deque",),
        help="how the publisher's packets arrive, comma-separated, side by side: deque "
        "(default: straight into aiortc's DTLS transport) and/or socket (UDP, event loop, "
        "aioice's receive)",
    )
    parser.add_argument(
        "--no-c-floor",
        action="store_true",
        help="leave out the C floor (benchmarks/c_floor.py, built with gcc and libsrtp2-dev)",
    )
    args = parser.parse_args(argv)
    if args.json is not None and args.json.is_dir():  # say so now, not after the whole run
        parser.error(f"--json {args.json}: a directory, not a file")
    profile = next(p for p in SRTP_PROFILES if p.openssl_profile.decode() == args.srtp_profile)
    document = run(
        QUICK if args.quick else FULL,
        profile,
        args.path,
        args.loop,
        args.ingress,
        () if args.no_c_floor else ("sendto", "sendmmsg_shared"),
    )
    print(format_table(document))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
