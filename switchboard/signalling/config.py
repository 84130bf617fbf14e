"""Server configuration: one frozen dataclass, built by the CLI and by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..sfu.config import MediaConfig
from .traversal.credentials import TraversalConfig

WEB_DEMO_DIR = Path(__file__).resolve().parents[2] / "web-demo"


@dataclass(frozen=True)
class Config:
    """Everything ``create_app`` needs; no I/O happens while building it.

    ``access_key`` is the installation's HMAC key (32 bytes): it signs the identity API's
    requests and, derived, user access tokens. It is kept out of ``repr`` so that it never
    reaches a log.
    """

    access_key: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    demo: bool = True
    web_demo_dir: Path = WEB_DEMO_DIR
    # Seconds a WebSocket may stay silent before the server closes it (pings keep it open).
    ws_idle_timeout_s: float = 60.0
    # Seconds a socket has to send its first message (authenticate) before it is closed.
    auth_timeout_s: float = 10.0
    media: MediaConfig = field(default_factory=MediaConfig)
    # TURN/STUN servers and the TURN shared secret handed to clients (traversal/credentials.py).
    traversal: TraversalConfig = field(default_factory=TraversalConfig)
    # True when the server listens with TLS (serve --tls…): the endpoint is then https://.
    tls: bool = False
    # Rooms not created through the rooms API: open to any `voip` token when True.
    adhoc_rooms: bool = True
    # Largest request body the REST APIs accept, bytes (larger: 413 RequestEntityTooLarge).
    max_body_bytes: int = 1024 * 1024
    # The store's SQLAlchemy URL; None: SQLite in data_dir. "postgresql://user@host/db" (or
    # postgresql+asyncpg://) uses PostgreSQL through asyncpg (signalling/store/db.py).
    database_url: str | None = field(default=None, repr=False)
    # Largest chat message content, bytes of UTF-8 (ACS's limit: 28 KiB); over it: 400.
    chat_max_message_bytes: int = 28 * 1024

    @property
    def endpoint(self) -> str:
        """The public base URL, with a trailing slash, as in the connection string."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"
