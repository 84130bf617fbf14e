"""The media plane: a selective forwarding unit on aiortc (Router, WebRtcTransport, Producer,
Consumer). The control plane uses it through ``Worker`` only."""

from .config import MediaConfig
from .transport_errors import SdpError
from .worker import Worker

__all__ = ["MediaConfig", "SdpError", "Worker"]
