"""Simulcast in SDP (RFC 8853, RFC 8851): read a publisher's offer, answer it, as text.

aiortc's SDP layer ignores ``a=rid`` and ``a=simulcast``; these pure functions read what a
browser offers (``sendEncodings`` with RIDs) and add to aiortc's answer what makes the browser
send every layer: ``a=rid:<rid> recv`` per layer and ``a=simulcast:recv <rid>;<rid>...``.
aiortc_glue.accept_rid_extensions negotiates the RID header extensions themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sdp_checks import sections

MAX_LAYERS = 4  # layers per track the SFU accepts (browsers send at most 3 or 4)
_RID = re.compile(r"^[A-Za-z0-9_-]{1,16}\Z")  # RFC 8851 §10 rid-id, WebRTC's 16-char limit
_MID = re.compile(r"^a=mid:(\S+)\s*$", re.MULTILINE)
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)\s*$", re.MULTILINE)
_SIMULCAST_SEND = re.compile(r"^a=simulcast:send (\S+)\s*$", re.MULTILINE)
_RID_SEND = re.compile(r"^a=rid:(\S+) send\b", re.MULTILINE)
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


@dataclass(frozen=True)
class SimulcastOffer:
    """One offered simulcast m-section: its ``rids`` in ``a=simulcast`` order (the SFU takes
    that order as lowest to highest quality, as browsers list ``sendEncodings`` and mediasoup
    assumes) and its ``extmap`` (header extension URI → id)."""

    mid: str
    rids: tuple[str, ...]
    extmap: dict[str, int]


def parse_offer(sdp: str) -> dict[str, SimulcastOffer]:
    """The video m-sections of ``sdp`` that offer to send simulcast, by MID.

    An m-section counts when it has ``a=simulcast:send`` naming at least two RIDs that it
    declares with ``a=rid:<rid> send``; of alternatives (``a,b``) the first is taken, a paused
    RID's ``~`` is ignored (RFC 8853 §5.1), invalid RIDs and those beyond ``MAX_LAYERS`` are
    left out (not answered, so the browser does not send them). It must also declare the
    ``rtp-stream-id`` header extension (RFC 8852 §3.3) with a usable id (``_usable_ids``),
    else the layers could not be told apart: it is answered as a single stream.
    """
    out: dict[str, SimulcastOffer] = {}
    media = sections(sdp)[1]
    usable = _usable_ids(media)
    for section in media:
        if not section.startswith("m=video "):
            continue
        mid, send = _MID.search(section), _SIMULCAST_SEND.search(section)
        if mid is None or send is None:
            continue
        declared = set(_RID_SEND.findall(section))
        rids: list[str] = []
        for stream in send.group(1).split(";"):
            rid = stream.split(",")[0].lstrip("~")
            if _RID.match(rid) and rid in declared and rid not in rids:
                rids.append(rid)
                if len(rids) == MAX_LAYERS:
                    break  # the rest is not answered: no need to read it
        extmap = {uri: usable[uri] for i, uri in _EXTMAP.findall(section) if uri in usable}
        if len(rids) < 2 or RID_URI not in extmap:
            continue
        out[mid.group(1)] = SimulcastOffer(mid.group(1), tuple(rids), extmap)
    return out


def _usable_ids(media: list[str]) -> dict[str, int]:
    """URI → id of the RID header extensions ``media`` (BUNDLEd m-sections, which share one
    id space, RFC 8843 §9.2) declare consistently: an id from 1 to 255 (RFC 8285 §5: 15 only
    with two-byte headers), the same in every m-section, used for nothing else there."""
    uris_of: dict[str, set[str]] = {}
    for section in media:
        for i, uri in _EXTMAP.findall(section):
            if len(i) <= 3:
                uris_of.setdefault(i.lstrip("0") or "0", set()).add(uri)
    out: dict[str, int] = {}
    for uri in (RID_URI, REPAIRED_RID_URI):
        ids = [i for i, uris in uris_of.items() if uri in uris]
        if len(ids) == 1 and 1 <= int(ids[0]) <= 255 and uris_of[ids[0]] == {uri}:
            out[uri] = int(ids[0])
    return out


def answer(sdp: str, offers: dict[str, SimulcastOffer]) -> str:
    """``sdp`` (our answer) with ``a=rid:<rid> recv`` and ``a=simulcast:recv`` added to the
    m-section of each offered MID that is still receiving (RFC 8853 §5.3). Line endings kept."""
    if not offers:
        return sdp
    eol = "\r\n" if "\r\n" in sdp else "\n"
    session, media = sections(sdp)
    out = [session]
    for section in media:
        mid = _MID.search(section)
        offer = offers.get(mid.group(1)) if mid is not None else None
        if offer is not None and re.search(r"^a=(recvonly|sendrecv)\s*$", section, re.MULTILINE):
            lines = [f"a=rid:{rid} recv" for rid in offer.rids]
            lines.append("a=simulcast:recv " + ";".join(offer.rids))
            body = section if section.endswith(eol) else section + eol
            section = body + eol.join(lines) + eol
        out.append(section)
    return "".join(out)
