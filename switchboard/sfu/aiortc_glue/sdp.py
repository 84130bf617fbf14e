"""What aiortc's SDP handling keeps private or gets wrong for a bundle.

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals."""

from __future__ import annotations

from aiortc import RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated on ``transceiver``, in the order of the answer (its first media
    codec is the one the publisher sends, RFC 3264 §6.1)."""
    return list(transceiver._codecs)


def spread_bundle_candidates(sdp: str) -> str:
    """Return ``sdp`` with every m-section carrying all the ICE candidates of the description.

    aiortc 1.16, with max-bundle, adds the remote candidates of the *last* m-section only;
    browsers write them on the first (RFC 8843 §7.1.1 lets a bundled description carry them
    once). Copying them everywhere makes aiortc see them whichever section it reads;
    ``a=end-of-candidates`` is copied only alongside. Line endings are kept (CRLF per RFC 8866).
    """
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailing = lines[-1] == ""
    if trailing:
        lines.pop()
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if len(starts) < 2:
        return sdp
    sections = [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
    candidates = list(
        dict.fromkeys(
            line for section in sections for line in section if line.startswith("a=candidate:")
        )
    )
    complete = any("a=end-of-candidates" in section for section in sections)
    out = lines[: starts[0]]
    for section in sections:
        body = [line for line in section if line != "a=end-of-candidates"]
        body += [c for c in candidates if c not in body]
        out += body + (["a=end-of-candidates"] if complete else [])
    return eol.join(out) + (eol if trailing else "")
