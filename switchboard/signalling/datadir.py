"""The data directory: where an installation keeps its state, for now only its access key.

Layout::

    <data dir>/          mode 0700
        access.key       mode 0600; base64 of 32 random bytes and a newline

The access key signs identity API requests (``identity/hmac_auth.py``) and, derived, user
access tokens (``identity/tokens.py``). Whoever reads it can mint tokens: it never leaves this
file except in the connection string the CLI prints.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

ACCESS_KEY_FILE = "access.key"
ACCESS_KEY_BYTES = 32


class DataDirError(Exception):
    """The data directory or its access key is missing or unreadable; the message says which
    and what to do."""


def ensure_data_dir(path: Path) -> tuple[bytes, bool]:
    """Create ``path`` (mode 0700) and its access key if missing; return ``(key, created)``.

    ``key`` is the raw 32 bytes; ``created`` is True when this call wrote the key. The key is
    written to a temporary file opened with ``O_CREAT | O_EXCL`` and mode 0600, so it is never
    readable by others, not even for a moment, then hard-linked into place, so the key file is
    never seen half-written and two processes starting at once agree on one key. An existing
    directory keeps its mode. Raises DataDirError as ``load_access_key``, OSError on I/O errors.
    """
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    key_path = path / ACCESS_KEY_FILE
    if key_path.exists():
        return load_access_key(path), False
    key = secrets.token_bytes(ACCESS_KEY_BYTES)
    # Write a private temporary file, then link it into place: the key file appears complete
    # or not at all, and if another process linked its key first, that one wins.
    tmp_path = path / f".{ACCESS_KEY_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask can only have narrowed it; make it exact
            os.write(fd, base64.b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp_path, key_path)
    except FileExistsError:
        return load_access_key(path), False
    finally:
        tmp_path.unlink(missing_ok=True)
    return key, True


def load_access_key(path: Path) -> bytes:
    """Return the raw 32-byte access key kept in the data directory ``path``.

    Raises DataDirError if the key file is missing or does not hold the base64 of 32 bytes.
    Logs a warning (naming the file, never the key) if group or others may read it.
    """
    key_path = path / ACCESS_KEY_FILE
    try:
        text = key_path.read_text(encoding="ascii")
        mode = key_path.stat().st_mode
    except FileNotFoundError:
        raise DataDirError(
            f"no access key at {key_path}: start the server once with "
            f"`switchboard serve --data-dir {path}` to create it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataDirError(f"cannot read the access key at {key_path}: {exc}") from None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != ACCESS_KEY_BYTES:
        raise DataDirError(
            f"{key_path} does not hold the base64 of {ACCESS_KEY_BYTES} bytes; "
            "restore it from a backup, or delete it to make a new key (existing tokens "
            "and connection strings then stop working)"
        )
    if mode & 0o077:
        log.warning("%s is readable by group or others; run chmod 600 on it", key_path)
    return key
