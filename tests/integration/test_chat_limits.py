"""Bad input and limits of the chat REST API: each refused with a clear 4xx and an error code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from switchboard.signalling.chat.routes import decode_continuation, encode_continuation
from switchboard.signalling.errors import ApiError
from switchboard.signalling.identity.routes import new_identity_id

from .conftest import Server

API = {"api-version": "2024-03-07"}


class Chat:
    """Plain HTTP calls of the chat API as one user."""

    def __init__(self, server: Server, session: aiohttp.ClientSession, scopes: list[str]) -> None:
        self.user_id = new_identity_id(server.access_key)
        token = server.tokens.mint(self.user_id, scopes, 60)[0]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.url, self.session = server.url, session

    async def call(
        self, method: str, path: str, body: Any = None, **query: str
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.request(
            method,
            self.url + path,
            json=body,
            params={**API, **query},
            headers=self.headers,
        ) as response:
            text = await response.text()
            return response.status, (await response.json()) if text else {}

    async def new_thread(self, *others: Chat) -> str:
        participants = [{"communicationIdentifier": {"rawId": o.user_id}} for o in others]
        status, body = await self.call(
            "POST", "/chat/threads", {"topic": "t", "participants": participants}
        )
        assert status == 201, body
        return str(body["chatThread"]["id"])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _code(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


@pytest.mark.parametrize("server", [{"chat_max_message_bytes": 1000}], indirect=True)
async def test_message_over_the_limit(server: Server, session: aiohttp.ClientSession) -> None:
    ada = Chat(server, session, ["chat"])
    thread = await ada.new_thread()
    status, _ = await ada.call("POST", f"/chat/threads/{thread}/messages", {"content": "é" * 500})
    assert status == 201  # 1000 bytes of UTF-8: at the limit
    status, body = await ada.call(
        "POST", f"/chat/threads/{thread}/messages", {"content": "é" * 500 + "x"}
    )
    assert (status, _code(body)) == (400, "MessageTooLarge")


async def test_default_limit_is_28_kib(server: Server, session: aiohttp.ClientSession) -> None:
    ada = Chat(server, session, ["chat"])
    thread = await ada.new_thread()
    path = f"/chat/threads/{thread}/messages"
    assert (await ada.call("POST", path, {"content": "x" * 28 * 1024}))[0] == 201
    status, body = await ada.call("POST", path, {"content": "x" * (28 * 1024 + 1)})
    assert (status, _code(body)) == (400, "MessageTooLarge")
    status, created = await ada.call("POST", path, {"content": "short"})
    status, body = await ada.call(
        "PATCH", f"{path}/{created['id']}", {"content": "x" * (28 * 1024 + 1)}
    )
    assert (status, _code(body)) == (400, "MessageTooLarge")


async def test_unknown_thread_ids(server: Server, session: aiohttp.ClientSession) -> None:
    ada = Chat(server, session, ["chat"])
    for thread in ("19:" + "0" * 32 + "@thread.v2", "nonsense"):
        for method, suffix, body in (
            ("GET", "", None),
            ("POST", "/messages", {"content": "hi"}),
            ("GET", "/messages", None),
            ("GET", "/participants", None),
            ("POST", "/typing", {}),
        ):
            status, answer = await ada.call(method, f"/chat/threads/{thread}{suffix}", body)
            assert (status, _code(answer)) == (404, "ThreadNotFound"), (method, suffix)


@pytest.mark.parametrize(
    "token",
    ["garbage", "sb1.", "sb1.!!!!", "sb1.eyJiZWZvcmUiOi0xfQ", "sb1.WzFd", "sb1." + "A" * 300],
)
async def test_malformed_continuation_token(
    server: Server, session: aiohttp.ClientSession, token: str
) -> None:
    ada = Chat(server, session, ["chat"])
    thread = await ada.new_thread()
    status, body = await ada.call(
        "GET", f"/chat/threads/{thread}/messages", continuationToken=token
    )
    assert (status, _code(body)) == (400, "InvalidContinuationToken")


def test_continuation_round_trip() -> None:
    assert decode_continuation(encode_continuation(12345)) == 12345
    with pytest.raises(ApiError):
        decode_continuation(encode_continuation(0))


async def test_pages_follow_next_link(server: Server, session: aiohttp.ClientSession) -> None:
    ada = Chat(server, session, ["chat"])
    thread = await ada.new_thread()
    for i in range(7):
        await ada.call("POST", f"/chat/threads/{thread}/messages", {"content": str(i)})
    seen: list[str] = []
    status, body = await ada.call("GET", f"/chat/threads/{thread}/messages", maxPageSize="3")
    while True:
        assert status == 200
        seen += [m["content"]["message"] for m in body["value"] if m["type"] == "text"]
        if "nextLink" not in body:
            break
        async with session.get(body["nextLink"], headers=ada.headers) as response:
            status, body = response.status, await response.json()
    assert seen == [str(i) for i in reversed(range(7))]


async def test_editing_someone_elses_message(
    server: Server, session: aiohttp.ClientSession
) -> None:
    ada, bob = Chat(server, session, ["chat"]), Chat(server, session, ["chat"])
    thread = await ada.new_thread(bob)
    _, sent = await ada.call("POST", f"/chat/threads/{thread}/messages", {"content": "mine"})
    path = f"/chat/threads/{thread}/messages/{sent['id']}"
    status, body = await bob.call("PATCH", path, {"content": "yours now"})
    assert (status, _code(body)) == (403, "NotMessageSender")
    status, body = await bob.call("DELETE", path)
    assert (status, _code(body)) == (403, "NotMessageSender")
    _, message = await ada.call("GET", path)
    assert message["content"]["message"] == "mine"
    status, body = await ada.call("GET", f"/chat/threads/{thread}/messages/999")
    assert (status, _code(body)) == (404, "MessageNotFound")


async def test_removed_participant_cannot_post(
    server: Server, session: aiohttp.ClientSession
) -> None:
    ada, bob = Chat(server, session, ["chat"]), Chat(server, session, ["chat"])
    thread = await ada.new_thread(bob)
    assert (await bob.call("POST", f"/chat/threads/{thread}/messages", {"content": "hi"}))[0] == 201
    status, _ = await ada.call(
        "POST", f"/chat/threads/{thread}/participants/:remove", {"rawId": bob.user_id}
    )
    assert status == 204
    for method, suffix, body in (
        ("POST", "/messages", {"content": "still here?"}),
        ("GET", "/messages", None),
        ("GET", "", None),
        ("POST", "/typing", {}),
    ):
        status, answer = await bob.call(method, f"/chat/threads/{thread}{suffix}", body)
        assert (status, _code(answer)) == (403, "NotAParticipant"), (method, suffix)


async def test_bad_requests(server: Server, session: aiohttp.ClientSession) -> None:
    ada = Chat(server, session, ["chat"])
    thread = await ada.new_thread()
    cases: list[tuple[str, str, Any, dict[str, str], int, str]] = [
        ("POST", "/chat/threads", {"topic": ""}, {}, 400, "ValidationError"),
        ("POST", f"/chat/threads/{thread}/messages", {"content": 5}, {}, 400, "ValidationError"),
        (
            "POST",
            f"/chat/threads/{thread}/messages",
            {"content": "x", "type": "topicUpdated"},
            {},
            400,
            "ValidationError",
        ),
        (
            "GET",
            f"/chat/threads/{thread}/messages",
            None,
            {"maxPageSize": "0"},
            400,
            "ValidationError",
        ),
        (
            "GET",
            f"/chat/threads/{thread}/messages",
            None,
            {"startTime": "yesterday"},
            400,
            "ValidationError",
        ),
        ("GET", "/chat/threads", None, {"api-version": "1999-01-01"}, 400, "UnsupportedApiVersion"),
        (
            "POST",
            f"/chat/threads/{thread}/readReceipts",
            {"chatMessageId": "x"},
            {},
            400,
            "ValidationError",
        ),
    ]
    for method, path, body, query, status, code in cases:
        got, answer = await ada.call(method, path, body, **query)
        assert (got, _code(answer)) == (status, code), (method, path, body, query)


async def test_tokens(server: Server, session: aiohttp.ClientSession) -> None:
    voip = Chat(server, session, ["voip"])
    status, body = await voip.call("GET", "/chat/threads")
    assert (status, _code(body)) == (401, "Unauthorized")
    voip.headers = {}
    assert (await voip.call("GET", "/chat/threads"))[0] == 401
    limited = Chat(server, session, ["chat.join.limited"])
    ada = Chat(server, session, ["chat"])
    thread = await ada.new_thread(limited)
    status, body = await limited.call(
        "POST", f"/chat/threads/{thread}/participants/:remove", {"rawId": ada.user_id}
    )
    assert (status, _code(body)) == (403, "MissingScope")
    status, _ = await limited.call(
        "POST", f"/chat/threads/{thread}/participants/:remove", {"rawId": limited.user_id}
    )
    assert status == 204
    status, body = await ada.call(
        "POST",
        f"/chat/threads/{thread}/participants/:add",
        {"participants": [{"communicationIdentifier": {"rawId": "8:acs:someone-else"}}]},
    )
    assert status == 201 and body["invalidParticipants"][0]["target"] == "8:acs:someone-else"


def test_openapi_documents_every_chat_route(server: Server) -> None:
    from switchboard.signalling.openapi import DOCUMENT

    routed = {
        (
            route.method.lower(),
            route.resource.canonical.replace("{thread_id}", "{chatThreadId}").replace(
                "{message_id}", "{chatMessageId}"
            ),
        )
        for route in server.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/chat")
        and route.method != "HEAD"
    }
    documented = {
        (method, path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if path.startswith("/chat")
    }
    assert routed == documented


async def test_demo_token_joins_the_rooms_thread(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """One thread per demo room: every visitor of the room joins it under their name."""
    answers = []
    for name, room in (("Ada", "r1"), ("Bob", "r1"), ("Cy", "r2")):
        async with session.post(
            f"{server.url}/demo/token", json={"name": name, "room": room}
        ) as response:
            assert response.status == 200
            answers.append(await response.json())
    ada, bob, cy = answers
    assert ada["chat_thread_id"] == bob["chat_thread_id"] != cy["chat_thread_id"]
    async with session.get(
        f"{server.url}/chat/threads/{ada['chat_thread_id']}/participants",
        params=API,
        headers={"Authorization": f"Bearer {bob['token']}"},
    ) as response:
        names = {p["displayName"] for p in (await response.json())["value"]}
    assert names == {"Ada", "Bob"}
