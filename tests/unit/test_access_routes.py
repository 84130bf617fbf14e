"""Revocation, deletion, api-version, body limits and the rooms API's bad input, over HTTP
(the identity app of conftest.py: real routes, real store in a temporary directory)."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.keys import REVOCATIONS
from switchboard.signalling.keys import ROOMS_API as ROOMS_API_KEY
from switchboard.signalling.openapi import DOCUMENT
from switchboard.signalling.rooms.routes import room_json

from .conftest import build_identity_app

IDENTITY_API = "?api-version=2023-10-01"
ROOMS_API = "?api-version=2025-03-13"


@pytest.fixture
def signed(identity_client: TestClient, access_key_b64: str) -> Any:
    """``await signed(method, path, body=b"", headers=None, now=None)``: a signed request."""

    async def request(
        method: str,
        path: str,
        body: dict[str, Any] | bytes = b"",
        headers: dict[str, str] | None = None,
        now: float | None = None,
    ) -> ClientResponse:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        url = str(identity_client.make_url(path))
        all_headers = sign_request(method, url, raw, access_key_b64, now=now)
        all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        return await identity_client.request(method, path, data=raw, headers=all_headers)

    return request


async def _identity_with_token(signed: Any) -> tuple[str, str]:
    response = await signed(
        "POST", "/identities" + IDENTITY_API, {"createTokenWithScopes": ["voip"]}
    )
    result = await response.json()
    return result["identity"]["id"], result["accessToken"]["token"]


async def test_revoke_refuses_earlier_tokens_and_not_later_ones(
    signed: Any, identity_app: web.Application, access_key: bytes
) -> None:
    identity_id, old = await _identity_with_token(signed)
    revocations = identity_app[REVOCATIONS]
    tokens = TokenService(access_key)
    assert not revocations.is_revoked(tokens.verify(old))
    response = await signed("POST", f"/identities/{identity_id}/:revokeAccessTokens{IDENTITY_API}")
    assert response.status == 204 and await response.read() == b""
    assert revocations.is_revoked(tokens.verify(old))
    # issued in the same second as the revocation, and still accepted
    response = await signed(
        "POST", f"/identities/{identity_id}/:issueAccessToken{IDENTITY_API}", {"scopes": ["voip"]}
    )
    new = tokens.verify((await response.json())["token"])
    assert not revocations.is_revoked(new)
    assert new.issued_at >= int(time.time())


async def test_delete_identity(
    signed: Any, identity_app: web.Application, access_key: bytes
) -> None:
    identity_id, old = await _identity_with_token(signed)
    response = await signed("DELETE", f"/identities/{identity_id}{IDENTITY_API}")
    assert response.status == 204
    assert identity_app[REVOCATIONS].is_revoked(TokenService(access_key).verify(old))
    for method, path in (
        ("DELETE", f"/identities/{identity_id}"),
        ("POST", f"/identities/{identity_id}/:revokeAccessTokens"),
        ("POST", f"/identities/{identity_id}/:issueAccessToken"),
    ):
        response = await signed(method, path + IDENTITY_API, {"scopes": ["voip"]})
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "IdentityNotFound"


async def test_state_survives_a_restart(
    signed: Any,
    access_key: bytes,
    tmp_path: Path,
    web_demo_dir: Path,
    aiohttp_client: Any,
) -> None:
    """Identities, revocation times, rooms and participants are in the data directory."""
    identity_id, old = await _identity_with_token(signed)
    await signed("POST", f"/identities/{identity_id}/:revokeAccessTokens{IDENTITY_API}")
    body = {"participants": {identity_id: {"role": "Presenter"}}}
    room = await (await signed("POST", "/rooms" + ROOMS_API, body)).json()

    restarted = build_identity_app(access_key, tmp_path, web_demo_dir)
    await aiohttp_client(restarted)  # runs its cleanup contexts: the store is read again
    assert restarted[REVOCATIONS].is_revoked(TokenService(access_key).verify(old))
    assert restarted[REVOCATIONS].not_before(identity_id) > 0
    service = restarted[ROOMS_API_KEY]
    again = await service.get(room["id"])
    assert again is not None and room_json(again) == room
    assert await service.participants(room["id"]) == {identity_id: "Presenter"}
    assert (await service.access(room["id"], identity_id)).role == "Presenter"


@pytest.mark.parametrize(
    ("method", "path", "version"),
    [
        ("POST", "/identities", "2099-01-01"),
        ("POST", "/identities", ""),
        ("POST", "/rooms", "2023-10-01"),
        ("POST", "/rooms", None),
        ("GET", "/rooms", "2025-03-14"),
    ],
)
async def test_wrong_api_version_is_a_400(
    signed: Any, method: str, path: str, version: str | None
) -> None:
    query = "" if version is None else f"?api-version={version}"
    response = await signed(method, path + query)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "UnsupportedApiVersion"


async def test_replayed_request_outside_the_date_window_is_a_401(signed: Any) -> None:
    for skew_s in (-16 * 60, 16 * 60):
        response = await signed("POST", "/rooms" + ROOMS_API, {}, now=time.time() + skew_s)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "Unauthorized"


async def test_oversized_body_is_a_413(signed: Any) -> None:
    big = b'{"pad": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    for path in ("/identities" + IDENTITY_API, "/rooms" + ROOMS_API):
        response = await signed("POST", path, big)
        assert response.status == 413
        assert (await response.json())["error"]["code"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed JSON"),
        pytest.param(b"[]", id="not an object"),
        pytest.param({"validFrom": "yesterday"}, id="bad date"),
        pytest.param({"validFrom": 5}, id="date a number"),
        pytest.param({"pstnDialOutEnabled": "yes"}, id="bool a string"),
        pytest.param({"participants": []}, id="participants a list"),
        pytest.param({"participants": {"admin": {"role": "Attendee"}}}, id="not an acs id"),
        pytest.param(
            {"validFrom": "2026-01-02T00:00:00Z", "validUntil": "2026-01-01T00:00:00Z"},
            id="ends before it starts",
        ),
    ],
)
async def test_create_room_bad_body(signed: Any, body: dict[str, Any] | bytes) -> None:
    response = await signed("POST", "/rooms" + ROOMS_API, body)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "BadRequest"


async def test_participant_roles_are_checked(signed: Any) -> None:
    user, _ = await _identity_with_token(signed)
    for role in ("Admin", 3, None):
        body = {"participants": {user: {"role": role}}}
        response = await signed("POST", "/rooms" + ROOMS_API, body)
        assert response.status == 400, role
    response = await signed(
        "POST", "/rooms" + ROOMS_API, {"participants": {user: {"role": "consumer"}}}
    )
    room_id = (await response.json())["id"]
    response = await signed("GET", f"/rooms/{room_id}/participants{ROOMS_API}")
    assert (await response.json())["value"] == [{"rawId": user, "role": "Consumer"}]


async def test_unknown_room_is_a_404(signed: Any) -> None:
    room_id = str(secrets.randbits(56))
    for method, path in (
        ("GET", f"/rooms/{room_id}"),
        ("PATCH", f"/rooms/{room_id}"),
        ("DELETE", f"/rooms/{room_id}"),
        ("GET", f"/rooms/{room_id}/participants"),
        ("PATCH", f"/rooms/{room_id}/participants"),
    ):
        response = await signed(method, path + ROOMS_API, {})
        assert response.status == 404, (method, path)
        assert (await response.json())["error"]["code"] == "NotFound"


async def test_openapi_lists_every_route(
    identity_client: TestClient, identity_app: web.Application
) -> None:
    async with identity_client.get("/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document == json.loads(json.dumps(DOCUMENT))
    routed = {
        (route.method.lower(), route.resource.canonical.replace("{room_id}", "{roomId}"))
        for route in identity_app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/identities", "/rooms"))
        and route.method != "HEAD"
    }
    documented = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if path.startswith(("/identities", "/rooms"))  # chat: tests/integration/test_chat_limits
    }
    assert routed == documented
