"""BASELINE, NOT SWITCHBOARD: the relay pattern most aiortc examples use, for comparison only.

Each published track is decoded once, and aiortc's ``MediaRelay`` hands the decoded frames to
every subscriber's ``RTCRtpSender``, which encodes them again, for that subscriber alone
(decode once, re-encode per subscriber). ``benchmarks/load.py --compare`` runs the same load
against it to show what forwarding without transcoding saves.

It speaks just enough of Switchboard's signalling (docs/protocol.md) for the load generator:
``POST /demo/token`` (any name and room; the token is not checked), and on ``/v1/rtc``
``authenticate``, ``join``, ``publish_offer``, ``subscribe_answer``, ``ping`` and ``leave``,
with a ``subscribe_offer`` whenever a participant has new tracks to receive. No
authentication, no rooms API, no RTCP feedback handling of its own: not for production.

Usage: ``python -m benchmarks.mediarelay_baseline [--port 0]``; prints
``MediaRelay baseline listening on http://127.0.0.1:PORT`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from switchboard.sfu import aiortc_glue

READY = "MediaRelay baseline listening on "
_ids = itertools.count(1)


@dataclass
class Participant:
    id: str
    ws: web.WebSocketResponse
    room: str
    publish_pc: RTCPeerConnection | None = None
    subscribe_pc: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    received: set[str] = field(default_factory=set)  # track ids already added
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    answer: asyncio.Future[str] | None = None
    offer_id: int = 0


@dataclass
class PublishedTrack:
    id: str
    owner: str
    track: MediaStreamTrack
    relay: MediaRelay


class Relay:
    def __init__(self) -> None:
        self.participants: dict[str, Participant] = {}
        self.tracks: dict[str, list[PublishedTrack]] = {}  # room -> tracks

    async def renegotiate(self, p: Participant) -> None:
        """Add the room's tracks ``p`` does not receive yet to its subscribe connection and
        offer; wait for the answer (one renegotiation at a time per participant)."""
        async with p.lock:
            new = [
                t for t in self.tracks.get(p.room, []) if t.owner != p.id and t.id not in p.received
            ]
            if not new:
                return
            mids: dict[str, dict[str, str]] = {}
            for published in new:
                p.received.add(published.id)
                p.subscribe_pc.addTrack(published.relay.subscribe(published.track, buffered=False))
            offer = await p.subscribe_pc.createOffer()
            await p.subscribe_pc.setLocalDescription(offer)
            for transceiver in p.subscribe_pc.getTransceivers():
                track = transceiver.sender.track
                if track is not None:
                    mids[transceiver.mid or ""] = {"track_id": track.id, "kind": track.kind}
            p.offer_id += 1
            p.answer = asyncio.get_running_loop().create_future()
            await p.ws.send_json(
                {
                    "type": "subscribe_offer",
                    "offer_id": p.offer_id,
                    "sdp": p.subscribe_pc.localDescription.sdp,
                    "tracks": mids,
                }
            )
            sdp = await asyncio.wait_for(p.answer, 30)
            await p.subscribe_pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def publish(self, p: Participant, sdp: str) -> dict[str, Any]:
        pc = p.publish_pc = RTCPeerConnection()
        arrived: list[MediaStreamTrack] = []
        pc.on("track", arrived.append)
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        room = self.tracks.setdefault(p.room, [])
        for track in arrived:
            room.append(PublishedTrack(f"TR_{next(_ids)}", p.id, track, MediaRelay()))
        for other in self.participants.values():
            if other.room == p.room and other is not p:
                asyncio.ensure_future(self.renegotiate(other))
        return {"sdp": pc.localDescription.sdp, "tracks": []}

    async def leave(self, p: Participant) -> None:
        self.participants.pop(p.id, None)
        self.tracks[p.room] = [t for t in self.tracks.get(p.room, []) if t.owner != p.id]
        for pc in (p.publish_pc, p.subscribe_pc):
            if pc is not None:
                await pc.close()

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        p: Participant | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                message = msg.json()
                kind, rid = message.get("type"), message.get("id")
                result: dict[str, Any] = {}
                if kind == "join":
                    p = Participant(f"PA_{next(_ids)}", ws, message["room"])
                    self.participants[p.id] = p
                    result = {"participant": {"id": p.id}, "session_id": p.id,
                              "participants": [], "tracks": []}  # fmt: skip
                    asyncio.ensure_future(self.renegotiate(p))
                elif kind == "publish_offer" and p is not None:
                    result = await self.publish(p, message["sdp"])
                elif kind == "subscribe_answer" and p is not None and p.answer is not None:
                    if not p.answer.done():
                        p.answer.set_result(message["sdp"])
                elif kind == "ping":
                    result = {"pong": True}
                elif kind == "leave":
                    await ws.send_json({"type": "reply", "id": rid, "result": {}})
                    break
                await ws.send_json({"type": "reply", "id": rid, "result": result})
        finally:
            if p is not None:
                await self.leave(p)
        return ws


async def token(request: web.Request) -> web.Response:
    return web.json_response({"token": "baseline-needs-no-token"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    aiortc_glue.use_host_addresses(["127.0.0.1"])  # aioice skips loopback by itself
    relay = Relay()
    app = web.Application()
    app.router.add_post("/demo/token", token)
    app.router.add_get("/v1/rtc", relay.socket)
    sock = socket.create_server(("127.0.0.1", args.port))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    web.run_app(app, sock=sock, print=lambda *_: print(READY + url, flush=True))


if __name__ == "__main__":
    main()
