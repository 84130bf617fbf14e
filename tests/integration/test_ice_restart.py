"""ICE restart (RFC 8445 §9): a participant's network changes, an ICE restart on either of its
connections restores media without a new join, and a restart is serialised with the other
renegotiations of that participant.

The network change is a client-side fault: ``aiortc_glue.blackhole_ice`` makes the sockets of
the client's current candidate pair drop everything, as a vanished interface would; a restart
gathers new sockets. Each test prints the time from the restart to the next RTP packet and the
next decoded frame.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from switchboard.client import IceError, Room, SignallingError, ToneTrack, VideoTestPattern
from switchboard.sfu import aiortc_glue
from switchboard.signalling.keys import ROOMS

from .conftest import LOOPBACK, Join, Peer, Server
from .test_turn import TurnSetup, turn  # noqa: F401 (the coturn fixture)

RESUME_LIMIT_S = 2.0  # the requirement: media resumes within 2 s of the restart


async def poll_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, checking every 50 ms (for state no event reports,
    such as a socket's silence); raises TimeoutError after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def consumer_ids(room: Any) -> set[str]:
    return {c.id for p in room.router.producers for c in room.router.consumers_of(p)}


def video_of(peer: Peer, publisher: Peer) -> str:
    (track_id,) = [
        tid
        for tid, t in peer.tracks.items()
        if t.participant_id == publisher.room.participant_id and t.kind == "video"
    ]
    return track_id


async def cut_and_restart(
    subscriber: Peer, publisher: Peer, cut: Any, restart: Callable[[], Any]
) -> dict[str, float]:
    """Blackhole ``cut`` (a client peer connection) until the subscriber has received nothing
    of ``publisher``'s video for 1 s, then ``restart()``; return the seconds from the restart
    to the next decoded frame of that video, to the end of ``restart()`` and to the 30th
    frame (the gap's frames come back in a burst: NACKs answered from the caches)."""
    track_id = video_of(subscriber, publisher)
    remote = subscriber.tracks[track_id]
    aiortc_glue.blackhole_ice(cut)
    last = {"packets": remote.packets, "at": time.monotonic()}

    def silent_for_1s() -> bool:
        if remote.packets != last["packets"]:
            last.update(packets=remote.packets, at=time.monotonic())
        return time.monotonic() - last["at"] >= 1.0

    await poll_until(silent_for_1s)
    packets, frames = remote.packets, subscriber.frames[track_id]
    started = time.monotonic()
    restarted = asyncio.ensure_future(restart())
    await subscriber.until(lambda: subscriber.frames[track_id] > frames, RESUME_LIMIT_S * 5)
    first_frame_s = time.monotonic() - started
    assert remote.packets > packets
    assert await restarted in (True, None)
    restart_s = time.monotonic() - started
    await subscriber.until(lambda: subscriber.frames[track_id] >= frames + 30)  # it goes on
    return {
        "first_frame_s": round(first_frame_s, 3),
        "restart_done_s": round(restart_s, 3),
        "30_frames_s": round(time.monotonic() - started, 3),
    }


async def test_subscribe_connection_restart_restores_media_without_a_new_join(
    server: Server, join: Join
) -> None:
    a = await join("a")
    b = await join("b", publish=False)
    b.room.ice_restart_after_s = None  # this test restarts by hand
    await b.until(lambda: b.frames_from(a, "video") >= 5 and b.frames_from(a, "audio") >= 5)
    room = server.app[ROOMS].rooms["r1"]
    producers, consumers = set(room.router.producers), consumer_ids(room)
    tracks = set(b.tracks)
    transport = room.participants[b.room.participant_id].subscribe

    assert b.room.subscribe_pc is not None
    figures = await cut_and_restart(b, a, b.room.subscribe_pc, lambda: b.room.restart_ice())
    print(f"subscribe restart: {figures}")
    assert figures["first_frame_s"] < RESUME_LIMIT_S

    assert aiortc_glue.ice_restarts(b.room.subscribe_pc) == 1 and transport.ice_restarts == 1
    assert set(room.router.producers) == producers and consumer_ids(room) == consumers
    assert set(b.tracks) == tracks and not b.ended  # no new track, none ended
    assert set(room.participants) == {a.room.participant_id, b.room.participant_id}
    await b.until(lambda: b.frames_from(a, "audio") >= 100)  # audio is back too


async def test_publish_connection_restart_restores_media_without_a_new_join(
    server: Server, join: Join
) -> None:
    a = await join("a")
    b = await join("b", publish=False)
    a.room.ice_restart_after_s = None
    got: list[tuple[str, bytes | str]] = []
    b.room.on_data = lambda sender, payload, reliable: b._record(got.append, (sender, payload))
    await b.room.open_data()
    await b.until(lambda: b.frames_from(a, "video") >= 5)
    room = server.app[ROOMS].rooms["r1"]
    producers, consumers = set(room.router.producers), consumer_ids(room)
    published = [t["track_id"] for t in a.room.published]
    tracks = set(b.tracks)
    transport = room.participants[a.room.participant_id].publish

    assert a.room.publish_pc is not None
    figures = await cut_and_restart(b, a, a.room.publish_pc, lambda: a.room.restart_ice("publish"))
    print(f"publish restart: {figures}")
    assert figures["first_frame_s"] < RESUME_LIMIT_S

    assert aiortc_glue.ice_restarts(a.room.publish_pc) == 1 and transport.ice_restarts == 1
    assert [t["track_id"] for t in a.room.published] == published
    assert set(room.router.producers) == producers and consumer_ids(room) == consumers
    assert set(b.tracks) == tracks and not b.ended  # no track_published, nothing ended
    # the data channels ride the same DTLS association (SCTP): they carry on too
    await a.room.send_data("after the restart")
    await b.until(lambda: (a.room.participant_id, "after the restart") in got)


async def test_restart_waits_for_the_pending_subscribe_offer(server: Server, join: Join) -> None:
    """A restart asked while a subscribe offer (for a publisher who just joined) awaits its
    answer comes with the next offer, only once that answer is in: one offer at a time."""
    a = await join("a")
    b = await join("b", publish=False)
    b.room.ice_restart_after_s = None
    await b.until(lambda: b.frames_from(a, "video") >= 5)
    pc = b.room.subscribe_pc
    assert pc is not None
    log: list[tuple[str, int, Any]] = []
    gate = asyncio.Event()
    dispatch, request = b.room._dispatch, b.room.request

    def record_offer(msg: dict[str, Any]) -> None:
        if msg.get("type") == "subscribe_offer":
            log.append(("offer", msg["offer_id"], aiortc_glue.ice_credentials(msg["sdp"])))
        dispatch(msg)

    async def gated_answer(kind: str, **fields: Any) -> dict[str, Any]:
        if kind == "subscribe_answer":
            await gate.wait()
            log.append(("answer", fields["offer_id"], None))
        return await request(kind, **fields)

    b.room._dispatch = record_offer  # type: ignore[method-assign]
    b.room.request = gated_answer  # type: ignore[method-assign]

    c = await join("c")  # the server offers c's tracks to b; b holds its answer
    await poll_until(lambda: any(e[0] == "offer" for e in log))
    restart = asyncio.ensure_future(b.room.restart_ice("subscribe"))
    await request("ping")  # the ice_restart request went first and was answered
    await request("ping")
    assert [e[0] for e in log] == ["offer"]  # no second offer while the first is pending
    gate.set()
    assert await asyncio.wait_for(restart, 15)

    offers = [e for e in log if e[0] == "offer"]
    assert [e[0] for e in log] == ["offer", "answer"] * len(offers)  # strictly alternating
    assert [e[1] for e in log] == sorted(e[1] for e in log)
    assert offers[0][2] != offers[-1][2]  # the last offer restarted ICE, the first did not
    assert aiortc_glue.ice_restarts(pc) == 1
    seen_a = b.frames_from(a, "video")
    await b.until(
        lambda: b.frames_from(c, "video") >= 10 and b.frames_from(a, "video") >= seen_a + 10
    )


async def test_restart_of_a_connection_that_does_not_exist_yet_is_refused(join: Join) -> None:
    a = await join("a", publish=False)
    for connection in ("subscribe", "publish"):
        with pytest.raises(SignallingError) as refused:
            await a.room.request("ice_restart", connection=connection)
        assert refused.value.code == "not_connected"
    with pytest.raises(IceError):
        await a.room.restart_ice("publish")
    with pytest.raises(SignallingError) as bad:
        await a.room.request("ice_restart", connection="both")
    assert bad.value.code == "invalid_message"

    b = await join("b")
    await b.room.wait_connected()
    with pytest.raises(SignallingError) as by_offer:
        await b.room.request("ice_restart", connection="publish")
    assert by_offer.value.code == "restart_by_offer"
    await a.until(lambda: a.frames_from(b, "video") >= 5)  # the session goes on


async def test_sdk_restarts_by_itself_when_a_connection_goes_silent(join: Join) -> None:
    a = await join("a")
    b = await join("b", publish=False)
    await b.until(lambda: b.frames_from(a, "video") >= 5)
    b.room.ice_restart_after_s = 2.0
    pc = b.room.subscribe_pc
    assert pc is not None
    aiortc_glue.blackhole_ice(pc)
    await poll_until(lambda: aiortc_glue.ice_restarts(pc) == 1, 15)
    seen = b.frames_from(a, "video")
    await b.until(lambda: b.frames_from(a, "video") >= seen + 20)


async def test_publish_restart_racing_a_new_track_is_serialised(server: Server, join: Join) -> None:
    """A publish-side restart and a publish of one more track, started together, go one after
    the other on the publish connection: both land (one restart, one new Producer)."""
    a = await join("a")
    b = await join("b", publish=False)
    a.room.ice_restart_after_s = None
    await b.until(lambda: b.frames_from(a, "video") >= 5)
    pc = a.room.publish_pc
    assert pc is not None
    restarted, published = await asyncio.gather(
        a.room.restart_ice("publish"), a.room.publish([VideoTestPattern(160, 120)])
    )
    assert restarted and len(published) == 3
    assert aiortc_glue.ice_restarts(pc) == 1
    room = server.app[ROOMS].rooms["r1"]
    assert room.participants[a.room.participant_id].publish.ice_restarts == 1
    await b.until(lambda: len(b.tracks) == 3 and all(n >= 10 for n in b.frames.values()))


async def test_relay_only_restart_allocates_a_new_relay(turn: TurnSetup) -> None:  # noqa: F811
    """Through coturn, relay-only: the restarted connection gathers a new TURN allocation
    (the server list and credential of the first gathering) and media resumes over it."""
    rooms = [
        await Room.connect(
            turn.url, turn.token(), "relay", name, LOOPBACK, ice_transport_policy="relay"
        )
        for name in ("a", "b")
    ]
    a, b = Peer(rooms[0]), Peer(rooms[1])
    try:
        b.room.ice_restart_after_s = None
        await a.room.publish([ToneTrack(), VideoTestPattern(320, 240)])
        await b.until(lambda: b.frames_from(a, "video") >= 5, 30)
        pc = b.room.subscribe_pc
        assert pc is not None
        relays = set(re.findall(r" (\d+) typ relay", pc.localDescription.sdp))
        assert relays and " typ host" not in pc.localDescription.sdp
        figures = await cut_and_restart(b, a, pc, lambda: b.room.restart_ice("subscribe"))
        print(f"relay subscribe restart: {figures}")
        assert figures["first_frame_s"] < RESUME_LIMIT_S
        sdp = pc.localDescription.sdp
        assert " typ host" not in sdp and set(re.findall(r" (\d+) typ relay", sdp)) - relays
    finally:
        for peer in (a, b):
            await peer.close()
