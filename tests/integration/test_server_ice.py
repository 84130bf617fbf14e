"""The SFU's ICE settings in real calls: UDP port range, announced address, the probe route."""

from __future__ import annotations

import re
import socket

import pytest
from aiohttp import ClientSession
from aiortc import RTCPeerConnection

from switchboard.client import Room, ToneTrack, VideoTestPattern
from switchboard.sfu import MediaConfig

from .conftest import LOOPBACK, Join, Server

PORT_RANGE = (47100, 47119)


def _host_candidates(sdp: str) -> list[tuple[str, int]]:
    return [
        (m[1], int(m[2]))
        for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", sdp)
    ]


@pytest.mark.parametrize(
    "server", [{"media": MediaConfig(ice_addresses=LOOPBACK, ice_port_range=PORT_RANGE)}],
    indirect=True,
)  # fmt: skip
async def test_port_range(server: Server, join: Join) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", PORT_RANGE[0]))  # the range must be free for this test
    a, b = await join("a"), await join("b")
    await a.until(lambda: a.frames_from(b, "video") >= 5 and b.frames_from(a, "video") >= 5)
    for peer in (a, b):
        candidates = _host_candidates(peer.room.publish_pc.remoteDescription.sdp)
        assert candidates and all(PORT_RANGE[0] <= p <= PORT_RANGE[1] for _, p in candidates)


@pytest.mark.parametrize(
    "server",
    [{"media": MediaConfig(ice_addresses=LOOPBACK, ice_announced_address="192.0.2.7")}],
    indirect=True,
)
async def test_announced_address(server: Server) -> None:
    room = await Room.connect(server.url, server.token(), "r", "a", LOOPBACK)
    try:
        await room.publish([ToneTrack(), VideoTestPattern(160, 120)])
        answer = room.publish_pc.remoteDescription.sdp
        assert {a for a, _ in _host_candidates(answer)} == {"192.0.2.7"}
        assert "127.0.0.1" not in answer
    finally:
        await room.close()


async def test_probe_refuses_media_offers(server: Server) -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with ClientSession() as http:
            response = await http.post(
                f"{server.url}/v1/connectivity/probe",
                json={"sdp": pc.localDescription.sdp},
                headers={"Authorization": f"Bearer {server.token()}"},
            )
            body = await response.json()
        assert response.status == 400
        assert body["error"]["code"] == "InvalidSdp"
        assert "one data channel" in body["error"]["message"]
    finally:
        await pc.close()
