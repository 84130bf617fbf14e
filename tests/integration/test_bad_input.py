"""Bad input on the signalling socket (docs/protocol.md, "Error codes", "Close codes").

Each bad frame gets its documented error and, where the protocol allows, the socket goes on
(a ``ping`` afterwards is answered); the socket-ending ones get their close code, after a
``disconnect`` event. Meanwhile two real peers in the same room keep receiving each other.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiortc import RTCConfiguration, RTCPeerConnection

from switchboard.client import SignallingError
from switchboard.signalling.calls.protocol import MAX_MESSAGE_BYTES
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import TokenService

from .conftest import Join, Peer, Server

TIMEOUT_S = 10.0
Frame = str | bytes | dict[str, Any]

GARBAGE_SDP = "v=0\r\nthis is not a session description\r\n"
RECVONLY_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)
BAD_CANDIDATE = {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}
BAD_PORT_CANDIDATE = {
    "candidate": "candidate:1 1 udp 2113937151 127.0.0.1 port typ host",
    "sdpMid": "0",
}


class Raw:
    """A raw signalling socket: send any frame, read replies, errors and events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.joined: dict[str, Any] = {}
        self._ids = itertools.count(1)

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def _next(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), TIMEOUT_S)
        assert msg.type == WSMsgType.TEXT, f"socket ended: {msg.type.name} {msg.data!r}"
        return json.loads(msg.data)

    async def answer(self, request_id: str | int | None) -> dict[str, Any]:
        """The next reply or error; it must carry ``request_id`` (they come in order).
        Events read on the way are kept in ``events``."""
        while (msg := await self._next())["type"] not in ("reply", "error"):
            self.events.append(msg)
        assert msg["id"] == request_id, msg
        return msg

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        await self.send({"id": request_id, "type": kind, **fields})
        return await self.answer(request_id)

    async def error(self, frame: Frame, request_id: str | int | None = None) -> str:
        """Send ``frame``; return the code of the error that answers it."""
        await self.send(frame)
        msg = await self.answer(request_id)
        assert msg["type"] == "error", msg
        return str(msg["error"]["code"])

    async def event(self, kind: str) -> dict[str, Any]:
        """The first event of ``kind``, already read or still to come."""
        while not (found := [e for e in self.events if e["type"] == kind]):
            self.events.append(await self._next())
        return found[0]

    async def alive(self) -> None:
        assert await self.request("ping") == {
            "type": "reply",
            "id": next(self._ids) - 1,
            "result": {"pong": True},
        }

    async def ended(self) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the server closes; return the close code and what came before."""
        before: list[dict[str, Any]] = []
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), TIMEOUT_S)
            if msg.type != WSMsgType.TEXT:
                assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), msg
                return self.ws.close_code, before
            before.append(json.loads(msg.data))


OpenRaw = Callable[..., Awaitable[Raw]]


@pytest.fixture
async def raw(server: Server) -> AsyncIterator[OpenRaw]:
    """``await raw(stage="fresh"|"authenticated"|"joined", room="lobby")``: a raw socket."""
    sockets: list[Raw] = []
    async with aiohttp.ClientSession() as session:

        async def open_raw(stage: str = "fresh", room: str = "lobby") -> Raw:
            ws = await session.ws_connect(server.url.replace("http", "ws", 1) + "/v1/rtc")
            sock = Raw(ws)
            sockets.append(sock)
            if stage in ("authenticated", "joined"):
                reply = await sock.request("authenticate", token=server.token())
                assert reply["type"] == "reply", reply
            if stage == "joined":
                reply = await sock.request("join", room=room, name="raw")
                assert reply["type"] == "reply", reply
                sock.joined = reply["result"]
            return sock

        yield open_raw
        for sock in sockets:
            await sock.ws.close()


def rid(request_id: str | int | None, kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": request_id, "type": kind, **fields}


@pytest.mark.parametrize(
    ("stage", "frame", "request_id", "code"),
    [
        pytest.param("fresh", "{", None, "invalid_json", id="malformed JSON"),
        pytest.param("fresh", "hello", None, "invalid_json", id="plain text"),
        pytest.param("fresh", '[{"id": 1, "type": "ping"}]', None, "invalid_json", id="JSON array"),
        pytest.param("fresh", "42", None, "invalid_json", id="JSON number"),
        pytest.param("fresh", rid(1, "dance"), 1, "unknown_type", id="unknown type"),
        pytest.param(
            "fresh",
            rid("j", "join", room="r1", name="x"),
            "j",
            "not_authenticated",
            id="join before authenticate",
        ),
        pytest.param(
            "fresh",
            rid(2, "mute", track_id="TR_x", muted=True),
            2,
            "not_authenticated",
            id="mute before authenticate",
        ),
        pytest.param(
            "fresh",
            rid(3, "join", room="a b", name="x"),
            3,
            "invalid_message",
            id="schema is checked before authentication",
        ),
        pytest.param(
            "fresh", rid(4, "authenticate"), 4, "invalid_message", id="authenticate without token"
        ),
        pytest.param(
            "authenticated",
            rid(5, "publish_offer", sdp=GARBAGE_SDP),
            5,
            "not_joined",
            id="publish_offer before join",
        ),
        pytest.param(
            "authenticated",
            rid(6, "subscribe_answer", offer_id=1, sdp="v=0"),
            6,
            "not_joined",
            id="subscribe_answer before join",
        ),
        pytest.param(
            "authenticated",
            rid(7, "trickle", target="publish", candidate=None),
            7,
            "not_joined",
            id="trickle before join",
        ),
        pytest.param(
            "authenticated",
            rid(8, "authenticate", token="x"),
            8,
            "already_authenticated",
            id="second authenticate",
        ),
        pytest.param(
            "authenticated",
            rid(9, "join", room="stand up", name="x"),
            9,
            "invalid_message",
            id="room with a space",
        ),
        pytest.param(
            "authenticated",
            rid(10, "join", room="r" * 65, name="x"),
            10,
            "invalid_message",
            id="room too long",
        ),
        pytest.param(
            "authenticated",
            rid("n", "join", room="r1"),
            "n",
            "invalid_message",
            id="join without name",
        ),
        pytest.param("authenticated", rid(True, "ping"), None, "invalid_message", id="bool id"),
        pytest.param(
            "authenticated",
            rid(11, "mute", track_id="TR_x", muted="yes"),
            11,
            "invalid_message",
            id="muted a string",
        ),
        pytest.param(
            "joined",
            rid(12, "publish_offer", sdp=GARBAGE_SDP),
            12,
            "invalid_sdp",
            id="garbage publish SDP",
        ),
        pytest.param(
            "joined",
            rid(13, "publish_offer", sdp=RECVONLY_OFFER),
            13,
            "wrong_connection",
            id="recvonly offer on the publish connection",
        ),
        pytest.param(
            "joined",
            rid(14, "subscribe_answer", offer_id=1, sdp=GARBAGE_SDP),
            14,
            "no_pending_offer",
            id="subscribe_answer with no offer pending",
        ),
        pytest.param(
            "joined",
            rid(15, "trickle", target="publish", candidate=BAD_CANDIDATE),
            15,
            "invalid_candidate",
            id="garbage candidate",
        ),
        pytest.param(
            "joined",
            rid(16, "trickle", target="subscribe", candidate=BAD_PORT_CANDIDATE),
            16,
            "invalid_candidate",
            id="candidate with a bad port",
        ),
        pytest.param(
            "joined",
            rid(17, "mute", track_id="TR_nope", muted=True),
            17,
            "unknown_track",
            id="mute of no track",
        ),
        pytest.param(
            "joined",
            rid(18, "join", room="lobby", name="again"),
            18,
            "already_joined",
            id="second join",
        ),
    ],
)
async def test_error_reply_and_the_socket_goes_on(
    raw: OpenRaw, stage: str, frame: Frame, request_id: str | int | None, code: str
) -> None:
    sock = await raw(stage)
    assert await sock.error(frame, request_id) == code
    await sock.alive()


async def publish_offer_sdp() -> str:
    """A real client publish offer (sendonly audio and video) from aiortc."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def test_offer_sent_as_subscribe_answer(server: Server, raw: OpenRaw) -> None:
    sock = await raw("joined")
    sdp = await publish_offer_sdp()
    assert await sock.error(rid(1, "subscribe_answer", offer_id=1, sdp=sdp), 1) in (
        "no_pending_offer",
        "wrong_connection",
    )
    await sock.alive()


# --- input that ends the session ---------------------------------------------------------


def other_key_token(server: Server) -> str:
    return TokenService(secrets.token_bytes(32)).mint("8:sb:someone", ["voip"], 60)[0]


def expired_token(server: Server) -> str:
    user = new_identity_id(server.access_key)
    return server.tokens.mint(user, ["voip"], expires_in_minutes=60, now=time.time() - 7200)[0]


@pytest.mark.parametrize(
    ("token", "code", "close_code"),
    [
        pytest.param(lambda s: "not-a-token", "invalid_token", 4001, id="malformed token"),
        pytest.param(other_key_token, "invalid_token", 4001, id="token of another server"),
        pytest.param(expired_token, "invalid_token", 4001, id="expired token"),
    ],
)
async def test_refused_token_ends_the_session(
    server: Server, raw: OpenRaw, token: Callable[[Server], str], code: str, close_code: int
) -> None:
    sock = await raw()
    assert await sock.error(rid("auth", "authenticate", token=token(server)), "auth") == code
    closed, before = await sock.ended()
    assert closed == close_code
    assert [m["code"] for m in before if m["type"] == "disconnect"] == [close_code]


@pytest.mark.parametrize(
    ("stage", "frame"),
    [
        pytest.param("fresh", b"\x00\x01binary", id="binary frame"),
        pytest.param("joined", b'{"id": 1, "type": "ping"}', id="binary frame after join"),
        pytest.param(
            "fresh",
            json.dumps(rid(1, "ping", pad="x" * MAX_MESSAGE_BYTES)),
            id="text frame over 64 KiB",
        ),
    ],
)
async def test_protocol_violation_closes_4000(raw: OpenRaw, stage: str, frame: Frame) -> None:
    sock = await raw(stage)
    await sock.send(frame)
    closed, before = await sock.ended()
    assert closed == 4000
    assert [m["code"] for m in before if m["type"] == "disconnect"] == [4000]


@pytest.mark.parametrize("server", [{"auth_timeout_s": 0.3}], indirect=True)
async def test_no_authenticate_in_time_closes_4008(raw: OpenRaw) -> None:
    sock = await raw()
    await sock.alive()  # ping is allowed before authentication, but does not authenticate
    closed, before = await sock.ended()
    assert closed == 4008
    assert [m["code"] for m in before if m["type"] == "disconnect"] == [4008]


@pytest.mark.parametrize("server", [{"ws_idle_timeout_s": 0.3}], indirect=True)
async def test_silent_socket_closes_4008(raw: OpenRaw) -> None:
    sock = await raw("authenticated")
    closed, _ = await sock.ended()
    assert closed == 4008


# --- media goes on -----------------------------------------------------------------------


def video_frames(a: Peer, b: Peer) -> tuple[int, int]:
    return a.frames_from(b, "video"), b.frames_from(a, "video")


async def test_media_flows_while_bad_input_hits_the_room(
    server: Server, join: Join, raw: OpenRaw
) -> None:
    a, b = await join("a"), await join("b")
    await a.until(lambda: min(video_frames(a, b)) >= 5)
    a_tracks = [t["track_id"] for t in a.room.published]
    b_tracks = [t["track_id"] for t in b.room.published]
    publish_sdp = await publish_offer_sdp()

    # an intruder joins the same room and sends everything wrong it can
    intruder = await raw("joined", room="r1")
    assert {t["track_id"] for t in intruder.joined["tracks"]} == {*a_tracks, *b_tracks}
    offer = await intruder.event("subscribe_offer")  # the server now waits for its answer
    pending = offer["offer_id"]
    wrong: list[tuple[Frame, str | int | None, str]] = [
        ("{", None, "invalid_json"),
        ("[1, 2]", None, "invalid_json"),
        (rid(1, "dance"), 1, "unknown_type"),
        (rid(2, "join", room="r1"), 2, "invalid_message"),
        (rid(3, "join", room="r1", name="again"), 3, "already_joined"),
        (rid(4, "authenticate", token=server.token()), 4, "already_authenticated"),
        (rid(5, "subscribe_answer", offer_id=pending, sdp=publish_sdp), 5, "wrong_connection"),
        (rid(6, "subscribe_answer", offer_id=pending + 7, sdp=GARBAGE_SDP), 6, "no_pending_offer"),
        (rid(7, "subscribe_answer", offer_id=pending, sdp=GARBAGE_SDP), 7, "invalid_sdp"),
        (rid(8, "publish_offer", sdp=GARBAGE_SDP), 8, "invalid_sdp"),
        (rid(9, "publish_offer", sdp=RECVONLY_OFFER), 9, "wrong_connection"),
        (rid(10, "mute", track_id=a_tracks[0], muted=True), 10, "unknown_track"),
        (rid(11, "trickle", target="publish", candidate=BAD_CANDIDATE), 11, "invalid_candidate"),
        (
            rid(12, "trickle", target="subscribe", candidate=BAD_PORT_CANDIDATE),
            12,
            "invalid_candidate",
        ),
    ]
    for frame, request_id, code in wrong:
        assert await intruder.error(frame, request_id) == code, frame
    await intruder.alive()

    # a's own socket, joined and publishing, sends garbage too; its session goes on
    errors: list[dict[str, Any]] = []
    dispatch = a.room._dispatch

    def record(msg: dict[str, Any]) -> None:
        if msg.get("type") == "error":
            errors.append(msg)
        dispatch(msg)

    a.room._dispatch = record  # type: ignore[method-assign]
    for text in ("{", "[]", '{"id": "x", "type": "dance"}'):
        await a.room._ws.send_str(text)
    refused_requests: list[tuple[str, dict[str, Any], str]] = [
        ("publish_offer", {"sdp": GARBAGE_SDP}, "invalid_sdp"),  # on its live connection
        ("publish_offer", {"sdp": RECVONLY_OFFER}, "wrong_connection"),
        ("subscribe_answer", {"offer_id": 999, "sdp": publish_sdp}, "no_pending_offer"),
        ("trickle", {"target": "publish", "candidate": BAD_CANDIDATE}, "invalid_candidate"),
        ("mute", {"track_id": b_tracks[0], "muted": True}, "unknown_track"),
        ("join", {"room": "r2", "name": "a"}, "already_joined"),
    ]
    for kind, fields, code in refused_requests:
        with pytest.raises(SignallingError) as refused:
            await a.room.request(kind, **fields)
        assert refused.value.code == code, kind
    assert await a.room.request("ping") == {"pong": True}
    assert [(e["id"], e["error"]["code"]) for e in errors[:3]] == [
        (None, "invalid_json"),
        (None, "invalid_json"),
        ("x", "unknown_type"),
    ]
    assert not b.muted  # the intruder's mute of a's track did not reach b

    # joined sockets that break the protocol are closed; the room goes on without them
    intruder_id = intruder.joined["participant"]["id"]
    await intruder.send(b"\x00")
    assert (await intruder.ended())[0] == 4000
    oversize = await raw("joined", room="r1")
    await oversize.send(json.dumps(rid(1, "ping", pad="x" * MAX_MESSAGE_BYTES)))
    assert (await oversize.ended())[0] == 4000
    gone = {intruder_id, oversize.joined["participant"]["id"]}
    await a.until(lambda: gone <= a.left.keys() and gone <= b.left.keys())
    assert {a.left[p] for p in gone} == {"disconnected"}

    # the two real peers kept receiving each other through all of it
    a_got, b_got = video_frames(a, b)

    def both_got_15_more() -> bool:
        a_now, b_now = video_frames(a, b)
        return a_now >= a_got + 15 and b_now >= b_got + 15

    await a.until(both_got_15_more)
    assert a.room.participants.keys() == {b.room.participant_id}
    assert not a.ended and not b.ended


def mangle(sdp: str, old: str, new: str, count: int = -1) -> str:
    assert old in sdp, old
    return sdp.replace(old, new, count)


def with_sections(sdp: str, n: int) -> str:
    """``sdp`` with its video m-section repeated until there are ``n`` audio/video sections."""
    head, *sections = sdp.split("m=")
    video = next(s for s in sections if s.startswith("video"))
    extra = [video.replace("a=mid:1", f"a=mid:{i}") for i in range(len(sections), n)]
    return head + "m=" + "m=".join(sections + extra)


@pytest.mark.parametrize(
    "bad_offer",
    [
        pytest.param(lambda sdp: mangle(sdp, "a=mid:1", "a=mid:0"), id="duplicate MID"),
        pytest.param(
            lambda sdp: "\r\n".join(
                line for line in sdp.split("\r\n") if not line.startswith("a=fingerprint")
            ),
            id="no DTLS fingerprint",
        ),
        pytest.param(
            lambda sdp: mangle(sdp, "a=fingerprint:sha-256", "a=fingerprint:md5"),
            id="MD5 fingerprint",
        ),
        pytest.param(
            lambda sdp: "\r\n".join(
                line for line in sdp.split("\r\n") if not line.startswith("a=ice-pwd")
            ),
            id="no ICE password",
        ),
        pytest.param(lambda sdp: with_sections(sdp, 17), id="17 tracks"),
    ],
)
async def test_refused_offer_leaves_the_publish_connection_usable(
    raw: OpenRaw, join: Join, bad_offer: Callable[[str], str]
) -> None:
    sock = await raw("joined", room="r1")
    offer = await publish_offer_sdp()
    assert await sock.error(rid(1, "publish_offer", sdp=bad_offer(offer)), 1) == "invalid_sdp"
    await sock.alive()
    # the same connection still takes a proper offer and publishes both tracks
    reply = await sock.request("publish_offer", sdp=offer)
    assert reply["type"] == "reply", reply
    assert sorted(t["kind"] for t in reply["result"]["tracks"]) == ["audio", "video"]


async def test_deeply_nested_json_is_refused_and_the_socket_goes_on(raw: OpenRaw) -> None:
    sock = await raw("fresh")
    deep = '{"id": 1, "type": "ping", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert await sock.error(deep, None) == "invalid_json"
    await sock.alive()


async def test_display_name_with_control_characters_is_refused(raw: OpenRaw) -> None:
    sock = await raw("authenticated")
    assert await sock.error(rid(1, "join", room="r1", name="a\x00b"), 1) == "invalid_message"
    await sock.alive()


async def test_session_ends_when_its_token_expires(server: Server, join: Join) -> None:
    watcher = await join("watcher", publish=False)
    issued = time.time() - 60 * 60 + 1.5  # a 60-minute token with 1.5 s left
    token, _ = server.tokens.mint(new_identity_id(server.access_key), ["voip"], 60, now=issued)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.url.replace("http", "ws", 1) + "/v1/rtc")
        sock = Raw(ws)
        assert (await sock.request("authenticate", token=token))["type"] == "reply"
        joined = await sock.request("join", room="r1", name="short-lived")
        code, before = await sock.ended()
    assert code == 4001
    assert {"type": "disconnect", "code": 4001, "reason": "token expired"} in before
    pid = joined["result"]["participant"]["id"]
    await watcher.until(lambda: watcher.left.get(pid) == "token_expired")


async def test_chat_only_token_authenticates_but_cannot_join_a_call(
    server: Server, raw: OpenRaw
) -> None:
    sock = await raw()
    reply = await sock.request("authenticate", token=server.token(scopes=("chat",)))
    assert reply["type"] == "reply" and reply["result"]["scopes"] == ["chat"]
    await sock.alive()  # a chat-only socket stays open for chat events
    assert await sock.error(rid("j", "join", room="r1", name="chatter"), "j") == "missing_scope"
    closed, before = await sock.ended()
    assert closed == 4003
    assert [m["code"] for m in before if m["type"] == "disconnect"] == [4003]
