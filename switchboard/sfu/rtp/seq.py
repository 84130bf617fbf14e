"""RTP sequence-number arithmetic: unwrapping to extended numbers, rewriting per Consumer."""

from __future__ import annotations

from bisect import bisect_right, insort

SEQ_MOD = 1 << 16


class SeqUnwrapper:
    """Turns one stream's 16-bit RTP sequence numbers into extended (unwrapped) integers.

    A number is placed in the cycle that puts it nearest the highest number seen so far
    (RFC 3550 §A.1 counts cycles the same way), so reordering across a wrap works.
    The first number seen is returned as is (plus ``1 << 16`` so that older ones stay >= 0).
    """

    __slots__ = ("_max",)

    def __init__(self) -> None:
        self._max = -1

    def unwrap(self, seq: int) -> int:
        """Return the extended number of the 16-bit ``seq``."""
        if self._max < 0:
            self._max = seq + SEQ_MOD
            return self._max
        delta = (seq - self._max) % SEQ_MOD  # 0..65535 forward distance
        ext = self._max + delta if delta < SEQ_MOD // 2 else self._max + delta - SEQ_MOD
        if ext > self._max:
            self._max = ext
        return ext


class SeqRewriter:
    """Rewrites one Producer stream's extended sequence numbers into one Consumer's sequence.

    The subscriber must see a gap-free sequence (RFC 3550 §5.1) although the SFU withholds
    packets (``drop``: padding-only packets, packets before the first key frame); a gap of
    our own would draw NACKs (RFC 4585 §6.2.1) for packets that never existed. ``sync`` makes
    an input follow the last output (a new source). Outputs are 16-bit wire values.
    Limit: inputs at or below the last ``sync`` point or below the oldest forgotten drop
    return None.
    """

    MAX_DROPS = 256
    __slots__ = ("_started", "_offset", "_drops", "_floor", "_max_out")

    def __init__(self, first_out: int = 0) -> None:
        self._started = False
        self._offset = 0  # out = in + offset - (drops below in)
        self._drops: list[int] = []  # sorted extended inputs withheld
        self._floor = -1  # inputs <= floor are refused
        self._max_out = first_out - 1

    def sync(self, ext_in: int) -> None:
        """Make ``ext_in`` map to the number right after the last one sent."""
        self._started = True
        self._offset = self._max_out + 1 - ext_in
        self._drops.clear()
        self._floor = ext_in - 1

    def drop(self, ext_in: int) -> None:
        """Withhold ``ext_in``: later outputs close the gap it would leave."""
        if not self._started or ext_in <= self._floor:
            return
        insort(self._drops, ext_in)
        if len(self._drops) > self.MAX_DROPS:
            self._floor = self._drops.pop(0)
            self._offset -= 1

    def rewrite(self, ext_in: int) -> int | None:
        """Return the 16-bit number to send for ``ext_in``, or None if it must not be sent."""
        if not self._started:
            self.sync(ext_in)
        drops = self._drops
        below = bisect_right(drops, ext_in)
        if ext_in <= self._floor or (below and drops[below - 1] == ext_in):
            return None
        ext_out = ext_in + self._offset - below
        if ext_out > self._max_out:
            self._max_out = ext_out
        return ext_out % SEQ_MOD
