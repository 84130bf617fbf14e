"""The signalling WebSocket at /v1/rtc: framing, timeouts and the socket's life only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from aiohttp import WSMsgType, web

from ..keys import CONFIG
from . import handlers, outbound
from .connection import CloseSession, Connection
from .protocol import MAX_MESSAGE_BYTES
from .resume import SESSIONS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
CLOSE_PROTOCOL = 4000
CLOSE_TIMEOUT = 4008


@routes.get("/v1/rtc")
async def rtc(request: web.Request) -> web.WebSocketResponse:
    """One participant's signalling socket (docs/protocol.md)."""
    # aiohttp's own limit closes with 1009 before we see the frame: keep it well above ours so
    # that an oversized message gets our error, a `disconnect` and close code 4000.
    ws = web.WebSocketResponse(max_msg_size=16 * MAX_MESSAGE_BYTES, heartbeat=None)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    conn = Connection(request.app)
    writer = asyncio.ensure_future(_write(ws, conn))
    config = request.app[CONFIG]
    ending: CloseSession | None = None
    try:
        ending = await _read(ws, conn, config.auth_timeout_s, config.ws_idle_timeout_s)
    finally:
        conn.release()
        # A socket that just went away (or went quiet) may come back: resume.py keeps the
        # participant, media and all, for 30 s. Every other ending is final.
        resumable = ending is None or ending.code == CLOSE_TIMEOUT
        if conn.participant is not None and not (
            resumable and request.app[SESSIONS].detach(conn.participant)
        ):
            reason = ending.reason_for_room if ending else "disconnected"
            request.app[SESSIONS].forget(conn.participant)
            await conn.participant.room.leave(conn.participant, reason)
        if ending is not None and ending.code != 1000:
            conn.send(outbound.disconnect(ending.code, ending.reason))
        conn.outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 5)
        await ws.close(
            code=ending.code if ending else 1000,
            message=(ending.reason if ending else "").encode()[:120],
        )
    return ws


async def _read(
    ws: web.WebSocketResponse, conn: Connection, auth_timeout_s: float, idle_timeout_s: float
) -> CloseSession | None:
    """Read frames until the socket ends; return why the server ends it (None: client did)."""
    while True:
        timeout = auth_timeout_s if conn.token is None else idle_timeout_s
        receive = asyncio.ensure_future(ws.receive())
        waiters: set[asyncio.Future[Any]] = {receive, conn.close_requested}
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if conn.close_requested in done:
            receive.cancel()
            return conn.close_requested.result()
        if not done:
            receive.cancel()
            what = "authenticate" if conn.token is None else "any message"
            return CloseSession(CLOSE_TIMEOUT, f"timeout waiting for {what}")
        msg = receive.result()
        if msg.type == WSMsgType.TEXT and len(msg.data) > MAX_MESSAGE_BYTES:
            conn.send(
                outbound.error(
                    None,
                    "message_too_large",
                    f"messages are limited to {MAX_MESSAGE_BYTES // 1024} KiB",
                )
            )
            return CloseSession(CLOSE_PROTOCOL, "message too large")
        if msg.type == WSMsgType.TEXT:
            try:
                await handlers.dispatch(conn, msg.data)
            except CloseSession as close:
                return close
        elif msg.type == WSMsgType.BINARY:
            conn.send(outbound.error(None, "invalid_json", "binary frames are not accepted"))
            return CloseSession(CLOSE_PROTOCOL, "binary frame")
        elif msg.type == WSMsgType.ERROR:
            return CloseSession(CLOSE_PROTOCOL, "frame too large or malformed")
        else:  # CLOSE, CLOSING, CLOSED
            return None


async def _write(ws: web.WebSocketResponse, conn: Connection) -> None:
    while (message := await conn.outbox.get()) is not None:
        if ws.closed:
            return
        try:
            await ws.send_json(message)
        except (ConnectionError, RuntimeError):
            return


async def close_all_sockets(app: web.Application) -> None:
    """On shutdown: close every signalling socket (aiohttp's "Websocket shutdown")."""
    for ws in list(app.get(SOCKETS, ())):
        await ws.close(code=1001, message=b"server shutdown")
