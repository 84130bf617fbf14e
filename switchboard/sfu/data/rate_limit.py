"""Per-sender rate limiting of in-call data: two token buckets, messages and bytes."""

from __future__ import annotations


class TokenBucket:
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` held (starts full).

    Times are monotonic milliseconds (``sfu/clock.py``); only differences matter.
    """

    __slots__ = ("rate_per_ms", "burst", "_tokens", "_at_ms")

    def __init__(self, rate_per_s: float, burst: float, now_ms: float) -> None:
        self.rate_per_ms = rate_per_s / 1000.0
        self.burst = burst
        self._tokens = float(burst)
        self._at_ms = now_ms

    def available(self, now_ms: float) -> float:
        """Tokens held at ``now_ms`` (refills first)."""
        elapsed_ms = max(0.0, now_ms - self._at_ms)
        self._tokens = min(self.burst, self._tokens + elapsed_ms * self.rate_per_ms)
        self._at_ms = now_ms
        return self._tokens

    def take(self, amount: float) -> None:
        """Spend ``amount`` tokens (call ``available`` first)."""
        self._tokens -= amount


class RateLimiter:
    """One sender's allowance: a message passes if both buckets hold enough, and then costs
    one message token and its size in byte tokens; a refused message costs nothing."""

    __slots__ = ("messages", "bytes")

    def __init__(
        self,
        messages_per_s: float,
        burst_messages: float,
        bytes_per_s: float,
        burst_bytes: float,
        now_ms: float,
    ) -> None:
        self.messages = TokenBucket(messages_per_s, burst_messages, now_ms)
        self.bytes = TokenBucket(bytes_per_s, burst_bytes, now_ms)

    def allow(self, size_bytes: int, now_ms: float) -> bool:
        """Whether a message of ``size_bytes`` may pass at ``now_ms``; spends if so."""
        if self.messages.available(now_ms) < 1 or self.bytes.available(now_ms) < size_bytes:
            return False
        self.messages.take(1)
        self.bytes.take(size_bytes)
        return True
