"""Active speaker from RFC 6464 audio levels: real aiortc publishers, one speaking (espeak-ng),
one silent; a third participant hears ``speakers_changed``."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.media import SpeechTrack, speech_samples

from .conftest import Join

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None and os.environ.get("CI") != "true",
    reason="espeak-ng is not installed (scripts/ensure-espeak-ng)",
)

TEXT = "Good morning everyone. Let us look at the numbers for this quarter, one by one."


async def test_the_speaking_participant_is_dominant_within_one_second(
    join: Join, tmp_path: Path
) -> None:
    samples = speech_samples(TEXT, tmp_path)
    speaker = await join("speaker", publish=False)
    silent = await join("silent", publish=False)
    listener = await join("listener", publish=False)
    events: list[tuple[float, list[str], str | None]] = []

    def on_speakers_changed(speakers: list[str], dominant: str | None) -> None:
        events.append((time.monotonic(), speakers, dominant))
        listener.changed.set()

    listener.room.on_speakers_changed = on_speakers_changed
    speech = SpeechTrack(samples)
    await speaker.room.publish([speech])
    await silent.room.publish([SpeechTrack(samples)])  # never speaks
    await listener.until(
        lambda: min(listener.frames_from(p, "audio") for p in (speaker, silent)) >= 25
    )
    assert all(not speakers for _, speakers, _ in events)  # silence is nobody speaking

    speaker_id = speaker.room.participant_id
    start = time.monotonic()
    speech.speak()
    await listener.until(lambda: any(d == speaker_id for _, _, d in events), timeout=5)
    (first,) = [t for t, _, d in events if d == speaker_id][:1]
    elapsed = first - start
    heard = listener.frames_from(speaker, "audio")
    await listener.until(lambda: listener.frames_from(speaker, "audio") >= heard + 150)  # 3 s
    after = [(speakers, d) for t, speakers, d in events if t >= first]
    print(f"\ndominant {elapsed:.2f} s after speech began; {len(after)} events in 3 s after")
    assert elapsed < 1.0
    assert all(d == speaker_id for _, d in after)  # no flapping, the silent one never listed
    assert all(silent.room.participant_id not in speakers for speakers, _ in after)
