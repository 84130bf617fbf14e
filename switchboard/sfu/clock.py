"""The media plane's one time source."""

from __future__ import annotations

import time


def monotonic_ms() -> float:
    """Monotonic time in milliseconds; only differences are meaningful."""
    return time.monotonic() * 1000.0
