"""The in-call data envelope (sfu/data/envelope.py) and the per-sender rate limiter."""

from __future__ import annotations

import pytest
from aiortc import RTCSctpTransport

from switchboard.sfu.data.envelope import (
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    Envelope,
    EnvelopeError,
)
from switchboard.sfu.data.rate_limit import RateLimiter


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param(Envelope(b"hi", text=True), id="text to everyone"),
        pytest.param(Envelope(bytes(range(256))), id="binary to everyone"),
        pytest.param(Envelope(b"", to=("PA_a", "PA_b")), id="empty payload to two"),
        pytest.param(Envelope("é✋".encode(), text=True, sender="PA_b"), id="from the SFU"),
    ],
)
def test_round_trip(envelope: Envelope) -> None:
    data = bytes(envelope)
    assert Envelope.parse(data) == envelope
    assert bytes(Envelope.parse(data)) == data


def test_wire_example_of_the_protocol_doc() -> None:
    assert bytes(Envelope(b"hi", text=True)).hex() == "010100027b7d6869"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param("a text message", "malformed", id="text message"),
        pytest.param(b"\x01\x00", "malformed", id="short"),
        pytest.param(b"\x02\x00\x00\x00", "malformed", id="unknown version"),
        pytest.param(b"\x01\x04\x00\x00", "malformed", id="unknown flag"),
        pytest.param(b"\x01\x00\x00\x09{}", "malformed", id="header past the end"),
        pytest.param(b"\x01\x00\x00\x02[]", "malformed", id="header not an object"),
        pytest.param(b"\x01\x00\x00\x02{x", "malformed", id="header not JSON"),
        pytest.param(b"\x01\x01\x00\x02{}\xff", "malformed", id="text not UTF-8"),
        pytest.param(b'\x01\x00\x00\x09{"to":[]}', "malformed", id="empty to"),
        pytest.param(b'\x01\x00\x00\x0a{"to":[1]}', "malformed", id="to not ids"),
        pytest.param(bytes(Envelope(b"x" * (MAX_PAYLOAD_BYTES + 1))), "too_large", id="payload"),
        pytest.param(b"\x01" * (MAX_MESSAGE_BYTES + 1), "too_large", id="message"),
    ],
)
def test_bad_envelopes_are_refused_with_a_reason(data: bytes | str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as refused:
        Envelope.parse(data)
    assert refused.value.reason == reason


def test_a_client_supplied_sender_is_read_but_the_largest_payload_fits() -> None:
    parsed = Envelope.parse(bytes(Envelope(b"p", sender="PA_spoof", to=("PA_x", "PA_x"))))
    assert parsed.sender == "PA_spoof" and parsed.to == ("PA_x",)  # the router re-stamps
    relayed = bytes(Envelope(b"x" * MAX_PAYLOAD_BYTES, sender="P" * 64))
    assert len(relayed) <= MAX_MESSAGE_BYTES


def test_aiortc_advertises_the_message_size_we_rely_on() -> None:
    """RFC 8841 §6 a=max-message-size: aiortc 1.16 advertises 256 KiB, as Chromium does."""
    assert RTCSctpTransport.getCapabilities().maxMessageSize == MAX_MESSAGE_BYTES


def test_rate_limiter_buckets() -> None:
    limiter = RateLimiter(2, 3, 1000, 1500, now_ms=0)
    assert [limiter.allow(100, 0) for _ in range(4)] == [True, True, True, False]  # burst 3
    assert limiter.allow(100, 499) is False  # 0.998 message tokens
    assert limiter.allow(100, 500) is True  # one message token back after 500 ms
    assert limiter.allow(1400, 10_000) is True  # bytes: 1500 at most held
    assert limiter.allow(200, 10_000) is False  # 100 byte tokens left, refused costs nothing
    assert limiter.allow(100, 10_000) is True
