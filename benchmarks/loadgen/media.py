"""Pre-encoded media for load-generator publishers: encoded once, then only packetized.

``encode_clip`` encodes a few seconds of VP8 (640x480, 30 frames/s, ~1 Mbps, a key frame every
``GOP_FRAMES``) and Opus (48 kHz, 20 ms frames) with PyAV before the run. ``ClipTrack`` plays
such a clip in a loop at real-time pace and yields ``EncodedFrame`` objects, which aiortc's
``RTCRtpSender`` packetizes (``Encoder.pack``) without encoding: a publisher costs only
packetization, SRTP and ``sendto``.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack

VIDEO_CLOCK_HZ = 90_000
VIDEO_FPS = 30
GOP_FRAMES = 60  # a key frame every 2 s; a PLI makes the track jump to the next one
AUDIO_RATE_HZ = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame as aiortc's ``Encoder.pack`` reads it: ``bytes(frame)``, ``pts`` in
    ``time_base`` units (90 kHz video, 48 kHz audio)."""

    data: bytes
    pts: int
    time_base: fractions.Fraction
    key: bool

    def __bytes__(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class Clip:
    """Encoded frames of one kind (``video``: VP8, ``audio``: Opus) and their duration, s."""

    kind: str
    frames: list[tuple[bytes, bool]]  # (payload, key frame)
    frame_s: float

    @property
    def bitrate_bps(self) -> float:
        return sum(len(f) for f, _ in self.frames) * 8 / (len(self.frames) * self.frame_s)


def encode_video(seconds: float, bitrate_bps: int = 1_000_000) -> Clip:
    """VP8 640x480 at ``VIDEO_FPS``: moving bars over noise, so that libvpx spends its bitrate."""
    width, height = 640, 480
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate = bitrate_bps
    codec.framerate = fractions.Fraction(VIDEO_FPS, 1)
    codec.time_base = fractions.Fraction(1, VIDEO_FPS)
    codec.gop_size = GOP_FRAMES
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": str(bitrate_bps),
        "maxrate": str(bitrate_bps),
        "b": str(bitrate_bps),
    }
    rng = np.random.default_rng(6)
    bars = np.repeat(np.linspace(16, 235, 8, dtype=np.uint8), width // 8)
    base = np.repeat(np.stack([bars] * 3, axis=-1)[np.newaxis], height, axis=0)
    frames: list[tuple[bytes, bool]] = []
    count = int(seconds * VIDEO_FPS)
    for index in range(count):
        image = base.copy()
        image[(index * 8) % height : (index * 8) % height + 40] = 255
        patch = image[120:360, 160:480]  # a noisy window: motion the encoder must pay for
        patch[::2, ::2] = rng.integers(60, 200, patch[::2, ::2].shape, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        for packet in codec.encode(frame):
            frames.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in codec.encode(None):
        frames.append((bytes(packet), bool(packet.is_keyframe)))
    if not frames or not frames[0][1]:
        raise RuntimeError("libvpx did not start the clip with a key frame")
    return Clip("video", frames, 1 / VIDEO_FPS)


def encode_audio(seconds: float, bitrate_bps: int = 32_000) -> Clip:
    """Opus, 48 kHz stereo, 20 ms frames: a 440 Hz tone with a slow tremolo."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.format, codec.layout = AUDIO_RATE_HZ, "s16", "stereo"
    codec.bit_rate = bitrate_bps
    codec.time_base = fractions.Fraction(1, AUDIO_RATE_HZ)
    frames: list[tuple[bytes, bool]] = []
    count = int(seconds * AUDIO_RATE_HZ / AUDIO_FRAME_SAMPLES)
    for index in range(count):
        t = (index * AUDIO_FRAME_SAMPLES + np.arange(AUDIO_FRAME_SAMPLES)) / AUDIO_RATE_HZ
        level = 0.2 + 0.15 * math.sin(index / 10)
        mono = (level * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_RATE_HZ
        frame.pts = index * AUDIO_FRAME_SAMPLES
        for packet in codec.encode(frame):
            frames.append((bytes(packet), True))
    return Clip("audio", frames, AUDIO_FRAME_SAMPLES / AUDIO_RATE_HZ)


class ClipTrack(MediaStreamTrack):
    """Plays ``clip`` in a loop at real time, starting ``offset`` frames in (publishers start
    at different points, so their packets differ). ``key_frame_requested()`` (on a PLI/FIR)
    makes the next frame the clip's next key frame, as an encoder would produce one.
    ``frames_sent`` counts frames handed to the sender."""

    def __init__(self, clip: Clip, offset: int = 0) -> None:
        super().__init__()
        self.kind = clip.kind
        self._clip = clip
        self._index = offset % len(clip.frames) if clip.kind == "audio" else 0
        self._step = 3000 if clip.kind == "video" else AUDIO_FRAME_SAMPLES
        self._time_base = fractions.Fraction(
            1, VIDEO_CLOCK_HZ if clip.kind == "video" else AUDIO_RATE_HZ
        )
        self._count = 0
        self._start: float | None = None
        self._jump = False
        self.frames_sent = 0

    def key_frame_requested(self) -> None:
        self._jump = self.kind == "video"

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._count * self._clip.frame_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing of a live source
        frames = self._clip.frames
        if self._jump:
            self._jump = False
            if not frames[self._index][1]:
                following = [i for i in range(len(frames)) if frames[i][1] and i > self._index]
                self._index = following[0] if following else 0
        data, key = frames[self._index]
        self._index = (self._index + 1) % len(frames)
        pts = self._count * self._step
        self._count += 1
        self.frames_sent += 1
        return EncodedFrame(data, pts, self._time_base, key)
