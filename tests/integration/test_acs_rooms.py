"""The official ``azure-communication-rooms`` SDK (sync and async) against the real server
over https, trusting the self-signed certificate by path."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from azure.communication.identity import CommunicationUserIdentifier
from azure.communication.rooms import ParticipantRole, RoomParticipant, RoomsClient
from azure.communication.rooms.aio import RoomsClient as AsyncRoomsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from switchboard.signalling.identity.hmac_auth import sign_request
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.keys import ROOMS_API, STORE
from switchboard.signalling.store import identities

from .conftest import TlsServer


def _sync_clients(server: TlsServer) -> list[RoomsClient]:
    key = AzureKeyCredential(base64.b64encode(server.access_key).decode())
    return [
        RoomsClient.from_connection_string(
            server.connection_string, connection_verify=str(server.cert)
        ),
        RoomsClient(server.url, key, connection_verify=str(server.cert)),
    ]


async def _user(server: TlsServer) -> CommunicationUserIdentifier:
    """A new identity of the server (room participants must be existing identities)."""
    identity_id = new_identity_id(server.access_key)
    await identities.create_identity(server.app[STORE], identity_id, time.time())
    return CommunicationUserIdentifier(identity_id)


def _iso(value: object) -> datetime:
    """A room time as the SDK hands it back (an ISO 8601 string) as a datetime."""
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_sync_client_rooms_and_participants(tls_server: TlsServer) -> None:
    def run(
        client: RoomsClient, ada: CommunicationUserIdentifier, bob: CommunicationUserIdentifier
    ) -> None:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
        room = client.create_room(
            valid_from=start,
            valid_until=start + timedelta(days=1),
            pstn_dial_out_enabled=True,
            participants=[
                RoomParticipant(communication_identifier=ada, role=ParticipantRole.PRESENTER)
            ],
        )
        assert room.id and room.pstn_dial_out_enabled is True
        assert _iso(room.valid_from) == start
        assert _iso(room.valid_until) == start + timedelta(days=1)
        assert _iso(room.created_at) <= datetime.now(UTC)
        got = client.get_room(room.id)
        assert vars(got) == vars(room)
        # merge-patch: what is not sent stays as it was
        updated = client.update_room(room_id=room.id, pstn_dial_out_enabled=False)
        assert updated.pstn_dial_out_enabled is False and updated.valid_from == room.valid_from
        later = start + timedelta(days=2)
        updated = client.update_room(room_id=room.id, valid_until=later)
        assert _iso(updated.valid_until) == later and updated.pstn_dial_out_enabled is False
        assert room.id in [r.id for r in client.list_rooms()]

        client.add_or_update_participants(
            room_id=room.id,
            participants=[
                RoomParticipant(communication_identifier=bob, role=ParticipantRole.CONSUMER),
                RoomParticipant(communication_identifier=ada, role=ParticipantRole.ATTENDEE),
            ],
        )
        roles = {
            p.communication_identifier.raw_id: p.role for p in client.list_participants(room.id)
        }
        assert roles == {ada.raw_id: "Attendee", bob.raw_id: "Consumer"}
        client.remove_participants(room_id=room.id, participants=[ada])
        roles = {
            p.communication_identifier.raw_id: p.role for p in client.list_participants(room.id)
        }
        assert roles == {bob.raw_id: "Consumer"}

        client.delete_room(room_id=room.id)
        for call in (
            lambda: client.get_room(room.id),
            lambda: client.delete_room(room_id=room.id),
            lambda: client.update_room(room_id=room.id, pstn_dial_out_enabled=True),
            lambda: list(client.list_participants(room.id)),
            lambda: client.remove_participants(room_id=room.id, participants=[bob]),
        ):
            with pytest.raises(ResourceNotFoundError):
                call()
        client.close()

    for client in _sync_clients(tls_server):
        await asyncio.to_thread(run, client, await _user(tls_server), await _user(tls_server))


async def test_async_client(tls_server: TlsServer) -> None:
    key = AzureKeyCredential(base64.b64encode(tls_server.access_key).decode())
    for client in (
        AsyncRoomsClient.from_connection_string(
            tls_server.connection_string, connection_verify=str(tls_server.cert)
        ),
        AsyncRoomsClient(tls_server.url, key, connection_verify=str(tls_server.cert)),
    ):
        async with client:
            ada = await _user(tls_server)
            room = await client.create_room()
            window = _iso(room.valid_until) - _iso(room.valid_from)
            assert window == timedelta(days=180) and room.pstn_dial_out_enabled is False
            await client.add_or_update_participants(
                room_id=room.id, participants=[RoomParticipant(communication_identifier=ada)]
            )
            participants = [p async for p in client.list_participants(room.id)]
            assert [(p.communication_identifier.raw_id, p.role) for p in participants] == [
                (ada.raw_id, "Attendee")
            ]
            assert room.id in [r.id async for r in client.list_rooms()]
            await client.delete_room(room.id)
            with pytest.raises(ResourceNotFoundError):
                await client.get_room(room.id)


async def test_error_paths(tls_server: TlsServer) -> None:
    wrong = AzureKeyCredential(base64.b64encode(secrets.token_bytes(32)).decode())
    bad = RoomsClient(tls_server.url, wrong, connection_verify=str(tls_server.cert))
    good = _sync_clients(tls_server)[0]
    now = datetime.now(UTC)

    def run() -> None:
        with pytest.raises(ClientAuthenticationError):
            bad.create_room()
        with pytest.raises(ClientAuthenticationError):
            list(bad.list_rooms())
        for window in ((now, now - timedelta(hours=1)), (now, now + timedelta(days=181))):
            with pytest.raises(HttpResponseError) as info:
                good.create_room(valid_from=window[0], valid_until=window[1])
            assert info.value.status_code == 400
        stranger = CommunicationUserIdentifier(new_identity_id(secrets.token_bytes(32)))
        with pytest.raises(HttpResponseError) as info:
            good.create_room(participants=[RoomParticipant(communication_identifier=stranger)])
        assert info.value.status_code == 400
        room = good.create_room()
        with pytest.raises(HttpResponseError) as info:
            good.update_room(room_id=room.id, valid_until=now - timedelta(days=1))
        assert info.value.status_code == 400
        assert good.get_room(room.id).valid_until == room.valid_until  # unchanged

    await asyncio.to_thread(run)


async def test_repeatability_request_id_creates_once(tls_server: TlsServer) -> None:
    """A create retried with the same Repeatability-Request-Id (as azure-core's retry policy
    resends it) gets the first room back. The SDK sets a fresh id per call, so the retry is
    sent by hand, signed as the SDK signs."""
    url = tls_server.url + "/rooms?api-version=2025-03-13"
    body = json.dumps({"pstnDialOutEnabled": True}).encode()
    key = base64.b64encode(tls_server.access_key).decode()
    ids = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            headers = sign_request("POST", url, body, key) | {
                "Content-Type": "application/json",
                "Repeatability-Request-Id": "5b0d9e8e-0f4c-4a8e-9d55-2f1f0f4e8d11",
                "Repeatability-First-Sent": "Sun, 29 Nov 2026 16:00:00 GMT",
            }
            async with session.post(
                url, data=body, headers=headers, ssl=tls_server.ssl_context()
            ) as response:
                assert response.status == 201, await response.text()
                ids.append((await response.json())["id"])
    assert ids[0] == ids[1]
    assert [room.id for room in await tls_server.app[ROOMS_API].list()] == [ids[0]]
