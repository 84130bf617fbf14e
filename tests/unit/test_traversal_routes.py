"""``POST /networkTraversal/:issueRelayConfiguration`` and ``POST /v1/connectivity/probe``:
status codes and bodies for good and bad requests (the real store; no media plane needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from switchboard.signalling import errors, store
from switchboard.signalling.config import Config
from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.keys import CONFIG, STORE, TOKENS
from switchboard.signalling.store import identities
from switchboard.signalling.traversal import routes
from switchboard.signalling.traversal.credentials import TraversalConfig

ROUTE = "/networkTraversal/:issueRelayConfiguration"
SECRET = "north"
TRAVERSAL = TraversalConfig(
    turn_urls=("turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"),
    stun_urls=("stun:127.0.0.1:3478",),
    turn_secret=SECRET,
    ttl_s=3600,
)


def _app(access_key: bytes, tmp_path: Path, traversal: TraversalConfig) -> web.Application:
    app = web.Application(middlewares=[errors.middleware])
    app[CONFIG] = Config(access_key=access_key, data_dir=tmp_path, traversal=traversal)
    app[TOKENS] = TokenService(access_key)
    app.cleanup_ctx.append(store.context)
    app.add_routes(routes.routes)
    return app


async def _new_identity(client: TestClient, access_key: bytes) -> str:
    """An identity stored as ``POST /identities`` stores it."""
    identity_id = new_identity_id(access_key)
    await identities.create_identity(client.app[STORE], identity_id, time.time())
    return identity_id


@pytest.fixture
async def client(aiohttp_client: Any, access_key: bytes, tmp_path: Path) -> TestClient:
    return await aiohttp_client(_app(access_key, tmp_path, TRAVERSAL))


async def _signed(client: TestClient, key_b64: str, body: dict[str, Any], **kw: Any) -> Any:
    raw = json.dumps(body).encode()
    headers = sign_request("POST", str(client.make_url(ROUTE)), raw, key_b64, **kw)
    return await client.post(ROUTE, data=raw, headers=headers)


def _check_credential(server: dict[str, Any]) -> None:
    digest = hmac.new(SECRET.encode(), server["username"].encode(), hashlib.sha1).digest()
    assert server["credential"] == base64.b64encode(digest).decode()


async def test_signed_request(client: TestClient, access_key: bytes, access_key_b64: str) -> None:
    user_id = await _new_identity(client, access_key)
    response = await _signed(client, access_key_b64, {"id": user_id, "ttl": 7200})
    assert response.status == 200
    body = await response.json()
    assert [s["urls"] for s in body["iceServers"]] == [[u] for u in TRAVERSAL.turn_urls]
    for server in body["iceServers"]:
        assert server["routeType"] == "any"
        expiry, _, user = server["username"].partition(":")
        # the backend may ask for more than --turn-ttl (3600 here), up to ACS's 48 h
        assert user == user_id and 7190 <= int(expiry) - time.time() <= 7200
        _check_credential(server)
    assert body["expiresOn"].endswith("Z")


async def test_bearer_token(client: TestClient, access_key: bytes) -> None:
    token, _ = TokenService(access_key).mint("8:acs:bob", ["chat"], 5)
    response = await client.post(
        ROUTE,
        json={"routeType": "nearest", "ttl": 172800, "id": "8:acs:bob"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    servers = (await response.json())["iceServers"]
    assert all(s["username"].endswith(":8:acs:bob") for s in servers)
    assert {s["routeType"] for s in servers} == {"nearest"}
    for server in servers:  # a client gets at most the operator's --turn-ttl (3600 here)
        expiry = int(server["username"].partition(":")[0])
        assert 3590 <= expiry - time.time() <= 3600


async def test_bearer_token_cannot_ask_for_another_user(
    client: TestClient, access_key: bytes
) -> None:
    token, _ = TokenService(access_key).mint("8:acs:bob", ["voip"], 5)
    response = await client.post(
        ROUTE, json={"id": "8:acs:eve"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 400
    assert (await response.json())["error"]["message"] == (
        "with a user token, id may only be its own"
    )


async def test_signed_id_must_be_an_existing_identity(
    client: TestClient, access_key: bytes, access_key_b64: str
) -> None:
    foreign = new_identity_id(b"another installation's key")
    response = await _signed(client, access_key_b64, {"id": foreign})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "ValidationError"
    response = await _signed(client, access_key_b64, {"id": "8:acs:x"})
    assert response.status == 400
    never_made = new_identity_id(access_key)
    response = await _signed(client, access_key_b64, {"id": never_made})
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "IdentityNotFound"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "Authorization header is missing", id="no auth"),
        pytest.param({"Authorization": "Bearer nope"}, "malformed", id="garbage token"),
    ],
)
async def test_unauthorised(client: TestClient, headers: dict[str, str], message: str) -> None:
    response = await client.post(ROUTE, json={}, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["error"]["code"] == "Unauthorized" and message in body["error"]["message"]


async def test_bad_signature(client: TestClient) -> None:
    wrong = base64.b64encode(b"x" * 32).decode()
    response = await _signed(client, wrong, {})
    assert response.status == 401
    assert (await response.json())["error"]["message"] == "request signature does not verify"


async def test_expired_token(client: TestClient, access_key: bytes) -> None:
    token, _ = TokenService(access_key).mint("8:acs:bob", ["voip"], 1, now=time.time() - 7200)
    response = await client.post(ROUTE, json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert await response.json() == {
        "error": {"code": "Unauthorized", "message": "token has expired"}
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"ttl": 0}, id="ttl 0"),
        pytest.param({"ttl": 172801}, id="ttl over 48 h"),
        pytest.param({"ttl": "60"}, id="ttl a string"),
        pytest.param({"ttl": True}, id="ttl a bool"),
        pytest.param({"routeType": "fastest"}, id="unknown routeType"),
        pytest.param({"id": ""}, id="empty id"),
        pytest.param({"id": 5}, id="id a number"),
        pytest.param({"id": "a\nb"}, id="id with a newline"),
        pytest.param({"id": "x" * 257}, id="id too long"),
    ],
)
async def test_bad_body(client: TestClient, access_key_b64: str, body: dict[str, Any]) -> None:
    response = await _signed(client, access_key_b64, body)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "ValidationError"


async def test_not_json(client: TestClient, access_key: bytes) -> None:
    token, _ = TokenService(access_key).mint("8:acs:bob", ["voip"], 5)
    response = await client.post(ROUTE, data=b"[1,", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "BadRequest"


async def test_no_relay_configured(
    aiohttp_client: Any, access_key: bytes, access_key_b64: str, tmp_path: Path
) -> None:
    client = await aiohttp_client(_app(access_key, tmp_path, TraversalConfig()))
    response = await _signed(client, access_key_b64, {})
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "RelayNotConfigured"


@pytest.mark.parametrize(
    ("scopes", "headers_for", "status"),
    [
        pytest.param(None, lambda t: {}, 401, id="no token"),
        pytest.param(["chat"], lambda t: {"Authorization": f"Bearer {t}"}, 403, id="no voip"),
    ],
)
async def test_probe_needs_a_voip_token(
    client: TestClient, access_key: bytes, scopes: list[str] | None, headers_for: Any, status: int
) -> None:
    token = TokenService(access_key).mint("u", scopes or ["voip"], 5)[0]
    response = await client.post(
        "/v1/connectivity/probe", json={"sdp": "v=0"}, headers=headers_for(token)
    )
    assert response.status == status
    assert "error" in await response.json()


@pytest.mark.parametrize("sdp", [None, "", 5, "x" * 70_000])
async def test_probe_bad_sdp(client: TestClient, access_key: bytes, sdp: Any) -> None:
    token = TokenService(access_key).mint("u", ["voip"], 5)[0]
    response = await client.post(
        "/v1/connectivity/probe", json={"sdp": sdp}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "ValidationError"
