"""switchboard/sfu/streams/rtx_buffer.py: bounds by age and count, lookups by ext seq."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from switchboard.sfu.streams.rtx_buffer import RtpPacketCache


def packet(seq: int) -> RtpPacket:
    return RtpPacket(sequence_number=seq % 65536, payload=seq.to_bytes(4, "big"))


def test_packets_are_found_by_extended_number_across_the_wrap() -> None:
    cache = RtpPacketCache()
    for i, ext in enumerate(range(65534, 65539)):
        cache.add(ext, packet(ext), now_ms=i)
    found = cache.get(65536)
    assert found is not None and found.payload == (65536).to_bytes(4, "big")
    assert cache.get(65539) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_packets_older_than_max_age_are_evicted() -> None:
    cache = RtpPacketCache(max_age_ms=1000)
    cache.add(1, packet(1), now_ms=0)
    cache.add(2, packet(2), now_ms=500)
    cache.add(3, packet(3), now_ms=1200)  # 1 is now 1200 ms old
    assert cache.get(1) is None
    assert cache.get(2) is not None and cache.get(3) is not None


def test_count_bound_evicts_oldest_arrivals_and_a_late_packet_counts_as_new() -> None:
    cache = RtpPacketCache(max_packets=3)
    for ext in (10, 12, 13):
        cache.add(ext, packet(ext), now_ms=0)
    cache.add(11, packet(11), now_ms=1)  # late (a retransmission): evicts 10, the oldest
    assert [cache.get(e) is not None for e in (10, 11, 12, 13)] == [False, True, True, True]
    assert len(cache) == 3


def test_a_duplicate_keeps_the_first_copy() -> None:
    cache = RtpPacketCache()
    first = packet(5)
    cache.add(5, first, now_ms=0)
    cache.add(5, packet(5), now_ms=1)
    assert cache.get(5) is first
