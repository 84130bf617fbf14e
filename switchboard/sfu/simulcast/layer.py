"""ProducerLayer: one encoding (RID, SSRC) of a simulcast Producer, with what it measures."""

from __future__ import annotations

import asyncio
from collections import deque

from ..rtp.seq import SeqUnwrapper
from ..streams.recv import RtpStreamRecv
from ..streams.rtx_buffer import RtpPacketCache

ACTIVE_MS = 1000.0  # a layer that sent nothing for this long is off (dynacast, publisher BWE)


class RateMeter:
    """Bits per second and frames per second of one stream over the last ``window_ms``."""

    __slots__ = ("window_ms", "_samples", "_bytes", "_frames")

    def __init__(self, window_ms: float = 1000.0) -> None:
        self.window_ms = window_ms
        self._samples: deque[tuple[float, int, bool]] = deque()  # (ms, bytes, ends a frame)
        self._bytes = 0
        self._frames = 0

    def add(self, now_ms: float, size: int, frame_end: bool) -> None:
        self._samples.append((now_ms, size, frame_end))
        self._bytes += size
        self._frames += frame_end
        self._expire(now_ms)

    def _expire(self, now_ms: float) -> None:
        samples, horizon = self._samples, now_ms - self.window_ms
        while samples and samples[0][0] < horizon:
            _, size, frame_end = samples.popleft()
            self._bytes -= size
            self._frames -= frame_end

    def bitrate_bps(self, now_ms: float) -> int:
        self._expire(now_ms)
        return int(self._bytes * 8000 / self.window_ms)

    def fps(self, now_ms: float) -> float:
        self._expire(now_ms)
        return self._frames * 1000.0 / self.window_ms


class ProducerLayer:
    """One simulcast encoding of a Producer (RFC 8853): the RID the publisher tags it with
    (RFC 8852), the SSRC and RTX SSRC learnt from those tags, and per layer what a single
    stream Producer keeps once: extended sequence numbers, the retransmission cache, publish-
    side NACK state, the last Sender Report's (NTP, RTP) mapping (RFC 3550 §6.4.1; RTP
    timestamps differ per SSRC), key-frame request pacing, the bitrate (bps) and frame rate
    measured over the last second, and the resolution read from its last VP8 key frame.
    ``index`` orders layers from lowest to highest quality."""

    __slots__ = (
        "index",
        "rid",
        "ssrc",
        "rtx_ssrc",
        "unwrapper",
        "cache",
        "stream",
        "sr_mapping",
        "kf_last_ms",
        "kf_timer",
        "meter",
        "width",
        "height",
        "last_packet_ms",
        "packets",
        "key_frames",
    )

    def __init__(self, index: int, rid: str) -> None:
        self.index = index
        self.rid = rid
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.unwrapper = SeqUnwrapper()
        self.cache = RtpPacketCache()
        self.stream = RtpStreamRecv()
        self.sr_mapping: tuple[int, int] | None = None
        self.kf_last_ms = -1e12
        self.kf_timer: asyncio.TimerHandle | None = None
        self.meter = RateMeter(2000.0)  # two seconds: a key frame is not a rate change
        self.width: int | None = None
        self.height: int | None = None
        self.last_packet_ms = -1e12
        self.packets = 0
        self.key_frames = 0

    def active(self, now_ms: float) -> bool:
        """Whether the publisher sends this layer now."""
        return now_ms - self.last_packet_ms < ACTIVE_MS

    def bitrate_bps(self, now_ms: float) -> int:
        return self.meter.bitrate_bps(now_ms)
