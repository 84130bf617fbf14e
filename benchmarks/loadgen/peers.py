"""Load-generator peers: real aiortc peer connections that negotiate through a server's own
signalling, publish pre-encoded media (``media.ClipTrack``) and count what they receive after
SRTP without decoding (``aiortc_hooks``). Publishers pace their video as libwebrtc does
(``pacing_factor``, ``pacer.py``).

Two signalling dialects:

* ``SwitchboardPeer``: Switchboard's WebSocket protocol (docs/protocol.md): a token from
  ``POST /demo/token``, ``authenticate``, ``join``, ``publish_offer``, and an answer to each
  ``subscribe_offer``. The MediaRelay baseline (``benchmarks/mediarelay_baseline.py``) speaks
  the same subset.
* ``JanusPeer``: Janus's HTTP API and its VideoRoom plugin (a session per peer, one publisher
  handle, one multistream subscriber handle for every feed of the room).

``Ledger`` holds what every peer sent and received; load.py turns it into loss and latency.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from switchboard.sfu import aiortc_glue

from .aiortc_hooks import count_received_rtp, payload_key, tap_sent_rtp
from .media import Clip, ClipTrack
from .pacer import Pacer

MEDIA_CODECS = re.compile(r"a=rtpmap:(\d+) (VP8|opus)/", re.IGNORECASE)
AUDIO_CODECS = re.compile(r"a=rtpmap:(\d+) opus/", re.IGNORECASE)
SEND_TIMES_KEPT_S = 2.0


def media_payload_types(sdp: str) -> set[int]:
    """Payload types of VP8 and Opus in ``sdp`` (RTX, FEC and the rest are not media)."""
    return {int(pt) for pt, _ in MEDIA_CODECS.findall(sdp)}


def audio_payload_types(sdp: str) -> set[int]:
    """Payload types of Opus in ``sdp``: what a pacer lets through unpaced."""
    return {int(pt) for pt in AUDIO_CODECS.findall(sdp)}


def loopback_only(sdp: str) -> str:
    """``sdp`` without candidates outside 127.0.0.0/8 (a guard: the run stays on loopback)."""
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:") and not line.split()[4].startswith("127."):
            continue
        lines.append(line)
    return "\r\n".join(lines)


@dataclass
class Counter:
    """One peer's media counters (VP8 + Opus packets only; RTX is not media).

    ``sent``/``received``: all packets; ``ssrcs``: the SSRCs received (4 raw bytes each);
    ``sent_window``: packets sent inside the ledger's window; ``received_window``: packets
    received that were sent inside it, each with its one-way delay in ``delays_ms``.
    """

    sent: int = 0
    received: int = 0
    ssrcs: set[bytes] = field(default_factory=set)
    sent_window: int = 0
    received_window: int = 0
    delays_ms: list[float] = field(default_factory=list)


class Ledger:
    """Send times of recent packets, keyed by payload (an SFU rewrites headers, not payloads),
    and the measurement window ``[t0, t1]`` (``time.perf_counter`` s).

    Two generations of ``SEND_TIMES_KEPT_S / 2`` each keep the map small; a packet received
    later than that is not matched (it counts as lost).
    """

    def __init__(self) -> None:
        self._now: dict[int, float] = {}
        self._old: dict[int, float] = {}
        self._rotated = time.perf_counter()
        self.t0 = self.t1 = math.inf

    def open_window(self, t0: float) -> None:
        self.t0, self.t1 = t0, math.inf

    def close_window(self, t1: float) -> None:
        self.t1 = t1

    def sent(self, payload: bytes) -> bool:
        """Record a send now; True if now is inside the window."""
        now = time.perf_counter()
        if now - self._rotated > SEND_TIMES_KEPT_S / 2:
            self._old, self._now, self._rotated = self._now, {}, now
        self._now[hash(payload)] = now
        return self.t0 <= now <= self.t1

    def send_time(self, payload: bytes) -> float | None:
        key = hash(payload)
        sent = self._now.get(key)
        return self._old.get(key) if sent is None else sent


class PeerBase:
    """What every load peer has: a publish and a subscribe ``RTCPeerConnection`` and counters."""

    def __init__(self, ledger: Ledger, name: str) -> None:
        self.ledger, self.name = ledger, name
        self.counter = Counter()
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.tracks: list[ClipTrack] = []
        self._send_pts: set[int] = set()
        self._recv_pts: set[int] = set()
        self.decode = False  # the join-time probe decodes instead of counting
        # Video (and its RTX) leaves at most at pacing_factor x the clip's bitrate, as
        # libwebrtc's pacer sends it (pacer.py); 0: unpaced, each frame back to back.
        self.pacing_factor = 0.0
        self.on_video_track: Callable[[Any], None] = lambda track: None

    @staticmethod
    def _config() -> RTCConfiguration:
        return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)

    async def _publish_offer(self, video: Clip, audio: Clip, offset: int) -> str:
        """Make the publish connection with VP8 + Opus clip tracks; return the local offer."""
        pc = self.publish_pc = RTCPeerConnection(self._config())
        for clip in (audio, video):
            track = ClipTrack(clip, offset)
            self.tracks.append(track)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            mime = "video/vp8" if clip.kind == "video" else "audio/opus"
            codecs = RTCRtpSender.getCapabilities(clip.kind).codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == mime])
            if clip.kind == "video":
                aiortc_glue.tap_key_frame_requests(transceiver.sender, track.key_frame_requested)
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        self._send_pts = media_payload_types(sdp)
        pacer = None
        if self.pacing_factor > 0:
            pacer = Pacer(self.pacing_factor * video.bitrate_bps, audio_payload_types(sdp))
        tap_sent_rtp(pc, self._on_sent, pacer)
        return pc.localDescription.sdp

    def _on_sent(self, data: bytes) -> None:
        pt, payload = payload_key(data)
        if pt in self._send_pts:
            self.counter.sent += 1
            if self.ledger.sent(payload):
                self.counter.sent_window += 1

    def _on_received(self, data: bytes) -> None:
        pt, payload = payload_key(data)
        if pt not in self._recv_pts:
            return
        counter = self.counter
        counter.received += 1
        counter.ssrcs.add(data[8:12])
        ledger = self.ledger
        if ledger.t0 != math.inf:
            sent = ledger.send_time(payload)
            if sent is not None and ledger.t0 <= sent <= ledger.t1:
                counter.received_window += 1
                counter.delays_ms.append((time.perf_counter() - sent) * 1000)

    async def _answer(self, offer_sdp: str) -> str:
        """Apply a server offer on the subscribe connection; return the answer SDP."""
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(self._config())
            self.subscribe_pc.on("track", self._on_track)
        pc = self.subscribe_pc
        await pc.setRemoteDescription(RTCSessionDescription(loopback_only(offer_sdp), "offer"))
        self._recv_pts |= media_payload_types(offer_sdp)
        if not self.decode:
            count_received_rtp(pc, self._on_received)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self.on_video_track(track)

    async def close(self) -> None:
        """Leave, close both peer connections and the HTTP session."""
        await self.close_media()

    async def close_media(self) -> None:
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()


class SwitchboardPeer(PeerBase):
    """A participant speaking Switchboard's protocol (or the MediaRelay baseline's copy)."""

    def __init__(self, url: str, ledger: Ledger, name: str) -> None:
        super().__init__(ledger, name)
        self.url = url.rstrip("/")
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.join_sent = 0.0  # perf_counter when the join request left

    async def join(self, room: str) -> None:
        async with self._http.post(
            self.url + "/demo/token", json={"name": self.name, "room": room}
        ) as response:
            response.raise_for_status()
            token = (await response.json())["token"]
        ws_url = self.url.replace("http://", "ws://", 1) + "/v1/rtc"
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0)
        self._tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self._answer_offers()),
            asyncio.ensure_future(self._ping()),
        ]
        await self.request("authenticate", token=token)
        self.join_sent = time.perf_counter()
        await self.request("join", room=room, name=self.name)

    async def publish(self, video: Clip, audio: Clip, offset: int) -> None:
        sdp = await self._publish_offer(video, audio, offset)
        result = await self.request("publish_offer", sdp=sdp)
        assert self.publish_pc is not None
        await self.publish_pc.setRemoteDescription(
            RTCSessionDescription(loopback_only(result["sdp"]), "answer")
        )

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        assert self._ws is not None
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._ws.send_json({"id": request_id, "type": kind, **fields})
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                message = msg.json()
                kind = message.get("type")
                future = self._pending.get(message.get("id"))
                if kind == "reply" and future is not None and not future.done():
                    future.set_result(message["result"])
                elif kind == "error" and future is not None and not future.done():
                    future.set_exception(RuntimeError(f"{self.name}: {message['error']}"))
                elif kind == "subscribe_offer":
                    self._offers.put_nowait(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: socket closed"))

    async def _answer_offers(self) -> None:
        while True:
            offer = await self._offers.get()
            sdp = await self._answer(offer["sdp"])
            await self.request("subscribe_answer", offer_id=offer["offer_id"], sdp=sdp)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(20)  # keep-alive period (docs/protocol.md), not synchronisation
            await self.request("ping")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        await self.close_media()
        await self._http.close()


class JanusPeer(PeerBase):
    """A participant of a Janus VideoRoom over Janus's HTTP API (long-polled events)."""

    def __init__(self, url: str, ledger: Ledger, name: str) -> None:
        super().__init__(ledger, name)
        self.url = url.rstrip("/")
        self._http = aiohttp.ClientSession()
        self._session = 0
        self._transactions = (f"t{n}" for n in itertools.count())
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._up: dict[int, asyncio.Event] = {}  # per handle: Janus said "webrtcup"
        self._tasks: list[asyncio.Task[None]] = []
        self.feed_id = 0
        self.join_sent = 0.0

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": next(self._transactions)}
        async with self._http.post(self.url + path, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"{self.name}: Janus error {reply['error']}")
        return reply

    async def _attach(self) -> int:
        if not self._session:
            created = await self._post("/janus", {"janus": "create"})
            self._session = created["data"]["id"]
            self._tasks.append(asyncio.ensure_future(self._poll()))
        attached = await self._post(
            f"/janus/{self._session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        handle: int = attached["data"]["id"]
        self._events[handle] = asyncio.Queue()
        self._up[handle] = asyncio.Event()
        return handle

    async def _poll(self) -> None:
        while True:
            async with self._http.get(
                f"{self.url}/janus/{self._session}?maxev=10", timeout=aiohttp.ClientTimeout(60)
            ) as response:
                events = await response.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                sender = event.get("sender", 0)
                queue = self._events.get(sender)
                if queue is not None and event.get("janus") == "event":
                    queue.put_nowait(event)
                elif event.get("janus") == "webrtcup" and sender in self._up:
                    self._up[sender].set()

    async def _message(
        self,
        handle: int,
        body: dict[str, Any],
        jsep: dict[str, Any] | None = None,
        until: str = "",
    ) -> dict[str, Any]:
        """Send a plugin request; return its synchronous reply, or else the first event whose
        plugin data has the key ``until`` (events about other feeds are skipped)."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._post(f"/janus/{self._session}/{handle}", request)
        if reply.get("janus") == "success":
            return reply
        while True:
            event = await asyncio.wait_for(self._events[handle].get(), 30)
            data = event.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise RuntimeError(f"{self.name}: VideoRoom error {data['error']}")
            if until in data or (until == "jsep" and "jsep" in event):
                return event

    async def create_room(self, room: int) -> None:
        handle = await self._attach()
        await self._message(
            handle,
            {
                "request": "create",
                "room": room,
                "publishers": 100,
                "videocodec": "vp8",
                "audiocodec": "opus",
                "bitrate": 0,
                "notify_joining": False,
            },
        )

    async def publish_in(self, room: int, video: Clip, audio: Clip, offset: int) -> None:
        handle = await self._attach()
        self.join_sent = time.perf_counter()
        joined = await self._message(
            handle,
            {"request": "join", "ptype": "publisher", "room": room, "display": self.name},
            until="id",
        )
        self.feed_id = joined["plugindata"]["data"]["id"]
        sdp = await self._publish_offer(video, audio, offset)
        event = await self._message(
            handle,
            {"request": "configure", "audio": True, "video": True},
            {"type": "offer", "sdp": sdp},
            until="jsep",
        )
        assert self.publish_pc is not None
        await self.publish_pc.setRemoteDescription(
            RTCSessionDescription(loopback_only(event["jsep"]["sdp"]), "answer")
        )
        await self._trickle_done(handle)
        # A feed can be subscribed to only once its PeerConnection is up.
        await asyncio.wait_for(self._up[handle].wait(), 20)

    async def subscribe_to(self, room: int, feeds: list[int]) -> None:
        handle = await self._attach()
        if not self.join_sent:
            self.join_sent = time.perf_counter()
        event = await self._message(
            handle,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": room,
                "streams": [{"feed": feed} for feed in feeds],
            },
            until="jsep",
        )
        sdp = await self._answer(event["jsep"]["sdp"])
        await self._message(
            handle, {"request": "start"}, {"type": "answer", "sdp": sdp}, until="started"
        )
        await self._trickle_done(handle)

    async def _trickle_done(self, handle: int) -> None:
        await self._post(
            f"/janus/{self._session}/{handle}",
            {"janus": "trickle", "candidate": {"completed": True}},
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.close_media()
        if self._session:
            try:
                await self._post(f"/janus/{self._session}", {"janus": "destroy"})
            except (aiohttp.ClientError, RuntimeError):
                pass
        await self._http.close()
