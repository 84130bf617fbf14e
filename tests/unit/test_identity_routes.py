"""The identity API over HTTP: signed requests in, ACS-shaped identities and tokens out."""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from yarl import URL

from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.routes import (
    is_own_identity_id,
    new_identity_id,
    resource_id,
)
from switchboard.signalling.identity.tokens import TokenService

ID_PATTERN = re.compile(
    r"8:acs:([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})"
    r"_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
API = "?api-version=2023-10-01"
PostSigned = Callable[..., Awaitable[ClientResponse]]  # the conftest fixture post_signed


def parse_expires_on(value: str) -> float:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def test_resource_id_is_stable_per_key_and_does_not_show_it(access_key: bytes) -> None:
    assert resource_id(access_key) == resource_id(bytes(access_key))
    assert resource_id(access_key) != resource_id(secrets.token_bytes(32))
    assert uuid.UUID(resource_id(access_key)).version == 4
    assert access_key.hex()[:8] not in resource_id(access_key)


def test_identity_ids(access_key: bytes) -> None:
    first, second = new_identity_id(access_key), new_identity_id(access_key)
    assert first != second
    for identity_id in (first, second):
        match = ID_PATTERN.fullmatch(identity_id)
        assert match and match[1] == resource_id(access_key)
        assert is_own_identity_id(identity_id, access_key)
    assert not is_own_identity_id(first, secrets.token_bytes(32))
    assert not is_own_identity_id(first + "0", access_key)
    assert not is_own_identity_id("admin", access_key)


async def test_create_identity_without_token(post_signed: PostSigned, access_key: bytes) -> None:
    for body in (b"", {}, {"createTokenWithScopes": []}):
        response = await post_signed("/identities" + API, body)
        assert response.status == 201
        result = await response.json()
        assert set(result) == {"identity"}
        assert is_own_identity_id(result["identity"]["id"], access_key)


async def test_create_identity_with_token(post_signed: PostSigned, access_key: bytes) -> None:
    before = time.time()
    response = await post_signed(
        "/identities" + API, {"createTokenWithScopes": ["voip", "chat"], "expiresInMinutes": 60}
    )
    assert response.status == 201
    result = await response.json()
    identity_id = result["identity"]["id"]
    assert is_own_identity_id(identity_id, access_key)
    token = TokenService(access_key).verify(result["accessToken"]["token"], "voip")
    assert token.user_id == identity_id
    assert token.scopes == ("voip", "chat")
    expires_on = parse_expires_on(result["accessToken"]["expiresOn"])
    assert expires_on == token.expires_at
    assert before - 1 + 3600 <= expires_on <= time.time() + 3600


async def test_default_lifetime_is_1440_minutes(post_signed: PostSigned, access_key: bytes) -> None:
    response = await post_signed("/identities", {"createTokenWithScopes": ["chat"]})
    token = TokenService(access_key).verify((await response.json())["accessToken"]["token"])
    assert token.expires_at - token.issued_at == 1440 * 60


async def test_issue_access_token(post_signed: PostSigned, access_key: bytes) -> None:
    identity_id = (await (await post_signed("/identities" + API)).json())["identity"]["id"]
    response = await post_signed(
        f"/identities/{identity_id}/:issueAccessToken" + API,
        {"scopes": ["voip"], "expiresInMinutes": 1440},
    )
    assert response.status == 200
    result = await response.json()
    assert set(result) == {"token", "expiresOn"}
    token = TokenService(access_key).verify(result["token"], "voip")
    assert token.user_id == identity_id and token.scopes == ("voip",)
    assert parse_expires_on(result["expiresOn"]) == token.expires_at
    assert token.expires_at - token.issued_at == 1440 * 60


async def created_identity(post_signed: PostSigned) -> str:
    """The id of a new identity, made through the API (so that it is stored)."""
    response = await post_signed("/identities" + API)
    assert response.status == 201
    return str((await response.json())["identity"]["id"])


async def test_issue_access_token_with_percent_encoded_id(
    identity_client: TestClient, access_key: bytes, access_key_b64: str, post_signed: PostSigned
) -> None:
    identity_id = await created_identity(post_signed)
    body = b'{"scopes": ["chat"]}'
    url = str(identity_client.make_url("/")).rstrip("/")
    url += f"/identities/{identity_id.replace(':', '%3A')}/:issueAccessToken{API}"
    headers = sign_request("POST", url, body, access_key_b64)
    async with identity_client.session.post(
        URL(url, encoded=True), data=body, headers=headers
    ) as response:
        assert response.status == 200, await response.text()
        token = TokenService(access_key).verify((await response.json())["token"], "chat")
    assert token.user_id == identity_id


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"createTokenWithScopes": ["admin"]}, id="unknown scope"),
        pytest.param({"createTokenWithScopes": "voip"}, id="scopes a string"),
        pytest.param({"createTokenWithScopes": [1]}, id="scope an int"),
        pytest.param({"createTokenWithScopes": ["voip"], "expiresInMinutes": 59}, id="59 min"),
        pytest.param({"createTokenWithScopes": ["voip"], "expiresInMinutes": 1441}, id="1441"),
        pytest.param({"createTokenWithScopes": ["voip"], "expiresInMinutes": "60"}, id="str"),
        pytest.param({"createTokenWithScopes": ["voip"], "expiresInMinutes": 60.5}, id="float"),
        pytest.param({"createTokenWithScopes": ["voip"], "expiresInMinutes": True}, id="bool"),
        pytest.param({"expiresInMinutes": 10}, id="bad minutes without scopes"),
        pytest.param(b"{not json", id="not json"),
        pytest.param(b'["voip"]', id="not an object"),
    ],
)
async def test_create_identity_bad_body(post_signed: PostSigned, body: dict | bytes) -> None:
    response = await post_signed("/identities" + API, body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] in {"ValidationError", "BadRequest"} and error["message"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param({"expiresInMinutes": 60}, id="no scopes"),
        pytest.param({"scopes": []}, id="empty scopes"),
        pytest.param({"scopes": ["voip", "admin"]}, id="unknown scope"),
        pytest.param({"scopes": ["voip"], "expiresInMinutes": 30}, id="30 minutes"),
        pytest.param({"scopes": ["voip"], "expiresInMinutes": None}, id="null minutes"),
        pytest.param(b"[]", id="not an object"),
    ],
)
async def test_issue_access_token_bad_body(post_signed: PostSigned, body: dict | bytes) -> None:
    identity_id = await created_identity(post_signed)
    response = await post_signed(f"/identities/{identity_id}/:issueAccessToken", body)
    assert response.status == 400
    assert (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    "identity_id",
    [
        pytest.param(new_identity_id(secrets.token_bytes(32)), id="another installation's"),
        pytest.param("8:acs:nonsense", id="malformed"),
        pytest.param("admin", id="not an acs id"),
    ],
)
async def test_issue_access_token_to_unknown_identity(
    post_signed: PostSigned, identity_id: str
) -> None:
    response = await post_signed(
        f"/identities/{identity_id}/:issueAccessToken", {"scopes": ["voip"]}
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "IdentityNotFound"


async def test_never_created_identity_is_not_found(
    post_signed: PostSigned, access_key: bytes
) -> None:
    """A well-formed id of this installation that the API never made is a 404 too."""
    response = await post_signed(
        f"/identities/{new_identity_id(access_key)}/:issueAccessToken", {"scopes": ["voip"]}
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "IdentityNotFound"


async def test_colon_action_is_literal(post_signed: PostSigned) -> None:
    identity_id = await created_identity(post_signed)
    for action in ("issueAccessToken", "revokeAccessTokens", ":issueaccesstoken"):
        response = await post_signed(f"/identities/{identity_id}/{action}", {"scopes": ["voip"]})
        assert response.status == 404


async def test_unsigned_requests_are_refused_before_the_body_is_read(
    identity_client: TestClient, access_key: bytes
) -> None:
    paths = ("/identities", f"/identities/{new_identity_id(access_key)}/:issueAccessToken")
    for path in paths:
        async with identity_client.post(path, data=b"{not json") as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "Unauthorized"


async def test_wrong_key_is_refused(post_signed: PostSigned, access_key: bytes) -> None:
    other = base64.b64encode(secrets.token_bytes(32)).decode()
    for path in ("/identities", f"/identities/{new_identity_id(access_key)}/:issueAccessToken"):
        response = await post_signed(path, {"scopes": ["voip"]}, key_b64=other)
        assert response.status == 401


async def test_stale_signature_is_refused(post_signed: PostSigned) -> None:
    response = await post_signed("/identities", b"", now=time.time() - 16 * 60)
    assert response.status == 401
    assert "15 minutes" in (await response.json())["error"]["message"]


async def test_client_request_id_is_echoed(post_signed: PostSigned, access_key: bytes) -> None:
    request_id = str(uuid.uuid4())
    headers = {"x-ms-client-request-id": request_id}
    ok = await post_signed("/identities", b"", headers=headers)
    bad_body = await post_signed("/identities", b"[]", headers=headers)
    bad_sig = await post_signed("/identities", b"", headers=headers, key_b64="AAAA")
    assert [r.status for r in (ok, bad_body, bad_sig)] == [201, 400, 401]
    for response in (ok, bad_body, bad_sig):
        assert response.headers["x-ms-client-request-id"] == request_id
    plain = await post_signed("/identities")
    assert "x-ms-client-request-id" not in plain.headers


async def test_only_post_is_routed(identity_client: TestClient) -> None:
    async with identity_client.get("/identities") as response:
        assert response.status == 405
        assert (await response.json())["error"]["code"]
