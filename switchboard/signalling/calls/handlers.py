"""One function per request type of the signalling protocol (docs/protocol.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ...sfu import SdpError
from ...sfu.sdp_checks import media_directions
from ..identity.tokens import CALL_SCOPES, CHAT_SCOPES, TokenError, UserToken
from ..keys import CONFIG, DIRECTORY, REVOCATIONS, ROOMS, ROOMS_API, TOKENS
from ..rooms.service import RoomAccessError
from ..traversal.credentials import ice_servers
from . import enforcement, outbound
from .connection import CloseSession, Connection
from .protocol import ProtocolError, parse_request
from .resume import SESSIONS

log = logging.getLogger(__name__)

Result = dict[str, Any]
Handler = Callable[[Connection, dict[str, Any]], Awaitable[Result]]

CLOSE_AUTH_FAILED = 4001
CLOSE_FORBIDDEN = 4003


def _verify(conn: Connection, token: str) -> UserToken:
    """Verify a token for this socket: signature, expiry, a call or a chat scope (a chat-only
    token gets chat events; ``join`` wants a call scope), not revoked (TokenError)."""
    verified = conn.app[TOKENS].verify(token, required_scope=CALL_SCOPES + CHAT_SCOPES)
    if conn.app[REVOCATIONS].is_revoked(verified):
        raise TokenError("invalid_token", "token has been revoked")
    return verified


def _token_result(token: UserToken) -> Result:
    expires = datetime.fromtimestamp(token.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"user_id": token.user_id, "scopes": list(token.scopes), "expires_on": expires}


async def authenticate(conn: Connection, msg: dict[str, Any]) -> Result:
    if conn.token is not None:
        raise ProtocolError("already_authenticated", "this socket is already authenticated")
    try:
        token = _verify(conn, msg["token"])
    except TokenError as exc:
        code = "missing_scope" if exc.code == "missing_scope" else "invalid_token"
        close = CLOSE_FORBIDDEN if code == "missing_scope" else CLOSE_AUTH_FAILED
        conn.send(outbound.error(msg["id"], code, exc.message))
        raise CloseSession(close, exc.message) from None
    conn.token = token
    conn.app[DIRECTORY].add(token.user_id, conn)
    conn.expire_at(token.expires_at)
    return _token_result(token)


async def refresh_token(conn: Connection, msg: dict[str, Any]) -> Result:
    """Replace the session's token with a fresh one of the same identity: the session then
    ends at the new token's expiry. A token that does not verify (or is revoked, or names
    another identity) is refused with an error and the session goes on as it was."""
    assert conn.token is not None
    try:
        token = _verify(conn, msg["token"])
    except TokenError as exc:
        code = "missing_scope" if exc.code == "missing_scope" else "invalid_token"
        raise ProtocolError(code, exc.message) from None
    if token.user_id != conn.token.user_id:
        raise ProtocolError("wrong_identity", "the new token is for another identity")
    if conn.participant is not None and not any(s in CALL_SCOPES for s in token.scopes):
        raise ProtocolError("missing_scope", "a session in a call needs a call scope")
    conn.token = token
    conn.expire_at(token.expires_at)
    return _token_result(token)


async def join(conn: Connection, msg: dict[str, Any]) -> Result:
    if conn.participant is not None:
        raise ProtocolError("already_joined", "this socket has joined a room already")
    assert conn.token is not None
    if not any(scope in CALL_SCOPES for scope in conn.token.scopes):
        message = "joining a call needs a token with the voip or voip.join scope"
        conn.send(outbound.error(msg["id"], "missing_scope", message))
        raise CloseSession(CLOSE_FORBIDDEN, message)
    try:
        access = await conn.app[ROOMS_API].access(msg["room"], conn.token.user_id)
    except RoomAccessError as exc:
        raise ProtocolError(exc.code, exc.message) from None
    room = conn.app[ROOMS].get_or_create(msg["room"])
    others = [p.info() for p in room.participants.values()]
    tracks = [t for p in room.participants.values() for t in p.tracks()]
    session = conn.app[SESSIONS].create(conn.token.user_id)  # resume.py: events numbered
    session.attach(conn.send, conn.media_failed)
    conn.participant = room.join(
        msg["name"], conn.token.user_id, session.send, session.media_failed
    )
    conn.app[SESSIONS].bind(session, conn.participant)
    conn.participant.role, conn.participant.can_publish = access.role, access.can_publish
    return {
        "session_id": session.id,
        "participant": conn.participant.info(),
        "room": room.name,
        "participants": others,
        "tracks": tracks,
        "ice_servers": ice_servers(conn.app[CONFIG].traversal, conn.token.user_id)[0],
    }


async def resume(conn: Connection, msg: dict[str, Any]) -> Result:
    """Take a detached participant back (resume.py); the reply holds the missed events."""
    if conn.participant is not None:
        raise ProtocolError("already_joined", "this socket has joined a room already")
    assert conn.token is not None
    session = conn.app[SESSIONS].find(msg["session_id"], conn.token.user_id)
    missed = session.missed(msg["last_seq"]) if session is not None else None
    if session is None or session.participant is None or missed is None:
        raise ProtocolError("cannot_resume", "no such session to resume; join again")
    session.attach(conn.send, conn.media_failed)
    conn.participant = participant = session.participant
    return {"participant": participant.info(), "room": participant.room.name, "missed": missed}


async def publish_offer(conn: Connection, msg: dict[str, Any]) -> Result:
    participant = conn.joined()
    # A role that may not publish may still open its data channels (an offer without media).
    if not participant.can_publish and media_directions(msg["sdp"]):
        raise ProtocolError(
            "publish_not_allowed", f"your role in this room ({participant.role}) cannot publish"
        )
    return await participant.publish_offer(msg["sdp"])


async def subscribe_answer(conn: Connection, msg: dict[str, Any]) -> Result:
    await conn.joined().subscribe_answer(msg["offer_id"], msg["sdp"])
    return {}


async def trickle(conn: Connection, msg: dict[str, Any]) -> Result:
    await conn.joined().transport(msg["target"]).add_ice_candidate(msg["candidate"])
    return {}


async def ice_restart(conn: Connection, msg: dict[str, Any]) -> Result:
    """Restart ICE on the subscribe connection with the next subscribe_offer (session.py)."""
    conn.joined().restart_ice(msg["connection"])
    return {}


async def update_subscription(conn: Connection, msg: dict[str, Any]) -> Result:
    """A subscriber's preference for one simulcast track (session.py, sfu/simulcast/)."""
    return conn.joined().update_subscription(
        msg["track_id"],
        max_width=msg.get("max_width"),
        max_height=msg.get("max_height"),
        max_fps=msg.get("max_fps"),
        paused=msg.get("paused", False),
    )


async def mute(conn: Connection, msg: dict[str, Any]) -> Result:
    conn.joined().set_muted(msg["track_id"], msg["muted"])
    return {}


async def remove_participant(conn: Connection, msg: dict[str, Any]) -> Result:
    participant = conn.joined()
    enforcement.require_moderator(participant)
    target = enforcement.target_of(participant, msg["participant_id"])
    enforcement.remove_from_call(conn.app[DIRECTORY], target)
    return {}


async def mute_participant(conn: Connection, msg: dict[str, Any]) -> Result:
    participant = conn.joined()
    enforcement.require_moderator(participant)
    target = enforcement.target_of(participant, msg["participant_id"])
    return {"track_ids": enforcement.mute_audio(target)}


async def leave(conn: Connection, msg: dict[str, Any]) -> Result:
    conn.send(outbound.reply(msg["id"]))
    raise CloseSession(1000, "left", reason_for_room="left")


async def ping(conn: Connection, msg: dict[str, Any]) -> Result:
    return {"pong": True}


HANDLERS: dict[str, Handler] = {
    "authenticate": authenticate,
    "refresh_token": refresh_token,
    "join": join,
    "publish_offer": publish_offer,
    "subscribe_answer": subscribe_answer,
    "trickle": trickle,
    "ice_restart": ice_restart,
    "mute": mute,
    "update_subscription": update_subscription,
    "mute_participant": mute_participant,
    "remove_participant": remove_participant,
    "leave": leave,
    "ping": ping,
    "resume": resume,
}
BEFORE_AUTH = frozenset({"authenticate", "ping"})


async def dispatch(conn: Connection, text: str) -> None:
    """Handle one text frame: validate it, run its handler, send its reply or error.

    Raises CloseSession when the socket must close (failed authentication, leave)."""
    request_id = None
    try:
        msg = parse_request(text)
        request_id = msg["id"]
        kind = msg["type"]
        if conn.token is None and kind not in BEFORE_AUTH:
            raise ProtocolError("not_authenticated", "send authenticate first")
        result = await HANDLERS[kind](conn, msg)
        conn.send(outbound.reply(request_id, **result))
    except ProtocolError as exc:
        rid = exc.request_id if request_id is None else request_id
        conn.send(outbound.error(rid, exc.code, exc.message))
    except SdpError as exc:
        conn.send(outbound.error(request_id, exc.code, exc.message))
    except CloseSession:
        raise
    except Exception:
        log.exception("internal error handling a %s request", "signalling")
        conn.send(outbound.error(request_id, "internal_error", "internal server error"))
