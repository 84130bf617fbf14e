"""User access tokens: JWTs (RFC 7519) signed with HS256 (RFC 7518 §3.2) by this server.

A token says who the bearer is (``sub``, an identity id) and what it may do (``scp``, a list of
scopes), from ``iat`` until ``exp`` (unix seconds). It plays the part of an Azure Communication
Services user access token: an application backend asks the identity API for one and hands it
to its client, which presents it to the signalling socket (``authenticate``).

The signing key is derived from the installation's access key (HMAC-SHA256 of a fixed label),
so a token never exposes, and cannot be forged with anything short of, the access key itself;
and the key that signs identity API requests (``hmac_auth``) is not the key that signs tokens.
Neither tokens nor keys are ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

# The scopes of ACS user access tokens. "voip" and "voip.join" both let the bearer join calls
# ("voip.join" is ACS's narrower scope for rooms; here it joins any call too); "chat",
# "chat.join" and "chat.join.limited" are for the chat service. A verifier only checks that a
# scope it accepts is present, whatever else the token holds.
SCOPES = frozenset({"chat", "chat.join", "chat.join.limited", "voip", "voip.join"})
CALL_SCOPES = ("voip", "voip.join")
CHAT_SCOPES = ("chat", "chat.join", "chat.join.limited")

ALGORITHM = "HS256"  # the only algorithm accepted; "none" and all others are refused
MIN_EXPIRES_IN_MINUTES = 1  # mint's bounds; the REST API narrows them to 60..1440 as ACS does
MAX_EXPIRES_IN_MINUTES = 1440
DEFAULT_EXPIRES_IN_MINUTES = 1440
EXPIRY_LEEWAY_S = 0  # a token is expired from its `exp` second on (RFC 7519 §4.1.4)
MAX_TOKEN_CHARS = 4096  # longer input is refused before any parsing
_KEY_LABEL = b"switchboard user access token v1"
_REQUIRED_CLAIMS = ("sub", "scp", "iat", "exp", "jti")


@dataclass(frozen=True)
class UserToken:
    """The verified content of a user access token.

    ``issued_at`` and ``expires_at`` are unix seconds (integers); ``token_id`` is the ``jti``
    (32 hex digits), unique per minted token, so that a later revocation list can name it.
    """

    user_id: str
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int
    token_id: str


class TokenError(Exception):
    """A token was refused.

    ``code`` is ``invalid_token`` (malformed, wrongly signed, wrong algorithm, missing or
    ill-typed claims), ``token_expired`` or ``missing_scope``; ``message`` says why in words and
    never contains the token.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def derive_signing_key(access_key: bytes) -> bytes:
    """Return the 32-byte HS256 key for user tokens: HMAC-SHA256(access_key, label)."""
    return hmac.new(access_key, _KEY_LABEL, hashlib.sha256).digest()


class TokenService:
    """Mints and verifies user access tokens for one installation (one access key)."""

    def __init__(self, access_key: bytes) -> None:
        if not access_key:
            raise ValueError("access key is empty")
        self._key = derive_signing_key(access_key)
        self._jws = jwt.PyJWS(algorithms=[ALGORITHM])

    def __repr__(self) -> str:
        return "TokenService(<key hidden>)"

    def mint(
        self,
        user_id: str,
        scopes: Sequence[str],
        expires_in_minutes: int = DEFAULT_EXPIRES_IN_MINUTES,
        now: float | None = None,
    ) -> tuple[str, datetime]:
        """Return ``(token, expires_on)`` for ``user_id`` with ``scopes``.

        ``expires_in_minutes``: 1..1440 (the identity API accepts only 60..1440, as ACS does;
        shorter lifetimes are for tests and scripts). ``now``: unix seconds, default the clock.
        ``expires_on`` is a UTC datetime, whole seconds. Duplicate scopes are kept once, in order.

        Raises ValueError on an empty ``user_id``, no scopes, an unknown scope or a lifetime out
        of range.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        if isinstance(scopes, str):
            raise ValueError("scopes must be a sequence of scope names, not one string")
        unique = tuple(dict.fromkeys(scopes))
        if not unique:
            raise ValueError("at least one scope is required")
        unknown = [s for s in unique if s not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown!r}; known: {sorted(SCOPES)}")
        if (
            isinstance(expires_in_minutes, bool)
            or not isinstance(expires_in_minutes, int)
            or not MIN_EXPIRES_IN_MINUTES <= expires_in_minutes <= MAX_EXPIRES_IN_MINUTES
        ):
            raise ValueError(
                f"expires_in_minutes must be an integer in "
                f"{MIN_EXPIRES_IN_MINUTES}..{MAX_EXPIRES_IN_MINUTES}"
            )
        issued_at = int(time.time() if now is None else now)
        expires_at = issued_at + expires_in_minutes * 60
        claims = {
            "sub": user_id,
            "scp": list(unique),
            "iat": issued_at,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
        }
        token = self._jws.encode(_plain_payload(claims), self._key, algorithm=ALGORITHM)
        return token, datetime.fromtimestamp(expires_at, UTC)

    def verify(
        self,
        token: str,
        required_scope: str | tuple[str, ...] | None = None,
        now: float | None = None,
    ) -> UserToken:
        """Check ``token`` and return what it says.

        Checks, in order: the JWS structure and HS256 signature (any other ``alg``, including
        ``none``, is refused), that the payload is a JSON object with ``sub`` (non-empty string),
        ``scp`` (list of strings), ``iat`` and ``exp`` (integers, ``iat < exp``, lifetime at
        most 1440 minutes) and ``jti`` (non-empty string), then expiry against ``now`` (unix
        seconds, default the clock), then ``required_scope`` (a scope, or a tuple of scopes
        any one of which will do, as ``CALL_SCOPES``).

        Raises TokenError ``invalid_token``, ``token_expired`` or ``missing_scope``; ValueError
        if ``required_scope`` is not a known scope (a bug in the caller).
        """
        accepted = (required_scope,) if isinstance(required_scope, str) else required_scope
        if accepted is not None and (not accepted or not set(accepted) <= SCOPES):
            raise ValueError(f"unknown scope {required_scope!r}")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("invalid_token", "token is missing, not a string or too long")
        try:
            decoded = self._jws.decode_complete(token, self._key, algorithms=[ALGORITHM])
        except jwt.InvalidSignatureError:
            raise TokenError("invalid_token", "token signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("invalid_token", f"token algorithm is not {ALGORITHM}") from None
        except jwt.PyJWTError:
            raise TokenError("invalid_token", "token is malformed") from None
        claims = _parse_claims(decoded["payload"])
        current = time.time() if now is None else now
        if current >= claims.expires_at + EXPIRY_LEEWAY_S:
            raise TokenError("token_expired", "token has expired")
        if accepted is not None and not set(accepted) & set(claims.scopes):
            names = " or ".join(repr(s) for s in accepted)
            raise TokenError("missing_scope", f"token lacks the {names} scope")
        return claims


# Characters whose place in an ASCII payload can give a 6-bit group of 62 or 63, which
# base64url writes as "-" or "_": only a byte's low six bits can reach them, in >, ?, ~, DEL.
_PLAIN_ESCAPES = {">": "\\u003e", "?": "\\u003f", "~": "\\u007e", "\x7f": "\\u007f"}


def _plain_payload(claims: dict[str, object]) -> bytes:
    """Serialise ``claims`` so that the token's payload segment holds no ``-`` and no ``_``.

    The ACS SDKs decode the payload with *standard* base64 (which drops those characters and
    so reads garbage). Base64 of ASCII text holds them only where a byte is ``>``, ``?``,
    ``~`` or DEL; JSON (ASCII-only, compact) can carry those only inside strings, where a
    ``\\uXXXX`` escape means the same thing, so they are escaped.
    """
    text = json.dumps(claims, separators=(",", ":"), ensure_ascii=True)
    for char, escape in _PLAIN_ESCAPES.items():
        text = text.replace(char, escape)
    return text.encode("ascii")


def _parse_claims(payload: bytes) -> UserToken:
    """Turn a verified JWS payload into a UserToken; raises TokenError ``invalid_token``."""
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise TokenError("invalid_token", "token payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("invalid_token", "token payload is not a JSON object")
    missing = [name for name in _REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise TokenError("invalid_token", f"token lacks claim(s) {', '.join(missing)}")
    sub, scp, iat, exp, jti = (claims[name] for name in _REQUIRED_CLAIMS)
    if not isinstance(sub, str) or not sub:
        raise TokenError("invalid_token", "claim sub must be a non-empty string")
    if not isinstance(scp, list) or not all(isinstance(s, str) for s in scp):
        raise TokenError("invalid_token", "claim scp must be a list of strings")
    for name, value in (("iat", iat), ("exp", exp)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TokenError("invalid_token", f"claim {name} must be an integer")
    if not iat < exp <= iat + MAX_EXPIRES_IN_MINUTES * 60:
        raise TokenError("invalid_token", "claims iat and exp give an impossible lifetime")
    if not isinstance(jti, str) or not jti:
        raise TokenError("invalid_token", "claim jti must be a non-empty string")
    return UserToken(user_id=sub, scopes=tuple(scp), issued_at=iat, expires_at=exp, token_id=jti)
