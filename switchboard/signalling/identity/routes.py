"""The identity API: identities, their user access tokens and revocation, in the shape of ACS.

Routes (api-version 2023-10-01; every request signed with the access key, see ``hmac_auth``):

    POST   /identities  {"createTokenWithScopes"?: [scope], "expiresInMinutes"?: int}
        201 {"identity": {"id"}, "accessToken"?: {"token", "expiresOn"}}
    POST   /identities/{id}/:issueAccessToken  {"scopes": [scope], "expiresInMinutes"?: int}
        200 {"token", "expiresOn"}
    POST   /identities/{id}/:revokeAccessTokens   204; tokens issued until now are refused
    DELETE /identities/{id}                       204; the identity is gone, its tokens too

``expiresInMinutes``: 60..1440, default 1440, as in ACS. ``expiresOn``: ISO 8601 UTC with "Z".
Errors ``{"error": {"code", "message"}}``: 400 for a bad body or an unknown ``api-version``
(absent is accepted), 401 for a bad signature, 404 for an id this installation did not make
or has deleted, 413 for a body over the configured limit. ``x-ms-client-request-id`` is
echoed when sent. Identities and revocation times live in the store (``store/identities``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..keys import CONFIG, REVOCATIONS, STORE, TOKENS
from ..store import identities as queries
from . import hmac_auth
from .tokens import SCOPES

MIN_EXPIRES_IN_MINUTES = 60  # ACS's bounds for the REST API
MAX_EXPIRES_IN_MINUTES = 1440
CLIENT_REQUEST_ID = "x-ms-client-request-id"
API_VERSIONS = frozenset({"2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01"})
_MAX_CLIENT_REQUEST_ID_CHARS = 256
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_IDENTITY_ID = re.compile(rf"8:acs:(?P<resource>{_UUID})_(?P<user>{_UUID})")

routes = web.RouteTableDef()


def resource_id(access_key: bytes) -> str:
    """Return this installation's resource id: a UUID derived from the access key.

    Stable for as long as the key is, and needs no storage; it does not reveal the key.
    """
    digest = hmac.new(access_key, b"switchboard resource id v1", hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def new_identity_id(access_key: bytes) -> str:
    """Return a fresh identity id, ``8:acs:<resource id>_<uuid4>`` as ACS forms them."""
    return f"8:acs:{resource_id(access_key)}_{uuid.uuid4()}"


def is_own_identity_id(identity_id: str, access_key: bytes) -> bool:
    """Tell whether ``identity_id`` is well formed and of this installation's resource."""
    match = _IDENTITY_ID.fullmatch(identity_id)
    return match is not None and match["resource"] == resource_id(access_key)


def format_expires_on(expires_on: datetime) -> str:
    """Render a UTC datetime as ACS does: ``2025-11-30T15:00:00Z`` (whole seconds)."""
    return expires_on.strftime("%Y-%m-%dT%H:%M:%SZ")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def signed(api_versions: frozenset[str], required: bool = False) -> Callable[[Handler], Handler]:
    """Decorate a handler of a signed API: check ``api-version`` (one of ``api_versions``;
    with ``required``, it must be present), then the HMAC signature, and echo the client
    request id on every answer, errors included. A wrong api-version is a 400
    ``UnsupportedApiVersion``: the SDKs map it to HttpResponseError."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            request_id = request.headers.get(CLIENT_REQUEST_ID)
            try:
                body = await request.read()
                hmac_auth.verify_request(request, body, request.app[CONFIG].access_key)
                version = request.query.get("api-version")
                if (version is None and required) or (
                    version is not None and version not in api_versions
                ):
                    raise ApiError(
                        400,
                        "UnsupportedApiVersion",
                        f"api-version must be one of {', '.join(sorted(api_versions))}",
                    )
                response = await handler(request)
            except ApiError as exc:
                response = errors.error_response(exc.status, exc.code, exc.message)
            if request_id is not None and len(request_id) <= _MAX_CLIENT_REQUEST_ID_CHARS:
                response.headers[CLIENT_REQUEST_ID] = request_id
            return response

        return wrapper

    return decorate


_signed = signed(API_VERSIONS)


async def _existing_identity(request: web.Request) -> str:
    """The ``{id}`` of the path, if it is an identity of this installation that exists;
    raises ApiError 404 ``IdentityNotFound`` otherwise."""
    identity_id = request.match_info["id"]
    if not is_own_identity_id(
        identity_id, request.app[CONFIG].access_key
    ) or not await queries.identity_exists(request.app[STORE], identity_id):
        raise ApiError(404, "IdentityNotFound", "no such identity on this resource")
    return identity_id


def _scopes(value: Any, field: str) -> list[str]:
    """Validate a list of scope names; raises ApiError 400."""
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ApiError(400, "ValidationError", f"{field} must be a list of strings")
    unknown = sorted({s for s in value if s not in SCOPES})
    if unknown:
        raise ApiError(
            400, "ValidationError", f"unknown scope(s) {unknown}; known: {sorted(SCOPES)}"
        )
    return value


def _minutes(body: dict[str, Any]) -> int:
    """Validate ``expiresInMinutes`` (60..1440, default 1440); raises ApiError 400."""
    value = body.get("expiresInMinutes", MAX_EXPIRES_IN_MINUTES)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_EXPIRES_IN_MINUTES <= value <= MAX_EXPIRES_IN_MINUTES
    ):
        raise ApiError(
            400,
            "ValidationError",
            f"expiresInMinutes must be an integer in "
            f"{MIN_EXPIRES_IN_MINUTES}..{MAX_EXPIRES_IN_MINUTES}",
        )
    return value


def _access_token(request: web.Request, user_id: str, scopes: list[str], minutes: int) -> dict:
    """Mint a token, stamped no earlier than the identity's last revocation (revocation.py)."""
    now = max(time.time(), request.app[REVOCATIONS].not_before(user_id))
    token, expires_on = request.app[TOKENS].mint(user_id, scopes, minutes, now=now)
    return {"token": token, "expiresOn": format_expires_on(expires_on)}


@routes.post("/identities")
@_signed
async def create_identity(request: web.Request) -> web.StreamResponse:
    """Create an identity; with ``createTokenWithScopes`` non-empty, also issue it a token."""
    body = await errors.read_json_object(request)
    scopes = _scopes(body.get("createTokenWithScopes", []), "createTokenWithScopes")
    minutes = _minutes(body)
    identity_id = new_identity_id(request.app[CONFIG].access_key)
    await queries.create_identity(request.app[STORE], identity_id, time.time())
    result: dict[str, Any] = {"identity": {"id": identity_id}}
    if scopes:
        result["accessToken"] = _access_token(request, identity_id, scopes, minutes)
    return web.json_response(result, status=201)


@routes.post(r"/identities/{id}/:issueAccessToken")
@_signed
async def issue_access_token(request: web.Request) -> web.StreamResponse:
    """Issue a user access token to an existing identity of this installation."""
    identity_id = await _existing_identity(request)
    body = await errors.read_json_object(request)
    if "scopes" not in body:
        raise ApiError(400, "ValidationError", "scopes is required")
    scopes = _scopes(body["scopes"], "scopes")
    if not scopes:
        raise ApiError(400, "ValidationError", "scopes must name at least one scope")
    minutes = _minutes(body)
    return web.json_response(_access_token(request, identity_id, scopes, minutes))


@routes.post(r"/identities/{id}/:revokeAccessTokens")
@_signed
async def revoke_access_tokens(request: web.Request) -> web.StreamResponse:
    """Refuse every token of the identity issued until now; its live sessions are evicted."""
    identity_id = await _existing_identity(request)
    if not await request.app[REVOCATIONS].revoke(identity_id):
        raise ApiError(404, "IdentityNotFound", "no such identity on this resource")
    return web.Response(status=204)


@routes.delete(r"/identities/{id}")
@_signed
async def delete_identity(request: web.Request) -> web.StreamResponse:
    """Delete the identity: its tokens are refused from now on, its live sessions evicted."""
    identity_id = await _existing_identity(request)
    if not await request.app[REVOCATIONS].revoke(identity_id, delete=True):
        raise ApiError(404, "IdentityNotFound", "no such identity on this resource")
    return web.Response(status=204)
