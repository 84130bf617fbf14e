"""Simulcast through the real server: Chromium publishes three layers, Python peers subscribe.

The web demo publishes its camera (Chromium's fake device, 1280x720 here) as three RIDs, q, h
and f (a quarter, half and full size). A ``switchboard.client.Room`` in this process subscribes,
asks for layers with ``update_subscription`` and decodes what it gets; ``layer_changed`` events
say which layer the SFU forwards. Waits are on conditions with timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from switchboard.client.room import RemoteTrack, Room
from switchboard.sfu import aiortc_glue

from .conftest import Server
from .test_browser_call import PUBLISHING, wait_for_stats

pytestmark = pytest.mark.browser

FRAMES = 30  # frames decoded at a resolution before it counts as received
TIMEOUT_S = 30.0
FULL, HALF, QUARTER = (1280, 720), (640, 360), (320, 180)

# Every layer of the browser's simulcast video is being sent.
ALL_LAYERS_SENT = """
(stats) => ["q", "h", "f"].every((rid) => stats.outbound.some(
  (s) => s.kind === "video" && s.rid === rid && s.bytesSent > 0 && s.frameWidth > 0))
"""

# The outbound video entry of each RID, as [rid, bytesSent, frameWidth, qualityLimitationReason].
LAYER_STATS = """
async () => (await window.switchboard.stats()).outbound.filter((s) => s.kind === "video")
  .map((s) => [s.rid, s.bytesSent, s.frameWidth, s.qualityLimitationReason, s.active])
"""


# Polls the publish connection until every video layer's SSRC has a remote-inbound-rtp entry
# (the SFU's Receiver Reports cover it, RFC 3550 §6.4.2); returns [rid, reported] per layer.
LAYERS_REPORTED = """
async (timeoutMs) => {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const stats = [...(await window.switchboard.pcs.publish.getStats()).values()];
    const remote = stats.filter((s) => s.type === "remote-inbound-rtp" && s.kind === "video");
    const layers = stats.filter((s) => s.type === "outbound-rtp" && s.kind === "video")
      .map((s) => [s.rid, remote.some((r) => r.ssrc === s.ssrc)]);
    if (layers.every(([, reported]) => reported) || performance.now() > deadline) return layers;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
"""


class DecodeErrors(logging.Handler):
    """Counts aiortc's "failed to decode" warnings (a frame the decoder refused)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "failed to decode" in record.getMessage():
            self.count += 1


@dataclass
class Subscriber:
    """A Python peer receiving the browser's video: decoded frame sizes, layer events."""

    room: Room
    video: RemoteTrack | None = None
    frames: list[tuple[float, int, int]] = field(default_factory=list)  # (time, w, h)
    layers: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    remb_cap: int | None = None
    task: asyncio.Task[None] | None = None

    def count(self, size: tuple[int, int], since: float = 0.0) -> int:
        return sum(1 for t, w, h in self.frames if (w, h) == size and t >= since)

    def first(self, size: tuple[int, int], since: float) -> float | None:
        return next((t for t, w, h in self.frames if (w, h) == size and t >= since), None)

    @property
    def rid(self) -> str | None:
        return self.layers[-1][1]["rid"] if self.layers else None


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval of the predicate, not synchronisation


def mint_token(server: Server) -> str:
    from switchboard.signalling.datadir import load_access_key
    from switchboard.signalling.identity.routes import new_identity_id
    from switchboard.signalling.identity.tokens import TokenService

    key = load_access_key(server.data_dir)
    token, _ = TokenService(key).mint(new_identity_id(key), ["voip", "chat"], 60)
    return token


@pytest.fixture
async def subscribe(server: Server) -> AsyncIterator[Callable[..., Any]]:
    """``await subscribe(name, room)``: a Python peer in ``room`` decoding the browser's video."""
    made: list[Subscriber] = []

    async def make(name: str, room: str) -> Subscriber:
        peer = Subscriber(
            await Room.connect(server.url, mint_token(server), room, name, ["127.0.0.1"])
        )
        made.append(peer)
        peer.room.on_layer_changed = lambda event: peer.layers.append((time.monotonic(), event))

        def on_track(remote: RemoteTrack) -> None:
            if remote.kind != "video":
                return
            peer.video = remote
            receiver = next(
                t.receiver
                for t in peer.room.subscribe_pc.getTransceivers()  # type: ignore[union-attr]
                if t.receiver.track is remote.track
            )
            aiortc_glue.cap_sent_remb(receiver, lambda: peer.remb_cap)

            async def decode() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        frame = await remote.track.recv()
                        peer.frames.append((time.monotonic(), frame.width, frame.height))

            peer.task = asyncio.create_task(decode())

        peer.room.on_track = on_track
        return peer

    try:
        yield make
    finally:
        for peer in made:
            if peer.task is not None:
                peer.task.cancel()
            with contextlib.suppress(Exception):
                await peer.room.close()


@pytest.fixture
def decode_errors() -> AsyncIterator[DecodeErrors]:
    handler = DecodeErrors()
    logger = logging.getLogger("aiortc.rtcrtpreceiver")
    logger.addHandler(handler)
    try:
        yield handler  # type: ignore[misc]
    finally:
        logger.removeHandler(handler)


async def publishing_simulcast(open_call_page, room: str):
    page = await open_call_page("camera", room, "&video=1280x720")
    await wait_for_stats(page, PUBLISHING)
    await wait_for_stats(page, ALL_LAYERS_SENT)
    return page


async def test_subscriber_switches_from_low_to_high_layer(
    open_call_page, subscribe, decode_errors: DecodeErrors
) -> None:
    page = await publishing_simulcast(open_call_page, "s1")
    peer = await subscribe("viewer", "s1")
    await until(lambda: peer.video is not None, "the browser's video track")
    assert peer.video is not None
    track_id = peer.video.track_id

    rids = await peer.room.update_subscription(track_id, max_width=QUARTER[0])
    assert rids == ["q", "h", "f"]
    await until(lambda: peer.count(QUARTER) >= FRAMES, f"{FRAMES} frames at {QUARTER}")
    low_done = time.monotonic()

    asked = time.monotonic()
    await peer.room.update_subscription(track_id)  # no limit: the top layer
    await until(lambda: peer.count(FULL, asked) >= FRAMES, f"{FRAMES} frames at {FULL}")
    first_full = peer.first(FULL, asked)
    assert first_full is not None
    sizes = sorted({(w, h) for _, w, h in peer.frames})
    print(
        f"\nsimulcast: {peer.count(QUARTER)} frames decoded at {QUARTER}, "
        f"{peer.count(HALF)} at {HALF}, {peer.count(FULL)} at {FULL}; sizes seen {sizes}; "
        f"low->high switch {1000 * (first_full - asked):.0f} ms; layer events "
        f"{[e['rid'] for _, e in peer.layers]}; decode errors {decode_errors.count}; "
        f"browser layers {await page.evaluate(LAYER_STATS)}"
    )
    assert decode_errors.count == 0
    assert peer.layers[-1][1]["rid"] == "f"
    assert low_done < first_full
    # the SFU sends the publisher Receiver Reports for every layer
    assert sorted(await page.evaluate(LAYERS_REPORTED, 10_000)) == [
        ["f", True],
        ["h", True],
        ["q", True],
    ]
    # no frame of another size between the last low frame and the first high one
    between = [(w, h) for t, w, h in peer.frames if low_done <= t < first_full]
    assert set(between) <= {QUARTER, HALF}, between


async def layer_rate_bps(page, rid: str, window_s: float = 2.0) -> float:
    """What the browser sends of layer ``rid`` (payload bits per second, its getStats)."""

    async def sent() -> int:
        return next(s[1] for s in await page.evaluate(LAYER_STATS) if s[0] == rid)

    start, t0 = await sent(), time.monotonic()
    await asyncio.sleep(window_s)  # a measurement window, not synchronisation
    return (await sent() - start) * 8 / (time.monotonic() - t0)


async def test_capped_subscriber_moves_down_while_the_other_stays_on_top(
    open_call_page, subscribe, decode_errors: DecodeErrors
) -> None:
    page = await publishing_simulcast(open_call_page, "s2")
    capped = await subscribe("capped", "s2")
    free = await subscribe("free", "s2")
    for peer in (capped, free):
        await until(lambda peer=peer: peer.count(FULL) >= FRAMES, f"{peer.room} at {FULL}")
    half_bps = await layer_rate_bps(page, "h")
    # Room for the middle layer, not for the top one, nor for a trial step up (1.3x).
    capped.remb_cap = int(1.2 * half_bps)
    capped_at = time.monotonic()
    await until(lambda: capped.count(HALF, capped_at) >= FRAMES, f"{FRAMES} frames at {HALF}")
    first_half = capped.first(HALF, capped_at)
    assert first_half is not None
    free_since = time.monotonic()
    await until(lambda: free.count(FULL, free_since) >= FRAMES, f"the free peer at {FULL}")
    print(
        f"\nbandwidth: REMB capped at {capped.remb_cap} bps (layer h sends {half_bps:.0f} bps): "
        f"down to {HALF} in {1000 * (first_half - capped_at):.0f} ms; capped peer layers "
        f"{[e['rid'] for _, e in capped.layers]}, free peer layers "
        f"{[e['rid'] for _, e in free.layers]}; frames capped {capped.count(FULL)} at {FULL}, "
        f"{capped.count(HALF)} at {HALF}; free {free.count(FULL)} at {FULL}, "
        f"{free.count(HALF)} at {HALF}; decode errors {decode_errors.count}"
    )
    assert capped.rid == "h"
    assert free.rid == "f" and free.count(HALF) == 0 and free.count(QUARTER) == 0
    # The cap lifted, the capped peer goes back up.
    capped.remb_cap = None
    lifted = time.monotonic()
    await until(lambda: capped.count(FULL, lifted) >= FRAMES, f"{FRAMES} frames at {FULL} again")
    back = capped.first(FULL, lifted)
    assert back is not None
    print(f"cap lifted: back to {FULL} in {1000 * (back - lifted):.0f} ms")
    assert decode_errors.count == 0


async def test_dynacast_stops_and_resumes_the_top_layer(open_call_page, subscribe) -> None:
    page = await publishing_simulcast(open_call_page, "s3")
    peers = [await subscribe("one", "s3"), await subscribe("two", "s3")]
    for peer in peers:
        await until(lambda peer=peer: peer.video is not None, "the browser's video track")
    track_id = peers[0].video.track_id  # type: ignore[union-attr]
    for peer in peers:
        await peer.room.update_subscription(track_id, max_width=QUARTER[0])
    asked = time.monotonic()
    # Every subscriber wants the low layer only: the browser stops the two others.
    stopped = await wait_for_stats(
        page,
        """(stats) => ["h", "f"].every((rid) => stats.outbound.some(
             (s) => s.kind === "video" && s.rid === rid && s.active === false))""",
    )
    stopped_after = time.monotonic() - asked
    top_sent = next(s for s in stopped["outbound"] if s["rid"] == "f")["bytesSent"]
    assert await layer_rate_bps(page, "f", 1.0) == 0
    assert await layer_rate_bps(page, "q", 1.0) > 0
    # One asks for the top layer again: the browser resumes it, the peer receives it.
    asked = time.monotonic()
    await peers[1].room.update_subscription(track_id)
    await wait_for_stats(
        page,
        """(stats, sb, sent) => stats.outbound.some(
             (s) => s.kind === "video" && s.rid === "f" && s.active && s.bytesSent > sent)""",
        top_sent,
    )
    await until(lambda: peers[1].count(FULL, asked) >= FRAMES, f"{FRAMES} frames at {FULL}")
    first_full = peers[1].first(FULL, asked)
    assert first_full is not None
    print(
        f"\ndynacast: top layer stopped {stopped_after:.1f} s after both asked for {QUARTER}; "
        f"resumed and decoded at {FULL} {1000 * (first_full - asked):.0f} ms after one asked; "
        f"the other stays at {[e['rid'] for _, e in peers[0].layers][-1]}"
    )
    assert peers[0].rid == "q"


# The inbound video from the participant called `name`: [frameWidth, framesDecoded, track_id].
INBOUND_VIDEO = """
async (name) => {
  const sb = window.switchboard;
  const ids = Object.entries(sb.remote).filter(([, p]) => p.name === name).map(([id]) => id);
  const s = (await sb.stats()).inbound.find(
    (s) => ids.includes(s.participant_id) && s.kind === "video");
  return s ? [s.frameWidth, s.framesDecoded, s.track_id] : null;
}
"""


async def test_browser_subscriber_switches_layers_and_keeps_decoding(open_call_page) -> None:
    """Chromium receiving: its decoder follows the switches (seq, timestamps and VP8
    PictureIDs continuous) without freezing."""
    await publishing_simulcast(open_call_page, "s4")
    viewer = await open_call_page("viewer", "s4")
    widths: list[int] = []

    async def decodes_at(width: int, frames: int = FRAMES) -> float:
        start: int | None = None
        t0 = time.monotonic()
        deadline = t0 + TIMEOUT_S
        while time.monotonic() < deadline:
            found = await viewer.evaluate(INBOUND_VIDEO, "camera")
            if found is not None and found[0] == width:
                widths.append(width)
                start = found[1] if start is None else start
                if found[1] - start >= frames:
                    return time.monotonic() - t0
            await asyncio.sleep(0.1)  # polling interval of the page's stats
        pytest.fail(f"the viewer did not decode {frames} frames at width {width}: {widths}")

    await decodes_at(FULL[0])
    found = await viewer.evaluate(INBOUND_VIDEO, "camera")
    track_id = found[2]
    await viewer.evaluate(
        "([id, w]) => window.switchboard.updateSubscription(id, {maxWidth: w})",
        [track_id, QUARTER[0]],
    )
    down = await decodes_at(QUARTER[0])
    await viewer.evaluate("(id) => window.switchboard.updateSubscription(id, {})", track_id)
    up = await decodes_at(FULL[0])
    print(f"\nbrowser viewer: {FULL[0]} -> {QUARTER[0]} in {down:.1f} s, back in {up:.1f} s")
