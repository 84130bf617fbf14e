"""Session resume (signalling/calls/resume.py): a participant's socket drops mid-call, its media
keeps flowing, and a new socket gets the participant back with the events it missed."""

from __future__ import annotations

import aiohttp
import pytest

from switchboard.client import SignallingError
from switchboard.signalling.keys import ROOMS

from .conftest import Join, Server


async def test_media_survives_a_dropped_socket_and_resume_replays_missed_events(
    server: Server, join: Join
) -> None:
    a = await join("a")
    b = await join("b")
    await a.until(lambda: a.frames_from(b, "video") >= 5 and b.frames_from(a, "video") >= 5)
    room = server.app[ROOMS].rooms["r1"]
    producers = set(room.router.producers)

    await a.room._ws.close()  # the socket goes away; a's peer connections do not
    await a.room.ended.wait()
    c = await join("c")  # a misses participant_joined, track_published and a subscribe offer
    seen_by_a, seen_by_b = a.frames_from(b, "video"), b.frames_from(a, "video")
    await a.until(lambda: a.frames_from(b, "video") >= seen_by_a + 30)  # media flows meanwhile
    await b.until(lambda: b.frames_from(a, "video") >= seen_by_b + 30)
    assert a.room.participant_id in room.participants
    assert b.left == {}

    await a.room.resume()
    assert c.room.participant_id in a.room.participants  # the missed roster event
    await a.until(lambda: a.frames_from(c, "video") >= 5)  # the missed offer, answered late
    assert producers <= set(room.router.producers)  # a's and b's Producers survived
    assert room.participants[a.room.participant_id].publish.producers


async def test_resume_is_refused_for_an_unknown_or_someone_elses_session(
    server: Server, join: Join
) -> None:
    a = await join("a", publish=False)
    await a.room._ws.close()
    await a.room.ended.wait()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http", "ws", 1) + "/v1/rtc")
        await ws.send_json({"id": 1, "type": "authenticate", "token": server.token()})
        assert (await ws.receive_json())["type"] == "reply"
        for session_id in (a.room.session_id, "SE_nope"):  # another user's, and none at all
            await ws.send_json({"id": 2, "type": "resume", "session_id": session_id, "last_seq": 0})
            refused = await ws.receive_json()
            assert refused["error"]["code"] == "cannot_resume"
        await ws.close()
    a.room.session_id = "SE_nope"
    with pytest.raises(SignallingError) as refused:
        await a.room.resume()
    assert refused.value.code == "cannot_resume"
