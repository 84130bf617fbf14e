"""Bounded SSRCs on the publish side: made-up SSRCs leave no state in aiortc or libsrtp.

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals.

aiortc's ``RtpRouter.route_rtp`` learns every unknown SSRC whose payload type matches one
receiver, and the receiver keeps statistics, an active-SSRC entry, a REMB estimator entry and a
Receiver Report block per SSRC (past 31 blocks its RR is malformed, past 255 its RTCP task dies
packing them); libsrtp keeps a stream (about 200 bytes) per SSRC it unprotected. A publisher
sending RTP on ever new SSRCs would grow all of them without bound. ``SsrcLatch`` is the rule
for one stream of one receiver, ``guard_transport`` the hooks that apply it before aiortc keeps
anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from .simulcast import forget_ssrc, route_by_mid

log = logging.getLogger(__name__)

SSRC_SILENCE_MS = 1000.0
RTCP_SSRCS_FREE = 16  # RTCP sender SSRCs a transport keeps libsrtp streams for, besides its own

rtcp_streams_forgotten = 0
"""libsrtp streams dropped by ``guard_rtcp_streams`` (all transports of the process)."""


class SsrcLatch:
    """Which SSRC one stream (a track's media, or its RTX) is on now.

    The first SSRC offered is taken; another is taken in its place only once the current one
    has been silent for ``silence_ms`` (default ``SSRC_SILENCE_MS``, 1 s), and ``replaced``
    then holds the old one. A real sender has one SSRC per stream at a time, and one that
    changes it (a collision, RFC 3550 §8.2, or a renegotiation) stops the old one: it loses
    at most ``silence_ms`` of the new one. Media packets come every 20-33 ms (audio, video),
    even muted (silence and black frames; Opus DTX every 400 ms), so while the real stream
    flows no made-up SSRC is ever taken. An RTX stream is bursty (only on NACKs): a made-up
    RTX SSRC can take its place between bursts, which harms only the publisher's own repair.
    Times are monotonic milliseconds.
    """

    __slots__ = ("ssrc", "last_ms", "silence_ms", "replaced")

    def __init__(self, silence_ms: float = SSRC_SILENCE_MS) -> None:
        self.ssrc: int | None = None
        self.last_ms = 0.0
        self.silence_ms = silence_ms
        self.replaced: int | None = None

    def offer(self, ssrc: int, now_ms: float) -> bool:
        """Whether a packet of ``ssrc`` arriving at ``now_ms`` belongs to this stream; it may
        make ``ssrc`` the current SSRC (``replaced`` says which one it replaced, else None)."""
        self.replaced = None
        if ssrc != self.ssrc:
            if self.ssrc is not None and now_ms - self.last_ms < self.silence_ms:
                return False
            self.replaced, self.ssrc = self.ssrc, ssrc
        self.last_ms = now_ms
        return True

    def reset(self) -> int | None:
        """Forget the current SSRC (the next one offered is taken); return it."""
        old, self.ssrc, self.replaced = self.ssrc, None, None
        return old


def guard_transport(receiver: RTCRtpReceiver, admit: Callable[[RtpPacket], bool]) -> None:
    """Admit a packet of an SSRC new to ``receiver``'s DTLS transport only if ``admit(packet)``
    (``route_by_mid``'s hook: aiortc then keeps nothing for a refused one), and make the
    transport drop libsrtp's stream of every SSRC it routes nowhere and does not know (refused,
    or of a payload type no receiver has), so that libsrtp keeps no state for made-up SSRCs
    either. Dropping that stream also drops its replay window, harmless for packets that are
    all dropped. Installed once per transport."""
    route_by_mid(receiver, admit)
    dtls: Any = receiver.transport
    router = dtls._rtp_router
    if getattr(router, "_switchboard_srtp_guard", False):
        return
    router._switchboard_srtp_guard = True
    route = router.route_rtp  # route_by_mid's, installed just above: this one is outermost
    table = router.ssrc_table

    def route_rtp(packet: RtpPacket) -> Any:
        target = route(packet)
        if target is None and packet.ssrc not in table:
            forget_srtp_stream(dtls, packet.ssrc)
        return target

    router.route_rtp = route_rtp
    guard_rtcp_streams(dtls)


def guard_rtcp_streams(dtls: Any) -> None:
    """Bound the libsrtp streams SRTCP makes ``dtls`` (an ``RTCDtlsTransport``) keep.

    libsrtp keeps a stream for the sender SSRC of every SRTCP packet it authenticates (RFC 3711
    §3.4), so a peer sending RTCP from ever new SSRCs would grow them without bound. A real peer
    sends RTCP from its RTP SSRCs (Sender Reports) and a few receiver SSRCs (RR, NACK, PLI,
    REMB): the first ``RTCP_SSRCS_FREE`` SSRCs not known as RTP SSRCs, plus two per receiver
    and sender on the transport, keep their stream; past that, an unknown SSRC's stream is
    dropped once its packet is unprotected (the packet is still handled; that SSRC's replay
    window starts again with its next packet) and counted in ``rtcp_streams_forgotten``.
    Installed once per transport."""
    if getattr(dtls, "_switchboard_rtcp_guard", False):
        return
    dtls._switchboard_rtcp_guard = True
    handle = dtls._handle_rtcp_data
    router = dtls._rtp_router
    kept: set[int] = set()

    async def handle_rtcp_data(data: bytes) -> None:
        global rtcp_streams_forgotten
        if len(data) >= 8:  # the first packet's sender SSRC (RFC 3550 §6.4.1, §6.4.2)
            ssrc = int.from_bytes(data[4:8], "big")
            if ssrc not in kept and ssrc not in router.ssrc_table:
                if len(kept) < RTCP_SSRCS_FREE + 2 * (len(router.receivers) + len(router.senders)):
                    kept.add(ssrc)
                else:
                    forget_srtp_stream(dtls, ssrc)
                    rtcp_streams_forgotten += 1
        await handle(data)

    dtls._handle_rtcp_data = handle_rtcp_data


def forget_srtp_stream(dtls: Any, ssrc: int) -> None:
    """Drop the libsrtp receive stream ``dtls`` (an ``RTCDtlsTransport``) keeps for ``ssrc``;
    a later packet of it starts a new one."""
    session = dtls._rx_srtp
    if session is not None:
        try:
            session.remove_stream(ssrc)
        except pylibsrtp.Error:
            pass  # none for it


def forget_receiver_ssrc(receiver: RTCRtpReceiver, ssrc: int) -> None:
    """``forget_ssrc`` (routing and aiortc's receive bookkeeping) and libsrtp's stream."""
    forget_ssrc(receiver, ssrc)
    forget_srtp_stream(receiver.transport, ssrc)
