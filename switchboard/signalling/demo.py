"""The web demo's server side: the page and its files, and a token endpoint with no sign-in.

NOT FOR PRODUCTION. ``POST /demo/token`` gives a ``voip`` + ``chat`` token to anyone who asks:
it plays the part of an application backend, which in a real deployment authenticates its own
users and calls the signed identity API (``identity/routes.py``) instead. Serve with
``--no-demo`` to leave all of this out.

Routes:

    POST /demo/token   {"name": str (1..64 chars), "room": str (1..64 of A-Z a-z 0-9 - _ .)}
        200 {"token", "user_id", "expires_on", "chat_thread_id"}   expires_on: ISO 8601 UTC
            with "Z"; chat_thread_id: the room's chat thread (one per room name), which the
            new user has joined under ``name``
        400 {"error": {"code", "message"}} on a bad body
    GET  /             web-demo/index.html (404 with an error body if it is absent)
    GET  /static/<file> the demo directory's files; no directory listing
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from . import errors
from .chat.service import ChatService
from .errors import ApiError
from .identity.routes import format_expires_on, new_identity_id
from .keys import CHAT, CONFIG, TOKENS
from .store.chat import NewParticipant

DEMO_SCOPES = ("voip", "chat")
DEMO_TOKEN_MINUTES = 120  # long enough for a demo call, short for a token anyone can get
MAX_NAME_CHARS = 64
ROOM_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")  # as `join` accepts (docs/protocol.md)
STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

routes = web.RouteTableDef()


@routes.post("/demo/token")
async def demo_token(request: web.Request) -> web.Response:
    """Mint a token for a fresh identity. ``name`` and ``room`` are only checked here, so that
    the form fails early; the client sends them again in ``join``."""
    body = await errors.read_json_object(request)
    name, room = body.get("name"), body.get("room")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise ApiError(400, "ValidationError", f"name must be 1 to {MAX_NAME_CHARS} characters")
    if not isinstance(room, str) or not ROOM_PATTERN.fullmatch(room):
        raise ApiError(
            400,
            "ValidationError",
            "room must be 1 to 64 characters of letters, digits, '-', '_' and '.'",
        )
    user_id = new_identity_id(request.app[CONFIG].access_key)
    token, expires_on = request.app[TOKENS].mint(user_id, DEMO_SCOPES, DEMO_TOKEN_MINUTES)
    result = {"token": token, "user_id": user_id, "expires_on": format_expires_on(expires_on)}
    if CHAT in request.app:
        result["chat_thread_id"] = await room_thread(request.app[CHAT], room, user_id, name)
    return web.json_response(result)


async def room_thread(chat: ChatService, room: str, user_id: str, name: str) -> str:
    """The chat thread of a demo room (one per room name, made by its first visitor), with
    ``user_id`` added to it as ``name``; its id. The thread and its history outlive the call.
    """
    thread, _, _ = await chat.create_thread(
        None, f"Room {room}", [], repeatability_id=f"demo-room:{room}", creator_id=user_id
    )
    await chat.add_participants(None, thread.id, [NewParticipant(user_id, name)], user_id)
    return thread.id


def add_static(app: web.Application, web_demo_dir: Path) -> None:
    """Serve ``web_demo_dir/index.html`` at ``/`` and the directory's own files (no
    subdirectories) at ``/static/<name>``.

    Names are 1 to 64 characters of letters, digits, ``.``, ``_`` and ``-`` and cannot start
    with a dot, so no path can leave the directory; anything else, or a missing file, is a 404
    with an error body.
    """
    index = web_demo_dir / "index.html"

    async def index_page(request: web.Request) -> web.StreamResponse:
        if not index.is_file():
            raise ApiError(404, "NotFound", "the web demo is not installed on this server")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def static_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = web_demo_dir / name
        if not STATIC_NAME.fullmatch(name) or path.is_symlink() or not path.is_file():
            raise ApiError(404, "NotFound", "no such file")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", index_page)
    app.router.add_get("/static/{name:.*}", static_file)
