"""Builders of the messages the server sends (docs/protocol.md, "Events")."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def reply(request_id: str | int, **result: Any) -> Message:
    return {"type": "reply", "id": request_id, "result": result}


def error(request_id: str | int | None, code: str, message: str) -> Message:
    return {"type": "error", "id": request_id, "error": {"code": code, "message": message}}


def participant_joined(participant: Message) -> Message:
    return {"type": "participant_joined", "participant": participant}


def participant_left(participant_id: str, reason: str) -> Message:
    return {"type": "participant_left", "participant_id": participant_id, "reason": reason}


def track_published(track: Message) -> Message:
    return {"type": "track_published", "track": track}


def track_unpublished(track_id: str, participant_id: str) -> Message:
    return {"type": "track_unpublished", "track_id": track_id, "participant_id": participant_id}


def track_muted(track_id: str, participant_id: str, muted: bool) -> Message:
    return {
        "type": "track_muted",
        "track_id": track_id,
        "participant_id": participant_id,
        "muted": muted,
    }


def subscribe_offer(offer_id: int, sdp: str, tracks: dict[str, Message]) -> Message:
    return {"type": "subscribe_offer", "offer_id": offer_id, "sdp": sdp, "tracks": tracks}


def speakers_changed(speakers: list[str], dominant: str | None) -> Message:
    """Who speaks now (RFC 6464 levels, sfu/observers/active_speaker.py), dominant first."""
    return {"type": "speakers_changed", "speakers": speakers, "dominant": dominant}


def layer_changed(track_id: str, rid: str | None, width: int | None, height: int | None) -> Message:
    """The simulcast layer this subscriber now receives of ``track_id`` (rid None: paused)."""
    return {
        "type": "layer_changed",
        "track_id": track_id,
        "rid": rid,
        "width": width,
        "height": height,
    }


def publisher_layers(track_id: str, active: list[str]) -> Message:
    """Dynacast: the simulcast layers (RIDs) of your track ``track_id`` someone needs; send
    those, stop the others."""
    return {"type": "publisher_layers", "track_id": track_id, "active": active}


def disconnect(code: int, reason: str) -> Message:
    return {"type": "disconnect", "code": code, "reason": reason}


def data_dropped(reason: str, messages: int, size_bytes: int, detail: str) -> Message:
    """In-call data of yours the SFU did not relay since its last report of ``reason``."""
    return {
        "type": "data_dropped",
        "reason": reason,
        "messages": messages,
        "bytes": size_bytes,
        "detail": detail,
    }
