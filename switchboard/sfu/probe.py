"""EchoPeer: a short-lived peer connection that echoes data channel messages, for the
connectivity self-test (``switchboard check-connectivity``, the ``/connectivity`` page).

The client offers one data channel (SCTP over DTLS, RFC 8831) and forces one ICE path (direct
UDP, or relay only through one TURN URL); the server answers with candidates gathered exactly as
for call transports (same addresses, port range, announced address), so a working probe means
media can flow on that path. Every message received is sent back unchanged; the client measures
the round trip. A probe lives ``PROBE_LIFETIME_S`` at most; at most ``MAX_PROBES_PER_USER`` run
at once for one identity and ``MAX_PROBES`` in all (``ProbeSlots``), so one user cannot pin the
server's resources, nor take every probe from the others.
"""

from __future__ import annotations

import asyncio
import logging

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from . import aiortc_glue, ice, sdp_checks
from .config import MediaConfig
from .transport_errors import SdpError

PROBE_LIFETIME_S = 30.0
MAX_PROBES = 32
MAX_PROBES_PER_USER = 2  # the self-test runs its paths one after the other

log = logging.getLogger(__name__)


class TooManyProbes(Exception):
    """The owner's, or the server's, probes are all in use."""


class ProbeSlots:
    """How many probes run, per owner (an identity id) and in all; ``take`` one before a
    probe starts, ``give_back`` it once the probe has closed."""

    def __init__(self, total: int = MAX_PROBES, per_owner: int = MAX_PROBES_PER_USER) -> None:
        self.total, self.per_owner = total, per_owner
        self._by_owner: dict[str, int] = {}

    @property
    def running(self) -> int:
        return sum(self._by_owner.values())

    def take(self, owner: str) -> None:
        """Count one more probe of ``owner``; raises TooManyProbes over either limit."""
        if self._by_owner.get(owner, 0) >= self.per_owner:
            raise TooManyProbes(f"at most {self.per_owner} connectivity probes per user at once")
        if self.running >= self.total:
            raise TooManyProbes(f"at most {self.total} connectivity probes at once")
        self._by_owner[owner] = self._by_owner.get(owner, 0) + 1

    def give_back(self, owner: str) -> None:
        left = self._by_owner.get(owner, 0) - 1
        if left > 0:
            self._by_owner[owner] = left
        else:
            self._by_owner.pop(owner, None)


class EchoPeer:
    """One probe: answers the offer, echoes messages, closes after ``lifetime_s`` or when the
    connection fails or closes. ``on_closed`` runs once."""

    def __init__(self, config: MediaConfig, lifetime_s: float = PROBE_LIFETIME_S) -> None:
        self._config = config
        self._pc = RTCPeerConnection(ice.rtc_configuration(config))
        self._pc.on("datachannel", self._on_channel)
        self._pc.on("connectionstatechange", self._on_state)
        self._timer = asyncio.get_running_loop().call_later(
            lifetime_s, lambda: asyncio.ensure_future(self.close())
        )
        self.closed = asyncio.Event()

    async def answer(self, offer: str) -> str:
        """Apply ``offer`` and return the answer with every candidate (no trickle).
        Raises SdpError ``invalid_sdp``."""
        try:
            _, media = sdp_checks.sections(offer)
            if len(media) != 1 or not media[0].startswith("m=application "):
                raise SdpError("invalid_sdp", "a probe offers exactly one data channel m-section")
            sdp_checks.check_client_description(offer, max_sections=1, require_media=False)
        except SdpError:
            await self.close()  # a refused offer frees its slot at once
            raise
        try:
            offer = aiortc_glue.spread_bundle_candidates(offer)
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await self._pc.setLocalDescription(await self._pc.createAnswer())
        except Exception as exc:
            await self.close()
            raise SdpError("invalid_sdp", f"cannot answer the probe: {str(exc)[:200]}") from None
        return ice.announce_address(
            self._pc.localDescription.sdp, self._config.ice_announced_address
        )

    def _on_channel(self, channel: RTCDataChannel) -> None:
        @channel.on("message")
        def echo(message: str | bytes) -> None:
            if channel.readyState == "open":
                channel.send(message)

    def _on_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed"):
            asyncio.ensure_future(self.close())

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._timer.cancel()
        await self._pc.close()
