"""The JSON shapes of the ACS Chat REST API (api-version 2024-03-07), rendered from the store's
rows, and the parsing of what clients send in them.

Times go out as RFC 3339 UTC with milliseconds and ``Z`` (``2026-11-29T16:58:03.120Z``); ids
of messages are decimal strings of millisecond times; sequence ids and versions are strings,
as ACS sends them. An identifier is ``{"rawId", "communicationUser": {"id"}, "kind"}``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..errors import ApiError
from ..store.models import ChatMessage, ChatParticipant, ChatReadReceipt, ChatThread


def iso(unix_s: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: Any, field: str) -> float:
    """An RFC 3339 / ISO 8601 time (a ``Z`` or an offset; naive means UTC) as unix seconds;
    raises ApiError 400 ``ValidationError``."""
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError(400, "ValidationError", f"{field} must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ApiError(400, "ValidationError", f"{field} must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def identifier(raw_id: str) -> dict[str, Any]:
    """The CommunicationIdentifierModel of an identity id."""
    return {"rawId": raw_id, "kind": "communicationUser", "communicationUser": {"id": raw_id}}


def parse_identifier(value: Any, field: str) -> str:
    """The raw id of a CommunicationIdentifierModel (``communicationUser.id``, else ``rawId``);
    raises ApiError 400 ``ValidationError``."""
    if isinstance(value, dict):
        user = value.get("communicationUser")
        raw = user.get("id") if isinstance(user, dict) else value.get("rawId")
        if isinstance(raw, str) and 0 < len(raw) <= 256:
            return raw
    raise ApiError(400, "ValidationError", f"{field} must be a communication user identifier")


def thread_properties(thread: ChatThread) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": thread.id,
        "topic": thread.topic,
        "createdOn": iso(thread.created_at),
        "createdByCommunicationIdentifier": identifier(thread.created_by),
    }
    if thread.deleted_at is not None:
        body["deletedOn"] = iso(thread.deleted_at)
    return body


def thread_item(thread: ChatThread) -> dict[str, Any]:
    body: dict[str, Any] = {"id": thread.id, "topic": thread.topic}
    if thread.last_message_at is not None:
        body["lastMessageReceivedOn"] = iso(thread.last_message_at)
    if thread.deleted_at is not None:
        body["deletedOn"] = iso(thread.deleted_at)
    return body


def participant(p: ChatParticipant) -> dict[str, Any]:
    body: dict[str, Any] = {"communicationIdentifier": identifier(p.raw_id)}
    if p.display_name is not None:
        body["displayName"] = p.display_name
    if p.share_history_at is not None:
        body["shareHistoryTime"] = iso(p.share_history_at)
    return body


def message(m: ChatMessage) -> dict[str, Any]:
    """A ChatMessage. A deleted message keeps its place (``deletedOn``) without content."""
    body: dict[str, Any] = {
        "id": str(m.id),
        "type": m.type,
        "sequenceId": str(m.sequence_id),
        "version": str(m.version),
        "createdOn": iso(m.created_at),
    }
    if m.deleted_at is None:
        stored = json.loads(m.content)
        content: dict[str, Any] = {}
        if "message" in stored:
            content["message"] = stored["message"]
        if "topic" in stored:
            content["topic"] = stored["topic"]
        if "participants" in stored:
            content["participants"] = [
                {
                    "communicationIdentifier": identifier(p["rawId"]),
                    **({"displayName": p["displayName"]} if p.get("displayName") else {}),
                    **(
                        {"shareHistoryTime": iso(p["shareHistoryAt"])}
                        if p.get("shareHistoryAt") is not None
                        else {}
                    ),
                }
                for p in stored["participants"]
            ]
        if stored.get("initiator"):
            content["initiatorCommunicationIdentifier"] = identifier(stored["initiator"])
        body["content"] = content
    else:
        body["deletedOn"] = iso(m.deleted_at)
    if m.sender_id is not None:
        body["senderCommunicationIdentifier"] = identifier(m.sender_id)
    if m.sender_display_name is not None:
        body["senderDisplayName"] = m.sender_display_name
    if m.edited_at is not None:
        body["editedOn"] = iso(m.edited_at)
    if m.metadata_json is not None and m.deleted_at is None:
        body["metadata"] = json.loads(m.metadata_json)
    return body


def read_receipt(r: ChatReadReceipt) -> dict[str, Any]:
    return {
        "senderCommunicationIdentifier": identifier(r.raw_id),
        "chatMessageId": str(r.message_id),
        "readOn": iso(r.read_at),
    }
