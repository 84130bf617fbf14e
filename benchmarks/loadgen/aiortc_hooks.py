"""The load generator's only hooks into aiortc internals (aiortc 1.16.0), kept out of
``switchboard/``: they serve the benchmark, not the product.

* ``count_received_rtp``: a subscriber's DTLS transport hands each RTP packet, right after
  SRTP ``unprotect``, to a callback instead of parsing and routing it: no ``RtpPacket``, no
  jitter buffer, no decoder, no RTCP receiver reports. The packet counting costs a few µs.
* ``tap_sent_rtp``: a publisher's DTLS transport shows each RTP packet to a callback just
  before SRTP ``protect`` (the send time for the latency figure), after holding it in a
  ``pacer.Pacer`` if given (aiortc's senders await the send, so a paced packet holds back
  its sender's next ones, as a pacer's queue would).

Both see raw RTP bytes; ``payload_key`` finds the payload (RFC 3550 §5.1: CSRCs, then the
RFC 8285 extension block) and returns it as the key that matches a packet through an SFU,
which rewrites SSRC, sequence number and extensions but never the payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from .pacer import Pacer, paced_send


def payload_key(data: bytes) -> tuple[int, bytes]:
    """``(payload type, payload)`` of a plain RTP packet (after SRTP)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:  # header extension: 4-byte header, then length in 32-bit words
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if data[0] & 0x20:  # padding: the last byte says how much
        end -= data[-1]
    return data[1] & 0x7F, data[offset:end]


def _dtls_transport(pc: RTCPeerConnection) -> Any:
    transceivers = pc.getTransceivers()
    if not transceivers:
        raise RuntimeError("no transceiver yet: hook after setRemoteDescription/addTransceiver")
    return transceivers[0].receiver.transport  # one transport: the peers bundle everything


def count_received_rtp(pc: RTCPeerConnection, on_rtp: Callable[[bytes], None]) -> None:
    """After this, every RTP packet ``pc`` receives goes to ``on_rtp(plain_rtp_bytes)`` and no
    further (RTCP still goes to aiortc). Idempotent per transport."""
    transport = _dtls_transport(pc)
    if getattr(transport, "_loadgen_counting", False):
        return

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        on_rtp(data)

    transport._handle_rtp_data = handle_rtp_data
    transport._loadgen_counting = True


def tap_sent_rtp(
    pc: RTCPeerConnection, on_rtp: Callable[[bytes], None], pacer: Pacer | None = None
) -> None:
    """Call ``on_rtp(plain_rtp_bytes)`` for each RTP packet ``pc`` sends, before SRTP; with
    ``pacer``, each packet first waits its turn, and ``on_rtp`` sees it when it leaves."""
    transport = _dtls_transport(pc)
    send = transport._send_rtp
    if pacer is not None:
        transport._send_rtp = paced_send(send, pacer, on_rtp)
        return

    async def send_rtp(data: bytes) -> None:
        if not 192 <= data[1] <= 223:  # RTCP packet types 192..223 (RFC 5761 §4)
            on_rtp(data)
        await send(data)

    transport._send_rtp = send_rtp
