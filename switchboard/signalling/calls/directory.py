"""Directory: the live signalling sessions of this node, by identity, so that a revocation
or a role change can reach every socket of one user at once."""

from __future__ import annotations

from collections.abc import Iterator

from .connection import CLOSE_TOKEN_EXPIRED, CloseSession, Connection

CLOSE_TOKEN_REVOKED = CLOSE_TOKEN_EXPIRED  # 4001: the session's token is no longer valid


class Directory:
    """Authenticated connections by identity id (``sub``). A connection is added when it
    authenticates and removed when its socket ends (``Connection.release``)."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Connection]] = {}

    def add(self, user_id: str, conn: Connection) -> None:
        self._by_user.setdefault(user_id, set()).add(conn)

    def remove(self, user_id: str, conn: Connection) -> None:
        conns = self._by_user.get(user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_user[user_id]

    def of(self, user_id: str) -> Iterator[Connection]:
        """The live connections of ``user_id`` (a snapshot: safe to end them meanwhile)."""
        return iter(list(self._by_user.get(user_id, ())))

    def evict(self, user_id: str) -> None:
        """End every session of ``user_id``: its tokens were revoked (a Revocations listener).

        Each socket gets a ``disconnect`` event (4001, "token revoked") and closes; its
        participant leaves its room (``participant_left`` reason ``token_revoked``) at once,
        from the socket's own task.
        """
        for conn in self.of(user_id):
            conn.end(CloseSession(CLOSE_TOKEN_REVOKED, "token revoked", "token_revoked"))
