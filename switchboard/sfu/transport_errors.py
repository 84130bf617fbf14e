"""The error the media plane raises for descriptions and candidates it refuses."""

from __future__ import annotations


class SdpError(Exception):
    """An SDP or candidate the transport refuses; ``code`` is the signalling error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
