"""``POST /v1/connectivity/probe`` limits on the real server: at most 2 probes of one identity
at once and 32 in all, so one user can neither pin the server nor lock the others out; a
probe's slot is free again once it has closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from switchboard.client.connectivity import check
from switchboard.sfu import aiortc_glue
from switchboard.sfu.probe import MAX_PROBES, MAX_PROBES_PER_USER

from .conftest import LOOPBACK, Server

PROBE = "/v1/connectivity/probe"


@pytest.fixture
async def offer() -> AsyncIterator[str]:
    """One data channel offer (never connected): the server answers it as a probe."""
    aiortc_glue.use_host_addresses(LOOPBACK)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("echo")
    await pc.setLocalDescription(await pc.createOffer())
    yield pc.localDescription.sdp
    await pc.close()


async def _probe(session: aiohttp.ClientSession, url: str, token: str, sdp: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(url + PROBE, json={"sdp": sdp}, headers=headers) as response:
        body = await response.json()
        if response.status == 429:
            assert body["error"]["code"] == "TooManyRequests"
        return response.status


async def test_probes_are_limited_per_user_and_in_all(server: Server, offer: str) -> None:
    assert (MAX_PROBES_PER_USER, MAX_PROBES) == (2, 32)
    async with aiohttp.ClientSession() as session:
        ada = server.token()
        statuses = [await _probe(session, server.url, ada, offer) for _ in range(3)]
        assert statuses == [200, 200, 429]
        # Ada's probes do not lock the others out: fill the server with others' probes.
        running = MAX_PROBES_PER_USER
        while running < MAX_PROBES:
            other = server.token()
            for _ in range(min(MAX_PROBES_PER_USER, MAX_PROBES - running)):
                assert await _probe(session, server.url, other, offer) == 200
                running += 1
        assert await _probe(session, server.url, server.token(), offer) == 429


async def test_a_closed_probe_frees_its_slot(server: Server, offer: str) -> None:
    """The self-test runs its paths one after the other: each probe closes when the client
    closes its end, so runs one after the other never hit the per-user limit."""
    bob = server.token()
    async with aiohttp.ClientSession() as session:
        assert await _probe(session, server.url, bob, "v=0\r\n") == 400  # refused: no slot kept
        for _ in range(2 * MAX_PROBES_PER_USER):
            results = await check(server.url, bob, paths=("udp",))
            assert results[0].ok, results
        assert await _probe(session, server.url, bob, offer) == 200
