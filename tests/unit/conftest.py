"""Fixtures for the HTTP tests of the identity API and the web demo.

``identity_app`` is a small application with the real error middleware, identity routes, demo
routes and static files, and the CONFIG/TOKENS keys, without the media plane: these tests need
no SFU.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from switchboard.signalling import demo, errors
from switchboard.signalling.config import Config
from switchboard.signalling.identity import routes as identity_routes
from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.keys import CONFIG, TOKENS

PostSigned = Callable[..., Awaitable[ClientResponse]]


@pytest.fixture
def access_key() -> bytes:
    """A fresh 32-byte access key, raw."""
    return secrets.token_bytes(32)


@pytest.fixture
def access_key_b64(access_key: bytes) -> str:
    return base64.b64encode(access_key).decode("ascii")


@pytest.fixture
def web_demo_dir(tmp_path: Path) -> Path:
    """A stand-in web demo directory: an index page, a script and a subdirectory."""
    directory = tmp_path / "web-demo"
    (directory / "lib").mkdir(parents=True)
    (directory / "index.html").write_text("<!doctype html><title>demo</title>\n")
    (directory / "app.js").write_text("console.log('demo');\n")
    (directory / "lib" / "util.js").write_text("export {};\n")
    return directory


@pytest.fixture
def identity_app(access_key: bytes, tmp_path: Path, web_demo_dir: Path) -> web.Application:
    app = web.Application(middlewares=[errors.middleware], client_max_size=1024 * 1024)
    app[CONFIG] = Config(access_key=access_key, data_dir=tmp_path, web_demo_dir=web_demo_dir)
    app[TOKENS] = TokenService(access_key)
    app.add_routes(identity_routes.routes)
    app.add_routes(demo.routes)
    demo.add_static(app, web_demo_dir)
    return app


@pytest.fixture
async def identity_client(aiohttp_client: Any, identity_app: web.Application) -> TestClient:
    return await aiohttp_client(identity_app)


@pytest.fixture
def post_signed(identity_client: TestClient, access_key_b64: str) -> PostSigned:
    """``await post_signed(path, body, key_b64=..., now=..., headers=...)``: a signed POST.

    ``body``: a dict (sent as JSON) or raw bytes. ``headers`` are added after signing, so a test
    can override a signed one.
    """

    async def post(
        path: str,
        body: dict[str, Any] | bytes = b"",
        *,
        key_b64: str | None = None,
        now: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        url = str(identity_client.make_url(path))
        signed = sign_request("POST", url, raw, key_b64 or access_key_b64, now=now)
        signed["Content-Type"] = "application/json"
        signed.update(headers or {})
        return await identity_client.post(path, data=raw, headers=signed)

    return post
