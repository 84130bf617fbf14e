"""Checks of a client's SDP before aiortc applies it.

aiortc applies a description in steps and cannot roll back, so a description it chokes on
half-way (duplicate MIDs, no DTLS fingerprint) would leave the peer connection broken. What
aiortc would refuse late, or accept dangerously, is refused here first, with a clear message.
"""

from __future__ import annotations

import re

from .transport_errors import SdpError

MAX_MEDIA_SECTIONS = 32  # m-sections in one client description (tracks are capped in transport)
FINGERPRINT_ALGORITHMS = ("sha-256", "sha-384", "sha-512")  # RFC 8122 §5; no MD5/SHA-1

_DIRECTION = re.compile(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", re.MULTILINE)


def sections(sdp: str) -> tuple[str, list[str]]:
    """Split ``sdp`` into its session part and its m-sections (each starting with ``m=``)."""
    parts = re.split(r"^(?=m=)", sdp, flags=re.MULTILINE)
    return parts[0], parts[1:]


def media_directions(sdp: str) -> list[str]:
    """The direction of each audio/video m-section of ``sdp`` (RFC 8866 §6.7), ``sendrecv``
    where absent."""
    out = []
    for section in sections(sdp)[1]:
        if section.startswith(("m=audio ", "m=video ")):
            found = _DIRECTION.search(section)
            out.append(found.group(1) if found else "sendrecv")
    return out


def check_client_description(
    sdp: str, max_sections: int | None = MAX_MEDIA_SECTIONS, require_media: bool = True
) -> None:
    """Refuse a description aiortc could not apply cleanly; raises SdpError ``invalid_sdp``.

    Requires: at least one audio or video m-section (unless ``require_media`` is False, for
    the data-channel-only connectivity probe), at most ``max_sections`` m-sections
    (None: no limit, for answers to our own offers); a unique ``a=mid`` in each (RFC 8843
    §7.2); ICE credentials and a DTLS fingerprint (RFC 8842 §5.2, RFC 8122) with SHA-256 or
    stronger, at session or media level.
    """
    session, media = sections(sdp)
    if require_media and not any(m.startswith(("m=audio ", "m=video ")) for m in media):
        raise SdpError("invalid_sdp", "the description has no audio or video m-section")
    if max_sections is not None and len(media) > max_sections:
        raise SdpError("invalid_sdp", f"more than {max_sections} m-sections")
    mids = [re.search(r"^a=mid:(\S{1,32})\s*$", m, re.MULTILINE) for m in media]
    if any(mid is None for mid in mids):
        raise SdpError("invalid_sdp", "every m-section needs an a=mid of 1 to 32 characters")
    values = [mid.group(1) for mid in mids if mid is not None]
    if len(set(values)) != len(values):
        raise SdpError("invalid_sdp", "a=mid values must be unique")
    for m in media:
        scope = session + m
        if not re.search(r"^a=ice-ufrag:\S+", scope, re.MULTILINE) or not re.search(
            r"^a=ice-pwd:\S+", scope, re.MULTILINE
        ):
            raise SdpError("invalid_sdp", "an m-section lacks a=ice-ufrag or a=ice-pwd")
        found = re.search(r"^a=fingerprint:(\S+) [0-9A-Fa-f:]+\s*$", scope, re.MULTILINE)
        if found is None or found.group(1).lower() not in FINGERPRINT_ALGORITHMS:
            raise SdpError(
                "invalid_sdp", "an m-section lacks a DTLS fingerprint (sha-256 or stronger)"
            )
