"""The web demo's server side: the unsigned token endpoint and the static files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from switchboard.signalling import demo, errors
from switchboard.signalling.identity.routes import is_own_identity_id
from switchboard.signalling.identity.tokens import TokenService


async def test_demo_token(identity_client: TestClient, access_key: bytes) -> None:
    async with identity_client.post("/demo/token", json={"name": "Ada", "room": "standup"}) as r:
        assert r.status == 200
        result = await r.json()
    assert set(result) == {"token", "user_id", "expires_on"}
    token = TokenService(access_key).verify(result["token"], "voip")
    assert token.scopes == ("voip", "chat")
    assert token.user_id == result["user_id"]
    assert is_own_identity_id(result["user_id"], access_key)
    assert token.expires_at - token.issued_at == demo.DEMO_TOKEN_MINUTES * 60
    assert result["expires_on"].endswith("Z")


async def test_each_demo_token_is_a_fresh_identity(identity_client: TestClient) -> None:
    ids = set()
    for _ in range(3):
        async with identity_client.post("/demo/token", json={"name": "A", "room": "r"}) as r:
            ids.add((await r.json())["user_id"])
    assert len(ids) == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "x" * 64, "room": "a" * 64}, id="longest"),
        pytest.param({"name": "Zoë 🎧", "room": "team-1_a.b"}, id="unicode name, every room char"),
    ],
)
async def test_demo_token_accepts(identity_client: TestClient, body: dict) -> None:
    async with identity_client.post("/demo/token", json=body) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"room": "r"}, id="no name"),
        pytest.param({"name": "", "room": "r"}, id="empty name"),
        pytest.param({"name": "x" * 65, "room": "r"}, id="name too long"),
        pytest.param({"name": 7, "room": "r"}, id="name not a string"),
        pytest.param({"name": "A"}, id="no room"),
        pytest.param({"name": "A", "room": ""}, id="empty room"),
        pytest.param({"name": "A", "room": "a b"}, id="space in room"),
        pytest.param({"name": "A", "room": "a/b"}, id="slash in room"),
        pytest.param({"name": "A", "room": "salle-é"}, id="non-ASCII room"),
        pytest.param({"name": "A", "room": "r" * 65}, id="room too long"),
        pytest.param({"name": "A", "room": "r\n"}, id="trailing newline"),
        pytest.param("not an object", id="JSON string"),
    ],
)
async def test_demo_token_refuses(identity_client: TestClient, body: Any) -> None:
    async with identity_client.post("/demo/token", json=body) as response:
        assert response.status == 400
        assert (await response.json())["error"]["message"]


async def test_demo_token_refuses_non_json(identity_client: TestClient) -> None:
    async with identity_client.post("/demo/token", data=b"name=A&room=r") as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "BadRequest"


async def test_index_and_static_files(identity_client: TestClient, web_demo_dir: Path) -> None:
    async with identity_client.get("/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert await response.text() == (web_demo_dir / "index.html").read_text()
    async with identity_client.get("/static/app.js") as response:
        assert response.status == 200
        assert "javascript" in response.content_type
        assert await response.text() == "console.log('demo');\n"
    async with identity_client.get("/static/lib/util.js") as response:
        assert response.status == 404  # the demo is one flat folder: no subfolders served


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/static/", id="directory listing"),
        pytest.param("/static/lib/", id="subdirectory listing"),
        pytest.param("/static/missing.js", id="missing file"),
        pytest.param("/static/%2e%2e/secret.txt", id="encoded dot-dot"),
        pytest.param("/static/..%2fsecret.txt", id="encoded slash"),
        pytest.param("/static/%252e%252e/secret.txt", id="double-encoded dot-dot"),
        pytest.param("/static/..%5csecret.txt", id="backslash"),
        pytest.param("/static/%ff", id="invalid UTF-8"),
        pytest.param("/static/" + "a" * 5000, id="name too long for the file system"),
        pytest.param("/static/.hidden", id="dot file"),
    ],
)
async def test_static_refuses(identity_client: TestClient, web_demo_dir: Path, path: str) -> None:
    (web_demo_dir.parent / "secret.txt").write_text("secret")
    url = URL(str(identity_client.make_url("/")).rstrip("/") + path, encoded=True)
    async with identity_client.session.get(url) as response:
        assert response.status == 404
        body = await response.json()
        assert body["error"]["code"] == "NotFound"
        assert "secret" not in json.dumps(body)


async def test_symlink_out_of_the_directory_is_not_followed(
    identity_client: TestClient, web_demo_dir: Path
) -> None:
    (web_demo_dir.parent / "secret.txt").write_text("secret")
    (web_demo_dir / "link.txt").symlink_to(web_demo_dir.parent / "secret.txt")
    async with identity_client.get("/static/link.txt") as response:
        assert response.status in (403, 404)


async def app_with_demo_dir(aiohttp_client: Any, directory: Path) -> TestClient:
    app = web.Application(middlewares=[errors.middleware])
    demo.add_static(app, directory)
    return await aiohttp_client(app)


async def test_missing_demo_directory(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await app_with_demo_dir(aiohttp_client, tmp_path / "nowhere")
    async with client.get("/") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NotFound"
    async with client.get("/static/app.js") as response:
        assert response.status == 404
        assert (await response.json())["error"]


async def test_demo_directory_without_index(aiohttp_client: Any, tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("")
    client = await app_with_demo_dir(aiohttp_client, tmp_path)
    async with client.get("/") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NotFound"
    async with client.get("/static/app.js") as response:
        assert response.status == 200
