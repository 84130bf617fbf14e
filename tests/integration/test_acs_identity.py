"""The official ``azure-communication-identity`` SDK (sync and async) against the real server
over https, trusting the self-signed certificate by path (``connection_verify``)."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
    CommunicationUserIdentifier,
)
from azure.communication.identity.aio import (
    CommunicationIdentityClient as AsyncCommunicationIdentityClient,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import CALL_SCOPES

from .conftest import TlsServer

SyncFactory = Callable[[TlsServer], CommunicationIdentityClient]
AsyncFactory = Callable[[TlsServer], AsyncCommunicationIdentityClient]

SYNC_CLIENTS: dict[str, SyncFactory] = {
    "connection string": lambda s: CommunicationIdentityClient.from_connection_string(
        s.connection_string, connection_verify=str(s.cert)
    ),
    "endpoint and key": lambda s: CommunicationIdentityClient(
        s.url,
        AzureKeyCredential(base64.b64encode(s.access_key).decode()),
        connection_verify=str(s.cert),
    ),
}
ASYNC_CLIENTS: dict[str, AsyncFactory] = {
    "connection string": lambda s: AsyncCommunicationIdentityClient.from_connection_string(
        s.connection_string, connection_verify=str(s.cert)
    ),
    "endpoint and key": lambda s: AsyncCommunicationIdentityClient(
        s.url,
        AzureKeyCredential(base64.b64encode(s.access_key).decode()),
        connection_verify=str(s.cert),
    ),
}


def _expires_at(token: Any) -> float:
    """``AccessToken.expires_on`` as unix seconds (the SDK hands an int or an ISO string)."""
    from datetime import datetime

    value = token.expires_on
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)


@pytest.mark.parametrize("make", SYNC_CLIENTS.values(), ids=SYNC_CLIENTS.keys())
async def test_sync_client_full_cycle(tls_server: TlsServer, make: SyncFactory) -> None:
    client = make(tls_server)

    def run() -> None:
        user = client.create_user()
        assert user.raw_id.startswith("8:acs:")
        user2, token = client.create_user_and_token(
            [CommunicationTokenScope.VOIP], token_expires_in=timedelta(hours=1)
        )
        verified = tls_server.tokens.verify(token.token, "voip")
        assert verified.user_id == user2.raw_id
        assert verified.expires_at - verified.issued_at == 3600
        token2 = client.get_token(
            user,
            [CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP_JOIN],
            token_expires_in=timedelta(minutes=60),
        )
        assert tls_server.tokens.verify(token2.token, CALL_SCOPES).scopes == (
            "chat",
            "voip.join",
        )
        client.revoke_tokens(user)
        client.delete_user(user)
        with pytest.raises(ResourceNotFoundError):
            client.get_token(user, [CommunicationTokenScope.VOIP])
        with pytest.raises(ResourceNotFoundError):
            client.revoke_tokens(user)
        with pytest.raises(ResourceNotFoundError):
            client.delete_user(user)

    await asyncio.to_thread(run)


@pytest.mark.parametrize("make", ASYNC_CLIENTS.values(), ids=ASYNC_CLIENTS.keys())
async def test_async_client_full_cycle(tls_server: TlsServer, make: AsyncFactory) -> None:
    async with make(tls_server) as client:
        user = await client.create_user()
        _, token = await client.create_user_and_token(
            [CommunicationTokenScope.CHAT_JOIN, CommunicationTokenScope.CHAT_JOIN_LIMITED]
        )
        assert tls_server.tokens.verify(token.token, "chat.join").scopes == (
            "chat.join",
            "chat.join.limited",
        )
        token2 = await client.get_token(user, [CommunicationTokenScope.VOIP])
        assert tls_server.tokens.verify(token2.token, "voip").user_id == user.raw_id
        await client.revoke_tokens(user)
        await client.delete_user(user)
        with pytest.raises(ResourceNotFoundError):
            await client.get_token(user, [CommunicationTokenScope.VOIP])


async def test_error_paths(tls_server: TlsServer) -> None:
    wrong_key = AzureKeyCredential(base64.b64encode(secrets.token_bytes(32)).decode())
    bad = CommunicationIdentityClient(
        tls_server.url, wrong_key, connection_verify=str(tls_server.cert)
    )
    good = SYNC_CLIENTS["connection string"](tls_server)
    stranger = CommunicationUserIdentifier(new_identity_id(secrets.token_bytes(32)))
    unstored = CommunicationUserIdentifier(new_identity_id(tls_server.access_key))

    def run() -> None:
        with pytest.raises(ClientAuthenticationError):
            bad.create_user()
        with pytest.raises(ClientAuthenticationError):
            bad.get_token(unstored, [CommunicationTokenScope.VOIP])
        for identity in (stranger, unstored):
            with pytest.raises(ResourceNotFoundError):
                good.get_token(identity, [CommunicationTokenScope.VOIP])
            with pytest.raises(ResourceNotFoundError):
                good.delete_user(identity)
        user = good.create_user()
        with pytest.raises(HttpResponseError) as info:
            good.get_token(user, ["admin"])
        assert info.value.status_code == 400
        for minutes in (59, 1441):
            with pytest.raises(HttpResponseError) as info:
                good.get_token(
                    user,
                    [CommunicationTokenScope.VOIP],
                    token_expires_in=timedelta(minutes=minutes),
                )
            assert info.value.status_code == 400

    await asyncio.to_thread(run)


async def test_untrusted_certificate_is_refused(tls_server: TlsServer) -> None:
    """Verification stays on: without the certificate's path the SDK refuses the server."""
    client = CommunicationIdentityClient.from_connection_string(tls_server.connection_string)
    with pytest.raises(ServiceRequestError):
        await asyncio.to_thread(client.create_user)


async def test_tokens_decode_in_the_sdks_own_credential(tls_server: TlsServer) -> None:
    """The SDK reads ``exp`` from the payload with standard base64: many tokens, each read
    right, none with '-' or '_' in its payload."""
    from azure.communication.identity._shared.user_credential import (
        CommunicationTokenCredential,  # the SDK's own token reader
    )

    async with ASYNC_CLIENTS["connection string"](tls_server) as client:
        user = await client.create_user()
        for _ in range(40):
            token = await client.get_token(user, [CommunicationTokenScope.VOIP])
            payload = token.token.split(".")[1]
            assert "-" not in payload and "_" not in payload
            with CommunicationTokenCredential(token.token) as credential:
                read = credential.get_token()
            assert read.expires_on == int(_expires_at(token))
