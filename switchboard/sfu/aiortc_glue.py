"""The only module that touches aiortc's and aioice's internals.

aiortc does ICE, DTLS, SRTP and SDP; Switchboard routes RTP above them. aiortc's public API
decodes what it receives and encodes what it sends, so forwarding needs these hooks, all here:

* ``use_host_addresses``: which local addresses aioice gathers host candidates on (aioice
  skips loopback and offers no option).
* ``use_udp_port_range``: which UDP ports those host candidates bind to (aioice binds port 0).
* ``use_turn_tls_context``: the TLS context for ``turns:`` servers (aioice passes ``ssl=True``,
  the system's trust store: a self-signed coturn certificate needs its own context).
* ``ReceiveTap``: see every RTP packet a ``RTCRtpReceiver`` gets, after SRTP, and stop its
  decoder thread; aiortc's receive statistics, RTCP RR, NACK generation and REMB keep working
  (``_receive_bookkeeping``: without the decoder, no depayloading and no jitter buffer).
* ``ForwardingSender``: send prepared RTP through a ``RTCRtpSender`` (its SSRC, payload type,
  MID and header-extension ids, SRTP), so that aiortc's own NACK/RTX answers (RFC 4588) and
  Sender Reports (RFC 3550 §6.4.1) cover what we forwarded; intercept its PLI/FIR. Its fast
  path writes the header in place, calls libsrtp (pylibsrtp's cffi binding) on its own buffer
  and sends on the socket of aioice's nominated pair.
* ``tap_sent_rtp``: see RTP a DTLS transport sends before SRTP (tests compare payloads).
* ``tap_rtcp``: see the RTCP a ``RTCRtpReceiver`` gets (the publisher's Sender Reports).
* ``send_nack`` and ``disable_nack_generator``: the SFU's own Generic NACKs (RFC 4585
  §6.2.1) to a publisher replace aiortc's, which NACK each gap once and never again.
* ``drop_received_rtp`` and ``drop_sent_rtp``: fault injection for tests (packet loss).
* ``send_pli``: ask a publisher for a key frame (RFC 4585 §6.3.1) on its receiver's RTCP SSRC.
* ``negotiated_codecs``: what a transceiver negotiated (aiortc keeps it private).
* ``spread_bundle_candidates``: aiortc reads a bundle's remote candidates from its last
  m-section only; browsers put them on the first.
* Process-wide, at import: aioice's UDP protocol demultiplexes by first byte (RFC 7983) before
  it tries to parse a datagram as STUN, so media skips the STUN parser.
* Simulcast (the section at the end): ``accept_rid_extensions``, ``skip_jitter_buffer``,
  ``route_by_mid`` (which admits only SSRCs the Producer can place), ``forget_ssrc``,
  ``unclamp_remb`` on the publish side; ``tap_remb`` on forwarding senders;
  ``cap_sent_remb`` (fault injection); process-wide, a REMB with a truncated SSRC list is
  dropped before aiortc's router (whose struct.error ended the peer connection).
* ``begin_ice_restart``, ``finish_ice_restart`` (and ``is_ice_restart``, ``blackhole_ice``...):
  ICE restart (RFC 8445 §9), which aiortc lacks: a new aioice Connection under the same
  RTCIceTransport and DTLS transport. See the section at the end.

``tests/unit/sfu/test_aiortc_glue.py`` fails if aiortc changes under any of them; aiortc's version
is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aioice.ice
import aioice.turn
import aiortc.sdp
import pylibsrtp
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)

log = logging.getLogger(__name__)

RtpCallback = Callable[[RtpPacket], Awaitable[None]]

_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: tuple[str, ...] = ()


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on ``addresses`` only, for every connection of the process.

    An empty sequence restores aioice's choice (every interface but loopback) plus 127.0.0.1,
    so that a browser on the same machine reaches us too. IPv6 literals are accepted.
    """
    global _host_addresses
    _host_addresses = tuple(addresses)
    aioice.ice.get_host_addresses = _get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _host_addresses:
        found = _original_get_host_addresses(use_ipv4, use_ipv6)
        return found + (["127.0.0.1"] if use_ipv4 else [])
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


_port_range: tuple[int, int] | None = None
_original_asyncio = aioice.ice.asyncio


class _PortRangeLoop:
    """The running loop as aioice's gathering sees it: a UDP endpoint asked for port 0 on a
    local address binds to a free port of ``_port_range`` instead, tried in random order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: tuple[int, int]) -> None:
        self._loop, self._ports = loop, ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, factory: Any, local_addr: Any = None, **kw: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0 or kw.get("remote_addr") is not None:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        low, high = self._ports
        ports = list(range(low, high + 1))
        random.shuffle(ports)
        for port in ports:
            try:
                return await self._loop.create_datagram_endpoint(
                    factory, local_addr=(local_addr[0], port), **kw
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}..{high}")


class _AsyncioForIce:
    """``asyncio`` as ``aioice.ice`` sees it: the same module, except that
    ``get_running_loop`` returns a ``_PortRangeLoop`` while a port range is set."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_original_asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        loop = _original_asyncio.get_running_loop()
        return loop if _port_range is None else _PortRangeLoop(loop, _port_range)


def use_udp_port_range(ports: tuple[int, int] | None) -> None:
    """Bind the host candidates of every later ICE connection of the process to UDP ports in
    ``ports`` = (min, max), inclusive, so that a firewall can open just that range; None
    restores the OS's choice. Each connection uses one port per address (max-bundle,
    rtcp-mux), so the range bounds the concurrent transports times the gathered addresses.
    TURN client sockets are not affected. Raises ValueError for an empty or invalid range."""
    global _port_range
    if ports is not None and not 1 <= ports[0] <= ports[1] <= 65535:
        raise ValueError(f"invalid UDP port range {ports[0]}..{ports[1]}")
    _port_range = ports
    aioice.ice.asyncio = _AsyncioForIce()  # type: ignore[assignment]


_turn_tls_context: ssl.SSLContext | None = None
_original_create_turn_endpoint = aioice.turn.create_turn_endpoint


def use_turn_tls_context(context: ssl.SSLContext | None) -> None:
    """Verify ``turns:`` servers (TURN over TLS, RFC 8656 §3.1) against ``context`` in every
    later connection of the process; None restores the system's trust store. Installs the
    hook that records ``last_turn_error`` too."""
    global _turn_tls_context
    _turn_tls_context = context
    aioice.turn.create_turn_endpoint = _create_turn_endpoint  # type: ignore[assignment]


_last_turn_error: str | None = None


def last_turn_error(clear: bool = False) -> str | None:
    """Why the last TURN allocation of the process failed (aioice drops the reason), e.g.
    ``STUN transaction failed (401 - Unauthorized)`` for a wrong or expired credential;
    None if none failed since the last ``clear``. Never holds a credential."""
    global _last_turn_error
    error = _last_turn_error
    if clear:
        _last_turn_error = None
    return error


async def _create_turn_endpoint(protocol_factory: Any, **kwargs: Any) -> Any:
    global _last_turn_error
    if kwargs.get("ssl") is True and _turn_tls_context is not None:
        kwargs["ssl"] = _turn_tls_context
    try:
        return await _original_create_turn_endpoint(protocol_factory, **kwargs)
    except Exception as exc:
        server = kwargs.get("server_addr")
        _last_turn_error = f"{server[0]}:{server[1]}: " if server else ""
        _last_turn_error += str(exc) or type(exc).__name__
        raise


use_turn_tls_context(None)  # record TURN errors from the start


_original_datagram_received = aioice.ice.StunProtocol.datagram_received


def _demultiplex_datagram(self: aioice.ice.StunProtocol, data: bytes, addr: Any) -> None:
    """aioice's ``StunProtocol.datagram_received``, demultiplexed first (RFC 7983 §7): only a
    datagram whose first byte is 0..3 can be STUN. aioice parses every datagram as STUN and
    hands on what fails with ValueError; for DTLS and SRTP that parse is wasted work on every
    media packet, and a packet whose bytes happen to look like a STUN header with a short
    attribute raised struct.error in the event loop's callback, and was lost."""
    if data and data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
    else:
        _original_datagram_received(self, data, addr)


aioice.ice.StunProtocol.datagram_received = _demultiplex_datagram  # type: ignore[method-assign,assignment]


class ReceiveTap:
    """Hands every RTP packet one ``RTCRtpReceiver`` gets to ``on_rtp`` and stops its decoder.

    ``on_rtp`` sees the packet as parsed by aiortc after SRTP (RTX still wrapped) before aiortc's
    own bookkeeping (statistics for RR, NACK generation, REMB); it must not keep the object
    beyond the call if it mutates it. With ``decode=False`` the decoder thread is stopped once
    the receiver starts, so no frame is ever decoded (the SFU's publish side), and aiortc's
    per-packet work behind the tap is cut to its bookkeeping (``_receive_bookkeeping``: no
    depayloading, no jitter buffer).
    """

    def __init__(self, receiver: RTCRtpReceiver, on_rtp: RtpCallback, decode: bool) -> None:
        handle: Callable[[RtpPacket, int], Awaitable[None]] = receiver._handle_rtp_packet
        if not decode and "_handle_rtp_packet" not in receiver.__dict__:  # aiortc's own
            handle = _receive_bookkeeping(receiver)
        receive = receiver.receive

        async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            try:
                await on_rtp(packet)
            except Exception:  # never let our bug end aiortc's receive loop for this peer
                log.exception("RTP tap failed; the packet is dropped")
            await handle(packet, arrival_time_ms)

        async def start(parameters: Any) -> None:
            await receive(parameters)
            if not decode:
                receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]

        receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
        receiver.receive = start  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a Picture Loss Indication (RFC 4585 §6.3.1) for ``media_ssrc`` to the publisher."""
    await receiver._send_rtcp_pli(media_ssrc)


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Send Generic NACKs (RFC 4585 §6.2.1) for the 16-bit sequence numbers ``lost`` (in
    sending order) of ``media_ssrc`` to the publisher, from the receiver's RTCP SSRC. aiortc
    packs only increasing numbers (it raises on a step back): a wrap (65535, 0) or any step
    back starts another NACK; repeats are left out."""
    run: list[int] = []
    for seq in lost:
        if run and seq <= run[-1]:
            if seq == run[-1]:
                continue
            await receiver._send_rtcp_nack(media_ssrc, run)
            run = []
        run.append(seq)
    if run:
        await receiver._send_rtcp_nack(media_ssrc, run)


def disable_nack_generator(receiver: RTCRtpReceiver) -> None:
    """Stop aiortc's NACK generation on ``receiver``; the caller NACKs instead."""
    receiver._RTCRtpReceiver__nack_generator = None  # type: ignore[attr-defined]


def tap_rtcp(receiver: RTCRtpReceiver, on_rtcp: Callable[[Any], None]) -> None:
    """Call ``on_rtcp`` with each RTCP packet (an aiortc ``Rtcp*Packet``) routed to
    ``receiver`` (Sender Reports and BYE of its source), before aiortc handles it."""
    handle = receiver._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        try:
            on_rtcp(packet)
        except Exception:
            log.exception("RTCP tap failed")
        await handle(packet)

    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def drop_received_rtp(receiver: RTCRtpReceiver, drop: Callable[[RtpPacket], bool]) -> None:
    """Fault injection: RTP packets (after SRTP, RTX still wrapped) for which ``drop(packet)``
    is true never reach ``receiver``, as if the network had lost them."""
    handle = receiver._handle_rtp_packet

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not drop(packet):
            await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]


def drop_sent_rtp(sender: RTCRtpSender, drop: Callable[[RtpPacket], bool]) -> None:
    """Fault injection: RTP packets (before SRTP) the sender's DTLS transport would send and
    for which ``drop(packet)`` is true are not sent: aiortc's sends and ``ForwardingSender``'s
    fast path alike. The transport is shared by every sender of a bundle."""
    transport = sender.transport
    _sent_rtp_hooks(transport).hooks.append(
        lambda data: drop(RtpPacket.parse(data, transport._rtp_header_extensions_map))
    )


def tap_sent_rtp(sender: RTCRtpSender, on_rtp: Callable[[RtpPacket], None]) -> None:
    """Call ``on_rtp`` with each RTP (not RTCP) packet the sender's DTLS transport sends, before
    SRTP (``ForwardingSender``'s fast path included). The transport is shared by every sender
    of a bundle: one tap sees them all."""
    transport = sender.transport

    def tap(data: bytes) -> bool:
        on_rtp(RtpPacket.parse(data, transport._rtp_header_extensions_map))
        return False

    _sent_rtp_hooks(transport).hooks.append(tap)


class HoldTrack(MediaStreamTrack):
    """A track that never yields a frame: it parks aiortc's encoder loop of a forwarding sender.

    Its ``id`` becomes the track id in the SDP ``msid`` (RFC 8830 §2).
    """

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self._stopped = asyncio.get_running_loop().create_future()

    @property
    def id(self) -> str:
        return self._id

    async def recv(self) -> Any:
        await asyncio.shield(self._stopped)
        raise MediaStreamError

    def stop(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)
        super().stop()


def _receive_bookkeeping(receiver: RTCRtpReceiver) -> Callable[[RtpPacket, int], Awaitable[None]]:
    """aiortc's ``RTCRtpReceiver._handle_rtp_packet`` for a receiver that never decodes (the
    receive side's fast path): the same bookkeeping, in the same order, without what only
    feeds the decoder (depayloading each packet, assembling frames in the jitter buffer, whose
    PLIs the SFU sends itself). Kept: the remote bitrate estimator and its REMB
    (draft-alvestrand-rmcat-remb), the active SSRCs, the receive statistics of the Receiver
    Reports (RFC 3550 §6.4.2), RTX unwrapping (RFC 4588 §4) and the NACK generator while one
    is set (RFC 4585 §6.2.1)."""
    private: Any = receiver
    active_ssrc = private._RTCRtpReceiver__active_ssrc
    codecs = private._RTCRtpReceiver__codecs  # filled in place by receive()
    remote_streams = private._RTCRtpReceiver__remote_streams
    rtx_ssrc = private._RTCRtpReceiver__rtx_ssrc  # filled in place by receive()
    estimator = private._RTCRtpReceiver__remote_bitrate_estimator
    current_datetime = clock.current_datetime

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not private._enabled:
            return
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            rtcp_ssrc = private._RTCRtpReceiver__rtcp_ssrc
            if rtcp_ssrc is not None and remb is not None:
                await private._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        active_ssrc[packet.ssrc] = current_datetime()
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = remote_streams.get(packet.ssrc)
        if stream is None:
            stream = remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if is_rtx(codec):
            original_ssrc = rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if (
                original_ssrc is None
                or len(packet.payload) < 2
                or not isinstance(apt, int)
                or apt not in codecs
            ):
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        nack_generator = private._RTCRtpReceiver__nack_generator  # disable_nack_generator
        if nack_generator is not None and nack_generator.add(packet):
            await private._send_rtcp_nack(packet.ssrc, sorted(nack_generator.missing))

    return handle_rtp


class _SentRtpHooks:
    """The tap and fault-injection hooks of one DTLS transport's outgoing RTP (before SRTP).

    Installed once as the transport's ``_send_rtp``, so aiortc's own sends pass through it;
    ``ForwardingSender``'s fast path, which bypasses ``_send_rtp``, calls ``drops`` itself on
    the plain packet. Each hook returns True to drop a packet; the last installed runs first
    (as nested wrappers would), and a dropped packet reaches no earlier hook.
    """

    def __init__(self, send_rtp: Callable[[bytes], Awaitable[None]]) -> None:
        self.hooks: list[Callable[[bytes], bool]] = []
        self._send_rtp = send_rtp

    def drops(self, data: bytes) -> bool:
        """Whether a hook drops the plain packet ``data`` (RTCP passes untouched)."""
        if 192 <= data[1] <= 223:  # RTCP packet types 192..223 (RFC 5761 §4)
            return False
        return any(hook(data) for hook in reversed(self.hooks))

    async def send_rtp(self, data: bytes) -> None:
        if not self.drops(data):
            await self._send_rtp(data)


def _sent_rtp_hooks(transport: Any) -> _SentRtpHooks:
    """The hooks of ``transport``, installed on first use."""
    hooks = getattr(transport.__dict__.get("_send_rtp"), "__self__", None)
    if not isinstance(hooks, _SentRtpHooks):
        hooks = _SentRtpHooks(transport._send_rtp)
        transport._send_rtp = hooks.send_rtp
    return hooks


_srtp_ffi, _srtp_lib = pylibsrtp.ffi, pylibsrtp.lib  # the cffi binding pylibsrtp wraps
_DTLS_CONNECTED = _DtlsState.CONNECTED
_NTP_UNIX_OFFSET_S = 2208988800  # 1900-01-01 to 1970-01-01 (RFC 5905 §6); a multiple of 64
_SRTP_BUFFER_BYTES = 2048
_MAX_PLAIN_RTP_BYTES = _SRTP_BUFFER_BYTES - pylibsrtp.SRTP_MAX_TRAILER_LEN
_URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
_URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_pack_fields = struct.Struct("!BHI").pack_into  # M|PT, seq, ts from offset 1 (RFC 3550 §5.1)
_pack_fields_abs = struct.Struct("!BHIIHHI").pack_into  # ... SSRC, 0xBEDE, length, abs-send-time
_srtp_protect = _srtp_lib.srtp_protect
# One buffer for every ForwardingSender: ``forward`` runs to completion (protect, then sendto
# copies the datagram into the kernel) before any other starts, and a shared buffer stays in
# the CPU cache across a fan-out where one per subscriber would not. ``_buffer_holds[0]`` is
# the header template the buffer holds.
_cdata = _srtp_ffi.new("unsigned char[]", _SRTP_BUFFER_BYTES)
_buffer = _srtp_ffi.buffer(_cdata)
_size = _srtp_ffi.new("int *")  # srtp_protect's in/out packet length
_buffer_holds: list[Any] = [None]


class _NotOneByte(ValueError):
    """The header extensions cannot take the RFC 8285 one-byte form (§4.2)."""


class _RtpHeaderTemplate:
    """A forwarded packet's RTP header with its RFC 8285 one-byte extensions, prebuilt.

    ``data`` (``length`` bytes) is the 12-byte fixed header (V=2, X, our SSRC; marker, PT, seq
    and ts are packed per packet from offset 1), then the extension block (``words`` 32-bit
    words): abs-send-time first, so that its element (``abs_send_time_word``: the header
    byte in the top 8 bits, the 24-bit value ORed in) is packed with the fixed fields at
    offset 16; then the audio level (RFC 6464; its value byte at ``level_offset``); then the
    MID (constant); zero padded (RFC 8285 §4.2). None: element absent.
    """

    __slots__ = ("data", "length", "abs_send_time_word", "level_offset", "ssrc", "words")

    def __init__(
        self,
        ssrc: int,
        mid: tuple[int, str] | None,
        abs_send_time_id: int | None,
        level_id: int | None,
    ) -> None:
        for ext_id in (mid[0] if mid else None, abs_send_time_id, level_id):
            if ext_id is not None and not 1 <= ext_id <= 14:
                raise _NotOneByte(f"extension id {ext_id}")
        elements = bytearray()
        self.abs_send_time_word: int | None = None
        self.level_offset: int | None = None
        if abs_send_time_id is not None:
            self.abs_send_time_word = ((abs_send_time_id << 4) | 2) << 24  # L=2: 3 bytes
            elements += self.abs_send_time_word.to_bytes(4, "big")
        if level_id is not None:
            self.level_offset = 16 + len(elements) + 1
            elements += bytes((level_id << 4, 0))
        if mid is not None:
            value = mid[1].encode()
            if not 1 <= len(value) <= 16:
                raise _NotOneByte(f"MID of {len(value)} bytes")
            elements += bytes(((mid[0] << 4) | (len(value) - 1),)) + value
        elements += bytes(-len(elements) % 4)
        self.ssrc = ssrc
        self.words = len(elements) // 4
        header = struct.pack("!BBHII", 0x90 if elements else 0x80, 0, 0, 0, ssrc)
        if elements:
            header += struct.pack("!HH", 0xBEDE, self.words) + elements
        self.data = header
        self.length = len(header)


class ForwardingSender:
    """Sends forwarded RTP through one aiortc ``RTCRtpSender`` of a subscribe connection.

    Construct it before the sender starts (right after ``addTransceiver``). ``stream_id`` and
    ``track_id`` become the ``msid`` (RFC 8830). Once negotiation completes, ``payload_type``
    is the negotiated payload type of the first codec and ``ssrc`` the SSRC announced in the
    SDP; ``on_started`` runs then. ``on_key_frame_request`` runs for each PLI or FIR
    (RFC 4585 §6.3.1, RFC 5104 §4.3.1) the subscriber sends; ``on_nack``, when given, with the
    16-bit sequence numbers of each Generic NACK (RFC 4585 §6.2.1), answered with ``resend``.
    Every other RTCP packet (RR, REMB) goes to aiortc (RTT, statistics); without ``on_nack``
    aiortc answers NACKs from the last 128 packets sent. ``sr_mapping``, when set, is the
    (64-bit NTP, 32-bit RTP timestamp) pair our Sender Reports carry (RFC 3550 §6.4.1);
    unset, the send time of the last packet and its timestamp.

    Fast path (``forward``; ``fast`` True): no ``RtpPacket`` is built. After negotiation the
    header and its extensions are prebuilt (``_RtpHeaderTemplate``), copied into a buffer
    (shared by all senders) that libsrtp protects in place (SRTP encrypts the payload only,
    RFC 3711 §3.1, so the header stays for the sender's next packet); per packet marker, PT,
    seq, ts and abs-send-time are packed in, the
    payload copied after them, the buffer protected once with the transport's SRTP session
    and handed to the ``sendto`` of the datagram transport of the candidate pair aioice's
    ``Connection.send`` would use (aioice keeps consent freshness, RFC 7675). What the fast
    path cannot do exactly as aiortc does goes through aiortc (``_send_slow``): no nominated
    pair, a TURN-relayed pair, an ICE transport whose sending someone else replaced, a
    two-byte extension header (an id above 14 or a MID over 16 bytes), an oversized packet,
    ``fast`` False. ``tap_sent_rtp``/``drop_sent_rtp`` apply on both paths.
    """

    __slots__ = (
        "_sender",
        "_transport",
        "_ext_map",
        "_mid",
        "_keep_history",
        "payload_type",
        "ssrc",
        "started",
        "sr_mapping",
        "fast",
        "srtp_refused",
        "_template",
        "_template_level",
        "_sr_written",
        "_ice",
        "_transport_dict",
        "_route_ice_send",
        "_route_nominated",
        "_route_switch",
        "_route_pair",
        "_route_sendto",
        "_route_addr",
        "_route_protocol",
    )

    def __init__(
        self,
        sender: RTCRtpSender,
        stream_id: str,
        on_started: Callable[[], None],
        on_key_frame_request: Callable[[], None],
        on_nack: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._sender = sender
        self.sr_mapping: tuple[int, int] | None = None
        self._transport = sender.transport
        self._ext_map = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
        self._mid: str | None = None
        self._keep_history = on_nack is None  # only aiortc's own NACK answers read it
        self.payload_type = 0
        self.ssrc: int = sender._ssrc
        self.started = False
        self.fast = True
        self.srtp_refused = 0  # packets libsrtp would not protect (dropped, see forward)
        self._template: _RtpHeaderTemplate | None = None
        self._template_level: _RtpHeaderTemplate | None = None
        self._sr_written: tuple[int, int] | None = None
        self._ice: Any = sender.transport.transport
        self._transport_dict: dict[str, Any] = sender.transport.__dict__
        self._route_ice_send: Any = None
        self._route_nominated: dict[int, Any] = {}
        self._route_switch: Any = None
        self._route_pair: Any = None
        self._route_sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._route_addr: tuple[str, int] = ("", 0)
        self._route_protocol: dict[str, Any] = {}
        sender._stream_id = stream_id
        send = sender.send
        handle_rtcp = sender._handle_rtcp_packet

        async def start(parameters: RTCRtpSendParameters) -> None:
            await send(parameters)
            codecs = parameters.codecs
            if not self.started and codecs and codecs[0].payloadType is not None:
                self.negotiated(parameters)
                on_started()

        async def on_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_key_frame_request()
            elif on_nack is not None and isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:
                on_nack(list(packet.lost))  # Generic NACK: RTPFB FMT 1 (RFC 4585 §6.2.1)
            else:
                await handle_rtcp(packet)

        sender.send = start  # type: ignore[method-assign]
        sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign]

    def negotiated(self, parameters: RTCRtpSendParameters) -> None:
        """Take what negotiation gave the sender: the first codec's payload type, the MID and
        the header extension ids of ``parameters`` (aiortc configured its own map from them);
        prebuild the fast path's headers and set ``started``."""
        self.payload_type = parameters.codecs[0].payloadType or 0
        self._mid = parameters.muxId or None
        self._transport = transport = self._sender.transport
        self._ice, self._transport_dict = transport.transport, transport.__dict__
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        mid = (ids[_URI_MID], self._mid) if _URI_MID in ids and self._mid else None
        abs_id, level_id = ids.get(_URI_ABS_SEND_TIME), ids.get(_URI_AUDIO_LEVEL)
        try:
            self._template = _RtpHeaderTemplate(self.ssrc, mid, abs_id, None)
            self._template_level = (
                self._template
                if level_id is None
                else _RtpHeaderTemplate(self.ssrc, mid, abs_id, level_id)
            )
        except _NotOneByte:
            self._template = self._template_level = None
        _buffer_holds[0] = None
        self.started = True

    async def send(self, packet: RtpPacket, seq: int, ts: int, audio_level: Any = None) -> None:
        """Send ``packet``'s payload and marker with our SSRC/PT and the given 16-bit ``seq`` and
        32-bit RTP ``ts``; header extensions are rewritten to the subscriber's ids (RFC 8285):
        MID, abs-send-time and, for audio, the level (RFC 6464, ``(voice, -dBov)``). Raises
        ConnectionError when the transport is not connected."""
        pending = self.forward(packet, seq, ts, audio_level)
        if pending is not None:
            await pending

    def forward(
        self, packet: RtpPacket, seq: int, ts: int, audio_level: Any = None
    ) -> Awaitable[None] | None:
        """``send`` without a coroutine when the fast path applies: None once sent, else an
        awaitable that sends through aiortc. Raises ConnectionError when not connected."""
        transport: Any = self._transport
        if transport._state is not _DTLS_CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        template = self._template if audio_level is None else self._template_level
        payload = packet.payload
        payload_bytes = len(payload)
        hooked = self._transport_dict.get("_send_rtp")  # tap_sent_rtp, drop_sent_rtp, others
        hooks = None if hooked is None else getattr(hooked, "__self__", None)
        if (
            template is None
            or not self.fast
            or template.length + payload_bytes > _MAX_PLAIN_RTP_BYTES
            or (hooked is not None and type(hooks) is not _SentRtpHooks)
        ):
            return self._send_slow(packet, seq, ts, audio_level)
        # Where aioice's Connection.send would send: component 1's nominated pair.
        ice_send = self._ice._send
        if ice_send is not self._route_ice_send:
            self._route_ice(ice_send)
        switch = self._route_switch
        nominated = self._route_nominated if switch is None else switch.current._nominated
        pair = nominated.get(1)
        if pair is not self._route_pair:
            self._route_to(pair)
        sendto = self._route_sendto
        if sendto is None or "send_data" in self._route_protocol:  # send_data replaced
            return self._send_slow(packet, seq, ts, audio_level)

        now = time.time()
        buffer = _buffer
        length = template.length
        if template is not _buffer_holds[0]:
            buffer[:length] = template.data
            _buffer_holds[0] = template
        marker_pt = (packet.marker << 7) | self.payload_type
        if template.abs_send_time_word is None:
            _pack_fields(buffer, 1, marker_pt, seq, ts)
        else:  # abs-send-time: NTP seconds in 6.18 fixed point, mod 64 (as Unix time's)
            word = template.abs_send_time_word | (int(now * 262144.0) & 0xFFFFFF)
            _pack_fields_abs(
                buffer, 1, marker_pt, seq, ts, template.ssrc, 0xBEDE, template.words, word
            )
        if audio_level is not None and template.level_offset is not None:
            level = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)
            _cdata[template.level_offset] = level
        end = length + payload_bytes
        buffer[length:end] = payload
        if self._keep_history:
            self._remember(packet, seq, ts, audio_level)
        if hooks is None or not hooks.drops(buffer[:end]):
            size = _size
            size[0] = end
            if _srtp_protect(transport._tx_srtp._srtp[0], _cdata, size):
                # e.g. an index behind libsrtp's replay window (a publisher's sequence
                # numbers jumping back): dropped and counted, as a lost packet
                self.srtp_refused += 1
                return None
            end = size[0]
            sendto(buffer[:end], self._route_addr)
            transport._RTCDtlsTransport__tx_bytes += end
            transport._RTCDtlsTransport__tx_packets += 1
        # What aiortc's Sender Reports (RFC 3550 §6.4.1) and getStats() read.
        sender: Any = self._sender
        mapping = self.sr_mapping
        if mapping is None:
            ntp = now + _NTP_UNIX_OFFSET_S
            seconds = int(ntp)
            fraction = int((ntp - seconds) * 4294967296.0)
            sender._RTCRtpSender__ntp_timestamp = (seconds << 32) | fraction
            sender._RTCRtpSender__rtp_timestamp = ts
            self._sr_written = None
        elif mapping is not self._sr_written:
            sender._RTCRtpSender__ntp_timestamp, sender._RTCRtpSender__rtp_timestamp = mapping
            self._sr_written = mapping
        sender._RTCRtpSender__octet_count += payload_bytes
        sender._RTCRtpSender__packet_count += 1
        return None

    def _route_ice(self, ice_send: Any) -> None:
        """Find the aioice Connection behind the ICE transport's ``_send``: aiortc's own
        (``Connection.send``) or the ICE restart switch's current one; else none (slow path)."""
        self._route_ice_send = ice_send
        self._route_switch = None
        self._route_nominated = {}
        self._route_to(None)
        owner = getattr(ice_send, "__self__", None)
        method = getattr(ice_send, "__func__", None)
        if isinstance(owner, aioice.ice.Connection) and method is aioice.ice.Connection.send:
            self._route_nominated = owner._nominated
        elif isinstance(owner, _IceSwitch) and method is _IceSwitch.send:
            self._route_switch = owner

    def _route_to(self, pair: Any) -> None:
        """Send on ``pair`` (an aioice ``CandidatePair``) directly when its protocol is aioice's
        plain UDP one (``StunProtocol.send_data`` is ``transport.sendto(data, remote_addr)``);
        not when TURN relays it (a ``TurnTransport`` wraps the data) or there is no pair."""
        self._route_pair = pair
        self._route_sendto = None
        self._route_protocol = {}
        protocol = getattr(pair, "protocol", None)
        if type(protocol) is not aioice.ice.StunProtocol:
            return
        datagram = getattr(protocol, "transport", None)
        if datagram is None or isinstance(datagram, aioice.turn.TurnTransport):
            return
        self._route_sendto = datagram.sendto
        self._route_addr = pair.remote_addr
        self._route_protocol = protocol.__dict__

    async def _send_slow(
        self, packet: RtpPacket, seq: int, ts: int, audio_level: Any = None
    ) -> None:
        """aiortc's path: a new ``RtpPacket``, serialised, then ``RTCDtlsTransport._send_rtp``
        (SRTP, aioice's ``Connection.send``)."""
        now_ntp = clock.current_ntp_time()  # one clock read per packet: abs-send-time and SR
        out = self._rewrite(packet, seq, ts, audio_level, now_ntp)
        sender = self._sender
        if self._keep_history:
            sender._RTCRtpSender__rtp_history[seq % RTP_HISTORY_SIZE] = out  # type: ignore[attr-defined]
        try:
            await self._transport._send_rtp(out.serialize(self._ext_map))
        except pylibsrtp.Error:  # as on the fast path: dropped and counted
            self.srtp_refused += 1
            return
        ntp, rtp_ts = (now_ntp, ts) if self.sr_mapping is None else self.sr_mapping
        self._sr_written = None
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = rtp_ts  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]

    def _remember(self, packet: RtpPacket, seq: int, ts: int, audio_level: Any) -> None:
        """Keep the packet in aiortc's sender history, which its own NACK answers read."""
        self._sender._RTCRtpSender__rtp_history[seq % RTP_HISTORY_SIZE] = self._rewrite(  # type: ignore[attr-defined]
            packet, seq, ts, audio_level, clock.current_ntp_time()
        )

    async def resend(self, packet: RtpPacket, seq: int, ts: int, audio_level: Any = None) -> None:
        """Retransmit ``packet`` as ``seq``/``ts`` (as ``send`` rewrites it): as RTX on the
        negotiated RTX payload type and SSRC (RFC 4588 §4), else as the original packet."""
        sender = self._sender
        sender._RTCRtpSender__rtp_history[seq % RTP_HISTORY_SIZE] = self._rewrite(  # type: ignore[attr-defined]
            packet, seq, ts, audio_level, clock.current_ntp_time()
        )
        try:
            await sender._retransmit(seq)
        except pylibsrtp.Error:  # the original packet, too old for libsrtp's window: dropped
            self.srtp_refused += 1

    def _rewrite(
        self, packet: RtpPacket, seq: int, ts: int, audio_level: Any, now_ntp: int
    ) -> RtpPacket:
        out = RtpPacket(
            payload_type=self.payload_type,
            marker=packet.marker,
            sequence_number=seq,
            timestamp=ts,
            ssrc=self.ssrc,
            payload=packet.payload,
        )
        ext = out.extensions
        ext.mid = self._mid
        ext.abs_send_time = (now_ntp >> 14) & 0x00FFFFFF  # 6.18 fixed-point seconds
        ext.audio_level = audio_level
        return out


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated on ``transceiver``, in the order of the answer (its first media
    codec is the one the publisher sends, RFC 3264 §6.1)."""
    return list(transceiver._codecs)


def tap_key_frame_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Call ``on_request`` each time an aiortc sender is asked for a key frame (it got a PLI
    or FIR); the sender still honours the request. Tests use it on a publisher."""
    send_keyframe = sender._send_keyframe

    def requested() -> None:
        on_request()
        send_keyframe()

    sender._send_keyframe = requested  # type: ignore[method-assign]


def spread_bundle_candidates(sdp: str) -> str:
    """Return ``sdp`` with every m-section carrying all the ICE candidates of the description.

    aiortc 1.16, with max-bundle, adds the remote candidates of the *last* m-section only;
    browsers write them on the first (RFC 8843 §7.1.1 lets a bundled description carry them
    once). Copying them everywhere makes aiortc see them whichever section it reads;
    ``a=end-of-candidates`` is copied only alongside. Line endings are kept (CRLF per RFC 8866).
    """
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailing = lines[-1] == ""
    if trailing:
        lines.pop()
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if len(starts) < 2:
        return sdp
    sections = [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
    candidates = list(
        dict.fromkeys(
            line for section in sections for line in section if line.startswith("a=candidate:")
        )
    )
    complete = any("a=end-of-candidates" in section for section in sections)
    out = lines[: starts[0]]
    for section in sections:
        body = [line for line in section if line != "a=end-of-candidates"]
        body += [c for c in candidates if c not in body]
        out += body + (["a=end-of-candidates"] if complete else [])
    return eol.join(out) + (eol if trailing else "")


# --- ICE restart (RFC 8445 §9, RFC 8839 §4.4.1.1.1) ------------------------------------------
#
# aiortc 1.16 cannot restart ICE. Its RTCIceGatherer makes one aioice Connection, with one
# ufrag/pwd, for the life of the peer connection: createOffer/createAnswer always write those
# credentials and the first gathering's candidates. A remote description with new credentials
# only updates RTCPeerConnection's private ``__remoteIce``: RTCIceTransport.start() returns at
# once when it ran before, so aioice keeps the old remote ufrag/pwd and answers the peer's new
# checks with 401; its remote candidates are dropped when the first description ended them
# (``_remote_candidates_end``) or paired without checks (the check loop has ended). When
# aioice's consent freshness (RFC 7675) expires, it closes the Connection; the DTLS transport's
# receive loop then ends and aiortc closes the whole peer connection.
#
# The hooks below give each RTCIceTransport a fresh aioice Connection (new credentials,
# gathered again, checked and nominated) under the same RTCIceTransport, RTCDtlsTransport and
# SRTP sessions: an ICE restart keeps the DTLS association (RFC 8445 §9). Data keeps flowing
# on the old pair until the new one is nominated (make before break), then the DTLS transport
# reads and writes through the new one and the old one closes. Protocol, for either side:
#
#   offerer:  await begin_ice_restart(pc); createOffer(); setLocalDescription(); ...
#             setRemoteDescription(answer); finish_ice_restart(pc)
#   answerer: if is_ice_restart(pc, offer): await begin_ice_restart(pc)
#             setRemoteDescription(offer); finish_ice_restart(pc); createAnswer(); ...


OLD_PAIR_GRACE_S = 3.0  # how long the replaced Connection still receives after a restart


class IceRestartError(Exception):
    """An ICE restart cannot begin: the peer connection has no ICE transport yet, or it has
    failed or closed (a restart must come before consent to send expires, RFC 7675 §5.1)."""


class _IceSwitch:
    """What one RTCIceTransport's DTLS transport reads from and writes to: ``current``, an aioice
    Connection, swapped when a restart's new Connection is nominated. ``pending`` is the new
    Connection while a restart runs; ``task`` its checks; ``last_rx`` the monotonic time (s) of
    the last datagram received (DTLS, SRTP, SRTCP)."""

    def __init__(self, ice: Any) -> None:
        self.ice = ice
        self.current: aioice.ice.Connection = ice._connection
        self.pending: aioice.ice.Connection | None = None
        self.task: asyncio.Task[bool] | None = None
        self.restarts = 0
        self.last_rx = asyncio.get_running_loop().time()
        self.retiring: set[aioice.ice.Connection] = set()  # replaced, closing soon
        self.closing: set[asyncio.Future[None]] = set()

    async def recv(self) -> bytes:
        while True:
            connection = self.current
            try:
                data = await connection.recv()
            except ConnectionError:
                if connection is self.current:
                    raise
                continue  # swapped while we waited: read the new Connection
            self.last_rx = asyncio.get_running_loop().time()
            return data

    async def send(self, data: bytes) -> None:
        await self.current.send(data)


def _ice_transports(pc: Any) -> list[Any]:
    """The distinct RTCIceTransports of ``pc`` (one with max-bundle)."""
    found: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        found[id(ice)] = ice
    if pc.sctp is not None:
        found[id(pc.sctp.transport.transport)] = pc.sctp.transport.transport
    return list(found.values())


def _switch(ice: Any) -> _IceSwitch:
    switch: _IceSwitch | None = getattr(ice, "_switchboard_ice_switch", None)
    if switch is None:
        switch = _IceSwitch(ice)
        ice._switchboard_ice_switch = switch
        # The DTLS transport looks these up on every datagram (RTCDtlsTransport._recv_next,
        # _send_rtp, _write_ssl), so later reads and writes go through the switch.
        ice._recv = switch.recv
        ice._send = switch.send
        stop = ice.stop

        async def stop_both() -> None:
            # The pending restart first: aiortc's stop() closes ice._connection, then awaits
            # its monitor, which waits for the current Connection to close (it would wait
            # forever with the pending one in ice._connection).
            await _drop_pending(switch)
            await stop()
            for connection in (switch.current, *switch.retiring):
                await connection.close()
            switch.retiring.clear()

        ice.stop = stop_both
    return switch


def ice_credentials(sdp: str) -> tuple[str, str] | None:
    """The (ice-ufrag, ice-pwd) of the first m-section of ``sdp`` (RFC 8839 §5.4), session-level
    attributes included; None when absent or unparsable. With BUNDLE every m-section shares
    them."""
    try:
        media = aiortc.sdp.SessionDescription.parse(sdp).media
    except Exception:
        return None
    ice = media[0].ice if media else None
    if ice is None or not ice.usernameFragment or not ice.password:
        return None
    return ice.usernameFragment, ice.password


def is_ice_restart(pc: Any, remote_sdp: str) -> bool:
    """Whether ``remote_sdp`` restarts ICE: ``pc`` has a remote description and ``remote_sdp``
    carries other credentials (RFC 8839 §4.4.1.1.1: a changed ufrag or pwd)."""
    current = pc.remoteDescription
    if current is None:
        return False
    before, after = ice_credentials(current.sdp), ice_credentials(remote_sdp)
    return before is not None and after is not None and before != after


def ice_restart_pending(pc: Any) -> bool:
    """Whether ``begin_ice_restart`` ran on ``pc`` and its checks have not started yet."""
    return any(
        (s := getattr(ice, "_switchboard_ice_switch", None)) is not None
        and s.pending is not None
        and s.task is None
        for ice in _ice_transports(pc)
    )


async def begin_ice_restart(pc: Any) -> None:
    """Give each ICE transport of ``pc`` new local credentials and candidates, gathered now; the
    next local description (offer or answer) carries them. Media keeps flowing on the selected
    pair meanwhile. Restarting again before ``finish_ice_restart`` drops the earlier attempt.
    Raises IceRestartError when there is no ICE transport or it is no longer usable."""
    transports = _ice_transports(pc)
    if not transports:
        raise IceRestartError("no ICE transport to restart yet")
    for ice in transports:
        switch = getattr(ice, "_switchboard_ice_switch", None)
        current = ice._connection if switch is None else switch.current
        if ice.state != "completed" or not current._nominated:
            raise IceRestartError(f"the ICE transport is {ice.state}, not connected")
    for ice in transports:
        switch = _switch(ice)
        await _drop_pending(switch)
        old = switch.current
        new = aioice.ice.Connection(
            ice_controlling=old.ice_controlling,  # the same side offers on each connection
            stun_server=old.stun_server,
            turn_server=old.turn_server,
            turn_username=old.turn_username,
            turn_password=old.turn_password,
            turn_ssl=old.turn_ssl,
            turn_transport=old.turn_transport,
            use_ipv4=old._use_ipv4,
            use_ipv6=old._use_ipv6,
            transport_policy=old._transport_policy,
        )
        await new.gather_candidates()
        if ice.state == "closed":  # stopped while gathering: stop_both has run already
            await new.close()
            raise IceRestartError("the ICE transport closed during the restart")
        switch.pending = new
        # Local descriptions read the gatherer's Connection; remote candidates (SDP and
        # trickle) go to the transport's, which ends them afresh.
        ice.iceGatherer._connection = new
        ice.iceGatherer._remote_candidates_end = False
        ice._connection = new


def finish_ice_restart(pc: Any) -> asyncio.Task[bool]:
    """Start the restart's connectivity checks, once ``pc``'s remote description carries the
    peer's new credentials; return a task that is True when the new pair carries the data
    (the old Connection still receives for ``OLD_PAIR_GRACE_S``, then closes) and False when
    the checks failed (the old pair stays, if it still works). Without a restart pending, a
    task that is True at once."""
    credentials = ice_credentials(pc.remoteDescription.sdp) if pc.remoteDescription else None
    tasks = []
    for ice in _ice_transports(pc):
        switch: _IceSwitch | None = getattr(ice, "_switchboard_ice_switch", None)
        if switch is None or switch.pending is None or switch.task is not None:
            continue
        if credentials is None:
            raise IceRestartError("the remote description has no ICE credentials")
        switch.pending.remote_username, switch.pending.remote_password = credentials
        switch.pending.remote_is_lite = pc.remoteDescription.sdp.find("a=ice-lite") >= 0
        switch.task = asyncio.ensure_future(_run_restart(switch, switch.pending))
        tasks.append(switch.task)

    async def all_done() -> bool:
        results = await asyncio.gather(*tasks)
        return all(results)

    return asyncio.ensure_future(all_done())


async def _run_restart(switch: _IceSwitch, new: aioice.ice.Connection) -> bool:
    ice = switch.ice
    try:
        await new.connect()
    except (ConnectionError, asyncio.CancelledError):
        if switch.pending is new:  # not superseded by a later restart
            switch.pending, switch.task = None, None
            ice.iceGatherer._connection = ice._connection = switch.current
        await new.close()
        log.info("ICE restart failed; the previous pair stays")
        return False
    if switch.pending is not new or ice.state == "closed":
        await new.close()  # superseded, or the transport stopped (which closed the rest)
        return False
    old = switch.current
    switch.current, switch.pending, switch.task = new, None, None
    switch.restarts += 1
    # RTCIceTransport._monitor turns the old Connection's close into "failed": follow the new.
    monitor = ice._RTCIceTransport__monitor_task
    if monitor is not None:
        monitor.cancel()
    ice._RTCIceTransport__monitor_task = asyncio.ensure_future(ice._monitor())
    # The peer may send on the old pair a moment longer (it nominates on its own clock): what
    # the old Connection holds and what reaches it later join the new one's queue, oldest
    # first, until it closes OLD_PAIR_GRACE_S later.
    queued = _drain(old._queue) + _drain(new._queue)
    for item in queued:
        new._queue.put_nowait(item)
    old.data_received = new.data_received  # type: ignore[method-assign]
    # A read may wait on the old Connection's queue (begun before the switch was installed):
    # a datagram whose first byte is 0 wakes it and RTCDtlsTransport ignores it (RFC 7983 §7:
    # 0..3 is STUN, which it does not handle), so the next read goes to the new Connection.
    old._queue.put_nowait((b"\x00", 1))
    switch.retiring.add(old)
    asyncio.get_running_loop().call_later(OLD_PAIR_GRACE_S, _retire_later, switch, old)
    return True


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        if (item := queue.get_nowait()) is not None:
            items.append(item)
    return items


def _retire_later(switch: _IceSwitch, old: aioice.ice.Connection) -> None:
    if old in switch.retiring:
        switch.retiring.discard(old)
        switch.closing.add(task := asyncio.ensure_future(old.close()))
        task.add_done_callback(switch.closing.discard)


async def _drop_pending(switch: _IceSwitch) -> None:
    new, task = switch.pending, switch.task
    switch.pending, switch.task = None, None
    if task is not None:
        task.cancel()
    if new is not None:
        await new.close()
    switch.ice.iceGatherer._connection = switch.ice._connection = switch.current


async def abandon_ice_restart(pc: Any) -> None:
    """Drop a restart ``begin_ice_restart`` began (its description was refused): the next
    descriptions carry the current credentials again."""
    for ice in _ice_transports(pc):
        if (switch := getattr(ice, "_switchboard_ice_switch", None)) is not None:
            await _drop_pending(switch)


def ice_restarts(pc: Any) -> int:
    """How many ICE restarts of ``pc`` completed (a new pair carries the data)."""
    return sum(
        s.restarts
        for ice in _ice_transports(pc)
        if (s := getattr(ice, "_switchboard_ice_switch", None)) is not None
    )


def ice_idle_s(pc: Any) -> float | None:
    """Seconds since ``pc`` last received a datagram through ICE (DTLS, SRTP, SRTCP; not
    STUN); None before the first ICE restart hook or ``watch_ice`` installed the switch."""
    switches = [
        s
        for ice in _ice_transports(pc)
        if (s := getattr(ice, "_switchboard_ice_switch", None)) is not None
    ]
    if not switches:
        return None
    return asyncio.get_running_loop().time() - max(s.last_rx for s in switches)


def watch_ice(pc: Any) -> None:
    """Install the switch on ``pc``'s ICE transports now, so that ``ice_idle_s`` counts from
    here (call once connected)."""
    for ice in _ice_transports(pc):
        _switch(ice)


def blackhole_ice(pc: Any) -> None:
    """Fault injection: the sockets of ``pc``'s current ICE pairs drop every datagram in and
    out, as when the network under a peer changes. A restart gathers new sockets."""
    for ice in _ice_transports(pc):
        for protocol in _switch(ice).current._protocols:

            async def no_data(data: bytes, addr: tuple[str, int]) -> None:
                return None

            protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
            protocol.send_stun = lambda message, addr: None  # type: ignore[method-assign]
            protocol.send_data = no_data  # type: ignore[method-assign]


# --- Simulcast (RFC 8853) and REMB: the hooks a simulcast Producer and its Consumers need ---
#
# aiortc 1.16 parses no ``a=rid``/``a=simulcast`` (sdp_simulcast.py reads and answers them as
# text) and negotiates only MID and abs-send-time for video, so a browser would never tag its
# layers. ``accept_rid_extensions`` negotiates the RID extensions (RFC 8852 §3.3), so that the
# transport parses ``rtp_stream_id``/``repaired_rtp_stream_id`` from each packet. With three
# SSRCs on one receiver, aiortc's RtpRouter routes the unknown SSRCs by payload type (one
# receiver per payload type) or, with ``route_by_mid``, by the MID extension; its
# StreamStatistics are per SSRC, so its Receiver Reports and LSR/DLSR cover every layer, and its
# REMB estimator sees all of them; only its one jitter buffer would choke on interleaved
# sequence spaces (resets and PLIs): ``skip_jitter_buffer`` removes it from a publish receiver
# (the SFU never decodes). ``unclamp_remb`` lets the REMB to the publisher exceed 1.5x what it
# sends (aiortc has no probe detection: the top layer would never start). ``tap_remb`` reads a
# subscriber's REMB (draft-alvestrand-rmcat-remb §2.2) on a forwarding sender;
# ``cap_sent_remb`` is client-side fault injection for tests.

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def accept_rid_extensions(transceiver: RTCRtpTransceiver, offered_ids: dict[str, int]) -> None:
    """Negotiate the RID header extensions the offer announced (``offered_ids``: URI → id, its
    ``a=extmap`` values). Call between ``setRemoteDescription(offer)`` and ``createAnswer``:
    the answer's ``a=extmap`` then lists them and the receiver parses them (RFC 8852 §3.3)."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

    extensions: list[RTCRtpHeaderExtensionParameters] = transceiver._headerExtensions
    for uri in (RID_URI, REPAIRED_RID_URI):
        if uri in offered_ids and not any(e.uri == uri for e in extensions):
            extensions.append(RTCRtpHeaderExtensionParameters(id=offered_ids[uri], uri=uri))


class _NoJitterBuffer:
    """Stands in for aiortc's JitterBuffer: assembles no frame, asks for no key frame."""

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        return False, None


def skip_jitter_buffer(receiver: RTCRtpReceiver) -> None:
    """Stop ``receiver`` assembling frames (its decoder is stopped, ``ReceiveTap(decode=False)``):
    aiortc keeps one jitter buffer per receiver, and the interleaved sequence numbers of several
    SSRCs would make it reset and send PLIs. Statistics, RR and REMB are unaffected."""
    receiver._RTCRtpReceiver__jitter_buffer = _NoJitterBuffer()  # type: ignore[attr-defined]


def route_by_mid(
    receiver: RTCRtpReceiver, admit: Callable[[RtpPacket], bool] | None = None
) -> None:
    """Let the receiver's DTLS transport route an RTP packet of an unknown SSRC by its MID
    header extension (RFC 8843 §9.2) before aiortc's payload-type fallback, which drops it
    when two m-sections share the payload type (two simulcast video tracks, whose SSRCs the
    offer does not list). Installed once per transport; the SSRC is then remembered.

    With ``admit``, a packet of an SSRC new to the transport that would reach ``receiver`` (by
    MID or payload type) gets there only if ``admit(packet)``: aiortc keeps state per SSRC a
    receiver sees (statistics, one Receiver Report block each: past 255 its RTCP task dies on
    packing them) and never drops it, so made-up SSRCs must be refused before."""
    router = receiver.transport._rtp_router
    admits: dict[Any, Callable[[RtpPacket], bool]] | None = getattr(
        router, "_switchboard_admit", None
    )
    if admits is None:
        admits = router._switchboard_admit = {}  # type: ignore[attr-defined]
        route = router.route_rtp
        table = router.ssrc_table

        def route_rtp(packet: RtpPacket) -> Any:
            if packet.ssrc in table:
                return route(packet)
            mid = packet.extensions.mid
            found = router.mid_table.get(mid) if mid is not None else None
            if found is not None:
                table[packet.ssrc] = found
            target = route(packet)
            check = admits.get(target) if target is not None else None
            if check is not None and not check(packet):
                table.pop(packet.ssrc, None)
                return None
            return target

        router.route_rtp = route_rtp  # type: ignore[method-assign]
    if admit is not None:
        admits[receiver] = admit


def forget_ssrc(receiver: RTCRtpReceiver, ssrc: int) -> None:
    """Drop what ``receiver``'s transport and aiortc's receive bookkeeping keep for ``ssrc``
    (a simulcast layer's SSRC the publisher replaced): routing, statistics, Receiver Report
    block, the last SR time, the REMB estimator's SSRC list. A later packet of it is routed
    afresh (``route_by_mid``'s ``admit``)."""
    private: Any = receiver
    router = receiver.transport._rtp_router
    if router.ssrc_table.get(ssrc) is receiver:
        del router.ssrc_table[ssrc]
    for name in ("remote_streams", "active_ssrc", "lsr", "lsr_time"):
        getattr(private, f"_RTCRtpReceiver__{name}").pop(ssrc, None)
    estimator = private._RTCRtpReceiver__remote_bitrate_estimator
    if estimator is not None:
        estimator.ssrcs.pop(ssrc, None)


def tap_remb(sender: RTCRtpSender, on_remb: Callable[[int, tuple[int, ...]], None]) -> None:
    """Call ``on_remb(bitrate_bps, ssrcs)`` for each REMB (PSFB FMT 15, draft-alvestrand-rmcat-
    remb §2.2) routed to ``sender`` (aiortc routes one to every sender whose SSRC it lists, and
    to the one its media SSRC names), then let aiortc have it. ``ssrcs`` keeps only the SSRCs
    the sender's transport sends media on; a REMB that does not list ``sender``'s is not for
    it, and a malformed FCI is ignored: made-up SSRCs cannot make the caller keep an estimate
    per made-up source."""
    from aiortc.rtp import RTCP_PSFB_APP, unpack_remb_fci

    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, listed = unpack_remb_fci(packet.fci)
            except Exception:  # a short FCI: struct.error or ValueError
                bitrate = None
            if bitrate is not None and sender._ssrc in listed:
                senders = sender.transport._rtp_router.senders
                ssrcs = [s for s in dict.fromkeys(listed) if s in senders]
                try:
                    on_remb(bitrate, tuple(ssrcs))
                except Exception:
                    log.exception("REMB tap failed")
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def _drop_truncated_remb() -> None:
    """Make every transport drop a REMB whose FCI names more SSRCs than it holds, before it is
    routed. aiortc's ``unpack_remb_fci`` then raises struct.error, which neither its RTCP
    router nor its senders catch (only ValueError): one such packet from a peer ended the
    receive loop of its DTLS transport, so the whole peer connection. Process-wide, installed
    at import."""
    from aiortc.rtcdtlstransport import RtpRouter
    from aiortc.rtp import RTCP_PSFB_APP, unpack_remb_fci

    route = RtpRouter.route_rtcp
    if getattr(route, "_switchboard_guard", False):
        return

    def route_rtcp(self: RtpRouter, packet: Any) -> Any:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                unpack_remb_fci(packet.fci)
            except ValueError:
                pass  # not a REMB: aiortc ignores it
            except struct.error:
                log.debug("dropped a REMB with a truncated SSRC list")
                return set()
        return route(self, packet)

    route_rtcp._switchboard_guard = True  # type: ignore[attr-defined]
    RtpRouter.route_rtcp = route_rtcp  # type: ignore[method-assign]


_drop_truncated_remb()


def cap_sent_remb(receiver: RTCRtpReceiver, cap_bps: Callable[[], int | None]) -> None:
    """Fault injection: every REMB ``receiver`` sends carries at most ``cap_bps()`` bps (None:
    no cap), as if the path to it were that narrow. Tests use it on a subscriber."""
    from aiortc.rtp import RTCP_PSFB_APP, pack_remb_fci, unpack_remb_fci

    send = receiver._send_rtcp

    async def send_rtcp(packet: Any) -> None:
        cap = cap_bps()
        if cap is not None and isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
            packet = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=packet.ssrc,
                media_ssrc=packet.media_ssrc,
                fci=pack_remb_fci(min(bitrate, cap), ssrcs),
            )
        await send(packet)

    receiver._send_rtcp = send_rtcp  # type: ignore[method-assign]


def unclamp_remb(receiver: RTCRtpReceiver, ceiling_bps: int, start_bps: int | None = None) -> None:
    """Let the REMB ``receiver`` sends a publisher rise above 1.5x what it receives, up to
    ``ceiling_bps``. aiortc's AIMD rate control (libwebrtc's, without its probe detection)
    caps its estimate at 1.5x the incoming rate: a sender whose top simulcast layer needs
    more than half again what the lower layers send would never be allowed to start it. The
    estimate still grows only 8 %/s and falls to 0.85x the throughput on overuse. With
    ``start_bps`` the first REMB says that much, instead of none before 3 s of traffic."""
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
    if estimator is None:
        return
    control = estimator.rate_control
    if start_bps is not None:
        control.current_bitrate = start_bps
        control.current_bitrate_initialized = True

    def clamp(new_bitrate: int, estimated_throughput: int) -> int:
        return min(new_bitrate, ceiling_bps)

    control._clamp_bitrate = clamp
