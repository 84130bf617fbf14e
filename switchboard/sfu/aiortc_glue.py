"""The only module that touches aiortc's and aioice's internals.

aiortc does ICE, DTLS, SRTP and SDP; Switchboard routes RTP above them. aiortc's public API
decodes what it receives and encodes what it sends, so forwarding needs these hooks, all here:

* ``use_host_addresses``: which local addresses aioice gathers host candidates on (aioice
  skips loopback and offers no option).
* ``use_udp_port_range``: which UDP ports those host candidates bind to (aioice binds port 0).
* ``use_turn_tls_context``: the TLS context for ``turns:`` servers (aioice passes ``ssl=True``,
  the system's trust store: a self-signed coturn certificate needs its own context).
* ``ReceiveTap``: see every RTP packet a ``RTCRtpReceiver`` gets, after SRTP, and stop its
  decoder thread; aiortc's receive statistics, RTCP RR, NACK generation and REMB keep working.
* ``ForwardingSender``: send prepared RTP through a ``RTCRtpSender`` (its SSRC, payload type,
  MID and header-extension ids, SRTP), so that aiortc's own NACK/RTX answers (RFC 4588) and
  Sender Reports (RFC 3550 §6.4.1) cover what we forwarded; intercept its PLI/FIR.
* ``tap_sent_rtp``: see RTP a DTLS transport sends before SRTP (tests compare payloads).
* ``tap_rtcp``: see the RTCP a ``RTCRtpReceiver`` gets (the publisher's Sender Reports).
* ``send_nack`` and ``disable_nack_generator``: the SFU's own Generic NACKs (RFC 4585
  §6.2.1) to a publisher replace aiortc's, which NACK each gap once and never again.
* ``drop_received_rtp`` and ``drop_sent_rtp``: fault injection for tests (packet loss).
* ``send_pli``: ask a publisher for a key frame (RFC 4585 §6.3.1) on its receiver's RTCP SSRC.
* ``negotiated_codecs``: what a transceiver negotiated (aiortc keeps it private).
* ``spread_bundle_candidates``: aiortc reads a bundle's remote candidates from its last
  m-section only; browsers put them on the first.

``tests/unit/sfu/test_aiortc_glue.py`` fails if aiortc changes under any of them; aiortc's version
is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aioice.ice
import aioice.turn
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
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


class ReceiveTap:
    """Hands every RTP packet one ``RTCRtpReceiver`` gets to ``on_rtp`` and stops its decoder.

    ``on_rtp`` sees the packet as parsed by aiortc after SRTP (RTX still wrapped) before aiortc's
    own bookkeeping (statistics for RR, NACK generation, REMB); it must not keep the object
    beyond the call if it mutates it. With ``decode=False`` the decoder thread is stopped once
    the receiver starts, so no frame is ever decoded (the SFU's publish side); the jitter buffer
    still assembles frames, which costs parsing only.
    """

    def __init__(self, receiver: RTCRtpReceiver, on_rtp: RtpCallback, decode: bool) -> None:
        handle = receiver._handle_rtp_packet
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
    """Send one Generic NACK (RFC 4585 §6.2.1) for the 16-bit sequence numbers ``lost`` of
    ``media_ssrc`` to the publisher, from the receiver's RTCP SSRC."""
    if lost:
        await receiver._send_rtcp_nack(media_ssrc, lost)


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
    for which ``drop(packet)`` is true are not sent. One per transport, as ``tap_sent_rtp``."""
    transport = sender.transport
    send = transport._send_rtp

    async def send_rtp(data: bytes) -> None:
        if 192 <= data[1] <= 223 or not drop(
            RtpPacket.parse(data, transport._rtp_header_extensions_map)
        ):
            await send(data)

    transport._send_rtp = send_rtp  # type: ignore[method-assign]


def tap_sent_rtp(sender: RTCRtpSender, on_rtp: Callable[[RtpPacket], None]) -> None:
    """Call ``on_rtp`` with each RTP (not RTCP) packet the sender's DTLS transport sends, before
    SRTP. One tap per transport: the transport is shared by every sender of a bundle."""
    transport = sender.transport
    send = transport._send_rtp

    async def send_rtp(data: bytes) -> None:
        if not (192 <= data[1] <= 223):  # RTCP packet types 192..223 (RFC 5761 §4)
            on_rtp(RtpPacket.parse(data, transport._rtp_header_extensions_map))
        await send(data)

    transport._send_rtp = send_rtp  # type: ignore[method-assign]


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
    """

    __slots__ = (
        "_sender",
        "_transport",
        "_ext_map",
        "_mid",
        "payload_type",
        "ssrc",
        "started",
        "sr_mapping",
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
        self.payload_type = 0
        self.ssrc: int = sender._ssrc
        self.started = False
        sender._stream_id = stream_id
        send = sender.send
        handle_rtcp = sender._handle_rtcp_packet

        async def start(parameters: RTCRtpSendParameters) -> None:
            await send(parameters)
            payload_type = parameters.codecs[0].payloadType if parameters.codecs else None
            if not self.started and payload_type is not None:
                self.payload_type = payload_type
                self._mid = parameters.muxId
                self._transport = sender.transport
                self.started = True
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

    async def send(self, packet: RtpPacket, seq: int, ts: int, audio_level: Any = None) -> None:
        """Send ``packet``'s payload and marker with our SSRC/PT and the given 16-bit ``seq`` and
        32-bit RTP ``ts``; header extensions are rewritten to the subscriber's ids (RFC 8285):
        MID, abs-send-time and, for audio, the level (RFC 6464). Raises ConnectionError when the
        transport is not connected."""
        now_ntp = clock.current_ntp_time()  # one clock read per packet: abs-send-time and SR
        out = self._rewrite(packet, seq, ts, audio_level, now_ntp)
        sender = self._sender
        sender._RTCRtpSender__rtp_history[seq % RTP_HISTORY_SIZE] = out  # type: ignore[attr-defined]
        await self._transport._send_rtp(out.serialize(self._ext_map))
        # What aiortc's Sender Reports (RFC 3550 §6.4.1) and getStats() read.
        ntp, rtp_ts = (now_ntp, ts) if self.sr_mapping is None else self.sr_mapping
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = rtp_ts  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]

    async def resend(self, packet: RtpPacket, seq: int, ts: int, audio_level: Any = None) -> None:
        """Retransmit ``packet`` as ``seq``/``ts`` (as ``send`` rewrites it): as RTX on the
        negotiated RTX payload type and SSRC (RFC 4588 §4), else as the original packet."""
        sender = self._sender
        sender._RTCRtpSender__rtp_history[seq % RTP_HISTORY_SIZE] = self._rewrite(  # type: ignore[attr-defined]
            packet, seq, ts, audio_level, clock.current_ntp_time()
        )
        await sender._retransmit(seq)

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
