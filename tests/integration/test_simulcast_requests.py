"""``update_subscription`` through the real server on single-layer tracks: refusals, and
``paused`` stopping and resuming a track (simulcast layer choice, which aiortc cannot publish,
is tested with Chromium in tests/browser/test_browser_simulcast.py)."""

from __future__ import annotations

import pytest

from switchboard.client.room import SignallingError

from .conftest import Join


async def test_update_subscription_of_unknown_tracks(join: Join) -> None:
    publisher = await join("publisher")
    viewer = await join("viewer", publish=False)
    await viewer.until(lambda: len(viewer.tracks) == 2)
    video = next(t for t in viewer.tracks.values() if t.kind == "video")
    with pytest.raises(SignallingError) as refused:
        await viewer.room.update_subscription("TR_nosuchtrack", paused=True)
    assert refused.value.code == "unknown_track"
    # a publisher does not receive its own track
    with pytest.raises(SignallingError) as refused:
        await publisher.room.update_subscription(video.track_id)
    assert refused.value.code == "unknown_track"
    assert await viewer.room.request("ping") == {"pong": True}  # the session goes on


async def test_paused_single_layer_tracks_stop_and_resume(join: Join) -> None:
    """``paused`` applies to a track with one layer (audio here); size limits have nothing
    to choose from and change nothing. The other track goes on meanwhile."""
    publisher = await join("publisher")
    viewer = await join("viewer", publish=False)
    await viewer.until(lambda: viewer.frames_from(publisher, "audio") > 3)
    audio = next(t for t in viewer.tracks.values() if t.kind == "audio")
    video = next(t for t in viewer.tracks.values() if t.kind == "video")

    assert await viewer.room.update_subscription(audio.track_id, paused=True) == []
    heard = audio.packets
    frames = viewer.frames_from(publisher, "video")
    await viewer.until(lambda: viewer.frames_from(publisher, "video") >= frames + 30)  # ~1 s
    assert audio.packets - heard <= 5  # at most what was already on its way

    await viewer.room.update_subscription(audio.track_id, paused=False, max_width=320)
    await viewer.until(lambda: audio.packets > heard + 20)
    # video paused and resumed: it starts again on a key frame and decodes on
    await viewer.room.update_subscription(video.track_id, paused=True)
    await viewer.room.update_subscription(video.track_id)
    frames = viewer.frames_from(publisher, "video")
    await viewer.until(lambda: viewer.frames_from(publisher, "video") >= frames + 10)
