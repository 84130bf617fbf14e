"""Test media: a video pattern whose frames say their own index, and seeded packet loss."""

from __future__ import annotations

import asyncio
import fractions
import random
import subprocess
import time
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from switchboard.client.media import AUDIO_RATE_HZ

FRAME_SAMPLES = 960  # 20 ms at 48 kHz

GRID = 4  # 4 x 4 blocks, one bit each: 16-bit frame index
WIDTH, HEIGHT = 320, 240
GRID_HEIGHT = 160  # the index grid on top; below it, noise that makes frames several packets
BLOCK_W, BLOCK_H = WIDTH // GRID, GRID_HEIGHT // GRID


class IndexedPattern(VideoStreamTrack):
    """320x240 video at 30 frames/s whose frame ``i`` shows ``i mod 2^16`` as 16 black or
    white blocks, so a receiver can tell which frame it decoded and whether it is intact.
    The bottom third is fresh noise each frame, so that frames take several RTP packets."""

    def __init__(self) -> None:
        super().__init__()
        self.index = 0
        self._noise = np.random.default_rng(6)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        bits = (self.index >> np.arange(GRID * GRID)) & 1
        self.index += 1
        levels = np.where(bits.reshape(GRID, GRID), 235, 16).astype(np.uint8)
        grid = levels.repeat(BLOCK_H, axis=0).repeat(BLOCK_W, axis=1)
        noise = self._noise.integers(16, 236, (HEIGHT - GRID_HEIGHT, WIDTH), dtype=np.uint8)
        gray = np.concatenate([grid, noise])
        frame = VideoFrame.from_ndarray(np.stack([gray] * 3, axis=-1), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def read_index(frame: VideoFrame) -> int | None:
    """The index an ``IndexedPattern`` frame shows, or None if any block is not a clean
    black or white (a frame decoded against the wrong reference, or a wrong size)."""
    if (frame.width, frame.height) != (WIDTH, HEIGHT):
        return None
    luma = frame.to_ndarray(format="gray").astype(np.float32)
    index = 0
    for bit in range(GRID * GRID):
        row, col = divmod(bit, GRID)
        block = luma[
            row * BLOCK_H + BLOCK_H // 4 : (row + 1) * BLOCK_H - BLOCK_H // 4,
            col * BLOCK_W + BLOCK_W // 4 : (col + 1) * BLOCK_W - BLOCK_W // 4,
        ]
        mean, std = float(block.mean()), float(block.std())
        if std > 20 or 70 < mean < 180:
            return None
        index |= (mean >= 125) << bit
    return index


class LossPattern:
    """Drops packets at random with probability ``rate`` while ``active`` (seeded, so a
    failing run can be replayed); counts what it saw and dropped."""

    def __init__(self, rate: float, seed: int = 4) -> None:
        self.rate = rate
        self.active = False
        self.seen = 0
        self.dropped = 0
        self._random = random.Random(seed)

    def drop(self) -> bool:
        if not self.active:
            return False
        self.seen += 1
        lost = self._random.random() < self.rate
        self.dropped += lost
        return lost


class SpeechTrack(MediaStreamTrack):
    """Mono 48 kHz audio in 20 ms frames: silence until ``speak()``, then ``samples`` (s16)
    over and over, paced in real time as a live microphone."""

    kind = "audio"

    def __init__(self, samples: np.ndarray) -> None:
        super().__init__()
        self._samples = samples.astype(np.int16)
        self._speaking_from: int | None = None
        self._pts = 0
        self._start: float | None = None

    def speak(self) -> None:
        self._speaking_from = self._pts

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / AUDIO_RATE_HZ - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing of a live source
        if self._speaking_from is None:
            chunk = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        else:
            at = (self._pts - self._speaking_from) % len(self._samples)
            chunk = np.resize(np.roll(self._samples, -at)[:FRAME_SAMPLES], FRAME_SAMPLES)
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, AUDIO_RATE_HZ)
        return frame


def speech_samples(text: str, directory: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng, as mono 48 kHz s16 samples."""
    wav = directory / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE_HZ)
    chunks = []
    with av.open(str(wav)) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(chunks)
