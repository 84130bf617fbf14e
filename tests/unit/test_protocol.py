"""parse_request (switchboard/signalling/calls/protocol.py) against docs/protocol.md.

The accepted requests are the examples of docs/protocol.md, read from the document itself,
so the schemas and the documentation cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from switchboard.signalling.calls.protocol import REQUESTS, ProtocolError, parse_request

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_requests() -> list[dict[str, Any]]:
    """Every JSON object in the document's ``json`` blocks that is a request (has an ``id``
    and is not a reply or an error)."""
    decoder = json.JSONDecoder()
    requests = []
    for block in re.findall(r"```json\n(.*?)```", PROTOCOL_MD.read_text(), flags=re.S):
        i = 0
        while (i := len(block) - len(block[i:].lstrip())) < len(block):
            message, i = decoder.raw_decode(block, i)
            if "id" in message and message.get("type") not in ("reply", "error"):
                requests.append(message)
    return requests


DOCUMENTED = documented_requests()


def test_the_document_has_an_example_of_every_request_type() -> None:
    assert {m["type"] for m in DOCUMENTED} == set(REQUESTS)


@pytest.mark.parametrize("message", [pytest.param(m, id=m["type"]) for m in DOCUMENTED])
def test_documented_example_is_accepted(message: dict[str, Any]) -> None:
    assert parse_request(json.dumps(message)) == message


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"id": "a-7", "type": "ping"}, id="string id"),
        pytest.param({"id": 0, "type": "leave"}, id="id 0"),
        pytest.param(
            {"id": 1, "type": "trickle", "target": "subscribe", "candidate": None},
            id="trickle end of candidates",
        ),
        pytest.param(
            {
                "id": 1,
                "type": "trickle",
                "target": "publish",
                "candidate": {"candidate": "", "sdpMid": None, "sdpMLineIndex": None},
            },
            id="trickle empty candidate, null mid",
        ),
        pytest.param(
            {"id": 1, "type": "join", "room": "a" * 64, "name": "n" * 64},
            id="room and name of 64 characters",
        ),
        pytest.param(
            {"id": 1, "type": "join", "room": "Team-1_a.b", "name": "Ada Lovelace"},
            id="room of every allowed character, name with a space",
        ),
        pytest.param({"id": 1, "type": "ping", "extra": True}, id="unknown field ignored"),
    ],
)
def test_other_valid_requests(message: dict[str, Any]) -> None:
    assert parse_request(json.dumps(message)) == message


def _sdp(**fields: Any) -> str:
    return json.dumps({"id": 9, **fields})


@pytest.mark.parametrize(
    ("text", "code", "request_id"),
    [
        pytest.param("{", "invalid_json", None, id="not JSON"),
        pytest.param("", "invalid_json", None, id="empty frame"),
        pytest.param('{"id": 1, "type": "ping"', "invalid_json", None, id="truncated object"),
        pytest.param('[{"id": 1, "type": "ping"}]', "invalid_json", None, id="JSON array"),
        pytest.param('"ping"', "invalid_json", None, id="JSON string"),
        pytest.param("7", "invalid_json", None, id="JSON number"),
        pytest.param("null", "invalid_json", None, id="JSON null"),
        pytest.param(_sdp(type="dance"), "unknown_type", 9, id="unknown type"),
        pytest.param(_sdp(type="reply"), "unknown_type", 9, id="a server message type"),
        pytest.param(_sdp(), "unknown_type", 9, id="no type"),
        pytest.param(_sdp(type=5), "unknown_type", 9, id="type not a string"),
        pytest.param(_sdp(type="PING"), "unknown_type", 9, id="type is case-sensitive"),
        pytest.param('{"type": "ping"}', "invalid_message", None, id="no id"),
        pytest.param('{"id": null, "type": "ping"}', "invalid_message", None, id="null id"),
        pytest.param('{"id": true, "type": "ping"}', "invalid_message", None, id="bool id"),
        pytest.param('{"id": 1.5, "type": "ping"}', "invalid_message", None, id="float id"),
        pytest.param('{"id": [1], "type": "ping"}', "invalid_message", None, id="list id"),
        pytest.param(_sdp(type="authenticate"), "invalid_message", 9, id="no token"),
        pytest.param(_sdp(type="authenticate", token=""), "invalid_message", 9, id="empty token"),
        pytest.param(_sdp(type="authenticate", token=7), "invalid_message", 9, id="token a number"),
        pytest.param(_sdp(type="join", room="r1"), "invalid_message", 9, id="join without name"),
        pytest.param(_sdp(type="join", name="a"), "invalid_message", 9, id="join without room"),
        pytest.param(
            _sdp(type="join", room="stand up", name="a"),
            "invalid_message",
            9,
            id="room with a space",
        ),
        pytest.param(
            _sdp(type="join", room="r" * 65, name="a"),
            "invalid_message",
            9,
            id="room of 65 characters",
        ),
        pytest.param(_sdp(type="join", room="", name="a"), "invalid_message", 9, id="empty room"),
        pytest.param(
            _sdp(type="join", room="r/1", name="a"), "invalid_message", 9, id="room with a slash"
        ),
        pytest.param(
            _sdp(type="join", room="r\n", name="a"),
            "invalid_message",
            9,
            id="room with a trailing newline",
        ),
        pytest.param(_sdp(type="join", room=5, name="a"), "invalid_message", 9, id="room a number"),
        pytest.param(_sdp(type="join", room="r1", name=""), "invalid_message", 9, id="empty name"),
        pytest.param(
            _sdp(type="join", room="r1", name="n" * 65),
            "invalid_message",
            9,
            id="name of 65 characters",
        ),
        pytest.param(_sdp(type="publish_offer"), "invalid_message", 9, id="offer without sdp"),
        pytest.param(
            _sdp(type="update_subscription", max_width=320),
            "invalid_message",
            9,
            id="update_subscription without track_id",
        ),
        pytest.param(
            _sdp(type="update_subscription", track_id="TR_1", max_width=0),
            "invalid_message",
            9,
            id="update_subscription max_width 0",
        ),
        pytest.param(
            _sdp(type="update_subscription", track_id="TR_1", max_height=1.5),
            "invalid_message",
            9,
            id="update_subscription max_height not an integer",
        ),
        pytest.param(
            _sdp(type="update_subscription", track_id="TR_1", max_fps=0),
            "invalid_message",
            9,
            id="update_subscription max_fps 0",
        ),
        pytest.param(
            _sdp(type="update_subscription", track_id="TR_1", paused="yes"),
            "invalid_message",
            9,
            id="update_subscription paused a string",
        ),
        pytest.param(_sdp(type="publish_offer", sdp=""), "invalid_message", 9, id="empty sdp"),
        pytest.param(
            _sdp(type="publish_offer", sdp={"sdp": "v=0"}), "invalid_message", 9, id="sdp an object"
        ),
        pytest.param(
            _sdp(type="subscribe_answer", sdp="v=0"),
            "invalid_message",
            9,
            id="answer without offer_id",
        ),
        pytest.param(
            _sdp(type="subscribe_answer", offer_id="2", sdp="v=0"),
            "invalid_message",
            9,
            id="offer_id a string",
        ),
        pytest.param(
            _sdp(type="trickle", target="both", candidate=None),
            "invalid_message",
            9,
            id="trickle unknown target",
        ),
        pytest.param(
            _sdp(type="trickle", target="publish"),
            "invalid_message",
            9,
            id="trickle without candidate",
        ),
        pytest.param(
            _sdp(type="trickle", target="publish", candidate="candidate:1"),
            "invalid_message",
            9,
            id="candidate a string",
        ),
        pytest.param(
            _sdp(type="trickle", target="publish", candidate={"sdpMid": "0"}),
            "invalid_message",
            9,
            id="candidate without candidate",
        ),
        pytest.param(
            _sdp(type="mute", track_id="TR_1", muted="yes"),
            "invalid_message",
            9,
            id="muted a string",
        ),
        pytest.param(
            _sdp(type="mute", track_id="TR_1", muted=1), "invalid_message", 9, id="muted an integer"
        ),
        pytest.param(_sdp(type="mute", muted=True), "invalid_message", 9, id="mute without track"),
        pytest.param(
            json.dumps({"id": "x" * 65, "type": "ping"}),
            "invalid_message",
            "x" * 65,
            id="id of 65 characters",
        ),
        pytest.param(
            json.dumps({"id": "q", "type": "join"}), "invalid_message", "q", id="string id kept"
        ),
    ],
)
def test_rejected(text: str, code: str, request_id: str | int | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request(text)
    assert (caught.value.code, caught.value.request_id) == (code, request_id)
    assert caught.value.message
