"""The Python SDK: join a Switchboard room as a peer or bot, publish and receive tracks.

Example::

    room = await Room.connect("http://127.0.0.1:8080", token, room="standup", name="bot")
    room.on_track = lambda remote: print("got", remote.kind, "from", remote.participant_name)
    await room.publish([VideoTestPattern(), ToneTrack()])
    ...
    await room.leave()

It speaks the same protocol as the browser (docs/protocol.md): one WebSocket, a publish
peer connection on which it offers, a subscribe peer connection on which the server offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtp import RtpPacket

from ..sfu import aiortc_glue
from .data import DataChannels

log = logging.getLogger(__name__)

RESTART_TIMEOUT_S = 30.0  # an ICE restart that has not connected by then has failed


class SignallingError(Exception):
    """The server answered a request with an error (``code`` as in docs/protocol.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class IceError(Exception):
    """A peer connection could not connect (ICE, RFC 8445): no usable candidate, or no
    connectivity within the time allowed. The message says which and what to check."""


@dataclass
class RemoteTrack:
    """A track another participant publishes, as received here.

    ``packets``/``bytes`` count RTP packets and payload bytes received (before decoding);
    ``track`` yields decoded frames (``await track.recv()``).
    """

    track_id: str
    participant_id: str
    participant_name: str
    kind: str
    track: MediaStreamTrack
    muted: bool = False
    ended: bool = False
    packets: int = 0
    bytes: int = 0
    first_packet: RtpPacket | None = field(default=None, repr=False)


class Room:
    """A connection to one room. Build it with ``await Room.connect(...)``.

    Callbacks (plain functions, set as attributes): ``on_track(RemoteTrack)``,
    ``on_track_ended(RemoteTrack)``, ``on_participant_joined(dict)``,
    ``on_participant_left(participant, reason)``, ``on_track_muted(RemoteTrack)``,
    ``on_speakers_changed(speakers, dominant)`` (participant ids),
    ``on_layer_changed(event)`` (the ``layer_changed`` event: the simulcast layer now
    received of a track, also kept in ``layers``), ``on_publisher_layers(track_id, rids)``,
    ``on_disconnected(code, reason)``. ``ended`` is set once the socket is gone (by ``leave``,
    ``close`` or the server); ``disconnect`` then holds the server's (code, reason), if it
    gave one.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self._ws, self._session = ws, session
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.last_seq = 0  # of the last event received (docs/protocol.md, ``resume``)
        self.session_id = ""  # from the join reply, for ``resume``
        self._resume_with: tuple[str, str, Any] = ("", "", True)  # socket URL, token, ssl
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._unsent_answer: tuple[int, str] | None = None  # (offer id, SDP) the socket lost
        self._session_up = asyncio.Event()  # cleared while ``resume`` swaps the socket
        self._session_up.set()
        self._reader: asyncio.Task[None] | None = None
        self._answerer: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._ice_watchdog: asyncio.Task[None] | None = None
        self._publish_lock = asyncio.Lock()  # one publish-side negotiation at a time
        self._restarting: dict[str, asyncio.Future[bool]] = {}  # connection -> its restart
        self._restarted_at: dict[str, float] = {}
        #: Restart ICE on a media connection that received nothing for this long (s) while
        #: the socket is up (the network changed); None: only ``restart_ice`` restarts.
        self.ice_restart_after_s: float | None = 4.0
        self._config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.participant_id = ""
        self.room = ""
        self.participants: dict[str, dict[str, Any]] = {}
        self.remote_tracks: dict[str, RemoteTrack] = {}
        self.published: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.ended = asyncio.Event()
        self.disconnect: tuple[int, str] | None = None
        self._joined = asyncio.Event()
        self._data_lock = asyncio.Lock()
        self._track_map: dict[str, dict[str, Any]] = {}  # subscribe MID -> track info
        self._muted: dict[str, bool] = {}
        self.on_track: Callable[[RemoteTrack], None] = lambda t: None
        self.on_track_ended: Callable[[RemoteTrack], None] = lambda t: None
        self.on_track_muted: Callable[[RemoteTrack], None] = lambda t: None
        self.on_participant_joined: Callable[[dict[str, Any]], None] = lambda p: None
        self.on_participant_left: Callable[[dict[str, Any], str], None] = lambda p, why: None
        self.on_disconnected: Callable[[int, str], None] = lambda code, reason: None
        self.on_speakers_changed: Callable[[list[str], str | None], None] = lambda s, d: None
        # Simulcast: the layer received of a remote track, dynacast requests for ours.
        self.on_layer_changed: Callable[[dict[str, Any]], None] = lambda event: None
        self.on_publisher_layers: Callable[[str, list[str]], None] = lambda track, rids: None
        self.layers: dict[str, dict[str, Any]] = {}  # track id -> its last layer_changed
        # In-call data (client/data.py): set ``room.data.on_data``, call ``room.send_data``.
        self.data = DataChannels(self._publish_data_only)

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        room: str,
        name: str,
        ice_addresses: Sequence[str] | None = None,
        ssl: Any = True,
        ice_transport_policy: str = "all",
    ) -> Room:
        """Open the socket at ``url`` (``http(s)://host:port``), authenticate and join.

        ``ice_addresses`` restricts the local addresses ICE gathers on (process-wide); the
        default is every interface plus 127.0.0.1. ``ice_transport_policy``: ``"all"`` or
        ``"relay"`` (only TURN relay candidates, W3C WebRTC §4.2.5, through the TURN servers the
        join reply hands out; ``publish`` then raises IceError when no relay could be allocated).
        Raises SignallingError if the server refuses the token or the join, ValueError for an
        unknown policy.
        """
        policy = RTCIceTransportPolicy(ice_transport_policy)
        # aioice alone skips loopback: without this a peer on a loopback-only host has no
        # candidate at all. Process-wide, as aioice's setting is.
        aiortc_glue.use_host_addresses(ice_addresses or ())
        ws_url = url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(ws_url + "/v1/rtc", ssl=ssl, max_msg_size=0)
        except BaseException:
            await session.close()
            raise
        self = cls(ws, session)
        self._reader = asyncio.ensure_future(self._read())
        self._answerer = asyncio.ensure_future(self._answer_offers())
        try:
            await self.request("authenticate", token=token)
            joined = await self.request("join", room=room, name=name)
        except BaseException:
            await self.close()
            raise
        self.participant_id = joined["participant"]["id"]
        self.room = joined["room"]
        self.session_id = joined["session_id"]
        self._resume_with = (ws_url, token, ssl)
        self.participants = {p["id"]: p for p in joined["participants"]}
        self._muted = {t["track_id"]: t["muted"] for t in joined["tracks"]}
        servers = [RTCIceServer(**s) for s in joined.get("ice_servers", [])]
        self._config = RTCConfiguration(
            iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE, iceTransportPolicy=policy
        )
        self.subscribe_pc = RTCPeerConnection(self._config)
        self.subscribe_pc.on("track", self._on_remote_track)
        self._joined.set()
        self._pinger = asyncio.ensure_future(self._ping())
        self._ice_watchdog = asyncio.ensure_future(self._watch_ice())
        return self

    async def resume(self) -> None:
        """Open a new socket after the old one dropped (within 30 s) and take this
        participant back: peer connections untouched, the events missed in between delivered
        to the callbacks in order. Raises SignallingError ``cannot_resume`` when too late."""
        ws_url, token, ssl = self._resume_with
        self._session_up.clear()
        await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pinger is not None:
            self._pinger.cancel()
        self._ws = await self._session.ws_connect(ws_url + "/v1/rtc", ssl=ssl, max_msg_size=0)
        self.ended.clear()
        self._reader = asyncio.ensure_future(self._read())
        await self.request("authenticate", token=token)
        resumed = await self.request("resume", session_id=self.session_id, last_seq=self.last_seq)
        for message in resumed["missed"]:
            self._dispatch(message)
        self._pinger = asyncio.ensure_future(self._ping())
        self._session_up.set()
        # An answer the old socket failed to send: the server still waits for it (its next
        # offer, an ICE restart's included, comes only after it).
        unsent, self._unsent_answer = self._unsent_answer, None
        if unsent is not None:
            try:
                await self.request("subscribe_answer", offer_id=unsent[0], sdp=unsent[1])
            except SignallingError as exc:  # it did arrive before the socket dropped
                log.info("subscribe answer sent again after resume: %s", exc)

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its result; raises SignallingError on an error reply,
        ConnectionError if the socket closes first."""
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._ws.send_json({"id": request_id, "type": kind, **fields})
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def publish(
        self, tracks: Sequence[MediaStreamTrack], video_codec: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish ``tracks`` on the publish connection; return the server's track list
        (``track_id``, ``mid``, ``kind``, ``muted``). ``video_codec`` (``"VP8"`` or
        ``"H264"``) offers only that codec for video; the default offers aiortc's list."""
        async with self._publish_lock:
            return await self._publish(tracks, video_codec)

    async def _publish(
        self, tracks: Sequence[MediaStreamTrack], video_codec: str | None
    ) -> list[dict[str, Any]]:
        if self.publish_pc is None:
            self.publish_pc = RTCPeerConnection(self._config)
        for track in tracks:
            transceiver = self.publish_pc.addTransceiver(track, direction="sendonly")
            if track.kind == "video" and video_codec is not None:
                wanted = f"video/{video_codec}".lower()
                codecs = RTCRtpSender.getCapabilities("video").codecs
                preferred = [c for c in codecs if c.mimeType.lower() == wanted]
                if not preferred:
                    raise ValueError(f"unsupported video codec {video_codec!r}")
                transceiver.setCodecPreferences(
                    preferred + [c for c in codecs if c.mimeType.lower() == "video/rtx"]
                )
        # After the transceivers: aiortc drops a bundle whose SCTP transport predates them.
        self.data.open_publish(self.publish_pc)
        offer = await self.publish_pc.createOffer()
        await self.publish_pc.setLocalDescription(offer)
        if (
            self._config.iceTransportPolicy == RTCIceTransportPolicy.RELAY
            and " typ relay" not in self.publish_pc.localDescription.sdp
        ):
            servers = [u for s in self._config.iceServers or [] for u in _urls(s)]
            why = aiortc_glue.last_turn_error() or "no TURN server in the join reply"
            raise IceError(
                f"relay only, but no TURN allocation succeeded ({why}); "
                f"TURN servers tried: {', '.join(servers) or 'none'}"
            )
        result = await self.request("publish_offer", sdp=self.publish_pc.localDescription.sdp)
        await self.publish_pc.setRemoteDescription(
            RTCSessionDescription(sdp=result["sdp"], type="answer")
        )
        self.published = result["tracks"]
        return self.published

    async def restart_ice(self, connection: str | None = None) -> bool:
        """Restart ICE (RFC 8445 §9) on ``connection`` (``"publish"``, ``"subscribe"``, or both
        when None) after the network changed: new credentials and candidates, the same DTLS,
        tracks and m-sections, no new join. Media keeps flowing on the old path until the new
        one is nominated. Returns True once every restarted connection uses its new path,
        False if a restart's checks failed. Raises IceError when ``connection`` was never
        connected, SignallingError from the server (``not_connected``)."""
        names = [connection] if connection is not None else ["publish", "subscribe"]
        if connection is None:
            names = [n for n in names if self._pc(n) is not None]
        results = await asyncio.gather(*(self._restart_once(name) for name in names))
        return all(results)

    def _pc(self, connection: str) -> RTCPeerConnection | None:
        if connection not in ("publish", "subscribe"):
            raise ValueError(f"connection must be publish or subscribe, not {connection!r}")
        return self.publish_pc if connection == "publish" else self.subscribe_pc

    async def _restart_once(self, connection: str) -> bool:
        """One restart of ``connection`` at a time: a second call joins the first."""
        running = self._restarting.get(connection)
        if running is not None and not running.done():
            return await asyncio.shield(running)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._restarting[connection] = future
        self._restarted_at[connection] = asyncio.get_running_loop().time()
        try:
            if connection == "publish":
                ok = await self._restart_publish()
            else:
                await self.request("ice_restart", connection="subscribe")
                try:  # set once the restarting offer is answered and its checks end
                    ok = await asyncio.wait_for(asyncio.shield(future), RESTART_TIMEOUT_S)
                except TimeoutError:
                    ok = False
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a joined caller re-raises it
            raise
        if not future.done():
            future.set_result(ok)
        return ok

    async def _restart_publish(self) -> bool:
        async with self._publish_lock:  # serialised with publish()
            pc = self.publish_pc
            if pc is None:
                raise IceError("nothing published yet: no publish connection to restart")
            try:
                await aiortc_glue.begin_ice_restart(pc)
            except aiortc_glue.IceRestartError as exc:
                raise IceError(f"cannot restart ICE on the publish connection: {exc}") from None
            try:
                await pc.setLocalDescription(await pc.createOffer())
                result = await self.request("publish_offer", sdp=pc.localDescription.sdp)
            except BaseException:
                await aiortc_glue.abandon_ice_restart(pc)
                raise
            await pc.setRemoteDescription(RTCSessionDescription(sdp=result["sdp"], type="answer"))
            self.published = result["tracks"]
            done = aiortc_glue.finish_ice_restart(pc)
        return await done

    async def _watch_ice(self) -> None:
        """Restart a media connection that received nothing (media, RTCP: aiortc sends
        reports every 0.5 to 1.5 s on an active m-section) for ``ice_restart_after_s``."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)  # polling period of the watchdog, not synchronisation
            after = self.ice_restart_after_s
            if after is None or self._ws.closed:
                continue
            for name in ("publish", "subscribe"):
                pc = self._pc(name)
                if pc is None or pc.connectionState != "connected" or not _carries_media(pc):
                    continue
                aiortc_glue.watch_ice(pc)
                idle = aiortc_glue.ice_idle_s(pc) or 0.0
                running = self._restarting.get(name)
                recent = loop.time() - self._restarted_at.get(name, -after) < after
                if idle > after and (running is None or running.done()) and not recent:
                    log.info("%s connection idle for %.1f s: restarting ICE", name, idle)
                    asyncio.ensure_future(self._auto_restart(name))

    async def _auto_restart(self, connection: str) -> None:
        try:
            ok = await self._restart_once(connection)
        except (SignallingError, ConnectionError, IceError) as exc:
            log.warning("automatic ICE restart of the %s connection failed: %s", connection, exc)
        else:
            log.info("automatic ICE restart of the %s connection: %s", connection, ok)

    async def wait_connected(self, timeout_s: float = 15.0) -> None:
        """Wait until the publish connection is connected (ICE and DTLS done).

        Raises IceError when it fails, or is not connected after ``timeout_s`` seconds."""
        pc = self.publish_pc
        if pc is None:
            raise IceError("nothing published yet")
        changed = asyncio.Event()
        pc.on("connectionstatechange", changed.set)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise IceError(f"the media connection {pc.connectionState}")
                changed.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise IceError(
                        f"no media connectivity within {timeout_s:g} s (ICE state "
                        f"{pc.iceConnectionState}); check the firewall, the TURN servers and "
                        "their credentials"
                    )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            pc.remove_listener("connectionstatechange", changed.set)

    async def update_subscription(
        self,
        track_id: str,
        max_width: int | None = None,
        max_height: int | None = None,
        max_fps: float | None = None,
        paused: bool = False,
    ) -> list[str]:
        """Set what you want of a remote track: the largest size (pixels) and frame rate, or
        ``paused``. For a simulcast track the SFU forwards the best layer within it that your
        bandwidth allows and reports switches with ``on_layer_changed``; a single-layer track
        (audio included) only pauses and resumes. Returns the track's RIDs (empty for a
        single-layer track); raises SignallingError ``unknown_track``."""
        fields: dict[str, Any] = {"paused": paused}
        for name, value in (("max_width", max_width), ("max_height", max_height)):
            if value is not None:
                fields[name] = value
        if max_fps is not None:
            fields["max_fps"] = max_fps
        result = await self.request("update_subscription", track_id=track_id, **fields)
        return list(result["rids"])

    async def mute(self, track_id: str, muted: bool) -> None:
        """Tell the others that a published track is muted (send silence/black yourself)."""
        await self.request("mute", track_id=track_id, muted=muted)

    @property
    def on_data(self) -> Callable[[str, bytes | str, bool], None]:
        """``on_data(sender_id, payload, reliable)``: an in-call data message (``payload``
        is ``str`` for text, ``bytes`` for binary; ``sender_id`` as stamped by the SFU)."""
        return self.data.on_data

    @on_data.setter
    def on_data(self, callback: Callable[[str, bytes | str, bool], None]) -> None:
        self.data.on_data = callback

    async def send_data(
        self, payload: bytes | str, reliable: bool = True, to: Sequence[str] | None = None
    ) -> None:
        """Send in-call data to everyone else in the room, or to the participant ids ``to``,
        on the reliable (ordered) or lossy (unordered, no retransmission) channel.

        Payloads up to 255 KiB (``DataTooLarge`` above); the server reports what it drops
        (rate limit, unknown target) through ``data.on_dropped``. docs/protocol.md "In-call
        data"."""
        await self.data.send(payload, reliable, to)

    async def open_data(self) -> None:
        """Open the in-call data channels without sending (to receive: messages for this
        participant wait at the SFU until they are open). ``publish`` opens them too."""
        await self.data.open()

    async def _publish_data_only(self) -> None:
        async with self._data_lock:
            if self.publish_pc is None:
                await self.publish([])

    async def leave(self) -> None:
        """Leave the room and close everything."""
        if not self._ws.closed:
            with contextlib.suppress(SignallingError, ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(self.request("leave"), 5)
        await self.close()

    async def close(self) -> None:
        """Close the socket and the peer connections without saying goodbye."""
        for task in (self._pinger, self._answerer, self._ice_watchdog):
            if task is not None:
                task.cancel()
        await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
        await self._session.close()
        self.closed.set()

    # internals

    async def _read(self) -> None:
        code, reason = 1000, "closed"
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                self._dispatch(msg.json())
        finally:
            if self._ws.close_code is not None:
                code = self._ws.close_code
            if self.disconnect is not None:
                code, reason = self.disconnect
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"socket closed ({code})"))
            self.ended.set()
            self.on_disconnected(code, reason)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if isinstance(seq := msg.get("seq"), int):
            self.last_seq = seq
        if kind in ("reply", "error"):
            future = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                if kind == "error":
                    log.warning("server error: %s", msg["error"])
                return
            if kind == "reply":
                future.set_result(msg["result"])
            else:
                future.set_exception(SignallingError(msg["error"]["code"], msg["error"]["message"]))
        elif kind == "subscribe_offer":
            self._offers.put_nowait(msg)
        elif kind == "participant_joined":
            self.participants[msg["participant"]["id"]] = msg["participant"]
            self.on_participant_joined(msg["participant"])
        elif kind == "participant_left":
            left = self.participants.pop(msg["participant_id"], {"id": msg["participant_id"]})
            self.on_participant_left(left, msg["reason"])
        elif kind == "track_unpublished":
            remote = self.remote_tracks.get(msg["track_id"])
            if remote is not None and not remote.ended:
                remote.ended = True
                self.on_track_ended(remote)
        elif kind == "track_muted":
            self._muted[msg["track_id"]] = msg["muted"]
            remote = self.remote_tracks.get(msg["track_id"])
            if remote is not None:
                remote.muted = msg["muted"]
                self.on_track_muted(remote)
        elif kind == "track_published":
            self._muted[msg["track"]["track_id"]] = msg["track"]["muted"]
        elif kind == "data_dropped":
            self.data.on_dropped_event(msg)
        elif kind == "speakers_changed":
            self.on_speakers_changed(msg["speakers"], msg["dominant"])
        elif kind == "layer_changed":
            self.layers[msg["track_id"]] = msg
            self.on_layer_changed(msg)
        elif kind == "publisher_layers":
            self.on_publisher_layers(msg["track_id"], msg["active"])
        elif kind == "disconnect":
            self.disconnect = (msg["code"], msg["reason"])

    async def _answer_offers(self) -> None:
        await self._joined.wait()  # an offer can arrive before connect() made the connection
        pc = self.subscribe_pc
        assert pc is not None
        while True:
            msg = await self._offers.get()
            self._track_map.update(msg["tracks"])
            restart = aiortc_glue.is_ice_restart(pc, msg["sdp"])  # the server restarts ICE
            if restart:
                try:
                    await aiortc_glue.begin_ice_restart(pc)
                except aiortc_glue.IceRestartError as exc:
                    log.warning("cannot restart ICE on the subscribe connection: %s", exc)
                    restart = False
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            if restart:
                done = aiortc_glue.finish_ice_restart(pc)
                waiter = self._restarting.get("subscribe")
                if waiter is not None and not waiter.done():
                    done.add_done_callback(functools.partial(_settle, waiter))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            await self._session_up.wait()  # not on a socket ``resume`` has not taken back yet
            try:
                await self.request(
                    "subscribe_answer", offer_id=msg["offer_id"], sdp=pc.localDescription.sdp
                )
            except SignallingError as exc:
                log.warning("subscribe answer refused: %s", exc)
            except ConnectionError as exc:  # the socket dropped: ``resume`` sends it again
                log.info("subscribe answer not sent: %s", exc)
                self._unsent_answer = (msg["offer_id"], pc.localDescription.sdp)

    def _on_remote_track(self, track: MediaStreamTrack) -> None:
        assert self.subscribe_pc is not None
        transceiver = next(
            t for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track
        )
        info = self._track_map.get(transceiver.mid or "")
        participant = self.participants.get(info["participant_id"]) if info else None
        if info is None or participant is None:
            return  # an m-section whose publisher left while the offer was on its way
        remote = RemoteTrack(
            info["track_id"],
            info["participant_id"],
            participant["name"],
            info["kind"],
            track,
            self._muted.get(info["track_id"], False),
        )
        self.remote_tracks[remote.track_id] = remote

        async def count(packet: RtpPacket) -> None:
            if remote.first_packet is None:
                remote.first_packet = packet
            remote.packets += 1
            remote.bytes += len(packet.payload)

        aiortc_glue.ReceiveTap(transceiver.receiver, count, decode=True)
        self.on_track(remote)

    async def _ping(self) -> None:
        with contextlib.suppress(SignallingError, ConnectionError):
            while True:
                await asyncio.sleep(20)  # keep-alive period, not synchronisation
                await self.request("ping")


def _settle(waiter: asyncio.Future[bool], task: asyncio.Future[bool]) -> None:
    if not waiter.done():
        if task.cancelled():
            waiter.cancel()
        else:
            waiter.set_result(task.result())


def _carries_media(pc: RTCPeerConnection) -> bool:
    return any(t.currentDirection not in (None, "inactive") for t in pc.getTransceivers())


def _urls(server: RTCIceServer) -> list[str]:
    return server.urls if isinstance(server.urls, list) else [server.urls]
