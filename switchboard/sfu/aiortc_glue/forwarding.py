"""The subscribe side: ``ForwardingSender`` sends forwarded RTP through an aiortc ``RTCRtpSender``.

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
import aioice.turn
import pylibsrtp
from aiortc import MediaStreamTrack, RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTP_HISTORY_SIZE,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from .ice_restart import _IceSwitch
from .ssrc_guard import guard_rtcp_streams


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
                # Generic NACK: RTPFB FMT 1 (RFC 4585 §6.2.1). aiortc adds BLP bits to the PID
                # without wrapping (65535 + bit 0 gives 65536): numbers are mod 2^16.
                on_nack([seq & 0xFFFF for seq in packet.lost])
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
        guard_rtcp_streams(transport)  # a subscriber's RTCP from made-up SSRCs: bounded state
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


def tap_key_frame_requests(sender: RTCRtpSender, on_request: Callable[[], None]) -> None:
    """Call ``on_request`` each time an aiortc sender is asked for a key frame (it got a PLI
    or FIR); the sender still honours the request. Tests use it on a publisher."""
    send_keyframe = sender._send_keyframe

    def requested() -> None:
        on_request()
        send_keyframe()

    sender._send_keyframe = requested  # type: ignore[method-assign]
