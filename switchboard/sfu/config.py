"""Settings of the media plane."""

from __future__ import annotations

from dataclasses import dataclass, field

from .data.config import DataConfig


@dataclass(frozen=True)
class MediaConfig:
    """Settings of the media plane (the SFU).

    ``ice_addresses``: local IP addresses the SFU gathers ICE host candidates on; empty
    means every interface (aioice's default) plus 127.0.0.1, so a browser on the same
    machine connects too. ``key_frame_request_interval_ms``: the least time between two
    PLIs sent to one publisher (RFC 4585 §3.4 leaves the pacing to us; 500 ms as mediasoup).

    NAT traversal (``ice.py``): ``ice_announced_address`` replaces the address of every host
    candidate the SFU announces (1:1 NAT; pair it with ``ice_addresses`` = the private address);
    ``ice_port_range`` = (min, max), inclusive UDP ports the SFU's ICE sockets bind to (None:
    any port the OS picks); ``ice_stun_urls``: STUN servers (RFC 7064 URIs) for
    server-reflexive candidates, none by default.
    """

    ice_addresses: tuple[str, ...] = ()
    key_frame_request_interval_ms: int = 500
    ice_announced_address: str | None = None
    ice_port_range: tuple[int, int] | None = None
    ice_stun_urls: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)  # in-call data limits (data/config.py)
