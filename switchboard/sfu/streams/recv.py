"""RtpStreamRecv: loss bookkeeping of one received stream (NACK generation, giving up)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NackVerdict:
    """What ``RtpStreamRecv`` decided after one packet: extended numbers to NACK now, and
    whether a packet was given up (the stream's decoding reference is broken)."""

    nack: list[int] = field(default_factory=list)
    lost: bool = False


class RtpStreamRecv:
    """The missing packets of one Producer stream, and when to ask for them again.

    Generic NACK generation on the publish side (RFC 4585 §6.2.1; §3.4 leaves timing to the
    implementation, as mediasoup's ``NackGenerator``): a gap is NACKed when seen, again every
    ``retry_ms`` (default 100 ms, several loopback RTTs, under one LAN frame interval of
    jitter), at most ``max_nacks`` times (default 5). A packet still missing after that, or
    pushed out of the ``max_missing`` window (default 512 packets), is *lost*: the Producer's
    Consumers then need a key frame. Inputs are extended sequence numbers (``SeqUnwrapper``);
    times are monotonic milliseconds. Retries are computed on packet arrival, so a stream
    that stops gets no more NACKs (nothing would come to repair).
    """

    __slots__ = ("retry_ms", "max_nacks", "max_missing", "_max", "_missing", "nacked", "lost")

    def __init__(self, retry_ms: float = 100.0, max_nacks: int = 5, max_missing: int = 512) -> None:
        self.retry_ms = retry_ms
        self.max_nacks = max_nacks
        self.max_missing = max_missing
        self._max = -1
        self._missing: dict[int, list[float]] = {}  # ext seq -> [last NACK ms, NACKs sent]
        self.nacked = 0  # sequence numbers NACKed, retries included
        self.lost = 0  # sequence numbers given up

    @property
    def missing(self) -> list[int]:
        """The extended numbers missing now, oldest first."""
        return sorted(self._missing)

    def on_packet(self, ext_seq: int, now_ms: float) -> NackVerdict:
        """Account for packet ``ext_seq`` arriving at ``now_ms``."""
        missing = self._missing
        lost = False
        if self._max < 0:
            self._max = ext_seq
            return NackVerdict()
        if ext_seq <= self._max:
            missing.pop(ext_seq, None)  # a retransmission or a late packet
        else:
            first_new = max(self._max + 1, ext_seq - self.max_missing)
            lost = first_new > self._max + 1  # a gap too wide to ask for
            for seq in range(first_new, ext_seq):
                missing[seq] = [now_ms - self.retry_ms, 0]
            self._max = ext_seq
        nack: list[int] = []
        floor = self._max - self.max_missing - 1  # the window: max_missing below max
        for seq in list(missing):
            state = missing[seq]
            if seq <= floor or state[1] >= self.max_nacks:
                if now_ms - state[0] < self.retry_ms and seq > floor:
                    continue  # the last NACK may still be answered
                del missing[seq]
                lost = True
                self.lost += 1
            elif now_ms - state[0] >= self.retry_ms:
                state[0], state[1] = now_ms, state[1] + 1
                nack.append(seq)
        self.nacked += len(nack)
        return NackVerdict(nack, lost)

    def nack_now(self, ext_seqs: list[int], now_ms: float) -> list[int]:
        """Of ``ext_seqs`` (a subscriber asked for them and no cache had them), those still
        missing and not NACKed within ``retry_ms``: NACK them now."""
        out = []
        for seq in ext_seqs:
            state = self._missing.get(seq)
            if state is not None and now_ms - state[0] >= self.retry_ms:
                state[0], state[1] = now_ms, state[1] + 1
                out.append(seq)
        self.nacked += len(out)
        return out
