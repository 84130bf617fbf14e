"""Time-limited TURN credentials (the TURN REST API) and the ICE server lists handed to clients.

Source: draft-uberti-behave-turn-rest-00 §2.2, as coturn's ``use-auth-secret`` implements it.
Switchboard and the TURN server share a secret; neither stores per-user passwords:

    username   = "<expiry, unix seconds>:<user id>"
    credential = base64(HMAC-SHA1(shared secret, username))

The TURN server recomputes the credential from the username and refuses it once the expiry
has passed (coturn checks it on every authenticated request, Refresh included, so the lifetime
must outlast a call). The credential is the long-term credential of RFC 8489 §9.2 (STUN) and
RFC 8656 §9 (TURN): the client keys its MESSAGE-INTEGRITY with it.

The secret is a text string (coturn reads ``static-auth-secret`` as text): its UTF-8 bytes are
the HMAC key. It lives in ``<data dir>/turn.secret`` (mode 0600) and never reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TURN_SECRET_FILE = "turn.secret"
DEFAULT_TTL_S = 24 * 3600  # the draft's example lifetime; a call must not outlive it
MAX_TTL_S = 48 * 3600  # ACS's maximum for issueRelayConfiguration


@dataclass(frozen=True)
class TraversalConfig:
    """What the server tells clients about NAT traversal.

    ``turn_urls``: TURN URIs (RFC 7065), e.g. ``turn:turn.example.com:3478?transport=udp``,
    ``turn:…?transport=tcp``, ``turns:turn.example.com:443?transport=tcp``; empty means no
    relay. ``stun_urls``: STUN URIs (RFC 7064) for server-reflexive candidates.
    ``turn_secret``: coturn's ``static-auth-secret``, kept out of ``repr``. ``ttl_s``: the
    lifetime of the credentials in the join reply, seconds (1..172800; default 86400).
    """

    turn_urls: tuple[str, ...] = ()
    stun_urls: tuple[str, ...] = ()
    turn_secret: str = field(default="", repr=False)
    ttl_s: int = DEFAULT_TTL_S

    @property
    def relay_enabled(self) -> bool:
        return bool(self.turn_urls and self.turn_secret)


@dataclass(frozen=True)
class TurnCredential:
    """One TURN REST API credential: ``expires_at`` in unix seconds."""

    username: str
    credential: str = field(repr=False)
    expires_at: int


def turn_credential(
    secret: str, user_id: str, ttl_s: int, now: float | None = None
) -> TurnCredential:
    """Mint a credential for ``user_id`` valid ``ttl_s`` seconds from ``now`` (unix seconds).

    draft-uberti-behave-turn-rest-00 §2.2: the username is the expiry timestamp and the user
    id joined by ":" (coturn's default ``rest-api-separator``); the user id may itself hold
    colons, coturn splits at the first. Raises ValueError for an empty secret or ttl_s < 1.
    """
    if not secret:
        raise ValueError("no TURN shared secret configured")
    if ttl_s < 1:
        raise ValueError("ttl_s must be at least 1 second")
    expires_at = int(time.time() if now is None else now) + ttl_s
    username = f"{expires_at}:{user_id}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


def ice_servers(
    config: TraversalConfig, user_id: str, ttl_s: int | None = None, now: float | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """The ``RTCIceServer`` dictionaries (W3C WebRTC §4.2.1) for ``user_id``, and the expiry
    of their credential (unix seconds, None without a relay).

    One entry for the STUN URLs (no credential) and one for every TURN URL, all sharing one
    credential. The TURN URLs get an entry each because aiortc uses the first TURN URL of an
    entry only, and browsers try entries in order.
    """
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    if not config.relay_enabled:
        return servers, None
    cred = turn_credential(config.turn_secret, user_id, ttl_s or config.ttl_s, now)
    for url in config.turn_urls:
        servers.append({"urls": [url], "username": cred.username, "credential": cred.credential})
    return servers, cred.expires_at


def ensure_turn_secret(data_dir: Path) -> str:
    """Return the TURN shared secret kept in ``data_dir``, creating it (mode 0600) if missing.

    The secret is 32 random bytes as URL-safe base64 text (no characters coturn's config
    parser would trip on). Written to a private temporary file, then hard-linked into place,
    so it is never seen half-written and two processes starting at once agree on one secret.
    Raises OSError on I/O errors, ValueError if the file exists but is empty.
    """
    path = data_dir / TURN_SECRET_FILE
    if not path.exists():
        tmp = data_dir / f".{TURN_SECRET_FILE}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, secrets.token_urlsafe(32).encode("ascii") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_text(encoding="ascii").strip()
    if not secret:
        raise ValueError(f"{path} is empty; delete it to make a new TURN secret")
    return secret
