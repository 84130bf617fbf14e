"""NAT traversal routes: relay credentials in the shape of ACS Network Traversal, and the
connectivity probe behind the self-test.

    POST /networkTraversal/:issueRelayConfiguration
        auth: the connection string's HMAC-SHA256 signature (identity/hmac_auth.py), or
              ``Authorization: Bearer <user access token>``
        body (optional): {"id"?: identity id, "routeType"?: "any"|"nearest", "ttl"?: seconds}
        200 {"iceServers": [{"urls": [...], "username", "credential", "routeType": "any"}],
             "expiresOn": ISO 8601 UTC}
    POST /v1/connectivity/probe   (Bearer user access token with a call scope: voip, voip.join)
        body {"sdp": offer with one data channel}  →  200 {"sdp": answer}
    GET  /connectivity            the self-test page (with the web demo only)

``ttl``: 1..172800 s (ACS's range), default the server's ``--turn-ttl``; a user token gets at
most ``--turn-ttl`` (a longer ``ttl`` is cut to it), a signed request up to 172800. With a
user token the credential's user is the token's (an ``id`` other than its own is a 400); with
a signature it is ``id``, which must be an existing identity of this installation (400 if it
is not an identity id of it, 404 ``IdentityNotFound`` if there is no such identity), or
``anonymous``. ``routeType`` is echoed: there is one relay here, so "nearest" and "any" are
the same servers. Errors are ``{"error": {"code", "message"}}``: 400 for a bad body, 401 for a
bad signature or a bad, expired or revoked token, 403 for a token without a call scope
(probe), 429 when too many probes run (``MAX_PROBES_PER_USER`` per identity,
``MAX_PROBES`` in all), 503 when no TURN server is configured. Credentials never reach a log.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..identity import hmac_auth
from ..identity.routes import format_expires_on, is_own_identity_id
from ..identity.tokens import CALL_SCOPES, TokenError, UserToken
from ..keys import CONFIG, REVOCATIONS, SFU, STORE, TOKENS
from ..store import identities
from .credentials import MAX_TTL_S, ice_servers

log = logging.getLogger(__name__)

ROUTE_TYPES = ("any", "nearest")
MAX_ID_CHARS = 256  # the TURN username (expiry, ":", id) stays under RFC 8489 §14.3's 509 bytes
USER_ID = re.compile(rf"[A-Za-z0-9:._-]{{1,{MAX_ID_CHARS}}}")
MAX_SDP_CHARS = 64 * 1024

routes = web.RouteTableDef()


def _bearer(request: web.Request, required_scope: str | tuple[str, ...] | None) -> UserToken | None:
    """The verified user token of an ``Authorization: Bearer`` header, None without one.
    Raises ApiError 401 (bad, expired or revoked token) or 403 (missing scope)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        token = request.app[TOKENS].verify(value.strip(), required_scope=required_scope)
    except TokenError as exc:
        status = 403 if exc.code == "missing_scope" else 401
        code = "Forbidden" if status == 403 else "Unauthorized"
        raise ApiError(status, code, exc.message) from None
    revocations = request.app.get(REVOCATIONS)
    if revocations is not None and revocations.is_revoked(token):
        raise ApiError(401, "Unauthorized", "token has been revoked")
    return token


async def _relay_user(request: web.Request, value: Any, token: UserToken | None) -> str:
    """The user a relay credential is for: the token's, else ``value`` (an existing identity
    of this installation) or ``anonymous``. Raises ApiError 400, or 404 for no such identity."""
    if value is not None and (not isinstance(value, str) or not USER_ID.fullmatch(value)):
        raise ApiError(
            400,
            "ValidationError",
            f"id must be 1 to {MAX_ID_CHARS} letters, digits, ':', '.', '_' or '-'",
        )
    if token is not None:
        if value is not None and value != token.user_id:
            raise ApiError(400, "ValidationError", "with a user token, id may only be its own")
        return token.user_id
    if value is None:
        return "anonymous"
    if not is_own_identity_id(value, request.app[CONFIG].access_key):
        raise ApiError(400, "ValidationError", "id is not an identity id of this resource")
    if not await identities.existing(request.app[STORE], [value]):
        raise ApiError(404, "IdentityNotFound", "no such identity on this resource")
    return value


@routes.post("/networkTraversal/:issueRelayConfiguration")
async def issue_relay_configuration(request: web.Request) -> web.Response:
    """Issue TURN credentials (draft-uberti-behave-turn-rest §2.2) to a signed backend
    request or to the holder of a user access token."""
    raw = await request.read()
    token = _bearer(request, required_scope=None)
    if token is None:
        hmac_auth.verify_request(request, raw, request.app[CONFIG].access_key)
    body = await errors.read_json_object(request)
    route_type = body.get("routeType", "any")
    if route_type not in ROUTE_TYPES:
        raise ApiError(400, "ValidationError", "routeType must be 'any' or 'nearest'")
    config = request.app[CONFIG].traversal
    ttl = body.get("ttl", config.ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_S:
        raise ApiError(400, "ValidationError", f"ttl must be an integer in 1..{MAX_TTL_S}")
    if token is not None:
        ttl = min(ttl, config.ttl_s)  # a client gets no longer than the operator allows
    user_id = await _relay_user(request, body.get("id"), token)
    if not config.relay_enabled:
        raise ApiError(503, "RelayNotConfigured", "this server has no TURN server configured")
    servers, expires_at = ice_servers(config, user_id, ttl)
    assert expires_at is not None
    relays = [dict(s, routeType=route_type) for s in servers if "username" in s]
    expires_on = format_expires_on(datetime.fromtimestamp(expires_at, UTC))
    return web.json_response({"iceServers": relays, "expiresOn": expires_on})


@routes.post("/v1/connectivity/probe")
async def connectivity_probe(request: web.Request) -> web.Response:
    """Answer a self-test peer's offer with a short-lived server peer that echoes every data
    channel message, gathering candidates exactly as the SFU's transports do."""
    token = _bearer(request, required_scope=CALL_SCOPES)
    if token is None:
        raise ApiError(401, "Unauthorized", "send Authorization: Bearer <user access token>")
    body = await errors.read_json_object(request)
    sdp: Any = body.get("sdp")
    if not isinstance(sdp, str) or not sdp or len(sdp) > MAX_SDP_CHARS:
        raise ApiError(400, "ValidationError", f"sdp must be a string of 1..{MAX_SDP_CHARS} chars")
    from ...sfu import SdpError
    from ...sfu.probe import TooManyProbes

    try:
        answer = await request.app[SFU].create_echo_peer(sdp, owner=token.user_id)
    except TooManyProbes as exc:
        raise ApiError(429, "TooManyRequests", str(exc)) from None
    except SdpError as exc:
        raise ApiError(400, "InvalidSdp", exc.message) from None
    return web.json_response({"sdp": answer})


def add_page(app: web.Application) -> None:
    """Serve the self-test page at ``/connectivity`` (it loads ``/static/connectivity.js``)."""
    page = app[CONFIG].web_demo_dir / "connectivity.html"

    async def connectivity_page(request: web.Request) -> web.StreamResponse:
        if not page.is_file():
            raise ApiError(404, "NotFound", "the connectivity page is not installed")
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/connectivity", connectivity_page)
