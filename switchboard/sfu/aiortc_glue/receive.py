"""The publish side: see the RTP and RTCP an aiortc ``RTCRtpReceiver`` gets, send NACK and PLI.

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver, clock
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unwrap_rtx,
)

log = logging.getLogger(__name__)
RtpCallback = Callable[[RtpPacket], Awaitable[bool | None]]


class ReceiveTap:
    """Hands every RTP packet one ``RTCRtpReceiver`` gets to ``on_rtp`` and stops its decoder.

    ``on_rtp`` sees the packet as parsed by aiortc after SRTP (RTX still wrapped) before aiortc's
    own bookkeeping (statistics for RR, NACK generation, REMB); it must not keep the object
    beyond the call if it mutates it. When it returns False the packet is dropped there:
    aiortc's bookkeeping never sees it, so keeps no per-SSRC state for it. With
    ``decode=False`` the decoder thread is stopped once the receiver starts, so no frame is
    ever decoded (the SFU's publish side), and aiortc's per-packet work behind the tap is cut
    to its bookkeeping (``_receive_bookkeeping``: no depayloading, no jitter buffer).
    """

    def __init__(self, receiver: RTCRtpReceiver, on_rtp: RtpCallback, decode: bool) -> None:
        handle: Callable[[RtpPacket, int], Awaitable[None]] = receiver._handle_rtp_packet
        if not decode and "_handle_rtp_packet" not in receiver.__dict__:  # aiortc's own
            handle = _receive_bookkeeping(receiver)
        receive = receiver.receive

        async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            try:
                if await on_rtp(packet) is False:
                    return
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
