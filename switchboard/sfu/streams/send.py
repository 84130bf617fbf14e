"""SentSeqMap: which Producer packet each sequence number a Consumer sent carried."""

from __future__ import annotations

from ..rtp.seq import SEQ_MOD


class SentSeqMap:
    """Maps a Consumer's sent 16-bit sequence numbers back to Producer extended numbers.

    A subscriber's NACK (RFC 4585 §6.2.1) names the numbers *it* saw, which the Consumer
    rewrote (``SeqRewriter``); this finds the original in the Producer's cache (LiveKit's
    ``sequencer.go``). A ring of ``size`` slots (default 4096, a power of two dividing 2^16):
    a number sent more than ``size`` packets ago is forgotten and ``get`` returns None.

    It also remembers when each slot's packet was last resent (``may_resend``), so that one
    packet is not resent again and again: a subscriber repeating its NACKs (RFC 4585 §6.2.1)
    gets it again only ``interval_ms`` later (mediasoup's ``RtpStreamSend`` does not resend
    within an RTT, 100 ms when unknown). That costs ``add``, the forwarding path, nothing.
    """

    __slots__ = ("_size", "_out", "_ext_in", "_resent_ext", "_resent_ms")

    def __init__(self, size: int = 4096) -> None:
        if size <= 0 or SEQ_MOD % size:
            raise ValueError("size must be a power of two up to 65536")
        self._size = size
        self._out = [-1] * size  # 16-bit sent number held by each slot, -1 when empty
        self._ext_in = [0] * size
        # the Producer number each slot last resent (-1: none) and when, monotonic ms
        self._resent_ext = [-1] * size
        self._resent_ms = [0.0] * size

    def add(self, seq_out: int, ext_in: int) -> None:
        """Record that ``seq_out`` (16-bit) carried the Producer's packet ``ext_in``."""
        slot = seq_out % self._size
        self._out[slot] = seq_out
        self._ext_in[slot] = ext_in

    def get(self, seq_out: int) -> int | None:
        """The Producer's extended number sent as ``seq_out``, or None if forgotten."""
        slot = seq_out % self._size
        return self._ext_in[slot] if self._out[slot] == seq_out else None

    def may_resend(self, seq_out: int, now_ms: float, interval_ms: float) -> bool:
        """Whether the packet sent as ``seq_out`` (16-bit, known to ``get``) may be resent at
        ``now_ms``: not if this slot's packet was resent less than ``interval_ms`` ago. True
        records the resend."""
        slot = seq_out % self._size
        ext_in = self._ext_in[slot]
        if self._resent_ext[slot] == ext_in and now_ms - self._resent_ms[slot] < interval_ms:
            return False
        self._resent_ext[slot] = ext_in
        self._resent_ms[slot] = now_ms
        return True
