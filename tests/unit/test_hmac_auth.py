"""The ACS HMAC-SHA256 request signing: the client half by itself, both halves over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from switchboard.signalling import errors
from switchboard.signalling.identity.hmac_auth import (
    format_connection_string,
    parse_connection_string,
    sign_request,
    verify_request,
)

KEY = secrets.token_bytes(32)
KEY_B64 = base64.b64encode(KEY).decode()
NOW = 1_764_000_000.0  # Mon, 24 Nov 2025 16:00:00 GMT


def expected_signature(key: bytes, text: str) -> str:
    return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).decode()


def test_sign_request_builds_the_acs_headers() -> None:
    body = b'{"createTokenWithScopes": ["voip"]}'
    headers = sign_request(
        "post", "http://127.0.0.1:8080/identities?api-version=2023-10-01", body, KEY_B64, now=NOW
    )
    body_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    date = "Mon, 24 Nov 2025 16:00:00 GMT"
    text = f"POST\n/identities?api-version=2023-10-01\n{date};127.0.0.1:8080;{body_hash}"
    assert headers == {
        "Host": "127.0.0.1:8080",
        "x-ms-date": date,
        "x-ms-content-sha256": body_hash,
        "Authorization": "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
        f"&Signature={expected_signature(KEY, text)}",
    }


def test_empty_body_hash_is_that_of_no_bytes() -> None:
    headers = sign_request("GET", "http://h:1/", b"", KEY_B64, now=NOW)
    assert headers["x-ms-content-sha256"] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


@pytest.mark.parametrize(
    ("url", "host", "path_and_query"),
    [
        pytest.param("http://example.com:80/a", "example.com", "/a", id="default http port"),
        pytest.param("https://example.com:443/a", "example.com", "/a", id="default https port"),
        pytest.param("https://example.com:8443/a", "example.com:8443", "/a", id="other port"),
        pytest.param("http://u:p@example.com:81/a", "example.com:81", "/a", id="userinfo"),
        pytest.param("http://[::1]:8080/a?b=c", "[::1]:8080", "/a?b=c", id="IPv6"),
        pytest.param("http://example.com", "example.com", "/", id="no path"),
        pytest.param("http://h:9/x%3Ay?q=%20", "h:9", "/x%3Ay?q=%20", id="kept encoded"),
    ],
)
def test_sign_request_host_and_path(url: str, host: str, path_and_query: str) -> None:
    headers = sign_request("GET", url, b"", KEY_B64, now=NOW)
    text = f"GET\n{path_and_query}\n{headers['x-ms-date']};{host};{headers['x-ms-content-sha256']}"
    assert headers["Host"] == host
    assert headers["Authorization"].endswith(f"&Signature={expected_signature(KEY, text)}")


@pytest.mark.parametrize(
    ("url", "key"),
    [
        pytest.param("/relative", KEY_B64, id="relative url"),
        pytest.param("http://h/", "not base64!", id="key not base64"),
        pytest.param("http://h/", "", id="empty key"),
    ],
)
def test_sign_request_refuses(url: str, key: str) -> None:
    with pytest.raises(ValueError):
        sign_request("GET", url, b"", key)


# --- both halves, over HTTP -------------------------------------------------------------------


async def protected(request: web.Request) -> web.Response:
    body = await request.read()
    verify_request(request, body, KEY)
    return web.json_response({"ok": True})


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient:
    app = web.Application(middlewares=[errors.middleware])
    app.router.add_route("*", "/{tail:.*}", protected)
    return await aiohttp_client(app)


async def send(
    client: TestClient,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    sign_path: str | None = None,
    key_b64: str = KEY_B64,
    now: float | None = None,
    headers: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    send_body: bytes | None = None,
) -> tuple[int, dict]:
    """Sign ``method sign_path`` (default ``path``), then send ``method path`` with changes.

    Both paths are used exactly as written (percent-encoding included)."""
    base = str(client.make_url("/")).rstrip("/")
    signed = sign_request(method, base + (sign_path or path), body, key_b64, now=now)
    signed.update(headers or {})
    for name in drop:
        del signed[name]
    url = URL(base + path, encoded=True)
    async with client.session.request(
        method, url, data=body if send_body is None else send_body, headers=signed
    ) as response:
        return response.status, await response.json()


def assert_unauthorized(result: tuple[int, dict], words: str) -> None:
    status, body = result
    assert status == 401, body
    assert body["error"]["code"] == "Unauthorized"
    assert words in body["error"]["message"]
    assert KEY_B64 not in body["error"]["message"]


async def test_signed_requests_pass(client: TestClient) -> None:
    assert await send(client, "POST", "/identities", b'{"a": 1}') == (200, {"ok": True})
    assert await send(client, "GET", "/identities?api-version=2023-10-01&x=%2F") == (
        200,
        {"ok": True},
    )
    assert (await send(client, "DELETE", "/identities/8:acs:x_y"))[0] == 200


async def test_encoded_path_verifies_signed_either_way(client: TestClient) -> None:
    path = "/identities/8%3Aacs%3Ax_y/:issueAccessToken"
    assert (await send(client, "POST", path))[0] == 200  # signed as sent
    decoded = "/identities/8:acs:x_y/:issueAccessToken"
    assert (await send(client, "POST", path, sign_path=decoded))[0] == 200  # signed decoded
    query = "/x?to=a%20b%2Fc"
    assert (await send(client, "POST", query, sign_path="/x?to=a b/c"))[0] == 200
    assert (await send(client, "POST", query, sign_path="/x?to=a b/d"))[0] == 401


async def test_dates_within_15_minutes_pass(client: TestClient) -> None:
    for offset_s in (-14 * 60, 14 * 60):
        assert (await send(client, "POST", "/x", now=time.time() + offset_s))[0] == 200


@pytest.mark.parametrize("offset_s", [-16 * 60, 16 * 60, -86_400 * 365])
async def test_dates_more_than_15_minutes_off_are_refused(
    client: TestClient, offset_s: int
) -> None:
    assert_unauthorized(await send(client, "POST", "/x", now=time.time() + offset_s), "15 minutes")


async def test_wrong_key(client: TestClient) -> None:
    other = base64.b64encode(secrets.token_bytes(32)).decode()
    assert_unauthorized(await send(client, "POST", "/x", key_b64=other), "signature")


async def test_wrong_signature(client: TestClient) -> None:
    bad = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=" + (
        base64.b64encode(bytes(32)).decode()
    )
    assert_unauthorized(
        await send(client, "POST", "/x", headers={"Authorization": bad}), "signature"
    )


@pytest.mark.parametrize(
    ("sent", "signed"),
    [
        pytest.param("/y", "/x", id="other path"),
        pytest.param("/x?a=2", "/x?a=1", id="other query"),
        pytest.param("/x?a=1", "/x", id="query added"),
    ],
)
async def test_path_or_query_changed(client: TestClient, sent: str, signed: str) -> None:
    assert_unauthorized(await send(client, "POST", sent, sign_path=signed), "signature")


async def test_method_changed(client: TestClient) -> None:
    signed = sign_request("POST", str(client.make_url("/x")), b"", KEY_B64)
    async with client.put("/x", data=b"", headers=signed) as response:
        assert response.status == 401


async def test_host_changed(client: TestClient) -> None:
    assert_unauthorized(
        await send(client, "POST", "/x", headers={"Host": "evil.example"}), "signature"
    )


async def test_signed_header_value_changed(client: TestClient) -> None:
    # A valid date, but not the one signed.
    assert_unauthorized(
        await send(
            client,
            "POST",
            "/x",
            now=time.time() - 60,
            headers={"x-ms-date": sign_request("GET", "http://h/", b"", KEY_B64)["x-ms-date"]},
        ),
        "signature",
    )


async def test_body_hash_mismatch(client: TestClient) -> None:
    assert_unauthorized(
        await send(
            client, "POST", "/x", b'{"scopes": ["chat"]}', send_body=b'{"scopes": ["voip"]}'
        ),
        "x-ms-content-sha256",
    )


async def test_body_hash_header_of_another_body(client: TestClient) -> None:
    # Hash and signature agree with each other, not with the body that arrived.
    assert_unauthorized(
        await send(client, "POST", "/x", b"signed", send_body=b"sent"), "x-ms-content-sha256"
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        pytest.param("Authorization", "Authorization header is missing", id="Authorization"),
        pytest.param("x-ms-date", "x-ms-date is missing", id="x-ms-date"),
        pytest.param("x-ms-content-sha256", "x-ms-content-sha256 is missing", id="content hash"),
    ],
)
async def test_missing_header(client: TestClient, name: str, words: str) -> None:
    assert_unauthorized(await send(client, "POST", "/x", drop=(name,)), words)


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        pytest.param("", "missing", id="empty"),
        pytest.param("Bearer abc", "scheme", id="bearer"),
        pytest.param("HMAC-SHA256", "garbled", id="no parameters"),
        pytest.param("HMAC-SHA256 Signature=AAAA", "SignedHeaders and Signature", id="no list"),
        pytest.param(
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256",
            "SignedHeaders and Signature",
            id="no signature",
        ),
        pytest.param(
            "HMAC-SHA256 SignedHeaders=x-ms-date;host&Signature=AAAA",
            "must list each of",
            id="host hash unsigned",
        ),
        pytest.param(
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;host;x-ms-content-sha256&Signature=AAAA",
            "must list each of",
            id="repeated header",
        ),
        pytest.param(
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=!!!",
            "not base64",
            id="signature not base64",
        ),
        pytest.param(
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=A&Signature=B",
            "garbled",
            id="two signatures",
        ),
        pytest.param("HMAC-SHA256 SignedHeaders", "garbled", id="no equals"),
    ],
)
async def test_garbled_authorization(client: TestClient, authorization: str, words: str) -> None:
    assert_unauthorized(
        await send(client, "POST", "/x", headers={"Authorization": authorization}), words
    )


@pytest.mark.parametrize("date", ["yesterday", "", "Mon, 24 Nov 2025 16:00:00 -0000"])
async def test_garbled_date(client: TestClient, date: str) -> None:
    status, body = await send(client, "POST", "/x", headers={"x-ms-date": date})
    assert status == 401 and "x-ms-date" in body["error"]["message"]


async def test_signed_headers_in_another_order_with_an_extra_one(client: TestClient) -> None:
    url = str(client.make_url("/x"))
    headers = sign_request("POST", url, b"", KEY_B64)
    headers["x-extra"] = "1"
    values = [headers["x-ms-content-sha256"], headers["Host"], "1", headers["x-ms-date"]]
    text = "POST\n/x\n" + ";".join(values)
    headers["Authorization"] = (
        "HMAC-SHA256 SignedHeaders=x-ms-content-sha256;host;x-extra;x-ms-date"
        f"&Signature={expected_signature(KEY, text)}"
    )
    async with client.post("/x", headers=headers) as response:
        assert response.status == 200


# --- connection strings -----------------------------------------------------------------------


def test_connection_string_round_trips() -> None:
    text = format_connection_string("http://127.0.0.1:8080/", KEY_B64)
    assert text == f"endpoint=http://127.0.0.1:8080/;accesskey={KEY_B64}"
    assert parse_connection_string(text) == ("http://127.0.0.1:8080/", KEY_B64)


def test_connection_string_is_read_leniently() -> None:
    text = f" AccessKey={KEY_B64};Endpoint=https://sb.example.com ;"
    assert parse_connection_string(text) == ("https://sb.example.com/", KEY_B64)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"accesskey={KEY_B64}", id="no endpoint"),
        pytest.param("endpoint=http://h/", id="no key"),
        pytest.param(f"endpoint=ftp://h/;accesskey={KEY_B64}", id="not http"),
        pytest.param(f"endpoint=h:80;accesskey={KEY_B64}", id="no scheme"),
        pytest.param("endpoint=http://h/;accesskey=***", id="key not base64"),
        pytest.param(f"endpoint=http://h/;endpoint=http://i/;accesskey={KEY_B64}", id="twice"),
        pytest.param(f"endpoint=http://h/;{KEY_B64}", id="unnamed part"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_connection_strings(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_connection_string(text)
    assert KEY_B64 not in str(info.value)
