"""The Python SDK for peers and bots: ``Room.connect(url, token, room, name)``."""

from .media import ToneTrack, VideoTestPattern
from .room import IceError, RemoteTrack, Room, SignallingError

__all__ = ["IceError", "RemoteTrack", "Room", "SignallingError", "ToneTrack", "VideoTestPattern"]
