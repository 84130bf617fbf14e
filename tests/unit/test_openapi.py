"""``GET /openapi.json`` and docs/api.md list every route of the real application (chat's
routes are the chat module's to document)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from switchboard.signalling.app import create_app
from switchboard.signalling.config import Config
from switchboard.signalling.openapi import DOCUMENT

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
OWNED_ELSEWHERE = ("/chat",)  # the chat module's, documented with it


def _routed(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Config(access_key=secrets.token_bytes(32), data_dir=tmp_path))
    return {
        (route.method.lower(), re.sub(r"\{room_id\}", "{roomId}", route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_openapi_lists_every_route(tmp_path: Path) -> None:
    routed = {r for r in _routed(tmp_path) if not r[1].startswith(OWNED_ELSEWHERE)}
    documented = {
        (method, path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if not path.startswith(OWNED_ELSEWHERE)
    }
    assert routed - documented == set()
    assert documented - routed == set()


def test_api_md_lists_every_route(tmp_path: Path) -> None:
    rows = re.findall(r"^\| (GET|POST|PATCH|DELETE) \| `([^`]+)` \|", API_MD.read_text(), re.M)
    listed = {(method.lower(), path) for method, path in rows}
    routed = {r for r in _routed(tmp_path) if not r[1].startswith(OWNED_ELSEWHERE)}
    assert routed - listed == set()
