"""HTTP errors as `{"error": {"code", "message"}}` bodies and the middleware that renders them."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a handler raises to answer with ``status`` and an error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> web.Response:
    """Build the JSON error response every route uses."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


MAX_INT_DIGITS = 100  # a longer integer literal is refused before Python converts it


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(text)


async def read_json_object(request: web.Request) -> dict:
    """Return the request body as a JSON object; an empty body is ``{}``.

    Raises ApiError 400 ``BadRequest`` when the body is not JSON or not an object.
    """
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_int=_parse_int)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "BadRequest", "body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "body must be a JSON object")
    return body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into error bodies; hide internal errors."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.replace(" ", ""), exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "InternalError", "internal server error")
