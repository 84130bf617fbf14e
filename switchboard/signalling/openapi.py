"""The OpenAPI 3.1 document of the REST APIs, served at ``GET /openapi.json`` (no signature:
it holds no secret). docs/api.md is the prose version; keep the two in step. Every route of
the application is here (``tests/unit/test_openapi.py`` checks it against ``create_app``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .chat import openapi as chat_openapi

IDENTITY_API_VERSION = "2023-10-01"
ROOMS_API_VERSION = "2025-03-13"

routes = web.RouteTableDef()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "bad body or api-version",
        401: "bad signature",
        404: "not found",
        413: "body too large",
    }
    return {str(s): _json(_ref("ErrorResponse"), words[s]) for s in statuses}


def _op(
    summary: str,
    api_version: str,
    ok: tuple[int, dict[str, Any] | None],
    body: dict[str, Any] | None = None,
    params: tuple[str, ...] = (),
    not_found: bool = False,
    body_type: str = "application/json",
) -> dict[str, Any]:
    status, schema = ok
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"hmac": []}],
        "parameters": [
            {
                "name": "api-version",
                "in": "query",
                "schema": {"type": "string", "default": api_version},
            },
            *(
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ),
        ],
        "responses": {
            str(status): _json(schema, "success") if schema else {"description": "success"},
            **_errors(400, 401, *((404,) if not_found else ()), 413),
        },
    }
    if body is not None:
        op["requestBody"] = {"content": {body_type: {"schema": body}}}
    return op


def _other(
    summary: str,
    ok: tuple[int, dict[str, Any] | None, str],
    errors: dict[int, str],
    security: tuple[str, ...] = (),
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An operation outside the ACS-shaped APIs: no api-version; ``security`` names the
    accepted schemes (any one of them), ``ok`` is (status, JSON schema or None, description)."""
    status, schema, description = ok
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{name: []} for name in security],
        "responses": {
            str(status): _json(schema, description) if schema else {"description": description},
            **{str(s): _json(_ref("ErrorResponse"), why) for s, why in errors.items()},
        },
    }
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return op


_ICE_SERVER = {
    "type": "object",
    "properties": {
        "urls": {"type": "array", "items": {"type": "string"}},
        "username": {"type": "string"},
        "credential": {"type": "string"},
        "routeType": {"enum": ["any", "nearest"]},
    },
}
_SDP = {"type": "object", "required": ["sdp"], "properties": {"sdp": {"type": "string"}}}
_HTML = "an HTML page (web demo only)"

_ROOM_FIELDS = {
    "validFrom": {"type": "string", "format": "date-time"},
    "validUntil": {"type": "string", "format": "date-time"},
    "pstnDialOutEnabled": {"type": "boolean"},
}
_ROLE = {"enum": ["Presenter", "Attendee", "Consumer", "Collaborator"]}
_SCOPES = {
    "type": "array",
    "items": {"enum": ["chat", "chat.join", "chat.join.limited", "voip", "voip.join"]},
}
_MINUTES = {"type": "integer", "minimum": 60, "maximum": 1440, "default": 1440}
_MERGE = "application/merge-patch+json"

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Switchboard REST API",
        "version": "1",
        "description": "Identity (ACS api-version 2023-10-01) and Rooms (ACS api-version "
        "2025-03-13), wire-compatible with the Azure Communication Services SDKs. "
        "See docs/api.md.",
    },
    "components": {
        "securitySchemes": {
            "hmac": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
                "&Signature=<base64>, keyed with the connection string's access key",
            },
            "userToken": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "a user access token (relay configuration: any scope; the "
                "connectivity probe: voip or voip.join)",
            },
        },
        "schemas": {
            "ErrorResponse": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "AccessToken": {
                "type": "object",
                "required": ["token", "expiresOn"],
                "properties": {
                    "token": {"type": "string"},
                    "expiresOn": {"type": "string", "format": "date-time"},
                },
            },
            "Room": {
                "type": "object",
                "required": ["id", "createdAt", *_ROOM_FIELDS],
                "properties": {
                    "id": {"type": "string"},
                    "createdAt": {"type": "string", "format": "date-time"},
                    **_ROOM_FIELDS,
                },
            },
            "Participant": {
                "type": "object",
                "required": ["rawId", "role"],
                "properties": {"rawId": {"type": "string"}, "role": _ROLE},
            },
        },
    },
    "paths": {
        "/identities": {
            "post": _op(
                "Create an identity, optionally with a token",
                IDENTITY_API_VERSION,
                (
                    201,
                    {
                        "type": "object",
                        "properties": {
                            "identity": {
                                "type": "object",
                                "properties": {"id": {"type": "string"}},
                            },
                            "accessToken": _ref("AccessToken"),
                        },
                    },
                ),
                body={
                    "type": "object",
                    "properties": {"createTokenWithScopes": _SCOPES, "expiresInMinutes": _MINUTES},
                },
            )
        },
        "/identities/{id}": {
            "delete": _op(
                "Delete an identity; its tokens are refused, its sessions evicted",
                IDENTITY_API_VERSION,
                (204, None),
                params=("id",),
                not_found=True,
            )
        },
        "/identities/{id}/:issueAccessToken": {
            "post": _op(
                "Issue a user access token",
                IDENTITY_API_VERSION,
                (200, _ref("AccessToken")),
                body={
                    "type": "object",
                    "required": ["scopes"],
                    "properties": {"scopes": _SCOPES, "expiresInMinutes": _MINUTES},
                },
                params=("id",),
                not_found=True,
            )
        },
        "/identities/{id}/:revokeAccessTokens": {
            "post": _op(
                "Revoke every token issued so far; live sessions are evicted within 1 s",
                IDENTITY_API_VERSION,
                (204, None),
                params=("id",),
                not_found=True,
            )
        },
        "/rooms": {
            "post": _op(
                "Create a room (Repeatability-Request-Id makes retries safe)",
                ROOMS_API_VERSION,
                (201, _ref("Room")),
                body={
                    "type": "object",
                    "properties": {
                        **_ROOM_FIELDS,
                        "participants": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"role": _ROLE},
                            },
                        },
                    },
                },
            ),
            "get": _op(
                "List rooms",
                ROOMS_API_VERSION,
                (200, {"type": "object", "properties": {"value": {"items": _ref("Room")}}}),
            ),
        },
        "/rooms/{roomId}": {
            "get": _op(
                "Get a room",
                ROOMS_API_VERSION,
                (200, _ref("Room")),
                params=("roomId",),
                not_found=True,
            ),
            "patch": _op(
                "Update a room (merge-patch: null means unchanged)",
                ROOMS_API_VERSION,
                (200, _ref("Room")),
                body={"type": "object", "properties": _ROOM_FIELDS},
                params=("roomId",),
                not_found=True,
                body_type=_MERGE,
            ),
            "delete": _op(
                "Delete a room; its live participants are removed",
                ROOMS_API_VERSION,
                (204, None),
                params=("roomId",),
                not_found=True,
            ),
        },
        "/rooms/{roomId}/participants": {
            "get": _op(
                "List a room's participants",
                ROOMS_API_VERSION,
                (
                    200,
                    {"type": "object", "properties": {"value": {"items": _ref("Participant")}}},
                ),
                params=("roomId",),
                not_found=True,
            ),
            "patch": _op(
                "Add, change (role) or remove (null) participants; live sessions follow",
                ROOMS_API_VERSION,
                (200, {"type": "object"}),
                body={
                    "type": "object",
                    "properties": {
                        "participants": {
                            "type": "object",
                            "additionalProperties": {
                                "type": ["object", "null"],
                                "properties": {"role": _ROLE},
                            },
                        }
                    },
                },
                params=("roomId",),
                not_found=True,
                body_type=_MERGE,
            ),
        },
        "/networkTraversal/:issueRelayConfiguration": {
            "post": _other(
                "TURN credentials (ACS Network Traversal shape): signed for any identity, or "
                "with a user token for its own (ttl at most the server's --turn-ttl)",
                (
                    200,
                    {
                        "type": "object",
                        "properties": {
                            "iceServers": {"type": "array", "items": _ICE_SERVER},
                            "expiresOn": {"type": "string", "format": "date-time"},
                        },
                    },
                    "success",
                ),
                {
                    400: "bad body, or an id that is not an identity id of this installation",
                    401: "bad signature, or a bad, expired or revoked token",
                    404: "no such identity",
                    503: "no TURN server configured",
                },
                security=("hmac", "userToken"),
                body={
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "routeType": {"enum": ["any", "nearest"], "default": "any"},
                        "ttl": {"type": "integer", "minimum": 1, "maximum": 172800},
                    },
                },
            )
        },
        "/v1/connectivity/probe": {
            "post": _other(
                "The connectivity self-test's echo peer: an offer with one data channel in, "
                "the answer out (2 per user and 32 in all at once, 30 s each)",
                (200, _SDP, "the answer"),
                {
                    400: "bad body or SDP",
                    401: "no, bad, expired or revoked token",
                    403: "the token has no call scope",
                    429: "too many probes at once",
                },
                security=("userToken",),
                body=_SDP,
            )
        },
        "/v1/rtc": {
            "get": _other(
                "The signalling WebSocket (docs/protocol.md); the token goes in its first "
                "message, never in the URL",
                (101, None, "WebSocket upgrade"),
                {},
            )
        },
        "/openapi.json": {"get": _other("This document", (200, {"type": "object"}, "success"), {})},
        "/demo/token": {
            "post": _other(
                "Demo only (off with --no-demo): a voip and chat token for a fresh identity",
                (
                    200,
                    {
                        "type": "object",
                        "properties": {
                            "token": {"type": "string"},
                            "user_id": {"type": "string"},
                            "expires_on": {"type": "string", "format": "date-time"},
                            "chat_thread_id": {"type": "string"},
                        },
                    },
                    "success",
                ),
                {400: "bad body"},
                body={
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "room": {"type": "string"}},
                },
            )
        },
        "/": {"get": _other("The web demo page", (200, None, _HTML), {})},
        "/static/{name}": {
            "get": {
                **_other("The web demo's files", (200, None, "the file"), {404: "no such file"}),
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            }
        },
        "/connectivity": {"get": _other("The connectivity self-test page", (200, None, _HTML), {})},
    },
}


DOCUMENT["paths"].update(chat_openapi.PATHS)
DOCUMENT["components"]["schemas"].update(chat_openapi.SCHEMAS)
DOCUMENT["components"]["securitySchemes"].update(chat_openapi.SECURITY_SCHEMES)
DOCUMENT["info"]["description"] += (
    f" Chat (ACS api-version {chat_openapi.API_VERSION}, Bearer user access token)."
)


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
