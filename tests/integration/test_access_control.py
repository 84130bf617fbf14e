"""Access control on live calls: immediate revocation through the official identity SDK,
token refresh over the socket, and rooms API roles (membership, validity, Consumer, demotion).

Real server over https, real aiortc peers; every wait is on an event with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.communication.identity import CommunicationTokenScope, CommunicationUserIdentifier
from azure.communication.identity.aio import CommunicationIdentityClient
from azure.communication.rooms import ParticipantRole, RoomParticipant
from azure.communication.rooms.aio import RoomsClient

from switchboard.client import Room, SignallingError, ToneTrack, VideoTestPattern
from switchboard.signalling.keys import DIRECTORY

from .conftest import LOOPBACK, Peer, TlsServer

EVICTION_DEADLINE_S = 1.0  # issue 3: evicted within one second of the revocation

Connect = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def identity(tls_server: TlsServer) -> AsyncIterator[CommunicationIdentityClient]:
    async with CommunicationIdentityClient.from_connection_string(
        tls_server.connection_string, connection_verify=str(tls_server.cert)
    ) as client:
        yield client


@pytest.fixture
async def rooms(tls_server: TlsServer) -> AsyncIterator[RoomsClient]:
    async with RoomsClient.from_connection_string(
        tls_server.connection_string, connection_verify=str(tls_server.cert)
    ) as client:
        yield client


@pytest.fixture
async def connect(tls_server: TlsServer) -> AsyncIterator[Connect]:
    """``await connect(token, name, room="r1", publish=True)``: a joined Peer over wss."""
    peers: list[Peer] = []

    async def _connect(token: str, name: str, room: str = "r1", publish: bool = True) -> Peer:
        joined = await Room.connect(
            tls_server.url, token, room, name, LOOPBACK, ssl=tls_server.ssl_context()
        )
        peer = Peer(joined)
        peers.append(peer)
        if publish:
            await peer.room.publish([ToneTrack(), VideoTestPattern(320, 240)])
        return peer

    yield _connect
    for peer in peers:
        await peer.close()


async def _new_user(
    identity: CommunicationIdentityClient,
) -> tuple[CommunicationUserIdentifier, str]:
    user, token = await identity.create_user_and_token([CommunicationTokenScope.VOIP])
    return user, token.token


async def test_revocation_evicts_within_one_second(
    identity: CommunicationIdentityClient, connect: Connect
) -> None:
    ada_user, ada_token = await _new_user(identity)
    _, bob_token = await _new_user(identity)
    ada = await connect(ada_token, "Ada")
    bob = await connect(bob_token, "Bob")
    await bob.until(lambda: bob.frames_from(ada, "video") > 3 and bob.frames_from(ada, "audio") > 3)

    started = time.monotonic()
    await identity.revoke_tokens(ada_user)
    await asyncio.wait_for(ada.room.ended.wait(), EVICTION_DEADLINE_S)
    assert ada.room.disconnect == (4001, "token revoked")
    await bob.until(lambda: ada.room.participant_id in bob.left, timeout=EVICTION_DEADLINE_S)
    assert bob.left[ada.room.participant_id] == "token_revoked"
    assert time.monotonic() - started < EVICTION_DEADLINE_S + 0.5  # SDK call included
    await bob.until(lambda: len(bob.ended) == 2, timeout=EVICTION_DEADLINE_S)

    with pytest.raises(SignallingError) as refused:
        await connect(ada_token, "Ada again", publish=False)
    assert refused.value.code == "invalid_token" and "revoked" in refused.value.message
    fresh = await identity.get_token(ada_user, [CommunicationTokenScope.VOIP])
    again = await connect(fresh.token, "Ada again", publish=False)
    await again.until(lambda: bob.room.participant_id in again.room.participants)


async def test_deleting_the_identity_evicts_it(
    identity: CommunicationIdentityClient, connect: Connect
) -> None:
    ada_user, ada_token = await _new_user(identity)
    ada = await connect(ada_token, "Ada", publish=False)
    await identity.delete_user(ada_user)
    await asyncio.wait_for(ada.room.ended.wait(), EVICTION_DEADLINE_S)
    assert ada.room.disconnect == (4001, "token revoked")
    with pytest.raises(SignallingError):
        await connect(ada_token, "Ada", publish=False)


async def test_refresh_token_over_the_socket(
    identity: CommunicationIdentityClient, connect: Connect, tls_server: TlsServer
) -> None:
    ada_user, ada_token = await _new_user(identity)
    ada = await connect(ada_token, "Ada", publish=False)
    fresh = await identity.get_token(
        ada_user, [CommunicationTokenScope.VOIP], token_expires_in=timedelta(hours=2)
    )
    result = await ada.room.request("refresh_token", token=fresh.token)
    assert result["user_id"] == ada_user.raw_id
    expires = datetime.fromisoformat(result["expires_on"].replace("Z", "+00:00"))
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=2))) < timedelta(minutes=1)

    _, other_token = await _new_user(identity)
    for token, code in (
        (other_token, "wrong_identity"),
        ("not a token", "invalid_token"),
        (tls_server.tokens.mint(ada_user.raw_id, ["chat"], 60)[0], "missing_scope"),
    ):
        with pytest.raises(SignallingError) as refused:
            await ada.room.request("refresh_token", token=token)
        assert refused.value.code == code
    assert not ada.room.ended.is_set()  # a refused refresh leaves the session as it was

    # After a revocation, a token issued before it cannot refresh a newer session.
    await identity.revoke_tokens(ada_user)
    await asyncio.wait_for(ada.room.ended.wait(), EVICTION_DEADLINE_S)
    newer = await identity.get_token(ada_user, [CommunicationTokenScope.VOIP])
    again = await connect(newer.token, "Ada", publish=False)
    with pytest.raises(SignallingError) as refused:
        await again.room.request("refresh_token", token=fresh.token)
    assert refused.value.code == "invalid_token" and "revoked" in refused.value.message


async def test_refreshed_token_moves_the_expiry(tls_server: TlsServer, connect: Connect) -> None:
    """A session ends at its token's expiry, unless a fresh token came first."""
    user = "8:acs:" + "0" * 8 + "-0000-4000-8000-" + "0" * 12 + "_refresh"
    short = tls_server.tokens.mint(user, ["voip"], 1)[0]  # 60 s
    peer = await connect(short, "Short", publish=False)
    longer = tls_server.tokens.mint(user, ["voip"], 60)[0]
    await peer.room.request("refresh_token", token=longer)
    conn = next(iter(tls_server.app[DIRECTORY].of(user)))
    assert conn.token is not None and conn.token.expires_at - time.time() > 59 * 60


async def _room_with(rooms: RoomsClient, **roles: tuple[CommunicationUserIdentifier, str]) -> str:
    room = await rooms.create_room(
        participants=[
            RoomParticipant(communication_identifier=user, role=role)
            for user, role in roles.values()
        ]
    )
    return str(room.id)


async def test_room_membership_and_validity(
    identity: CommunicationIdentityClient, rooms: RoomsClient, connect: Connect
) -> None:
    member, member_token = await _new_user(identity)
    _, stranger_token = await _new_user(identity)
    room_id = await _room_with(rooms, m=(member, ParticipantRole.ATTENDEE))
    with pytest.raises(SignallingError) as refused:
        await connect(stranger_token, "Stranger", room=room_id, publish=False)
    assert refused.value.code == "not_invited"
    start = datetime.now(UTC) + timedelta(hours=1)
    later = await rooms.create_room(
        valid_from=start,
        valid_until=start + timedelta(hours=1),
        participants=[RoomParticipant(communication_identifier=member)],
    )
    with pytest.raises(SignallingError) as refused:
        await connect(member_token, "Early", room=str(later.id), publish=False)
    assert refused.value.code == "room_not_open"
    peer = await connect(member_token, "Member", room=room_id)
    assert peer.room.published

    # Removing a participant ends its live session.
    await rooms.remove_participants(room_id=room_id, participants=[member])
    await asyncio.wait_for(peer.room.ended.wait(), EVICTION_DEADLINE_S)
    assert peer.room.disconnect == (4003, "removed from room")


@pytest.mark.parametrize("tls_server", [{"adhoc_rooms": False}], indirect=True)
async def test_adhoc_rooms_can_be_turned_off(
    identity: CommunicationIdentityClient, connect: Connect
) -> None:
    _, token = await _new_user(identity)
    with pytest.raises(SignallingError) as refused:
        await connect(token, "Ada", room="adhoc", publish=False)
    assert refused.value.code == "unknown_room"


async def test_consumer_cannot_publish_but_receives(
    identity: CommunicationIdentityClient, rooms: RoomsClient, connect: Connect
) -> None:
    presenter, presenter_token = await _new_user(identity)
    consumer, consumer_token = await _new_user(identity)
    room_id = await _room_with(
        rooms, p=(presenter, ParticipantRole.PRESENTER), c=(consumer, ParticipantRole.CONSUMER)
    )
    pres = await connect(presenter_token, "Presenter", room=room_id)
    cons = await connect(consumer_token, "Consumer", room=room_id, publish=False)
    with pytest.raises(SignallingError) as refused:
        await cons.room.publish([ToneTrack()])
    assert refused.value.code == "publish_not_allowed"
    assert "Consumer" in refused.value.message
    await cons.until(lambda: cons.frames_from(pres, "video") > 3)


async def test_demoting_a_live_attendee_stops_its_media(
    identity: CommunicationIdentityClient, rooms: RoomsClient, connect: Connect
) -> None:
    attendee, attendee_token = await _new_user(identity)
    watcher, watcher_token = await _new_user(identity)
    room_id = await _room_with(
        rooms, a=(attendee, ParticipantRole.ATTENDEE), w=(watcher, ParticipantRole.CONSUMER)
    )
    att = await connect(attendee_token, "Attendee", room=room_id)
    watch = await connect(watcher_token, "Watcher", room=room_id, publish=False)
    await watch.until(lambda: watch.frames_from(att, "video") > 3)

    await rooms.add_or_update_participants(
        room_id=room_id,
        participants=[
            RoomParticipant(communication_identifier=attendee, role=ParticipantRole.CONSUMER)
        ],
    )
    await watch.until(lambda: len(watch.ended) == 2, timeout=EVICTION_DEADLINE_S)
    assert not att.room.ended.is_set()  # still in the call, as a Consumer
    with pytest.raises(SignallingError) as refused:
        await att.room.publish([ToneTrack()])
    assert refused.value.code == "publish_not_allowed"


async def test_presenter_mutes_and_removes_others(
    identity: CommunicationIdentityClient, rooms: RoomsClient, connect: Connect
) -> None:
    presenter, presenter_token = await _new_user(identity)
    attendee, attendee_token = await _new_user(identity)
    room_id = await _room_with(
        rooms, p=(presenter, ParticipantRole.PRESENTER), a=(attendee, ParticipantRole.ATTENDEE)
    )
    pres = await connect(presenter_token, "Presenter", room=room_id, publish=False)
    att = await connect(attendee_token, "Attendee", room=room_id)
    att_id = att.room.participant_id
    await pres.until(lambda: pres.frames_from(att, "audio") > 3)

    with pytest.raises(SignallingError) as refused:
        await att.room.request("remove_participant", participant_id=pres.room.participant_id)
    assert refused.value.code == "not_allowed"
    with pytest.raises(SignallingError) as refused:
        await pres.room.request("mute_participant", participant_id="PA_nobody")
    assert refused.value.code == "unknown_participant"

    audio = next(t["track_id"] for t in att.room.published if t["kind"] == "audio")
    result = await pres.room.request("mute_participant", participant_id=att_id)
    assert result == {"track_ids": [audio]}
    await pres.until(lambda: pres.muted.get(audio) is True)
    # the SFU stops forwarding the muted track (the attendee's client keeps sending it)
    heard = pres.tracks[audio].packets
    video_frames = pres.frames_from(att, "video")
    await pres.until(lambda: pres.frames_from(att, "video") >= video_frames + 30)  # ~1 s
    assert pres.tracks[audio].packets - heard <= 5  # at most what was already on its way
    await att.room.mute(audio, False)  # its owner may unmute
    await pres.until(lambda: pres.tracks[audio].packets > heard + 20)

    await pres.room.request("remove_participant", participant_id=att_id)
    await asyncio.wait_for(att.room.ended.wait(), EVICTION_DEADLINE_S)
    assert att.room.disconnect == (4003, "removed by a presenter")
    await pres.until(lambda: pres.left.get(att_id) == "removed", timeout=EVICTION_DEADLINE_S)


async def test_nobody_moderates_an_adhoc_room(
    identity: CommunicationIdentityClient, connect: Connect
) -> None:
    _, ada_token = await _new_user(identity)
    _, bob_token = await _new_user(identity)
    ada = await connect(ada_token, "Ada", room="adhoc", publish=False)
    bob = await connect(bob_token, "Bob", room="adhoc", publish=False)
    with pytest.raises(SignallingError) as refused:
        await ada.room.request("remove_participant", participant_id=bob.room.participant_id)
    assert refused.value.code == "not_allowed"


async def test_room_closes_when_its_window_ends(
    identity: CommunicationIdentityClient, rooms: RoomsClient, connect: Connect
) -> None:
    """Live sessions do not outlive the room: a PATCH that brings validUntil to 2 s from now
    moves the room's timer, and at validUntil everyone is disconnected (4003 room closed)."""
    ada_user, ada_token = await _new_user(identity)
    bob_user, bob_token = await _new_user(identity)
    room_id = await _room_with(
        rooms, a=(ada_user, ParticipantRole.ATTENDEE), b=(bob_user, ParticipantRole.CONSUMER)
    )
    ada = await connect(ada_token, "Ada", room=room_id, publish=False)
    bob = await connect(bob_token, "Bob", room=room_id, publish=False)
    valid_until = datetime.now(UTC) + timedelta(seconds=2)
    await rooms.update_room(room_id=room_id, valid_until=valid_until)
    assert not ada.room.ended.is_set()  # the window still holds now
    for peer in (ada, bob):
        await asyncio.wait_for(peer.room.ended.wait(), 2 + EVICTION_DEADLINE_S)
        assert peer.room.disconnect == (4003, "room closed")
    assert datetime.now(UTC) >= valid_until
    with pytest.raises(SignallingError) as refused:
        await connect(ada_token, "Ada again", room=room_id, publish=False)
    assert refused.value.code == "room_not_open"


async def test_moving_the_window_away_closes_the_room_at_once(
    identity: CommunicationIdentityClient, rooms: RoomsClient, connect: Connect
) -> None:
    ada_user, ada_token = await _new_user(identity)
    bob_user, bob_token = await _new_user(identity)
    room_id = await _room_with(
        rooms, a=(ada_user, ParticipantRole.ATTENDEE), b=(bob_user, ParticipantRole.ATTENDEE)
    )
    ada = await connect(ada_token, "Ada", room=room_id, publish=False)
    bob = await connect(bob_token, "Bob", room=room_id, publish=False)
    await bob.until(lambda: ada.room.participant_id in bob.room.participants)
    start = datetime.now(UTC) + timedelta(hours=1)
    await rooms.update_room(
        room_id=room_id, valid_from=start, valid_until=start + timedelta(hours=1)
    )
    for peer in (ada, bob):
        await asyncio.wait_for(peer.room.ended.wait(), EVICTION_DEADLINE_S)
        assert peer.room.disconnect == (4003, "room closed")


async def test_join_command_as_a_consumer_receives_only(
    identity: CommunicationIdentityClient,
    rooms: RoomsClient,
    connect: Connect,
    tls_server: TlsServer,
    tmp_path: Path,
) -> None:
    """``switchboard join`` with a Consumer's token, over https trusting the self-signed
    certificate through SSL_CERT_FILE as docs/api.md says: no traceback, it says it only
    receives, and it receives the presenter's media for its ``--duration``."""
    presenter, presenter_token = await _new_user(identity)
    consumer, consumer_token = await _new_user(identity)
    room_id = await _room_with(
        rooms, p=(presenter, ParticipantRole.PRESENTER), c=(consumer, ParticipantRole.CONSUMER)
    )
    await connect(presenter_token, "Presenter", room=room_id)
    stats = tmp_path / "received.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard.signalling.cli", "join",
        "--url", tls_server.url, "--room", room_id, "--name", "Watcher",
        "--token", consumer_token, "--ice-address", "127.0.0.1", "--stats-json", str(stats),
        "--duration", "3",
        env={**os.environ, "SSL_CERT_FILE": str(tls_server.cert)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert "joined as a Consumer: receiving only" in out.decode()
    assert "received video from Presenter" in out.decode()
    received = json.loads(stats.read_text())["received"]
    assert {(r["participant"], r["kind"]) for r in received} == {
        ("Presenter", "audio"),
        ("Presenter", "video"),
    }
