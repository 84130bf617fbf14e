"""RtpPacketCache: the packets one Producer received, kept for retransmission."""

from __future__ import annotations

from collections import deque

from aiortc.rtp import RtpPacket


class RtpPacketCache:
    """A bounded cache of one Producer stream's packets, by extended sequence number.

    One instance per Producer (shared by all its Consumers: the packet object is stored
    once, each Consumer rewrites its own copy on resend). It answers subscribers' Generic
    NACKs (RFC 4585 §6.2.1), as RTX (RFC 4588 §4) where the subscriber negotiated it.
    Bounds: packets older than ``max_age_ms`` (by arrival time, default 3000 ms: a few
    seconds of video, longer than any useful retransmission) and beyond ``max_packets``
    (default 4096, about 4 s of 5 Mbit/s video) are evicted, oldest first.
    Inputs are extended sequence numbers (``SeqUnwrapper``), so wraparound is not a concern.
    """

    __slots__ = ("max_age_ms", "max_packets", "_packets", "_arrivals", "hits", "misses")

    def __init__(self, max_age_ms: float = 3000.0, max_packets: int = 4096) -> None:
        self.max_age_ms = max_age_ms
        self.max_packets = max_packets
        self._packets: dict[int, RtpPacket] = {}
        # (arrival ms, ext seq) in arrival order: O(1) to find and drop the oldest
        self._arrivals: deque[tuple[float, int]] = deque()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._packets)

    def add(self, ext_seq: int, packet: RtpPacket, now_ms: float) -> None:
        """Keep ``packet`` (arrived at ``now_ms``, never earlier than the previous call's);
        evicts what is too old or too many, oldest arrival first."""
        packets = self._packets
        if ext_seq in packets:
            return  # a retransmission of what we have: keep the first
        packets[ext_seq] = packet
        arrivals = self._arrivals
        arrivals.append((now_ms, ext_seq))
        horizon = now_ms - self.max_age_ms
        while arrivals and (arrivals[0][0] < horizon or len(arrivals) > self.max_packets):
            del packets[arrivals.popleft()[1]]

    def get(self, ext_seq: int) -> RtpPacket | None:
        """The cached packet ``ext_seq``, or None (never received, or evicted)."""
        packet = self._packets.get(ext_seq)
        if packet is None:
            self.misses += 1
            return None
        self.hits += 1
        return packet
