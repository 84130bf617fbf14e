"""In-call data through the real server between real aiortc peers (DataProducer/DataConsumer).

Waits are on recorded events with timeouts (``Peer.until``), never sleeps. Ordering on the
reliable channel (RFC 8831 §6.6: ordered, reliable) is what proves absence: a non-target has
not received a targeted message if it received a broadcast the sender sent after it.
"""

from __future__ import annotations

import secrets

import pytest

from switchboard.client import SignallingError, ToneTrack
from switchboard.client.data import DataTooLarge
from switchboard.sfu import MediaConfig
from switchboard.sfu.data import MAX_PAYLOAD_BYTES, DataConfig, Envelope
from switchboard.signalling.keys import ROOMS

from .conftest import LOOPBACK, Join, Peer, Server

Received = list[tuple[str, bytes | str, bool]]


def record(peer: Peer) -> Received:
    """Record ``peer``'s in-call data (sender, payload, reliable); each message wakes ``until``."""
    got: Received = []

    def on_data(sender: str, payload: bytes | str, reliable: bool) -> None:
        got.append((sender, payload, reliable))
        peer.changed.set()

    peer.room.on_data = on_data
    peer.room.data.on_dropped = lambda *report: peer.changed.set()
    return got


async def joined(join: Join, name: str) -> Peer:
    """A peer without media whose data channels are open (so the SFU delivers to it)."""
    peer = await join(name, publish=False)
    await peer.room.open_data()
    return peer


def payloads(got: Received) -> list[bytes | str]:
    return [payload for _, payload, _ in got]


async def test_text_and_binary_broadcast_and_targeted(join: Join) -> None:
    a, b, c = [await joined(join, n) for n in ("a", "b", "c")]
    got = {p: record(p) for p in (a, b, c)}
    ida, idb = a.room.participant_id, b.room.participant_id

    await a.room.send_data("hello, room")
    await b.until(lambda: "hello, room" in payloads(got[b]))
    await c.until(lambda: "hello, room" in payloads(got[c]))
    assert got[b][0] == (ida, "hello, room", True)

    blob = bytes(range(256)) * 4
    await b.room.send_data(blob, to=[ida])  # targeted, binary
    await b.room.send_data("after the targeted one")  # broadcast, same ordered channel
    await a.until(lambda: "after the targeted one" in payloads(got[a]))
    await c.until(lambda: "after the targeted one" in payloads(got[c]))
    assert (idb, blob, True) in got[a]
    assert blob not in payloads(got[c])  # c got the later broadcast, so not the targeted one
    assert all(sender != idb for sender, _, _ in got[b])  # never echoed to the sender

    await c.room.send_data(b"lossy", reliable=False, to=[ida])
    await a.until(lambda: b"lossy" in payloads(got[a]))
    assert got[a][-1] == (c.room.participant_id, b"lossy", False)


async def test_large_binary_arrives_byte_identical_and_oversize_is_refused(join: Join) -> None:
    a, b = await joined(join, "a"), await joined(join, "b")
    got, _ = record(b), record(a)
    blob = secrets.token_bytes(200 * 1024)
    largest = secrets.token_bytes(MAX_PAYLOAD_BYTES)
    await a.room.send_data(blob)
    await a.room.send_data(largest)
    await b.until(lambda: len(got) == 2)
    assert got[0][1] == blob and got[1][1] == largest

    with pytest.raises(DataTooLarge, match="at most 261120 bytes"):
        await a.room.send_data(b"x" * (MAX_PAYLOAD_BYTES + 1))
    # A client that skips the SDK's check: the SFU refuses and reports it, never cuts it.
    raw = a.room.data._send_channels["reliable"]
    raw.send(bytes(Envelope(b"y" * (MAX_PAYLOAD_BYTES + 1))))
    await a.until(lambda: a.room.data.dropped.get("too_large") == 1)
    await a.room.send_data("still fine")
    await b.until(lambda: "still fine" in payloads(got))
    assert all(len(p) <= MAX_PAYLOAD_BYTES for p in payloads(got))


async def test_spoofed_sender_is_overwritten_and_bad_input_is_reported(join: Join) -> None:
    a, b = await joined(join, "a"), await joined(join, "b")
    got, _ = record(b), record(a)
    await a.room.send_data("warm up")
    raw = a.room.data._send_channels["reliable"]
    raw.send(bytes(Envelope(b"spoof", sender=b.room.participant_id)))
    raw.send("not an envelope")  # a text message: malformed
    raw.send(b"\x07\x00\x00\x00")  # unknown version: malformed
    await a.room.send_data("to a ghost", to=["PA_nobody", b.room.participant_id])
    await b.until(lambda: "to a ghost" in payloads(got))
    assert (a.room.participant_id, b"spoof", True) in got
    await a.until(
        lambda: (
            a.room.data.dropped.get("malformed") == 2
            and a.room.data.dropped.get("unknown_target") == 1
        )
    )
    assert len(got) == 3  # warm up, spoof (re-stamped), to a ghost


async def test_message_to_a_joining_participant_is_held_until_its_channel_opens(
    server: Server, join: Join
) -> None:
    a, c = await joined(join, "a"), await joined(join, "c")
    witness = record(c)
    b = await join("b", publish=False)  # joined, channels not open yet
    got = record(b)
    await a.room.send_data("welcome", to=[b.room.participant_id])
    await a.room.send_data("marker")  # same ordered channel: "welcome" was relayed before it
    await c.until(lambda: "marker" in payloads(witness))
    room = server.app[ROOMS].rooms["r1"]
    consumer = room.participants[b.room.participant_id].publish.data.data_consumers["reliable"]
    assert not consumer.open and consumer.held_total == 0  # held, not yet delivered
    await b.room.open_data()
    await b.until(lambda: "welcome" in payloads(got))
    assert got == [
        (a.room.participant_id, "welcome", True),
        (a.room.participant_id, "marker", True),
    ]
    assert consumer.held_total == 2 and consumer.dropped == 0
    assert "welcome" not in payloads(witness)


async def test_a_role_that_may_not_publish_media_still_exchanges_data(
    server: Server, join: Join
) -> None:
    a = await joined(join, "a")
    b = await join("b", publish=False)
    # What the rooms API's Consumer role sets at join (signalling/calls/handlers.py).
    server.app[ROOMS].rooms["r1"].participants[b.room.participant_id].can_publish = False
    got_a, got_b = record(a), record(b)
    await b.room.send_data("raises a hand")  # a data-only publish offer: accepted
    await a.until(lambda: "raises a hand" in payloads(got_a))
    await a.room.send_data("seen")
    await b.until(lambda: "seen" in payloads(got_b))
    with pytest.raises(SignallingError) as refused:
        await b.room.publish([ToneTrack()])
    assert refused.value.code == "publish_not_allowed"


@pytest.mark.parametrize(
    "server",
    [
        {
            "media": MediaConfig(
                ice_addresses=LOOPBACK,
                data=DataConfig(max_messages_per_s=2, burst_messages=5, report_interval_ms=100),
            )
        }
    ],
    indirect=True,
)
async def test_rate_limit_drops_and_reports_to_the_sender(join: Join) -> None:
    a, b = await joined(join, "a"), await joined(join, "b")
    got = record(b)
    reports: list[tuple[str, int, int, str]] = []

    def on_dropped(*report: object) -> None:
        reports.append(report)  # type: ignore[arg-type]
        a.changed.set()

    a.room.data.on_dropped = on_dropped
    for i in range(40):
        await a.room.send_data(f"m{i}")
    dropped = lambda: a.room.data.dropped.get("rate_limited", 0)  # noqa: E731
    await a.until(lambda: dropped() > 0 and dropped() + len(got) == 40)
    await b.until(lambda: dropped() + len(got) == 40)
    assert 5 <= len(got) < 40
    assert all(r[0] == "rate_limited" for r in reports)
    assert sum(r[1] for r in reports) == dropped()
    assert payloads(got)[:5] == ["m0", "m1", "m2", "m3", "m4"]  # the burst passes, in order
