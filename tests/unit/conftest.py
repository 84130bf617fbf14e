"""Fixtures for the HTTP tests of the identity API and the web demo.

``identity_app`` is a small application with the real error middleware, identity, rooms,
OpenAPI and demo routes, static files, the CONFIG/TOKENS keys and the store and access-control
cleanup contexts (SQLite in the test's temporary directory), without the media plane: these
tests need no SFU.
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

from switchboard.signalling import access, demo, errors, openapi, store
from switchboard.signalling.config import Config
from switchboard.signalling.identity import routes as identity_routes
from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.keys import CONFIG, TOKENS
from switchboard.signalling.rooms import routes as rooms_routes

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


def build_identity_app(access_key: bytes, data_dir: Path, web_demo_dir: Path) -> web.Application:
    """The application of ``identity_app``; a second one on the same ``data_dir`` is the
    server after a restart."""
    config = Config(access_key=access_key, data_dir=data_dir, web_demo_dir=web_demo_dir)
    app = web.Application(middlewares=[errors.middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[TOKENS] = TokenService(access_key)
    app.cleanup_ctx.extend([store.context, access.context])
    app.add_routes(identity_routes.routes)
    app.add_routes(rooms_routes.routes)
    app.add_routes(openapi.routes)
    app.add_routes(demo.routes)
    demo.add_static(app, web_demo_dir)
    return app


@pytest.fixture
def identity_app(access_key: bytes, tmp_path: Path, web_demo_dir: Path) -> web.Application:
    return build_identity_app(access_key, tmp_path, web_demo_dir)


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
