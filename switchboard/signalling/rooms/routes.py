"""The rooms API, in the shape of ACS Rooms (api-version 2025-03-13), HMAC-signed.

    POST   /rooms                       {"validFrom"?, "validUntil"?, "pstnDialOutEnabled"?,
                                         "participants"?: {rawId: {"role"}}}  -> 201 room
    GET    /rooms                       -> 200 {"value": [room]}
    GET    /rooms/{roomId}              -> 200 room
    PATCH  /rooms/{roomId}              merge-patch {"validFrom"?, "validUntil"?,
                                         "pstnDialOutEnabled"?} (null: unchanged) -> 200 room
    DELETE /rooms/{roomId}              -> 204
    GET    /rooms/{roomId}/participants -> 200 {"value": [{"rawId", "role"}]}
    PATCH  /rooms/{roomId}/participants merge-patch {"participants": {rawId: {"role"} | null}}
                                        -> 200 {}

A room is ``{"id", "createdAt", "validFrom", "validUntil", "pstnDialOutEnabled"}``, times in
ISO 8601 UTC with "Z". Times sent must be RFC 3339 date-times with a zone ("Z" or ±hh:mm, as
the SDKs send them); one without (naive) is a 400, as is one outside years 1..9999 UTC.
``Repeatability-Request-Id`` on a create makes a retry return the room the first attempt made
(201 again) instead of a second room. Errors ``{"error": {"code", "message"}}``: 400
``BadRequest`` (bad JSON, a bad field, a bad role, a participant id that is not an existing
identity of this installation, a window that ends before it starts or lasts over 180 days),
400 ``UnsupportedApiVersion``, 401 (signature), 404 ``NotFound`` (no such room), 413 (body
over the limit).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..identity.routes import is_own_identity_id, signed
from ..keys import CONFIG, ROOMS_API, STORE
from ..store import identities
from ..store.models import Room
from .service import EPOCH, ROLES, format_time

__all__ = ["format_time", "parse_time", "room_json", "routes"]

API_VERSIONS = frozenset({"2023-06-14", "2024-04-15", "2025-03-13"})
REPEATABILITY_REQUEST_ID = "Repeatability-Request-Id"
MAX_REPEATABILITY_ID_CHARS = 128
MAX_PARTICIPANTS_PER_REQUEST = 1000

routes = web.RouteTableDef()
_signed = signed(API_VERSIONS, required=True)
_ROLES_BY_LOWER = {role.lower(): role for role in ROLES}


def parse_time(value: Any, field: str) -> float | None:
    """An RFC 3339 date-time with a zone as unix seconds; None for null or absent. Raises
    ApiError 400 for anything else: not a date-time, no zone, outside years 1..9999 UTC."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError(400, "BadRequest", f"{field} must be an ISO 8601 date-time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "BadRequest", f"{field} must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise ApiError(
            400,
            "BadRequest",
            f"{field} must carry a time zone (RFC 3339: 2026-11-29T15:00:00Z or +01:00)",
        )
    try:
        return (moment.astimezone(UTC) - EPOCH).total_seconds()
    except OverflowError:
        raise ApiError(400, "BadRequest", f"{field} is outside years 1..9999 in UTC") from None


def room_json(room: Room) -> dict[str, Any]:
    return {
        "id": room.id,
        "createdAt": format_time(room.created_at),
        "validFrom": format_time(room.valid_from),
        "validUntil": format_time(room.valid_until),
        "pstnDialOutEnabled": room.pstn_dial_out_enabled,
    }


def _optional_bool(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, "BadRequest", f"{field} must be true or false")
    return value


def _participants(request: web.Request, value: Any, allow_removal: bool) -> dict[str, str | None]:
    """Validate ``{rawId: {"role": R}}`` (and ``{rawId: null}`` when ``allow_removal``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", "participants must be an object keyed by rawId")
    if len(value) > MAX_PARTICIPANTS_PER_REQUEST:
        raise ApiError(
            400, "BadRequest", f"at most {MAX_PARTICIPANTS_PER_REQUEST} participants at once"
        )
    access_key = request.app[CONFIG].access_key
    changes: dict[str, str | None] = {}
    for raw_id, entry in value.items():
        if not is_own_identity_id(raw_id, access_key):
            raise ApiError(
                400, "BadRequest", "a participant rawId is not an identity of this resource"
            )
        if entry is None and allow_removal:
            changes[raw_id] = None
            continue
        role = entry.get("role", "Attendee") if isinstance(entry, dict) else None
        canonical = _ROLES_BY_LOWER.get(role.lower()) if isinstance(role, str) else None
        if canonical is None:
            raise ApiError(
                400, "BadRequest", f"a participant role must be one of {', '.join(ROLES)}"
            )
        changes[raw_id] = canonical
    return changes


async def _check_identities_exist(request: web.Request, changes: dict[str, str | None]) -> None:
    """Raise ApiError 400 unless every participant added or changed in ``changes`` is an
    existing identity (removing one that was deleted is allowed)."""
    wanted = {raw_id for raw_id, role in changes.items() if role is not None}
    if not wanted:
        return
    missing = sorted(wanted - await identities.existing(request.app[STORE], wanted))
    if missing:
        raise ApiError(
            400,
            "BadRequest",
            f"participant {missing[0]} is not an existing identity of this resource"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
        )


async def _room(request: web.Request) -> Room:
    room = await request.app[ROOMS_API].get(request.match_info["room_id"])
    if room is None:
        raise ApiError(404, "NotFound", "no such room")
    return room


@routes.post("/rooms")
@_signed
async def create_room(request: web.Request) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    participants = _participants(request, body.get("participants"), allow_removal=False)
    await _check_identities_exist(request, dict(participants))
    repeatability_id = request.headers.get(REPEATABILITY_REQUEST_ID)
    if repeatability_id is not None and not 0 < len(repeatability_id) <= 128:
        raise ApiError(400, "BadRequest", "Repeatability-Request-Id is too long or empty")
    try:
        room = await request.app[ROOMS_API].create(
            parse_time(body.get("validFrom"), "validFrom"),
            parse_time(body.get("validUntil"), "validUntil"),
            bool(_optional_bool(body, "pstnDialOutEnabled")),
            {raw_id: role for raw_id, role in participants.items() if role is not None},
            repeatability_id,
        )
    except ValueError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None
    return web.json_response(room_json(room), status=201)


@routes.get("/rooms")
@_signed
async def list_rooms(request: web.Request) -> web.StreamResponse:
    rooms = await request.app[ROOMS_API].list()
    return web.json_response({"value": [room_json(r) for r in rooms]})


@routes.get("/rooms/{room_id}")
@_signed
async def get_room(request: web.Request) -> web.StreamResponse:
    return web.json_response(room_json(await _room(request)))


@routes.patch("/rooms/{room_id}")
@_signed
async def update_room(request: web.Request) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    try:
        room = await request.app[ROOMS_API].update(
            request.match_info["room_id"],
            parse_time(body.get("validFrom"), "validFrom"),
            parse_time(body.get("validUntil"), "validUntil"),
            _optional_bool(body, "pstnDialOutEnabled"),
        )
    except ValueError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None
    if room is None:
        raise ApiError(404, "NotFound", "no such room")
    return web.json_response(room_json(room))


@routes.delete("/rooms/{room_id}")
@_signed
async def delete_room(request: web.Request) -> web.StreamResponse:
    if not await request.app[ROOMS_API].delete(request.match_info["room_id"]):
        raise ApiError(404, "NotFound", "no such room")
    return web.Response(status=204)


@routes.get("/rooms/{room_id}/participants")
@_signed
async def list_participants(request: web.Request) -> web.StreamResponse:
    participants = await request.app[ROOMS_API].participants(request.match_info["room_id"])
    if participants is None:
        raise ApiError(404, "NotFound", "no such room")
    value = [{"rawId": raw_id, "role": role} for raw_id, role in participants.items()]
    return web.json_response({"value": value})


@routes.patch("/rooms/{room_id}/participants")
@_signed
async def update_participants(request: web.Request) -> web.StreamResponse:
    body = await errors.read_json_object(request)
    changes = _participants(request, body.get("participants"), allow_removal=True)
    await _room(request)
    await _check_identities_exist(request, changes)
    if not await request.app[ROOMS_API].patch_participants(request.match_info["room_id"], changes):
        raise ApiError(404, "NotFound", "no such room")
    return web.json_response({})
