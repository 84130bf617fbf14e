"""Simulcast (RFC 8853) and REMB hooks for simulcast Producers and their Consumers.

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
)

log = logging.getLogger(__name__)

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
    from aiortc.rtp import unpack_remb_fci

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
    from aiortc.rtp import unpack_remb_fci

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
    from aiortc.rtp import unpack_remb_fci

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
