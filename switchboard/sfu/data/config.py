"""Settings of in-call data (the SFU's data channel relay)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """Per-sender rate limits and per-subscriber buffers of in-call data.

    Rate limits apply to each participant's messages on both channels together, counted as the
    server receives them (envelope bytes), as two token buckets (``rate_limit.py``):

    * ``max_messages_per_s`` (default 100) refilling a bucket of ``burst_messages`` (200);
    * ``max_bytes_per_s`` (default 1 MiB/s) refilling ``burst_bytes`` (2 MiB), which must be at
      least one largest message (``envelope.MAX_MESSAGE_BYTES``, 256 KiB) or such a message
      could never pass.

    A message over either is dropped, counted and reported to its sender (``on_dropped``).
    ``max_held_bytes`` (default 8 MiB): reliable messages kept for one subscriber whose channel
    is not open yet; beyond it the oldest are dropped (and counted). ``max_buffered_bytes``
    (default 16 MiB): data queued in one open channel (a subscriber slower than the room);
    beyond it further messages to that subscriber are dropped (and counted).
    """

    max_messages_per_s: float = 100.0
    burst_messages: int = 200
    max_bytes_per_s: float = 1024 * 1024
    burst_bytes: int = 2 * 1024 * 1024
    max_held_bytes: int = 8 * 1024 * 1024
    max_buffered_bytes: int = 16 * 1024 * 1024
    report_interval_ms: float = 1000.0  # least time between two drop reports to one sender
