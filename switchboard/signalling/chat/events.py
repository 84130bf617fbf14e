"""Real-time chat events over the signalling WebSocket (docs/protocol.md, "Chat events").

Every change the chat service makes is told to its listeners as ``(recipients, event)``;
``deliver_to(directory)`` is the listener that sends the event to every live signalling
socket of each recipient whose token holds a chat scope. An event is

    {"type": "chat_event", "event": NAME, "thread_id": "19:…@thread.v2", ...fields}

with NAME and fields as the ACS JavaScript SDK's real-time notifications:
``chatMessageReceived``/``chatMessageEdited``/``chatMessageDeleted`` (``message``: the REST
shape of the message), ``typingIndicatorReceived`` (``sender``, ``senderDisplayName``,
``receivedOn``), ``readReceiptReceived`` (``sender``, ``chatMessageId``, ``readOn``),
``participantsAdded``/``participantsRemoved`` (``participants``, ``by``),
``chatThreadPropertiesUpdated`` (``properties``: ``{"topic"}``, ``updatedBy``) and
``chatThreadDeleted`` (``deletedOn``, ``deletedBy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..identity.tokens import CHAT_SCOPES, UserToken

if TYPE_CHECKING:
    from ..calls.directory import Directory

Event = dict[str, Any]
Listener = Callable[[Iterable[str], Event], None]


def event(name: str, thread_id: str, **fields: Any) -> Event:
    return {"type": "chat_event", "event": name, "thread_id": thread_id, **fields}


def has_chat_scope(token: UserToken | None) -> bool:
    return token is not None and any(s in CHAT_SCOPES for s in token.scopes)


def deliver_to(directory: Directory) -> Listener:
    """A listener sending each event to the live sockets of its recipients (chat scope only)."""

    def deliver(recipients: Iterable[str], message: Event) -> None:
        for raw_id in set(recipients):
            for conn in directory.of(raw_id):
                if has_chat_scope(conn.token):
                    conn.send(message)

    return deliver
