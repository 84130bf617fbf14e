"""Immediate token revocation: which tokens of an identity are refused, and who is told.

``POST /identities/{id}/:revokeAccessTokens`` and ``DELETE /identities/{id}`` record a
revocation time for the identity; every token of it issued before that time is refused from
then on (at ``authenticate``, at ``refresh_token``), and each listener (the signalling socket
directory, which evicts that user's live sessions) is called at once.

Token ``iat`` claims are whole seconds, so a revocation at ``t`` (a float) is recorded as
``floor(t) + 1``: every token issued in or before the second of the revocation is refused.
A token minted afterwards for that identity is stamped ``iat = max(now, revoked_at)``
(``not_before``), so it is accepted even within the same second; its ``exp`` is at most one
second later than asked.

The revocation times live in the store (``revocations`` table) and, for a synchronous check
on every ``authenticate``, in memory: this node is the only writer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from ..store import Store
from ..store import identities as queries
from .tokens import UserToken

log = logging.getLogger(__name__)

Listener = Callable[[str], None]  # called with the identity id whose tokens were revoked


class Revocations:
    """The revocation times of one installation, loaded from ``store`` by ``load``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._revoked_at: dict[str, float] = {}
        self.listeners: list[Listener] = []

    async def load(self) -> None:
        self._revoked_at = await queries.revocations(self._store)

    def not_before(self, user_id: str) -> float:
        """The earliest ``iat`` (unix seconds) a token of ``user_id`` may carry; 0 if none."""
        return self._revoked_at.get(user_id, 0.0)

    def is_revoked(self, token: UserToken) -> bool:
        """Tell whether ``token`` was issued before its identity's last revocation."""
        return token.issued_at < self.not_before(token.user_id)

    async def revoke(self, user_id: str, *, delete: bool = False, now: float | None = None) -> bool:
        """Revoke every token of ``user_id`` issued until now; with ``delete``, also delete
        the identity. Returns False (and changes nothing) if there is no such identity."""
        revoked_at = float(math.floor(time.time() if now is None else now) + 1)
        if delete:
            found = await queries.delete_identity(self._store, user_id, revoked_at)
        else:
            found = await queries.revoke(self._store, user_id, revoked_at)
        if not found:
            return False
        self._revoked_at[user_id] = revoked_at
        for listener in list(self.listeners):
            try:
                listener(user_id)
            except Exception:  # one broken listener must not keep the others from running
                log.exception("revocation listener failed")
        return True
