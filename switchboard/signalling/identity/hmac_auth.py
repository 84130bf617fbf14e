"""HMAC-SHA256 request signing for the identity API, the scheme of Azure Communication Services.

Source: the ACS tutorial "Sign an HTTP request with HMAC" (learn.microsoft.com, azure/
communication-services/tutorials/hmac-header-tutorial), as the ACS SDKs implement it; the
15-minute window is that of Azure's HMAC scheme. A client holding the installation's connection
string signs each request:

    x-ms-date: the time, RFC 1123 ("Sat, 29 Nov 2025 15:48:00 GMT")
    x-ms-content-sha256: base64(SHA-256(body)); the empty body too
    Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<sig>

    sig            = base64(HMAC-SHA256(base64decode(access key), UTF-8 string to sign))
    string to sign = METHOD "\\n" path-and-query "\\n" <x-ms-date>;<host>;<x-ms-content-sha256>

The values after the second newline are those of the signed headers, in the order
``SignedHeaders`` lists them, joined by ";". The server accepts any order and extra headers but
requires those three; it refuses a date more than 15 minutes off its clock, which bounds replay.

The connection string, as ACS prints it: ``endpoint=http://127.0.0.1:8080/;accesskey=<base64>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import ApiError

SCHEME = "HMAC-SHA256"
SIGNED_HEADERS = ("x-ms-date", "host", "x-ms-content-sha256")
MAX_CLOCK_SKEW_S = 15 * 60  # either way
_UNAUTHORIZED = "Unauthorized"


def content_hash(body: bytes) -> str:
    """Return base64(SHA-256(body)), the value of ``x-ms-content-sha256``."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def string_to_sign(method: str, path_and_query: str, signed_values: list[str]) -> str:
    """Return the ACS string to sign: method (upper case), path and query, header values."""
    return f"{method.upper()}\n{path_and_query}\n{';'.join(signed_values)}"


def compute_signature(key: bytes, text: str) -> bytes:
    """Return the raw HMAC-SHA256 of ``text`` (UTF-8) under ``key`` (the decoded access key)."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sign_request(
    method: str, url: str, body: bytes, access_key_b64: str, now: float | None = None
) -> dict[str, str]:
    """Return the headers that sign a request to ``url`` (the client side of the scheme).

    ``url``: absolute, percent-encoded as it will be sent; the host signed is its host and port
    as the HTTP client will send them in ``Host`` (the port omitted when it is the scheme's
    default), which is also returned as ``Host`` so both sides agree. ``now``: unix seconds.
    Returns ``Host``, ``x-ms-date``, ``x-ms-content-sha256`` and ``Authorization``.

    Raises ValueError if ``url`` is not absolute or the key is not base64.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise ValueError("url must be absolute")
    host = parts.netloc.rpartition("@")[2]
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    if parts.port is not None and parts.port == default_port:
        host = host.rsplit(":", 1)[0]
    path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    date = formatdate(time.time() if now is None else now, usegmt=True)
    body_hash = content_hash(body)
    key = _decode_key(access_key_b64)
    signature = compute_signature(
        key, string_to_sign(method, path_and_query, [date, host, body_hash])
    )
    return {
        "Host": host,
        "x-ms-date": date,
        "x-ms-content-sha256": body_hash,
        "Authorization": (
            f"{SCHEME} SignedHeaders={';'.join(SIGNED_HEADERS)}"
            f"&Signature={base64.b64encode(signature).decode('ascii')}"
        ),
    }


def verify_request(
    request: web.Request, body: bytes, access_key: bytes, now: float | None = None
) -> None:
    """Check that ``request`` (whose body is ``body``) was signed with ``access_key`` (raw bytes).

    Path and query are taken as received (``request.raw_path``); if that does not verify, the
    percent-decoded form is tried, for clients that sign the decoded path. The host is the
    ``Host`` header. ``now``: unix seconds, default the clock. Comparisons are constant-time.

    Raises ApiError 401 ``Unauthorized`` when the Authorization header is missing or garbled,
    a signed header is missing, ``x-ms-date`` is unparsable or more than 15 minutes off (either
    way), the body's hash is not ``x-ms-content-sha256``, or the signature is wrong. Messages
    name the failed check, never a key or a signature.
    """
    signed_names, signature = _parse_authorization(request.headers.get("Authorization"))
    values = []
    for name in signed_names:
        value = request.headers.get(name)
        if value is None:
            raise ApiError(401, _UNAUTHORIZED, f"signed header {name} is missing")
        values.append(value)
    _check_date(request.headers["x-ms-date"], time.time() if now is None else now)
    if not hmac.compare_digest(
        content_hash(body).encode("ascii"),
        request.headers["x-ms-content-sha256"].encode("utf-8", "replace"),
    ):
        raise ApiError(401, _UNAUTHORIZED, "x-ms-content-sha256 does not match the body")
    query = request.query_string
    unquoted = request.path + (f"?{query}" if query else "")
    candidates = (
        [request.raw_path] if unquoted == request.raw_path else [request.raw_path, unquoted]
    )
    valid = False
    for path_and_query in candidates:
        expected = compute_signature(
            access_key, string_to_sign(request.method, path_and_query, values)
        )
        valid |= hmac.compare_digest(expected, signature)
    if not valid:
        raise ApiError(401, _UNAUTHORIZED, "request signature does not verify")


def _parse_authorization(header: str | None) -> tuple[list[str], bytes]:
    """Split ``HMAC-SHA256 SignedHeaders=a;b;c&Signature=<base64>`` into names and raw bytes."""
    if not header:
        raise ApiError(401, _UNAUTHORIZED, "Authorization header is missing")
    scheme, _, params = header.strip().partition(" ")
    if scheme != SCHEME:
        raise ApiError(401, _UNAUTHORIZED, f"Authorization scheme must be {SCHEME}")
    fields: dict[str, str] = {}
    for item in params.strip().split("&"):
        name, sep, value = item.partition("=")
        if not sep or name in fields:
            raise ApiError(401, _UNAUTHORIZED, "Authorization header is garbled")
        fields[name] = value
    if set(fields) != {"SignedHeaders", "Signature"}:
        raise ApiError(401, _UNAUTHORIZED, "Authorization needs SignedHeaders and Signature")
    names = [n.strip().lower() for n in fields["SignedHeaders"].split(";")]
    if len(set(names)) != len(names) or not set(SIGNED_HEADERS) <= set(names):
        raise ApiError(
            401, _UNAUTHORIZED, f"SignedHeaders must list each of {';'.join(SIGNED_HEADERS)}"
        )
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(401, _UNAUTHORIZED, "Signature is not base64") from None
    return names, signature


def _check_date(value: str, now: float) -> None:
    """Refuse an ``x-ms-date`` that is not an RFC 1123 date within 15 minutes of ``now``."""
    try:
        date: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise ApiError(401, _UNAUTHORIZED, "x-ms-date is not an RFC 1123 date") from None
    if date.tzinfo is None:
        raise ApiError(401, _UNAUTHORIZED, "x-ms-date has no time zone")
    if abs(date.timestamp() - now) > MAX_CLOCK_SKEW_S:
        raise ApiError(401, _UNAUTHORIZED, "x-ms-date is more than 15 minutes off the server clock")


def _decode_key(access_key_b64: str) -> bytes:
    try:
        key = base64.b64decode(access_key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("access key is not base64") from None
    if not key:
        raise ValueError("access key is empty")
    return key


def parse_connection_string(s: str) -> tuple[str, str]:
    """Return ``(endpoint, access_key_b64)`` from ``endpoint=<url>;accesskey=<base64>``.

    Names are case-insensitive and may come in any order; the endpoint gets a trailing slash.
    Raises ValueError if a part is missing or repeated, the endpoint is not an http(s) URL or
    the key is not base64. Error messages never contain the key.
    """
    fields: dict[str, str] = {}
    for item in s.strip().split(";"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name in fields:
            raise ValueError("connection string must be endpoint=<url>;accesskey=<base64>")
        fields[name] = value.strip()
    if "endpoint" not in fields or "accesskey" not in fields:
        raise ValueError("connection string needs both endpoint= and accesskey=")
    endpoint, key = fields["endpoint"], fields["accesskey"]
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("connection string endpoint must be an http(s) URL")
    _decode_key(key)
    return (endpoint if endpoint.endswith("/") else endpoint + "/"), key


def format_connection_string(endpoint: str, key_b64: str) -> str:
    """Return ``endpoint=<endpoint>;accesskey=<key_b64>`` (a secret: print it, never log it)."""
    return f"endpoint={endpoint};accesskey={key_b64}"
