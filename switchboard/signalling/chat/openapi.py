"""The chat REST API's part of the OpenAPI document (``signalling/openapi.py`` merges it):
paths under ``/chat/threads``, the ``bearer`` security scheme and the ACS Chat schemas."""

from __future__ import annotations

from typing import Any

API_VERSION = "2024-03-07"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": "bad body, api-version, query (maxPageSize 1..200, skip, startTime) or "
    "continuation token (InvalidContinuationToken); content over the limit (MessageTooLarge)",
    "401": "no, bad, expired or revoked bearer token, or one without a chat scope",
    "403": "not a participant (NotAParticipant), not the sender (NotMessageSender), or the "
    "token's scope does not allow it (MissingScope)",
    "404": "no such thread (ThreadNotFound), message (MessageNotFound) or participant",
}
_THREAD = {"name": "chatThreadId", "in": "path", "required": True, "schema": {"type": "string"}}
_MESSAGE = {"name": "chatMessageId", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema}


_PAGE = _query("maxPageSize", {"type": "integer", "minimum": 1, "maximum": 200, "default": 100})
_SKIP = _query("skip", {"type": "integer", "minimum": 0})
_START = _query("startTime", {"type": "string", "format": "date-time"})
_TOKEN = _query("continuationToken", {"type": "string"})


def _op(
    summary: str,
    ok: tuple[int, dict[str, Any] | None],
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    body_type: str = "application/json",
) -> dict[str, Any]:
    status, schema = ok
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["chat"],
        "security": [{"bearer": []}],
        "parameters": [
            _query("api-version", {"type": "string", "default": API_VERSION}),
            *params,
        ],
        "responses": {
            str(status): _json(schema, "success") if schema else {"description": "success"},
            **{code: _json(_ref("ErrorResponse"), words) for code, words in _ERRORS.items()},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    return op


def _page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"type": "array", "items": _ref(item)},
            "nextLink": {"type": "string", "description": "absolute URL of the next page"},
        },
    }


_TIME = {"type": "string", "format": "date-time"}
_CHAT_ERRORS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "target": {"type": "string", "description": "the refused raw id"},
        },
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a user access token with the chat, chat.join or chat.join.limited scope",
    }
}

SCHEMAS: dict[str, Any] = {
    "CommunicationIdentifier": {
        "type": "object",
        "properties": {
            "rawId": {"type": "string"},
            "kind": {"type": "string"},
            "communicationUser": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    },
    "ChatParticipant": {
        "type": "object",
        "required": ["communicationIdentifier"],
        "properties": {
            "communicationIdentifier": _ref("CommunicationIdentifier"),
            "displayName": {"type": "string", "maxLength": 256},
            "shareHistoryTime": {
                **_TIME,
                "description": "messages before this time are hidden from the participant",
            },
        },
    },
    "ChatThreadProperties": {
        "type": "object",
        "required": ["id", "topic", "createdOn", "createdByCommunicationIdentifier"],
        "properties": {
            "id": {"type": "string", "examples": ["19:0123456789abcdef0123456789abcdef@thread.v2"]},
            "topic": {"type": "string"},
            "createdOn": _TIME,
            "createdByCommunicationIdentifier": _ref("CommunicationIdentifier"),
            "deletedOn": _TIME,
        },
    },
    "ChatThreadItem": {
        "type": "object",
        "required": ["id", "topic"],
        "properties": {
            "id": {"type": "string"},
            "topic": {"type": "string"},
            "lastMessageReceivedOn": _TIME,
            "deletedOn": _TIME,
        },
    },
    "ChatMessage": {
        "type": "object",
        "required": ["id", "type", "sequenceId", "version", "createdOn"],
        "properties": {
            "id": {"type": "string", "description": "a millisecond time, unique in the thread"},
            "type": {
                "enum": ["text", "html", "topicUpdated", "participantAdded", "participantRemoved"]
            },
            "sequenceId": {"type": "string", "description": "1, 2, 3… per thread"},
            "version": {"type": "string", "description": "millisecond time of the last change"},
            "content": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "topic": {"type": "string"},
                    "participants": {"type": "array", "items": _ref("ChatParticipant")},
                    "initiatorCommunicationIdentifier": _ref("CommunicationIdentifier"),
                },
            },
            "senderDisplayName": {"type": "string"},
            "createdOn": _TIME,
            "senderCommunicationIdentifier": _ref("CommunicationIdentifier"),
            "deletedOn": _TIME,
            "editedOn": _TIME,
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "ChatMessageReadReceipt": {
        "type": "object",
        "required": ["senderCommunicationIdentifier", "chatMessageId", "readOn"],
        "properties": {
            "senderCommunicationIdentifier": _ref("CommunicationIdentifier"),
            "chatMessageId": {"type": "string"},
            "readOn": _TIME,
        },
    },
}

_METADATA = {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 64}

PATHS: dict[str, Any] = {
    "/chat/threads": {
        "post": _op(
            "Create a thread (the caller joins it; needs scope chat). A "
            "repeatability-request-id header seen before returns the same thread.",
            (
                201,
                {
                    "type": "object",
                    "properties": {
                        "chatThread": _ref("ChatThreadProperties"),
                        "invalidParticipants": _CHAT_ERRORS,
                    },
                },
            ),
            body={
                "type": "object",
                "required": ["topic"],
                "properties": {
                    "topic": {"type": "string", "minLength": 1, "maxLength": 256},
                    "participants": {"type": "array", "items": _ref("ChatParticipant")},
                },
            },
        ),
        "get": _op(
            "List the caller's threads, most recently active first",
            (200, _page_of("ChatThreadItem")),
            params=(_PAGE, _SKIP, _START),
        ),
    },
    "/chat/threads/{chatThreadId}": {
        "get": _op("Get a thread's properties", (200, _ref("ChatThreadProperties")), (_THREAD,)),
        "patch": _op(
            "Change the topic (scope chat); a topicUpdated message is added",
            (204, None),
            (_THREAD,),
            body={"type": "object", "properties": {"topic": {"type": "string"}}},
            body_type="application/merge-patch+json",
        ),
        "delete": _op("Delete the thread for everyone (scope chat)", (204, None), (_THREAD,)),
    },
    "/chat/threads/{chatThreadId}/messages": {
        "post": _op(
            "Send a message; acknowledged (201) only once stored durably",
            (201, {"type": "object", "properties": {"id": {"type": "string"}}}),
            (_THREAD,),
            body={
                "type": "object",
                "required": ["content"],
                "properties": {
                    "content": {
                        "type": "string",
                        "description": "at most 28 KiB of UTF-8 (serve --chat-max-message-bytes)",
                    },
                    "type": {"enum": ["text", "html"], "default": "text"},
                    "senderDisplayName": {"type": "string"},
                    "metadata": _METADATA,
                },
            },
        ),
        "get": _op(
            "List messages newest first (those the caller's shareHistoryTime allows)",
            (200, _page_of("ChatMessage")),
            (_THREAD, _PAGE, _START, _TOKEN),
        ),
    },
    "/chat/threads/{chatThreadId}/messages/{chatMessageId}": {
        "get": _op("Get a message", (200, _ref("ChatMessage")), (_THREAD, _MESSAGE)),
        "patch": _op(
            "Edit one's own message (content, metadata merged)",
            (204, None),
            (_THREAD, _MESSAGE),
            body={
                "type": "object",
                "properties": {"content": {"type": "string"}, "metadata": _METADATA},
            },
            body_type="application/merge-patch+json",
        ),
        "delete": _op(
            "Delete one's own message (it stays listed, with deletedOn)",
            (204, None),
            (_THREAD, _MESSAGE),
        ),
    },
    "/chat/threads/{chatThreadId}/participants": {
        "get": _op(
            "List participants", (200, _page_of("ChatParticipant")), (_THREAD, _PAGE, _SKIP)
        ),
    },
    "/chat/threads/{chatThreadId}/participants/:add": {
        "post": _op(
            "Add participants (scope chat or chat.join); ids not of this installation come "
            "back in invalidParticipants",
            (201, {"type": "object", "properties": {"invalidParticipants": _CHAT_ERRORS}}),
            (_THREAD,),
            body={
                "type": "object",
                "required": ["participants"],
                "properties": {
                    "participants": {
                        "type": "array",
                        "maxItems": 200,
                        "items": _ref("ChatParticipant"),
                    }
                },
            },
        ),
    },
    "/chat/threads/{chatThreadId}/participants/:remove": {
        "post": _op(
            "Remove a participant (oneself with any chat scope; others with chat or chat.join)",
            (204, None),
            (_THREAD,),
            body=_ref("CommunicationIdentifier"),
        ),
    },
    "/chat/threads/{chatThreadId}/typing": {
        "post": _op(
            "Tell the other participants that the caller is typing (not stored)",
            (200, None),
            (_THREAD,),
            body={"type": "object", "properties": {"senderDisplayName": {"type": "string"}}},
        ),
    },
    "/chat/threads/{chatThreadId}/readReceipts": {
        "post": _op(
            "Mark messages read up to chatMessageId",
            (200, None),
            (_THREAD,),
            body={
                "type": "object",
                "required": ["chatMessageId"],
                "properties": {"chatMessageId": {"type": "string"}},
            },
        ),
        "get": _op(
            "List read receipts (one per reader: the newest message read)",
            (200, _page_of("ChatMessageReadReceipt")),
            (_THREAD, _PAGE, _SKIP),
        ),
    },
}
