"""RtpPacketCache: the packets one Producer received, kept for retransmission."""

from __future__ import annotations

from collections import OrderedDict

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

    __slots__ = ("max_age_ms", "max_packets", "_packets", "hits", "misses")

    def __init__(self, max_age_ms: float = 3000.0, max_packets: int = 4096) -> None:
        self.max_age_ms = max_age_ms
        self.max_packets = max_packets
        self._packets: OrderedDict[int, tuple[float, RtpPacket]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._packets)

    def add(self, ext_seq: int, packet: RtpPacket, now_ms: float) -> None:
        """Keep ``packet`` (arrived at ``now_ms``); evicts what is too old or too many."""
        packets = self._packets
        if ext_seq in packets:
            return  # a retransmission of what we have: keep the first
        packets[ext_seq] = (now_ms, packet)
        if packets and next(reversed(packets)) != ext_seq:
            packets.move_to_end(ext_seq)  # arrival order; a late packet is as new as any
        horizon = now_ms - self.max_age_ms
        while packets:
            oldest_seq, (arrived_ms, _) = next(iter(packets.items()))
            if arrived_ms >= horizon and len(packets) <= self.max_packets:
                break
            del packets[oldest_seq]

    def get(self, ext_seq: int) -> RtpPacket | None:
        """The cached packet ``ext_seq``, or None (never received, or evicted)."""
        entry = self._packets.get(ext_seq)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]
