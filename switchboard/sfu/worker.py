"""Worker: the media plane's in-process API. The control plane talks to the SFU only here.

create_router → Router; create_webrtc_transport → WebRtcTransport (publish: ``handle_offer``
returns the answer and new Producers; subscribe: ``consume`` a Producer, ``create_offer``,
``handle_answer``); ``close_producer``; ``close``. A later version can put this interface in
front of a separate process or node.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from . import aiortc_glue
from .config import MediaConfig
from .probe import EchoPeer, ProbeSlots
from .router import Router
from .transport import WebRtcTransport


class Worker:
    """Owns the Routers (one per room) of this process."""

    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self.routers: dict[str, Router] = {}
        self._probes: set[EchoPeer] = set()
        self.probe_slots = ProbeSlots()
        aiortc_glue.use_host_addresses(config.ice_addresses)
        aiortc_glue.use_udp_port_range(config.ice_port_range)

    def create_router(self) -> Router:
        router = Router("RT_" + secrets.token_urlsafe(9), self.config.key_frame_request_interval_ms)
        self.routers[router.id] = router
        return router

    def create_webrtc_transport(
        self,
        router: Router,
        direction: str,
        participant_id: str,
        on_closed: Callable[[WebRtcTransport], None],
    ) -> WebRtcTransport:
        """A transport of one participant: ``direction`` is ``"publish"`` (the client offers)
        or ``"subscribe"`` (the server offers). ``on_closed`` runs if ICE/DTLS fails."""
        return WebRtcTransport(router, direction, participant_id, on_closed, self.config)

    async def create_echo_peer(self, offer: str, owner: str) -> str:
        """Answer a connectivity probe's offer with an ``EchoPeer`` of ``owner`` (an identity
        id); return the answer SDP. Raises TooManyProbes (``probe_slots``), SdpError
        ``invalid_sdp``."""
        self.probe_slots.take(owner)
        probe = EchoPeer(self.config)
        self._probes.add(probe)

        async def forget() -> None:
            await probe.closed.wait()
            self._probes.discard(probe)
            self.probe_slots.give_back(owner)

        asyncio.ensure_future(forget())
        return await probe.answer(offer)

    def close_router(self, router: Router) -> None:
        router.close()
        self.routers.pop(router.id, None)

    async def close(self) -> None:
        for router in list(self.routers.values()):
            self.close_router(router)
        for probe in list(self._probes):
            await probe.close()
