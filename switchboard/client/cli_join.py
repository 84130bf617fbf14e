"""``switchboard join``: a Python peer that publishes media, receives everyone, and reports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from ..sfu import aiortc_glue
from .media import ToneTrack, VideoTestPattern
from .room import IceError, RemoteTrack, Room, SignallingError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--room", required=True, help="room name")
    parser.add_argument("--name", required=True, help="display name")
    auth = parser.add_mutually_exclusive_group(required=True)
    auth.add_argument("--token", help="user access token with the voip scope")
    auth.add_argument(
        "--data-dir", type=Path, help="the server's data directory: mint a token from its key"
    )
    parser.add_argument("--play", help="media file to publish (anything PyAV opens)")
    parser.add_argument(
        "--video-codec",
        choices=["VP8", "H264"],
        type=str.upper,
        help="offer only this video codec when publishing (default: VP8 first, then H264)",
    )
    parser.add_argument("--duration", type=float, help="leave after this many seconds")
    parser.add_argument("--stats-json", type=Path, help="write what was received here (JSON)")
    parser.add_argument(
        "--ice-address",
        action="append",
        default=None,
        help="local address to gather ICE candidates on (repeatable; default: all)",
    )
    parser.add_argument(
        "--ice-transport-policy",
        choices=["all", "relay"],
        default="all",
        help="relay: send and receive only through the server's TURN relays",
    )
    parser.add_argument(
        "--ice-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="give up if media does not connect within S seconds (default 15)",
    )
    parser.add_argument("--turn-ca", type=Path, help="CA file (PEM) to verify turns: servers")


@dataclass
class Received:
    """What one remote track delivered: RTP counts and decoded frames."""

    remote: RemoteTrack
    frames_decoded: int = 0
    width: int | None = None
    height: int | None = None

    def report(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "participant": self.remote.participant_name,
            "participant_id": self.remote.participant_id,
            "track_id": self.remote.track_id,
            "kind": self.remote.kind,
            "packets": self.remote.packets,
            "bytes": self.remote.bytes,
            "frames_decoded": self.frames_decoded,
        }
        if self.remote.kind == "video":
            entry["width"], entry["height"] = self.width, self.height
        return entry


async def _decode(received: Received) -> None:
    """Pull decoded frames from a remote track until it ends."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await received.remote.track.recv()
            received.frames_decoded += 1
            if isinstance(frame, VideoFrame):
                received.width, received.height = frame.width, frame.height


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    from ..signalling.datadir import load_access_key
    from ..signalling.identity.routes import new_identity_id
    from ..signalling.identity.tokens import TokenService

    key = load_access_key(args.data_dir)
    token, _ = TokenService(key).mint(new_identity_id(key), ["voip", "chat"], 60)
    return token


def _tracks(play: str | None) -> tuple[list[MediaStreamTrack], MediaPlayer | None]:
    if play is None:
        return [ToneTrack(), VideoTestPattern()], None
    player = MediaPlayer(play, loop=True)
    tracks = [t for t in (player.audio, player.video) if t is not None]
    return tracks, player


async def run_async(args: argparse.Namespace) -> int:
    try:
        token = _token(args)
    except Exception as exc:  # a missing data dir or key file
        print(f"switchboard join: {exc}", file=sys.stderr)
        return 2
    tracks, player = _tracks(args.play)
    try:
        if args.turn_ca is not None:
            aiortc_glue.use_turn_tls_context(ssl.create_default_context(cafile=args.turn_ca))
        room = await Room.connect(
            args.url,
            token,
            args.room,
            args.name,
            args.ice_address,
            ice_transport_policy=args.ice_transport_policy,
        )
    except (SignallingError, OSError) as exc:
        print(f"switchboard join: {exc}", file=sys.stderr)
        return 1
    received: list[Received] = []
    decoders: list[asyncio.Task[None]] = []

    def on_track(remote: RemoteTrack) -> None:
        print(f"receiving {remote.kind} from {remote.participant_name}", flush=True)
        entry = Received(remote)
        received.append(entry)
        decoders.append(asyncio.ensure_future(_decode(entry)))

    room.on_track = on_track
    room.on_participant_joined = lambda p: print(f"{p['name']} joined", flush=True)
    room.on_participant_left = lambda p, why: print(
        f"{p.get('name', p['id'])} left ({why})", flush=True
    )
    print(f"joined room {room.room} as {room.participant_id} ({args.name})", flush=True)
    for p in room.participants.values():
        print(f"{p['name']} is here", flush=True)
    try:
        published = await room.publish(tracks, args.video_codec)
        await room.wait_connected(args.ice_timeout)
    except SignallingError as exc:
        if exc.code != "publish_not_allowed":
            raise
        published = []  # a Consumer of a rooms-API room: it may only receive
        for track in tracks:
            track.stop()
        print("joined as a Consumer: receiving only", flush=True)
    except IceError as exc:
        print(f"switchboard join: {exc}", file=sys.stderr)
        await room.leave()
        for track in tracks:
            track.stop()
        return 1
    if published:
        print("publishing " + ", ".join(t["kind"] for t in published), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(room.ended.wait())]
    await asyncio.wait(waiters, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()

    report = {"received": [r.report() for r in received]}
    status = 0
    if room.ended.is_set() and not stop.is_set():
        code, reason = room.disconnect or (1006, "connection lost")
        print(f"switchboard join: the server ended the session: {reason} ({code})", file=sys.stderr)
        status = 1
    await room.leave()
    for task in decoders:
        task.cancel()
    if player is not None:
        for track in tracks:
            track.stop()
    for entry in report["received"]:
        size = ""
        if entry["kind"] == "video" and entry["width"] is not None:
            size = f" {entry['width']}x{entry['height']}"
        print(
            f"received {entry['kind']:5} from {entry['participant']}: {entry['packets']} packets,"
            f" {entry['bytes']} bytes, {entry['frames_decoded']} frames decoded{size}",
            flush=True,
        )
    if args.stats_json:
        args.stats_json.write_text(json.dumps(report, indent=2))
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``switchboard join`` with parsed arguments; return the exit status."""
    return asyncio.run(run_async(args))
