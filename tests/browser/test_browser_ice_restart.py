"""ICE restart from the web demo (switchboard-client.js ``restartIce``): Chromium restarts its
publish connection with ``pc.restartIce()`` and a publish offer carrying new credentials, and
its subscribe connection by asking the server; a Python peer keeps decoding the browser's video,
the browser keeps decoding the peer's, with the same tracks (no new join). Then the same by
itself, when the server's side of its current pair goes silent (ICE ``disconnected``).

The server runs in this process (the module's ``server`` fixture) so that a test can reach the
server's side of the browser's connections.

Run with: .venv/bin/pytest -m browser tests/browser/test_browser_ice_restart.py
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiortc.mediastreams import MediaStreamError

from switchboard.client import RemoteTrack, Room, ToneTrack, VideoTestPattern
from switchboard.sfu import MediaConfig, aiortc_glue
from switchboard.signalling.app import create_app
from switchboard.signalling.calls.session import Participant
from switchboard.signalling.config import Config
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.keys import ROOMS

from .test_browser_call import PUBLISHING, wait_decodes, wait_for_stats

pytestmark = pytest.mark.browser

UFRAG = "(sdp) => /^a=ice-ufrag:(\\S+)/m.exec(sdp)[1]"


class Decoder:
    """A Python peer counting the video frames it decodes of each remote track."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.frames: dict[str, int] = {}
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        room.on_track = self._on_track

    def _on_track(self, remote: RemoteTrack) -> None:
        if remote.kind == "video":
            self.frames[remote.track_id] = 0
            self._tasks.append(asyncio.ensure_future(self._decode(remote)))

    async def _decode(self, remote: RemoteTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await remote.track.recv()
                self.frames[remote.track_id] += 1
                self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.room.close()


@dataclass
class InProcessServer:
    """The application in this process (as tests/integration's ``server``), so that a test can
    reach the server's side of a participant's connections."""

    url: str
    app: web.Application
    tokens: TokenService
    access_key: bytes

    def token(self) -> str:
        return self.tokens.mint(new_identity_id(self.access_key), ["voip"], 60)[0]

    def participant(self, room: str, name: str) -> Participant:
        (found,) = [p for p in self.app[ROOMS].rooms[room].participants.values() if p.name == name]
        return found


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    """Overrides conftest's subprocess server for this module: open_call_page uses it too."""
    key = secrets.token_bytes(32)
    config = Config(
        access_key=key, data_dir=tmp_path, media=MediaConfig(ice_addresses=("127.0.0.1",))
    )
    app = create_app(config)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        url = str(test_server.make_url("/")).rstrip("/")
        yield InProcessServer(url, app, TokenService(key), key)
    finally:
        await test_server.close()


@pytest.fixture
async def python_peer(server: InProcessServer) -> AsyncIterator[Decoder]:
    peer = Decoder(await Room.connect(server.url, server.token(), "ir1", "bot", ["127.0.0.1"]))
    peer.room.ice_restart_after_s = None
    await peer.room.publish([ToneTrack(), VideoTestPattern(320, 240)])
    yield peer
    await peer.close()


# The local candidate (address:port) of the selected pair of one of the page's connections.
SELECTED_LOCAL = """
async (target) => {
  const stats = await window.switchboard.pcs[target].getStats();
  let transport = null;
  stats.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) transport = s; });
  if (!transport) return null;
  const pair = stats.get(transport.selectedCandidatePairId);
  const local = pair && stats.get(pair.localCandidateId);
  return local ? `${local.address}:${local.port}` : null;
}
"""
VIDEO_DECODED = """
() => window.switchboard.stats().then((s) =>
  s.inbound.filter((x) => x.kind === "video").reduce((n, x) => n + (x.framesDecoded || 0), 0))
"""


async def restart_and_wait_for_new_pair(page, target: str) -> tuple[str, str]:
    """``restartIce(target)`` in the page; wait until its selected pair uses another local
    candidate (the new gathering's) and the remote description has new credentials."""
    sdp = "localDescription" if target == "publish" else "remoteDescription"
    old_pair = await page.evaluate(SELECTED_LOCAL, target)
    old_ufrag = await page.evaluate(f"({UFRAG})(window.switchboard.pcs.{target}.{sdp}.sdp)")
    await page.evaluate("(target) => window.switchboard.restartIce(target)", target)
    await page.wait_for_function(
        f"(old) => ({UFRAG})(window.switchboard.pcs.{target}.{sdp}.sdp) !== old",
        arg=old_ufrag,
        timeout=10_000,
    )
    deadline = time.monotonic() + 10
    while (new_pair := await page.evaluate(SELECTED_LOCAL, target)) in (None, old_pair):
        assert time.monotonic() < deadline, f"{target}: the selected pair stayed {old_pair}"
        await asyncio.sleep(0.1)  # polling the page's stats, not synchronisation
    return old_pair, new_pair


async def test_browser_restarts_ice_and_media_continues(
    server: InProcessServer, open_call_page, python_peer
) -> None:
    page = await open_call_page("browser", "ir1")
    await wait_for_stats(page, PUBLISHING)
    peer = python_peer
    await peer.until(lambda: len(peer.frames) == 1 and sum(peer.frames.values()) >= 10)
    (browser_video,) = peer.frames
    tracks_before = set(peer.room.remote_tracks)
    await wait_decodes(page, "bot", "video", min_frames=10)

    # publish: pc.restartIce() and a publish_offer with new credentials; the server restarts
    frames = peer.frames[browser_video]
    started = time.monotonic()
    pairs = await restart_and_wait_for_new_pair(page, "publish")
    await peer.until(lambda: peer.frames[browser_video] >= frames + 30)
    print(
        f"browser publish restart: pair {pairs[0]} -> {pairs[1]}, 30 more frames at the "
        f"Python peer {time.monotonic() - started:.2f} s after the restart began"
    )
    assert set(peer.room.remote_tracks) == tracks_before  # the same track, no new one
    assert server.participant("ir1", "browser").publish.ice_restarts == 1

    # subscribe: ask the server for an offer that restarts
    decoded = await page.evaluate(VIDEO_DECODED)
    started = time.monotonic()
    pairs = await restart_and_wait_for_new_pair(page, "subscribe")
    await wait_decodes(page, "bot", "video", min_frames=decoded + 30)
    print(
        f"browser subscribe restart: pair {pairs[0]} -> {pairs[1]}, 30 more frames decoded "
        f"{time.monotonic() - started:.2f} s after the restart began"
    )
    remote_tracks = await page.evaluate(
        "Object.values(window.switchboard.remote).map((p) => Object.keys(p.tracks).length)"
    )
    assert remote_tracks == [2]  # the bot's audio and video, as before
    assert server.participant("ir1", "browser").subscribe.ice_restarts == 1


async def test_browser_restarts_by_itself_when_its_path_goes_dead(
    server: InProcessServer, open_call_page, python_peer
) -> None:
    """The server's sockets of the browser's current pairs go silent, one connection after the
    other: Chromium's ICE goes ``disconnected`` and switchboard-client.js restarts that
    connection by itself (publish: restartIce + publish_offer; subscribe: ``ice_restart``)."""
    page = await open_call_page("browser", "ir1")
    await wait_for_stats(page, PUBLISHING)
    peer = python_peer
    await peer.until(lambda: len(peer.frames) == 1 and sum(peer.frames.values()) >= 10)
    (browser_video,) = peer.frames
    await wait_decodes(page, "bot", "video", min_frames=10)
    browser = server.participant("ir1", "browser")

    frames = peer.frames[browser_video]
    started = time.monotonic()
    aiortc_glue.blackhole_ice(browser.publish._pc)
    await peer.until(lambda: browser.publish.ice_restarts == 1, 30)
    await peer.until(lambda: peer.frames[browser_video] >= frames + 30, 20)
    print(
        f"browser auto publish restart: media back {time.monotonic() - started:.2f} s after the cut"
    )

    decoded = await page.evaluate(VIDEO_DECODED)
    started = time.monotonic()
    aiortc_glue.blackhole_ice(browser.subscribe._pc)
    await wait_decodes(page, "bot", "video", min_frames=decoded + 30)
    assert browser.subscribe.ice_restarts == 1
    print(
        f"browser auto subscribe restart: media back {time.monotonic() - started:.2f} s "
        "after the cut"
    )
