"""The only package that touches aiortc's and aioice's internals.

aiortc does ICE, DTLS, SRTP and SDP; Switchboard routes RTP above them. aiortc's public API
decodes what it receives and encodes what it sends, so forwarding needs these hooks, all in
this package, one module a job: ``network`` (ICE gathering addresses and ports, TURN over TLS,
first-byte demultiplexing), ``receive`` (the publish side), ``forwarding`` (the subscribe
side), ``sdp``, ``ice_restart`` and ``simulcast``. Import them from the package:

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
* Simulcast (``simulcast``): ``accept_rid_extensions``, ``skip_jitter_buffer``,
  ``route_by_mid`` (which admits only SSRCs the Producer can place), ``forget_ssrc``,
  ``unclamp_remb`` on the publish side; ``tap_remb`` on forwarding senders;
  ``cap_sent_remb`` (fault injection); process-wide, a REMB with a truncated SSRC list is
  dropped before aiortc's router (whose struct.error ended the peer connection).
* ``SsrcLatch``, ``guard_transport``, ``forget_receiver_ssrc`` (``ssrc_guard``): a non-simulcast
  Producer takes one media and one RTX SSRC at a time; a packet of any other SSRC is refused
  before aiortc keeps per-SSRC state for it, and libsrtp's stream of an SSRC routed nowhere is
  dropped (made-up SSRCs grew both without bound and broke the publisher's RTCP);
  ``guard_rtcp_streams`` bounds the libsrtp streams SRTCP from made-up sender SSRCs leaves,
  on every server transport (publish and subscribe).
* ``begin_ice_restart``, ``finish_ice_restart`` (and ``is_ice_restart``, ``blackhole_ice``...):
  ICE restart (RFC 8445 §9), which aiortc lacks: a new aioice Connection under the same
  RTCIceTransport and DTLS transport (``ice_restart``).

``tests/unit/sfu/test_aiortc_glue.py`` fails if aiortc changes under any of them; aiortc's version
is pinned in ``pyproject.toml``.
"""

from .forwarding import (
    ForwardingSender,
    HoldTrack,
    drop_sent_rtp,
    tap_key_frame_requests,
    tap_sent_rtp,
)
from .ice_restart import (
    OLD_PAIR_GRACE_S,
    IceRestartError,
    abandon_ice_restart,
    begin_ice_restart,
    blackhole_ice,
    finish_ice_restart,
    ice_credentials,
    ice_idle_s,
    ice_restart_pending,
    ice_restarts,
    is_ice_restart,
    watch_ice,
)
from .network import last_turn_error, use_host_addresses, use_turn_tls_context, use_udp_port_range
from .receive import (
    ReceiveTap,
    RtpCallback,
    disable_nack_generator,
    drop_received_rtp,
    send_nack,
    send_pli,
    tap_rtcp,
)
from .sdp import negotiated_codecs, spread_bundle_candidates
from .simulcast import (
    REPAIRED_RID_URI,
    RID_URI,
    accept_rid_extensions,
    cap_sent_remb,
    forget_ssrc,
    route_by_mid,
    skip_jitter_buffer,
    tap_remb,
    unclamp_remb,
)
from .ssrc_guard import (
    SSRC_SILENCE_MS,
    SsrcLatch,
    forget_receiver_ssrc,
    forget_srtp_stream,
    guard_rtcp_streams,
    guard_transport,
)

__all__ = [
    "ForwardingSender",
    "HoldTrack",
    "IceRestartError",
    "OLD_PAIR_GRACE_S",
    "REPAIRED_RID_URI",
    "SSRC_SILENCE_MS",
    "SsrcLatch",
    "RID_URI",
    "ReceiveTap",
    "RtpCallback",
    "abandon_ice_restart",
    "accept_rid_extensions",
    "begin_ice_restart",
    "blackhole_ice",
    "cap_sent_remb",
    "disable_nack_generator",
    "drop_received_rtp",
    "drop_sent_rtp",
    "finish_ice_restart",
    "forget_receiver_ssrc",
    "forget_srtp_stream",
    "forget_ssrc",
    "guard_rtcp_streams",
    "guard_transport",
    "ice_credentials",
    "ice_idle_s",
    "ice_restart_pending",
    "ice_restarts",
    "is_ice_restart",
    "last_turn_error",
    "negotiated_codecs",
    "route_by_mid",
    "send_nack",
    "send_pli",
    "skip_jitter_buffer",
    "spread_bundle_candidates",
    "tap_key_frame_requests",
    "tap_remb",
    "tap_rtcp",
    "tap_sent_rtp",
    "unclamp_remb",
    "use_host_addresses",
    "use_turn_tls_context",
    "use_udp_port_range",
    "watch_ice",
]
