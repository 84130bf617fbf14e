"""A send pacer for load-generator publishers, after libwebrtc's (``modules/pacing/``).

A real WebRTC sender does not hand a key frame (~45 packets) to the network back to back:
libwebrtc queues video packets and drains them at the *pacing rate*, ``pacing factor x target
bitrate`` (factor 2.5 by default), from a budget refilled every few milliseconds
(``IntervalBudget``, a 5 ms process interval), so a key frame leaves as small bursts spread
over 100-200 ms (~180 ms for the benchmark clip's 52 kB key frame at 2.5 x 0.9 Mbps). Audio
is not paced. An SFU's fan-out burst, and so the latency its subscribers see, depends on
this: unpaced publishers make every key frame one burst per subscriber.

``Pacer`` keeps that budget for one publisher; ``paced_send`` wraps the coroutine that puts
a packet on the wire (aiortc's ``RTCDtlsTransport._send_rtp``, through
``aiortc_hooks.tap_sent_rtp``) so that it waits its turn first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Collection

INTERVAL_S = 0.005  # libwebrtc's pacer process interval
DEFAULT_PACING_FACTOR = 2.5  # libwebrtc's PacingController::kDefaultPaceMultiplier

SendRtp = Callable[[bytes], Awaitable[None]]


class Pacer:
    """One publisher's pacing budget: RTP packets whose payload type is not in
    ``unpaced_pts`` (audio) leave at most at ``rate_bps`` on average.

    The budget (bytes) is refilled by ``rate_bps x INTERVAL_S`` at each interval boundary and
    capped at one interval's worth (no build-up while idle, as libwebrtc's media budget); a
    packet may leave while the budget is positive and takes its size from it, possibly driving
    it negative. So a burst after idle is at most one interval's bytes plus one packet, and a
    packet that finds the budget spent leaves at the first boundary where it is positive
    again. ``delay`` *reserves* that departure: packets leave in the order they asked, whoever
    asks (the sender's loop, retransmission tasks), with no queue and no task of its own.
    Unlike libwebrtc there is no priority queue: an RTX packet waits behind queued video.
    """

    __slots__ = ("_bytes_per_interval", "_budget", "_interval_s", "_tick", "_unpaced", "rate_bps")

    def __init__(
        self, rate_bps: float, unpaced_pts: Collection[int] = (), interval_s: float = INTERVAL_S
    ) -> None:
        if rate_bps <= 0:
            raise ValueError("a pacing rate must be positive (no pacer means unpaced)")
        self.rate_bps = rate_bps
        self._interval_s = interval_s
        self._bytes_per_interval = rate_bps / 8 * interval_s
        self._budget = self._bytes_per_interval  # bytes; negative: reserved ahead
        self._tick = math.floor(time.monotonic() / interval_s)  # last refill, in intervals
        self._unpaced = frozenset(unpaced_pts)

    @property
    def burst_bytes(self) -> float:
        """The most that leaves at once after idle, besides the one packet that overdraws."""
        return self._bytes_per_interval

    def delay(self, data: bytes) -> float:
        """Seconds the RTP packet ``data`` must wait before it leaves (0: now), its share of
        the budget taken. Unpaced payload types always get 0 and take nothing."""
        if (data[1] & 0x7F) in self._unpaced:
            return 0.0
        now = time.monotonic()
        tick = math.floor(now / self._interval_s)
        if tick > self._tick:
            refilled = self._budget + (tick - self._tick) * self._bytes_per_interval
            self._budget = min(refilled, self._bytes_per_interval)
            self._tick = tick
        wait = 0.0
        if self._budget <= 0:  # leaves at the first boundary where the budget is positive
            intervals = math.floor(-self._budget / self._bytes_per_interval) + 1
            wait = (tick + intervals) * self._interval_s - now
        self._budget -= len(data)
        return wait


def paced_send(send: SendRtp, pacer: Pacer, on_sent: Callable[[bytes], None]) -> SendRtp:
    """``send`` behind ``pacer``: each RTP packet waits its delay, then ``on_sent(data)`` sees
    it (the time it really leaves), then ``send`` sends it. RTCP passes straight through."""

    async def send_rtp(data: bytes) -> None:
        if not 192 <= data[1] <= 223:  # RTCP packet types 192..223 (RFC 5761 §4)
            wait = pacer.delay(data)
            if wait > 0:
                await asyncio.sleep(wait)  # the pacer's job: hold the packet until its turn
            on_sent(data)
        await send(data)

    return send_rtp
