"""A real server (the application from ``create_app``) on loopback, and real aiortc peers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiortc.mediastreams import MediaStreamError

from switchboard.client import RemoteTrack, Room, ToneTrack, VideoTestPattern
from switchboard.sfu import MediaConfig
from switchboard.signalling.app import create_app
from switchboard.signalling.config import Config
from switchboard.signalling.identity.hmac_auth import format_connection_string
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.tls import ensure_self_signed, server_context

LOOPBACK = ("127.0.0.1",)


@dataclass
class Server:
    url: str
    app: web.Application
    tokens: TokenService
    access_key: bytes

    def token(self, scopes: tuple[str, ...] = ("voip",)) -> str:
        return self.tokens.mint(new_identity_id(self.access_key), list(scopes), 60)[0]


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The application on loopback. Indirect parametrization overrides Config fields:
    ``@pytest.mark.parametrize("server", [{"auth_timeout_s": 0.2}], indirect=True)``."""
    key = secrets.token_bytes(32)
    overrides = getattr(request, "param", {})
    overrides = {"media": MediaConfig(ice_addresses=LOOPBACK), **overrides}
    config = Config(access_key=key, data_dir=tmp_path, **overrides)
    app = create_app(config)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield Server(str(test_server.make_url("/")).rstrip("/"), app, TokenService(key), key)
    finally:
        await test_server.close()


class Peer:
    """A Room plus what it saw, with a way to wait for a condition on it.

    Every remote track is decoded (frames counted per track id); callbacks record joins,
    leaves and ended tracks. ``until(predicate)`` waits on the ``changed`` event, which every
    record sets, so tests wait on what happened instead of sleeping.
    """

    def __init__(self, room: Room) -> None:
        self.room = room
        self.changed = asyncio.Event()
        self.tracks: dict[str, RemoteTrack] = {}
        self.frames: dict[str, int] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.track_at: dict[str, float] = {}
        self.first_frame_at: dict[str, float] = {}
        self.ended: set[str] = set()
        self.left: dict[str, str] = {}
        self.muted: dict[str, bool] = {}
        self._decoders: list[asyncio.Task[None]] = []
        room.on_track = self._on_track
        room.on_track_ended = lambda t: self._record(self.ended.add, t.track_id)
        room.on_participant_left = lambda p, why: self._record(self.left.__setitem__, p["id"], why)
        room.on_track_muted = lambda t: self._record(self.muted.__setitem__, t.track_id, t.muted)

    def _record(self, fn: Callable[..., object], *args: object) -> None:
        fn(*args)
        self.changed.set()

    def _on_track(self, remote: RemoteTrack) -> None:
        self.tracks[remote.track_id] = remote
        self.frames[remote.track_id] = 0
        self.track_at[remote.track_id] = time.monotonic()
        self._decoders.append(asyncio.ensure_future(self._decode(remote)))
        self.changed.set()

    async def _decode(self, remote: RemoteTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await remote.track.recv()
                tid = remote.track_id
                self.first_frame_at.setdefault(tid, time.monotonic())
                self.frames[tid] += 1
                if remote.kind == "video":
                    self.sizes[tid] = (frame.width, frame.height)
                self.changed.set()

    def frames_from(self, publisher: Peer, kind: str) -> int:
        """Frames decoded here of ``publisher``'s track of ``kind`` (0 if none)."""
        return sum(
            self.frames[tid]
            for tid, t in self.tracks.items()
            if t.participant_id == publisher.room.participant_id and t.kind == kind
        )

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``predicate()`` holds; raises TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        for task in self._decoders:
            task.cancel()
        if not self.room.closed.is_set():
            await self.room.close()


Join = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def join(server: Server) -> AsyncIterator[Join]:
    """``await join(name, room="r1", publish=True)``: a joined Peer, publishing a test
    pattern and a tone unless ``publish`` is False. All are closed at the end."""
    peers: list[Peer] = []

    async def _join(name: str, room: str = "r1", publish: bool = True) -> Peer:
        peer = Peer(await Room.connect(server.url, server.token(), room, name, LOOPBACK))
        peers.append(peer)
        if publish:
            await peer.room.publish([ToneTrack(), VideoTestPattern(320, 240)])
        return peer

    yield _join
    for peer in peers:
        await peer.close()


@dataclass
class TlsServer(Server):
    """The application over https with a self-signed certificate made as ``serve --tls
    self-signed`` makes it; clients trust ``cert`` by path."""

    cert: Path
    connection_string: str

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
async def tls_server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[TlsServer]:
    """Like ``server``, over TLS; ``connection_string`` is the one ``serve`` would print.
    Indirect parametrization overrides Config fields, as for ``server``."""
    key = secrets.token_bytes(32)
    cert, cert_key, _ = ensure_self_signed(tmp_path, ["127.0.0.1"])
    overrides = getattr(request, "param", {})
    config = Config(
        access_key=key,
        data_dir=tmp_path,
        media=MediaConfig(ice_addresses=LOOPBACK),
        tls=True,
        **overrides,
    )
    app = create_app(config)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server(ssl=server_context(cert, cert_key))
    url = str(test_server.make_url("/")).rstrip("/")
    connection_string = format_connection_string(url + "/", base64.b64encode(key).decode())
    try:
        yield TlsServer(url, app, TokenService(key), key, cert, connection_string)
    finally:
        await test_server.close()


class ServerHealth:
    """What must not happen while the server takes an attack: an ERROR log record, or an
    exception asyncio's handler saw (a task nobody awaited that raised)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.problems.append(f"{record.name}: {record.getMessage()}")

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.problems.append(f"asyncio: {context.get('message')} {context.get('exception')!r}")


@pytest.fixture
async def health() -> AsyncIterator[ServerHealth]:
    """A ``ServerHealth`` collecting for the test's duration (the server runs in-process)."""
    found = ServerHealth()
    handler = logging.Handler()
    handler.emit = found.emit  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(found.loop_exception)
    try:
        yield found
    finally:
        loop.set_exception_handler(previous)
        logging.getLogger().removeHandler(handler)
