"""The ACS Chat REST API (api-version 2024-03-07), authorised by a user access token.

    POST   /chat/threads                          201 {"chatThread", "invalidParticipants"?}
    GET    /chat/threads[?maxPageSize&startTime&skip]            200 {"value", "nextLink"?}
    GET    /chat/threads/{id}                     200 thread properties
    PATCH  /chat/threads/{id}  {"topic"}          204
    DELETE /chat/threads/{id}                     204
    POST   /chat/threads/{id}/messages            201 {"id"}
    GET    /chat/threads/{id}/messages[?maxPageSize&startTime&continuationToken]
                                                  200 {"value" (newest first), "nextLink"?}
    GET    /chat/threads/{id}/messages/{mid}      200 message
    PATCH  /chat/threads/{id}/messages/{mid}      204 {"content"?, "metadata"?}
    DELETE /chat/threads/{id}/messages/{mid}      204
    GET    /chat/threads/{id}/participants[?maxPageSize&skip]    200 {"value", "nextLink"?}
    POST   /chat/threads/{id}/participants/:add   201 {"invalidParticipants"?}
    POST   /chat/threads/{id}/participants/:remove  (an identifier)  204
    POST   /chat/threads/{id}/typing  {"senderDisplayName"?}         200
    POST   /chat/threads/{id}/readReceipts  {"chatMessageId"}        200
    GET    /chat/threads/{id}/readReceipts[?maxPageSize&skip]       200 {"value", "nextLink"?}

``Authorization: Bearer <user access token>`` (a chat scope; 401 ``Unauthorized`` otherwise).
Errors are ``{"error": {"code", "message"}}`` (service.py lists the 403/404 codes); 400
``InvalidContinuationToken`` for a continuation token this server did not make.
``x-ms-client-request-id`` is echoed. docs/api.md, "Chat", is the prose version.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..identity.tokens import TokenError, UserToken
from ..keys import CHAT, REVOCATIONS, TOKENS
from ..store.chat import NewParticipant
from . import wire
from .events import CHAT_SCOPES
from .service import MAX_DISPLAY_NAME_CHARS, MAX_PARTICIPANTS_PER_REQUEST, MAX_TOPIC_CHARS

API_VERSIONS = frozenset(
    {"2021-03-07", "2021-04-05-preview6", "2021-09-07", "2023-11-07", "2024-03-07", "2025-03-15"}
)
CLIENT_REQUEST_ID = "x-ms-client-request-id"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200
MAX_METADATA_ENTRIES = 64
_TOKEN_PREFIX = "sb1."

routes = web.RouteTableDef()
Handler = Callable[[web.Request, UserToken], Awaitable[web.StreamResponse]]


def _caller(request: web.Request) -> UserToken:
    """The verified bearer token of the request; raises ApiError 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "Unauthorized", "an Authorization: Bearer <user access token> is needed"
        )
    try:
        verified = request.app[TOKENS].verify(token.strip(), required_scope=CHAT_SCOPES)
    except TokenError as exc:
        raise ApiError(401, "Unauthorized", exc.message) from None
    if request.app[REVOCATIONS].is_revoked(verified):
        raise ApiError(401, "Unauthorized", "token has been revoked")
    return verified


def chat_api(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Check ``api-version`` (optional; one of API_VERSIONS) and the bearer token, call the
    handler with the caller, render ApiError, echo the client request id."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get(CLIENT_REQUEST_ID)
        try:
            version = request.query.get("api-version")
            if version is not None and version not in API_VERSIONS:
                raise ApiError(
                    400,
                    "UnsupportedApiVersion",
                    f"api-version must be one of {', '.join(sorted(API_VERSIONS))}",
                )
            response = await handler(request, _caller(request))
        except ApiError as exc:
            response = errors.error_response(exc.status, exc.code, exc.message)
        if request_id is not None and len(request_id) <= 256:
            response.headers[CLIENT_REQUEST_ID] = request_id
        return response

    return wrapper


# -- parsing ---------------------------------------------------------------------------------


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "ValidationError", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "ValidationError", f"{name} must be in {low}..{high}")
    return value


def _start_time(request: web.Request) -> float | None:
    raw = request.query.get("startTime")
    return None if raw is None else wire.parse_time(raw, "startTime")


def _string(body: dict[str, Any], name: str, max_chars: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value) or len(value) > max_chars:
        raise ApiError(400, "ValidationError", f"{name} must be a string of 1..{max_chars} chars")
    return value


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA_ENTRIES
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise ApiError(
            400,
            "ValidationError",
            f"metadata must map strings to strings (at most {MAX_METADATA_ENTRIES})",
        )
    return value


def _participants(value: Any) -> list[NewParticipant]:
    if not isinstance(value, list) or len(value) > MAX_PARTICIPANTS_PER_REQUEST:
        raise ApiError(
            400,
            "ValidationError",
            f"participants must be a list of at most {MAX_PARTICIPANTS_PER_REQUEST}",
        )
    result = []
    for item in value:
        if not isinstance(item, dict):
            raise ApiError(400, "ValidationError", "each participant must be an object")
        raw_id = wire.parse_identifier(item.get("communicationIdentifier"), "participant")
        name = _string(item, "displayName", MAX_DISPLAY_NAME_CHARS)
        share = item.get("shareHistoryTime")
        share_at = None if share is None else wire.parse_time(share, "shareHistoryTime")
        result.append(NewParticipant(raw_id, name, share_at))
    return result


def _message_id(request: web.Request) -> int:
    raw = request.match_info["message_id"]
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(404, "MessageNotFound", "no such message in this thread")
    return int(raw)


def encode_continuation(before_sequence_id: int) -> str:
    """The continuation token of a message page: the page after it starts below this
    sequence id. Opaque to clients; ``sb1.`` + base64url of ``{"before": N}``."""
    raw = json.dumps({"before": before_sequence_id}, separators=(",", ":")).encode()
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continuation(token: str) -> int:
    """The sequence id a continuation token names; raises ApiError 400
    ``InvalidContinuationToken`` for anything ``encode_continuation`` did not make."""
    bad = ApiError(400, "InvalidContinuationToken", "the continuation token is malformed")
    if not token.startswith(_TOKEN_PREFIX) or len(token) > 200:
        raise bad
    data = token[len(_TOKEN_PREFIX) :]
    try:
        parsed = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    before = parsed.get("before") if isinstance(parsed, dict) else None
    if isinstance(before, bool) or not isinstance(before, int) or before < 1:
        raise bad
    return before


def _next_link(request: web.Request, **params: str | int) -> str:
    """The absolute URL of the next page: this request with ``params`` replaced."""
    query = {k: v for k, v in request.query.items() if k not in params}
    query.update({k: str(v) for k, v in params.items()})
    return str(request.url.with_query(query))


def _page(request: web.Request, items: list[dict[str, Any]], limit: int, skip: int) -> web.Response:
    """A skip-paged list: ``items`` were fetched with ``limit + 1`` to know whether more exist."""
    body: dict[str, Any] = {"value": items[:limit]}
    if len(items) > limit:
        body["nextLink"] = _next_link(request, skip=skip + limit, maxPageSize=limit)
    return web.json_response(body)


# -- threads ---------------------------------------------------------------------------------


@routes.post("/chat/threads")
@chat_api
async def create_thread(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    topic = _string(body, "topic", MAX_TOPIC_CHARS, required=True)
    assert topic is not None
    participants = _participants(body.get("participants", []))
    repeatability = request.headers.get("repeatability-request-id")
    if repeatability is not None:
        repeatability = f"{caller.user_id}|{repeatability[:64]}"
    thread, invalid, _ = await request.app[CHAT].create_thread(
        caller, topic, participants, repeatability
    )
    result: dict[str, Any] = {"chatThread": wire.thread_properties(thread)}
    if invalid:
        result["invalidParticipants"] = invalid
    return web.json_response(result, status=201)


@routes.get("/chat/threads")
@chat_api
async def list_threads(request: web.Request, caller: UserToken) -> web.StreamResponse:
    limit = _int_query(request, "maxPageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    skip = _int_query(request, "skip", 0, 0, 1_000_000)
    threads = await request.app[CHAT].threads_of(caller, _start_time(request), skip, limit + 1)
    return _page(request, [wire.thread_item(t) for t in threads], limit, skip)


@routes.get("/chat/threads/{thread_id}")
@chat_api
async def get_thread(request: web.Request, caller: UserToken) -> web.StreamResponse:
    thread, _ = await request.app[CHAT].thread_for(caller, request.match_info["thread_id"])
    return web.json_response(wire.thread_properties(thread))


@routes.patch("/chat/threads/{thread_id}")
@chat_api
async def update_thread(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    topic = _string(body, "topic", MAX_TOPIC_CHARS, required=True)
    assert topic is not None
    await request.app[CHAT].update_topic(caller, request.match_info["thread_id"], topic)
    return web.Response(status=204)


@routes.delete("/chat/threads/{thread_id}")
@chat_api
async def delete_thread(request: web.Request, caller: UserToken) -> web.StreamResponse:
    await request.app[CHAT].delete_thread(caller, request.match_info["thread_id"])
    return web.Response(status=204)


# -- messages --------------------------------------------------------------------------------


@routes.post("/chat/threads/{thread_id}/messages")
@chat_api
async def send_message(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    content = body.get("content")
    if not isinstance(content, str) or not content:
        raise ApiError(400, "ValidationError", "content must be a non-empty string")
    kind = body.get("type", "text")
    if not isinstance(kind, str) or kind.lower() not in ("text", "html"):
        raise ApiError(400, "ValidationError", "type must be text or html")
    name = _string(body, "senderDisplayName", MAX_DISPLAY_NAME_CHARS)
    message = await request.app[CHAT].send_message(
        caller, request.match_info["thread_id"], content, kind.lower(), name, _metadata(body)
    )
    return web.json_response({"id": str(message.id)}, status=201)


@routes.get("/chat/threads/{thread_id}/messages")
@chat_api
async def list_messages(request: web.Request, caller: UserToken) -> web.StreamResponse:
    limit = _int_query(request, "maxPageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    token = request.query.get("continuationToken")
    before = None if token is None else decode_continuation(token)
    messages = await request.app[CHAT].list_messages(
        caller, request.match_info["thread_id"], before, limit + 1, _start_time(request)
    )
    body: dict[str, Any] = {"value": [wire.message(m) for m in messages[:limit]]}
    if len(messages) > limit:
        next_token = encode_continuation(messages[limit - 1].sequence_id)
        body["nextLink"] = _next_link(request, continuationToken=next_token, maxPageSize=limit)
    return web.json_response(body)


@routes.get("/chat/threads/{thread_id}/messages/{message_id}")
@chat_api
async def get_message(request: web.Request, caller: UserToken) -> web.StreamResponse:
    message = await request.app[CHAT].get_message(
        caller, request.match_info["thread_id"], _message_id(request)
    )
    return web.json_response(wire.message(message))


@routes.patch("/chat/threads/{thread_id}/messages/{message_id}")
@chat_api
async def update_message(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise ApiError(400, "ValidationError", "content must be a string")
    await request.app[CHAT].change_message(
        caller,
        request.match_info["thread_id"],
        _message_id(request),
        content=content,
        metadata=_metadata(body),
    )
    return web.Response(status=204)


@routes.delete("/chat/threads/{thread_id}/messages/{message_id}")
@chat_api
async def delete_message(request: web.Request, caller: UserToken) -> web.StreamResponse:
    await request.app[CHAT].change_message(
        caller, request.match_info["thread_id"], _message_id(request), delete=True
    )
    return web.Response(status=204)


# -- participants ----------------------------------------------------------------------------


@routes.get("/chat/threads/{thread_id}/participants")
@chat_api
async def list_participants(request: web.Request, caller: UserToken) -> web.StreamResponse:
    limit = _int_query(request, "maxPageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    skip = _int_query(request, "skip", 0, 0, 1_000_000)
    rows = await request.app[CHAT].list_participants(
        caller, request.match_info["thread_id"], skip, limit + 1
    )
    return _page(request, [wire.participant(p) for p in rows], limit, skip)


@routes.post(r"/chat/threads/{thread_id}/participants/:add")
@chat_api
async def add_participants(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    participants = _participants(body.get("participants"))
    invalid = await request.app[CHAT].add_participants(
        caller, request.match_info["thread_id"], participants
    )
    return web.json_response({"invalidParticipants": invalid} if invalid else {}, status=201)


@routes.post(r"/chat/threads/{thread_id}/participants/:remove")
@chat_api
async def remove_participant(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    raw_id = wire.parse_identifier(body, "the participant")
    await request.app[CHAT].remove_participant(caller, request.match_info["thread_id"], raw_id)
    return web.Response(status=204)


# -- typing and read receipts ----------------------------------------------------------------


@routes.post("/chat/threads/{thread_id}/typing")
@chat_api
async def typing(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    name = _string(body, "senderDisplayName", MAX_DISPLAY_NAME_CHARS)
    await request.app[CHAT].typing(caller, request.match_info["thread_id"], name)
    return web.Response(status=200)


@routes.post("/chat/threads/{thread_id}/readReceipts")
@chat_api
async def send_read_receipt(request: web.Request, caller: UserToken) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    raw = body.get("chatMessageId")
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, "ValidationError", "chatMessageId must be a message id")
    await request.app[CHAT].read_receipt(caller, request.match_info["thread_id"], int(raw))
    return web.Response(status=200)


@routes.get("/chat/threads/{thread_id}/readReceipts")
@chat_api
async def list_read_receipts(request: web.Request, caller: UserToken) -> web.StreamResponse:
    limit = _int_query(request, "maxPageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    skip = _int_query(request, "skip", 0, 0, 1_000_000)
    rows = await request.app[CHAT].read_receipts(
        caller, request.match_info["thread_id"], skip, limit + 1
    )
    return _page(request, [wire.read_receipt(r) for r in rows], limit, skip)
