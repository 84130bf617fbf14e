"""``update_subscription`` refusals through the real server (the simulcast itself, which
aiortc cannot publish, is tested with Chromium in tests/browser/test_browser_simulcast.py)."""

from __future__ import annotations

import pytest

from switchboard.client.room import SignallingError

from .conftest import Join


async def test_update_subscription_of_unknown_or_single_layer_tracks(join: Join) -> None:
    publisher = await join("publisher")
    viewer = await join("viewer", publish=False)
    await viewer.until(lambda: len(viewer.tracks) == 2)
    video = next(t for t in viewer.tracks.values() if t.kind == "video")
    with pytest.raises(SignallingError) as refused:
        await viewer.room.update_subscription(video.track_id, max_width=320)
    assert refused.value.code == "not_simulcast"
    with pytest.raises(SignallingError) as refused:
        await viewer.room.update_subscription("TR_nosuchtrack", paused=True)
    assert refused.value.code == "unknown_track"
    # a publisher does not receive its own track
    with pytest.raises(SignallingError) as refused:
        await publisher.room.update_subscription(video.track_id)
    assert refused.value.code == "unknown_track"
    assert await viewer.room.request("ping") == {"pong": True}  # the session goes on
