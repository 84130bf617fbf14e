"""Settings of the media plane."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaConfig:
    """Settings of the media plane (the SFU).

    ``ice_addresses``: local IP addresses the SFU gathers ICE host candidates on; empty
    means every interface (aioice's default) plus 127.0.0.1, so a browser on the same
    machine connects too. ``key_frame_request_interval_ms``: the least time between two
    PLIs sent to one publisher (RFC 4585 §3.4 leaves the pacing to us; 500 ms as mediasoup).
    """

    ice_addresses: tuple[str, ...] = ()
    key_frame_request_interval_ms: int = 500
