"""Signalling protocol v1: the JSON schema of every client message, and their validation.

docs/protocol.md describes each message with an example; keep the two in step.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

# A subscriber's answer grows with the room (and with m-sections left inactive by departed
# publishers): 256 KiB holds a few hundred m-sections.
MAX_MESSAGE_BYTES = 256 * 1024
MAX_SDP_CHARS = 250_000

_ID = {"type": ["string", "integer"], "maxLength": 64}
_SDP = {"type": "string", "minLength": 1, "maxLength": MAX_SDP_CHARS}
_TRACK_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_PARTICIPANT_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_CANDIDATE = {
    "type": ["object", "null"],
    "properties": {
        "candidate": {"type": "string", "maxLength": 1024},
        "sdpMid": {"type": ["string", "null"], "maxLength": 32},
        "sdpMLineIndex": {"type": ["integer", "null"], "minimum": 0, "maximum": 1024},
        "usernameFragment": {"type": ["string", "null"], "maxLength": 256},
    },
    "required": ["candidate"],
}


def _request(**fields: Any) -> dict[str, Any]:
    """The schema of a request: ``id`` and ``type`` plus ``fields`` (all required)."""
    return {
        "type": "object",
        "properties": {"id": _ID, "type": {"type": "string"}, **fields},
        "required": ["id", "type", *fields],
    }


REQUESTS: dict[str, dict[str, Any]] = {
    "authenticate": _request(token={"type": "string", "minLength": 1, "maxLength": 8192}),
    "refresh_token": _request(token={"type": "string", "minLength": 1, "maxLength": 8192}),
    "join": _request(
        # \Z, not $: Python's $ also matches before a final newline ("r1\n" would pass).
        room={"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}\Z"},
        # display names: any characters but control characters
        name={"type": "string", "pattern": r"^[^\x00-\x1f\x7f]{1,64}\Z"},
    ),
    "publish_offer": _request(sdp=_SDP),
    "subscribe_answer": _request(offer_id={"type": "integer"}, sdp=_SDP),
    "trickle": _request(target={"enum": ["publish", "subscribe"]}, candidate=_CANDIDATE),
    "ice_restart": _request(connection={"enum": ["publish", "subscribe"]}),
    "mute": _request(track_id=_TRACK_ID, muted={"type": "boolean"}),
    "update_subscription": {
        "type": "object",
        "properties": {
            "id": _ID,
            "type": {"type": "string"},
            "track_id": _TRACK_ID,
            "max_width": {"type": ["integer", "null"], "minimum": 1, "maximum": 16384},
            "max_height": {"type": ["integer", "null"], "minimum": 1, "maximum": 16384},
            "max_fps": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 240},
            "paused": {"type": "boolean"},
        },
        "required": ["id", "type", "track_id"],
    },
    "mute_participant": _request(participant_id=_PARTICIPANT_ID),
    "remove_participant": _request(participant_id=_PARTICIPANT_ID),
    "leave": _request(),
    "ping": _request(),
    "resume": _request(
        session_id={"type": "string", "minLength": 1, "maxLength": 64},
        last_seq={"type": "integer", "minimum": 0},
    ),
}

_VALIDATORS = {name: Draft202012Validator(schema) for name, schema in REQUESTS.items()}


class ProtocolError(Exception):
    """A message the server answers with an error; ``request_id`` is None when unknown."""

    def __init__(self, code: str, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id


def parse_request(text: str) -> dict[str, Any]:
    """Parse and validate one client frame; return the message.

    Raises ProtocolError ``invalid_json``, ``unknown_type`` or ``invalid_message``.
    """
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("invalid_json", f"not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("invalid_json", "JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("invalid_json", "a message must be a JSON object")
    request_id = message.get("id")
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        request_id = None
    kind = message.get("type")
    validator = _VALIDATORS.get(kind) if isinstance(kind, str) else None
    if validator is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}", request_id)
    try:
        error = next(iter(validator.iter_errors(message)), None)
    except RecursionError:
        raise ProtocolError("invalid_message", "message nested too deeply", request_id) from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "message"
        # jsonschema quotes the offending value: keep replies short and free of secrets
        what = error.message if len(error.message) <= 120 else error.message[:117] + "..."
        if error.validator in ("maxLength", "pattern", "minLength"):
            what = f"does not match the schema ({error.validator})"
        raise ProtocolError("invalid_message", f"{kind}: {where}: {what}", request_id)
    return message
