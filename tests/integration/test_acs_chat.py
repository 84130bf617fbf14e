"""The official ``azure-communication-chat`` SDK against the real server over https (the
self-signed certificate trusted by path), and the chat events that reach a signalling socket."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from azure.communication.chat import (
    ChatClient,
    ChatMessageType,
    ChatParticipant,
    CommunicationTokenCredential,
    CommunicationUserIdentifier,
)
from azure.communication.chat.aio import ChatClient as AsyncChatClient
from azure.communication.chat.aio import (
    CommunicationTokenCredential as AsyncCommunicationTokenCredential,
)
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from switchboard.signalling.identity.routes import new_identity_id

from .conftest import TlsServer


def _user(server: TlsServer, scopes: tuple[str, ...] = ("chat",)) -> tuple[str, str]:
    user_id = new_identity_id(server.access_key)
    return user_id, server.tokens.mint(user_id, list(scopes), 60)[0]


def _client(server: TlsServer, token: str) -> ChatClient:
    return ChatClient(
        server.url, CommunicationTokenCredential(token), connection_verify=str(server.cert)
    )


async def test_sdk_full_cycle(tls_server: TlsServer) -> None:
    ada_id, ada_token = _user(tls_server)
    bob_id, bob_token = _user(tls_server)
    cy_id, _ = _user(tls_server)
    ada, bob = _client(tls_server, ada_token), _client(tls_server, bob_token)
    verify = str(tls_server.cert)

    def run() -> None:
        created = ada.create_chat_thread(
            "standup",
            thread_participants=[
                ChatParticipant(identifier=CommunicationUserIdentifier(bob_id), display_name="Bob")
            ],
        )
        assert created.errors == [] or created.errors is None
        props = created.chat_thread
        assert props.topic == "standup" and props.created_by.raw_id == ada_id
        # get_chat_thread_client does not pass the client's options on: trust the cert again
        ada_thread = ada.get_chat_thread_client(props.id, connection_verify=verify)
        bob_thread = bob.get_chat_thread_client(props.id, connection_verify=verify)

        sent = [
            ada_thread.send_message(f"hello {i}", sender_display_name="Ada", metadata={"i": str(i)})
            for i in range(5)
        ]
        html = bob_thread.send_message("<b>hi</b>", chat_message_type=ChatMessageType.HTML)
        got = ada_thread.get_message(sent[0].id)
        assert got.content.message == "hello 0" and got.sender_display_name == "Ada"
        assert got.sender.raw_id == ada_id and got.metadata == {"i": "0"}
        assert got.type == ChatMessageType.TEXT

        pages = bob_thread.list_messages(results_per_page=2).by_page()
        listed = [m for page in pages for m in page]
        texts = [m for m in listed if m.type in (ChatMessageType.TEXT, ChatMessageType.HTML)]
        assert [m.id for m in texts] == [html.id] + [s.id for s in reversed(sent)]
        later = datetime.now(UTC) + timedelta(minutes=1)
        assert list(bob_thread.list_messages(start_time=later)) == []
        earlier = datetime.now(UTC) - timedelta(minutes=1)
        assert len(list(bob_thread.list_messages(start_time=earlier))) == len(listed)
        sequence = [int(m.sequence_id) for m in listed]
        assert sequence == sorted(sequence, reverse=True) and len(set(sequence)) == len(sequence)

        ada_thread.update_message(sent[1].id, content="hello one", metadata={"edited": "yes"})
        edited = bob_thread.get_message(sent[1].id)
        assert edited.content.message == "hello one" and edited.edited_on is not None
        assert edited.metadata == {"i": "1", "edited": "yes"}
        ada_thread.delete_message(sent[2].id)
        assert bob_thread.get_message(sent[2].id).deleted_on is not None
        with pytest.raises(HttpResponseError) as err:
            bob_thread.update_message(sent[0].id, content="not mine")
        assert err.value.status_code == 403

        bob_thread.send_typing_notification(sender_display_name="Bob")
        bob_thread.send_read_receipt(sent[4].id)
        receipts = list(ada_thread.list_read_receipts())
        assert [(r.sender.raw_id, r.chat_message_id) for r in receipts] == [(bob_id, sent[4].id)]

        errors = ada_thread.add_participants(
            [ChatParticipant(identifier=CommunicationUserIdentifier(cy_id), display_name="Cy")]
        )
        assert errors == []
        names = {p.identifier.raw_id: p.display_name for p in bob_thread.list_participants()}
        assert names == {ada_id: None, bob_id: "Bob", cy_id: "Cy"}
        ada_thread.remove_participant(CommunicationUserIdentifier(cy_id))
        assert cy_id not in {p.identifier.raw_id for p in ada_thread.list_participants()}

        ada_thread.update_topic("retro")
        assert bob_thread.get_properties().topic == "retro"
        threads = list(bob.list_chat_threads())
        assert [t.id for t in threads] == [props.id]

        ada.delete_chat_thread(props.id)
        with pytest.raises(ResourceNotFoundError):
            bob_thread.get_properties()
        assert list(bob.list_chat_threads()) == []

    await asyncio.to_thread(run)


async def test_async_sdk_and_errors(tls_server: TlsServer) -> None:
    ada_id, ada_token = _user(tls_server)
    _, eve_token = _user(tls_server)
    _, joiner_token = _user(tls_server, ("chat.join",))
    verify = str(tls_server.cert)
    async with AsyncChatClient(
        tls_server.url, AsyncCommunicationTokenCredential(ada_token), connection_verify=verify
    ) as ada:
        created = await ada.create_chat_thread("async")
        thread = ada.get_chat_thread_client(created.chat_thread.id, connection_verify=verify)
        result = await thread.send_message("hi")
        message = await thread.get_message(result.id)
        assert message.content.message == "hi"
        messages = [m async for m in thread.list_messages()]
        assert result.id in {m.id for m in messages}
        with pytest.raises(ResourceNotFoundError):
            await ada.get_chat_thread_client(
                "19:" + "0" * 32 + "@thread.v2", connection_verify=verify
            ).get_properties()
        await thread.close()
    async with AsyncChatClient(
        tls_server.url, AsyncCommunicationTokenCredential(eve_token), connection_verify=verify
    ) as eve:
        stranger = eve.get_chat_thread_client(created.chat_thread.id, connection_verify=verify)
        with pytest.raises(HttpResponseError) as err:
            await stranger.send_message("let me in")
        assert err.value.status_code == 403
        await stranger.close()
    async with AsyncChatClient(
        tls_server.url, AsyncCommunicationTokenCredential(joiner_token), connection_verify=verify
    ) as joiner:
        with pytest.raises(HttpResponseError) as err:
            await joiner.create_chat_thread("no chat scope")
        assert err.value.status_code == 403
    voip_only = tls_server.tokens.mint(ada_id, ["voip"], 60)[0]
    client = _client(tls_server, voip_only)
    with pytest.raises(ClientAuthenticationError):
        await asyncio.to_thread(client.create_chat_thread, "no chat at all")


async def _socket(url: str, token: str, session: aiohttp.ClientSession) -> Any:
    ws = await session.ws_connect(url.replace("http", "ws", 1) + "/v1/rtc")
    await ws.send_json({"id": 1, "type": "authenticate", "token": token})
    reply = await ws.receive_json()
    assert reply["type"] == "reply", reply
    return ws


async def _next_chat_event(ws: Any, name: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive_json()
            if message.get("type") == "chat_event" and message["event"] == name:
                return message


@pytest.mark.parametrize(
    "bob_scopes", [("voip", "chat"), ("chat",)], ids=["voip and chat token", "chat-only token"]
)
async def test_events_reach_signalling_sockets(
    tls_server: TlsServer, bob_scopes: tuple[str, ...]
) -> None:
    """Chat events arrive on the participants' signalling sockets, chat-only tokens too."""
    ada_id, ada_token = _user(tls_server, ("voip", "chat"))
    bob_id, bob_token = _user(tls_server, bob_scopes)
    headers = {"Authorization": f"Bearer {ada_token}"}
    api = "?api-version=2024-03-07"
    ssl = tls_server.ssl_context()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as session:
        bob_ws = await _socket(tls_server.url, bob_token, session)
        body = {
            "topic": "live",
            "participants": [{"communicationIdentifier": {"rawId": bob_id}}],
        }
        async with session.post(
            f"{tls_server.url}/chat/threads{api}", json=body, headers=headers
        ) as r:
            thread_id = (await r.json())["chatThread"]["id"]
        added = await _next_chat_event(bob_ws, "participantsAdded")
        assert added["thread_id"] == thread_id
        base = f"{tls_server.url}/chat/threads/{thread_id}"
        async with session.post(f"{base}/messages{api}", json={"content": "ping"}, headers=headers):
            pass
        received = await _next_chat_event(bob_ws, "chatMessageReceived")
        assert received["message"]["content"]["message"] == "ping"
        assert received["message"]["senderCommunicationIdentifier"]["rawId"] == ada_id
        async with session.post(f"{base}/typing{api}", json={}, headers=headers):
            pass
        typing = await _next_chat_event(bob_ws, "typingIndicatorReceived")
        assert typing["sender"]["rawId"] == ada_id
        message_id = received["message"]["id"]
        async with session.post(
            f"{base}/readReceipts{api}", json={"chatMessageId": message_id}, headers=headers
        ):
            pass
        read = await _next_chat_event(bob_ws, "readReceiptReceived")
        assert read["chatMessageId"] == message_id
        assert datetime.fromisoformat(read["readOn"]).tzinfo == UTC
        await bob_ws.close()
        json.dumps(read)
