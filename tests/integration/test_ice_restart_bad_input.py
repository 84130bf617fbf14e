"""Hostile ICE restarts through the real server: ``ice_restart`` floods, restarts before the
first negotiation, publish offers with new credentials but garbage candidates, restarts racing
``leave`` and a client that never answers the restarting offer. Each gets an error or is
absorbed; the others' media, the process and the log stay unharmed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from switchboard.client import SignallingError
from switchboard.sfu import aiortc_glue
from switchboard.signalling.keys import ROOMS

from .conftest import Join, Server, ServerHealth
from .test_ice_restart import poll_until
from .test_simulcast_bad_input import still_flowing


def new_credentials(
    sdp: str, ufrag: str = "evilufrag", pwd: str = "evilpasswordevilpassword"
) -> str:
    sdp = re.sub(r"a=ice-ufrag:\S+", f"a=ice-ufrag:{ufrag}", sdp)
    return re.sub(r"a=ice-pwd:\S+", f"a=ice-pwd:{pwd}", sdp)


async def test_ice_restart_flood_coalesces(
    server: Server,
    join: Join,
    health: ServerHealth,  # noqa: F811
) -> None:
    """300 ``ice_restart`` requests at once: each answered, they make one restarting subscribe
    offer at a time (no task or ICE agent per request), the restart completes, media goes on."""
    good = await join("good")
    evil = await join("evil", publish=False)
    evil.room.ice_restart_after_s = None
    await evil.until(lambda: evil.frames_from(good, "video") >= 5)
    tasks = len(asyncio.all_tasks())
    offers: list[int] = []
    dispatch = evil.room._dispatch

    def record(msg: dict[str, Any]) -> None:
        if msg.get("type") == "subscribe_offer":
            offers.append(msg["offer_id"])
        dispatch(msg)

    evil.room._dispatch = record  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(evil.room.request("ice_restart", connection="subscribe") for _ in range(300))
    )
    assert results == [{}] * 300
    pc = evil.room.subscribe_pc
    assert pc is not None
    await poll_until(lambda: aiortc_glue.ice_restarts(pc) >= 1, 15)
    assert len(offers) <= 2  # the first restarting offer, perhaps one more for late requests
    assert len(asyncio.all_tasks()) < tasks + 20
    seen = evil.frames_from(good, "video")
    await evil.until(lambda: evil.frames_from(good, "video") >= seen + 20)
    assert not health.problems


async def test_publish_restart_with_garbage_candidates_keeps_the_old_pair(
    server: Server,
    join: Join,
    health: ServerHealth,  # noqa: F811
) -> None:
    """Publish offers with new ICE credentials whose candidates are unreachable, of an unknown
    type, or absent (no end-of-candidates either): accepted, each drops the previous attempt,
    the old pair keeps carrying the media, and a real restart afterwards still works."""
    evil = await join("evil")
    viewer = await join("viewer", publish=False)
    evil.room.ice_restart_after_s = None
    await viewer.until(lambda: viewer.frames_from(evil, "video") >= 5)
    pc = evil.room.publish_pc
    assert pc is not None
    offer = new_credentials(pc.localDescription.sdp)
    unreachable = "a=candidate:1 1 udp 2113937151 203.0.113.1 9 typ host"
    offer = re.sub(r"a=candidate:.*", unreachable, offer)
    for variant in (
        offer,
        offer.replace("typ host", "typ garbage"),
        re.sub(r"a=candidate:.*\r\n", "", offer).replace("a=end-of-candidates\r\n", ""),
    ):
        try:
            await evil.room.request("publish_offer", sdp=variant)
        except SignallingError as exc:
            assert exc.code == "invalid_sdp"
    transport = server.app[ROOMS].rooms["r1"].participants[evil.room.participant_id].publish
    assert transport.connection_state == "connected"
    seen = viewer.frames_from(evil, "video")
    await viewer.until(lambda: viewer.frames_from(evil, "video") >= seen + 20)
    assert await evil.room.restart_ice("publish")
    seen = viewer.frames_from(evil, "video")
    await viewer.until(lambda: viewer.frames_from(evil, "video") >= seen + 20)
    assert not health.problems


async def test_restart_racing_leave_and_unanswered_restarts(
    server: Server,
    join: Join,
    health: ServerHealth,  # noqa: F811
) -> None:
    """An ``ice_restart`` then a ``leave`` and a restarting ``publish_offer`` in one burst; and
    a client that never answers a restarting subscribe offer and asks again: no error in the
    log, the leaver is gone, the others' media goes on."""
    good = await join("good")
    viewer = await join("viewer", publish=False)
    await viewer.until(lambda: viewer.frames_from(good, "video") >= 5)
    room = server.app[ROOMS].rooms["r1"]

    leaver = await join("leaver")
    leaver.room.ice_restart_after_s = None
    await leaver.until(lambda: leaver.frames_from(good, "video") >= 3)
    pc = leaver.room.publish_pc
    assert pc is not None
    restarting = new_credentials(pc.localDescription.sdp)
    ws = leaver.room._ws
    await ws.send_json({"id": 9001, "type": "ice_restart", "connection": "subscribe"})
    await ws.send_json({"id": 9002, "type": "publish_offer", "sdp": restarting})
    await ws.send_json({"id": 9003, "type": "leave"})
    await poll_until(lambda: leaver.room.participant_id not in room.participants)

    silent = await join("silent")
    silent.room.ice_restart_after_s = None
    await silent.until(lambda: silent.frames_from(good, "video") >= 3)
    silent.room._answerer.cancel()  # it never answers a subscribe offer again
    transport = room.participants[silent.room.participant_id].subscribe
    await silent.room.request("ice_restart", connection="subscribe")
    await poll_until(lambda: transport._pc.signalingState == "have-local-offer")
    for _ in range(20):
        await silent.room.request("ice_restart", connection="subscribe")
    assert transport._pc.signalingState == "have-local-offer"
    await still_flowing(viewer, good, 20)
    seen = silent.frames_from(good, "video")  # the old pair still carries its media
    await silent.until(lambda: silent.frames_from(good, "video") >= seen + 20)
    assert not health.problems


async def test_restarts_racing_socket_resumes(
    join: Join,
    health: ServerHealth,  # noqa: F811
) -> None:
    """``ice_restart`` then at once a socket drop and ``resume``, five times: the restarting
    subscribe offer reaches the client around the swap, and its answer was lost (the old
    socket was closing, or the new one had not resumed yet: ``not_joined``), so the server
    waited for it forever: no restart, no new track ever again. The SDK now sends it once
    the session is back."""
    good = await join("good")
    evil = await join("evil")
    evil.room.ice_restart_after_s = None
    await evil.until(lambda: evil.frames_from(good, "video") >= 5)
    for i in range(5):
        await evil.room._ws.send_json(
            {"id": 7000 + i, "type": "ice_restart", "connection": "subscribe"}
        )
        await evil.room.resume()
    pc = evil.room.subscribe_pc
    assert pc is not None
    await poll_until(lambda: aiortc_glue.ice_restarts(pc) >= 1, 15)
    late = await join("late")  # a new track still gets offered and answered
    await evil.until(lambda: evil.frames_from(late, "video") >= 5)
    seen = evil.frames_from(good, "video")
    await evil.until(lambda: evil.frames_from(good, "video") >= seen + 20)
    assert not health.problems
