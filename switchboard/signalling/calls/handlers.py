"""One function per request type of the signalling protocol (docs/protocol.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ...sfu import SdpError
from ..identity.tokens import TokenError
from ..keys import ROOMS, TOKENS
from . import outbound
from .connection import CloseSession, Connection
from .protocol import ProtocolError, parse_request

log = logging.getLogger(__name__)

Result = dict[str, Any]
Handler = Callable[[Connection, dict[str, Any]], Awaitable[Result]]

CLOSE_AUTH_FAILED = 4001
CLOSE_FORBIDDEN = 4003


async def authenticate(conn: Connection, msg: dict[str, Any]) -> Result:
    if conn.token is not None:
        raise ProtocolError("already_authenticated", "this socket is already authenticated")
    try:
        token = conn.app[TOKENS].verify(msg["token"], required_scope="voip")
    except TokenError as exc:
        code = "missing_scope" if exc.code == "missing_scope" else "invalid_token"
        close = CLOSE_FORBIDDEN if code == "missing_scope" else CLOSE_AUTH_FAILED
        conn.send(outbound.error(msg["id"], code, exc.message))
        raise CloseSession(close, exc.message) from None
    conn.token = token
    conn.expire_at(token.expires_at)
    expires = datetime.fromtimestamp(token.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"user_id": token.user_id, "scopes": list(token.scopes), "expires_on": expires}


async def join(conn: Connection, msg: dict[str, Any]) -> Result:
    if conn.participant is not None:
        raise ProtocolError("already_joined", "this socket has joined a room already")
    assert conn.token is not None
    room = conn.app[ROOMS].get_or_create(msg["room"])
    others = [p.info() for p in room.participants.values()]
    tracks = [t for p in room.participants.values() for t in p.tracks()]
    conn.participant = room.join(msg["name"], conn.token.user_id, conn.send, conn.media_failed)
    return {
        "participant": conn.participant.info(),
        "room": room.name,
        "participants": others,
        "tracks": tracks,
        "ice_servers": [],
    }


async def publish_offer(conn: Connection, msg: dict[str, Any]) -> Result:
    return await conn.joined().publish_offer(msg["sdp"])


async def subscribe_answer(conn: Connection, msg: dict[str, Any]) -> Result:
    await conn.joined().subscribe_answer(msg["offer_id"], msg["sdp"])
    return {}


async def trickle(conn: Connection, msg: dict[str, Any]) -> Result:
    await conn.joined().transport(msg["target"]).add_ice_candidate(msg["candidate"])
    return {}


async def mute(conn: Connection, msg: dict[str, Any]) -> Result:
    conn.joined().set_muted(msg["track_id"], msg["muted"])
    return {}


async def leave(conn: Connection, msg: dict[str, Any]) -> Result:
    conn.send(outbound.reply(msg["id"]))
    raise CloseSession(1000, "left", reason_for_room="left")


async def ping(conn: Connection, msg: dict[str, Any]) -> Result:
    return {"pong": True}


HANDLERS: dict[str, Handler] = {
    "authenticate": authenticate,
    "join": join,
    "publish_offer": publish_offer,
    "subscribe_answer": subscribe_answer,
    "trickle": trickle,
    "mute": mute,
    "leave": leave,
    "ping": ping,
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
