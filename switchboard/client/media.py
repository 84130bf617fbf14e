"""Generated media for peers and bots that have no file to play: a test pattern and a tone."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc import MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

AUDIO_RATE_HZ = 48_000
AUDIO_PTIME_S = 0.020


class VideoTestPattern(VideoStreamTrack):
    """Colour bars with a moving white stripe, ``width`` x ``height`` at 30 frames/s
    (aiortc's pacing; RTP clock 90 kHz)."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        bars = np.array(
            [
                [235, 235, 235],
                [235, 235, 16],
                [16, 235, 235],
                [16, 235, 16],
                [235, 16, 235],
                [235, 16, 16],
                [16, 16, 235],
                [16, 16, 16],
            ],
            dtype=np.uint8,
        )
        columns = np.repeat(bars, -(-width // len(bars)), axis=0)[:width]
        self._base = np.repeat(columns[np.newaxis, :, :], height, axis=0)
        self._frame_index = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = self._base.copy()
        row = (self._frame_index * 4) % image.shape[0]
        image[row : row + 8, :, :] = 255
        self._frame_index += 1
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """A sine tone of ``frequency_hz`` at -12 dBFS, mono 48 kHz, in 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency_hz: float = 440.0) -> None:
        super().__init__()
        self._frequency_hz = frequency_hz
        self._samples = int(AUDIO_RATE_HZ * AUDIO_PTIME_S)
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self._samples
            wait = self._start + self._pts / AUDIO_RATE_HZ - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing of a live source
        t = (self._pts + np.arange(self._samples)) / AUDIO_RATE_HZ
        samples = (0.25 * 32767 * np.sin(2 * math.pi * self._frequency_hz * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE_HZ)
        return frame
