"""Room roles on live sessions: a rooms API change (rooms/service.py) applied at once.

A participant removed from a room (or whose room was deleted) is ended with 4003 and reason
``removed from room``; one whose new role may not publish (``Consumer``) stops publishing at
once (its tracks end at the others) and its later ``publish_offer`` is refused; a role that
may publish again lets it publish again (with new transceivers: the old m-sections stay
unused).

A ``Presenter`` may also remove another participant from the call and mute its audio
(``remove_participant``, ``mute_participant`` in handlers.py).
"""

from __future__ import annotations

from collections.abc import Callable

from ..rooms.service import MODERATOR_ROLES, PUBLISHING_ROLES, RoleChanges
from . import outbound
from .connection import CloseSession
from .directory import Directory
from .protocol import ProtocolError
from .session import Participant

CLOSE_REMOVED = 4003


def role_listener(directory: Directory) -> Callable[[str, RoleChanges], None]:
    """A RoomsService listener applying role changes to the live sessions in ``directory``."""

    def on_roles_changed(room_id: str, changes: RoleChanges) -> None:
        for raw_id, role in changes.items():
            for conn in directory.of(raw_id):
                participant = conn.participant
                if participant is None or participant.room.name != room_id:
                    continue
                if role is None:
                    conn.end(CloseSession(CLOSE_REMOVED, "removed from room", "removed"))
                    continue
                participant.role = role
                participant.can_publish = role in PUBLISHING_ROLES
                if not participant.can_publish:
                    participant.stop_publishing()

    return on_roles_changed


def require_moderator(participant: Participant) -> None:
    """Raise ProtocolError ``not_allowed`` unless ``participant`` may moderate its room: only
    a ``Presenter`` of a room made through the rooms API (nobody in an ad-hoc room)."""
    if participant.role not in MODERATOR_ROLES:
        raise ProtocolError(
            "not_allowed", "only a Presenter of a rooms-API room may mute or remove others"
        )


def target_of(participant: Participant, target_id: str) -> Participant:
    """The other participant ``target_id`` of ``participant``'s room (ProtocolError
    ``unknown_participant`` if there is none)."""
    target = participant.room.participants.get(target_id)
    if target is None or target is participant:
        raise ProtocolError("unknown_participant", f"no other participant {target_id} here")
    return target


def remove_from_call(directory: Directory, target: Participant) -> None:
    """End ``target``'s session: 4003 ``removed by a presenter``; the room sees it leave with
    reason ``removed``. Its room membership (rooms API) is unchanged: it may join again."""
    for conn in directory.of(target.user_id):
        if conn.participant is target:
            conn.end(CloseSession(CLOSE_REMOVED, "removed by a presenter", "removed"))


def mute_audio(target: Participant) -> list[str]:
    """Mark ``target``'s audio tracks muted; everyone, the target included, gets
    ``track_muted``: the target's client stops sending, as for its own mute. Returns the
    track ids muted now."""
    muted = []
    for producer in target.publish.producers.values():
        if producer.kind == "audio" and not producer.muted:
            producer.muted = True
            muted.append(producer.id)
            target.room.broadcast(outbound.track_muted(producer.id, target.id, True))
    return muted
