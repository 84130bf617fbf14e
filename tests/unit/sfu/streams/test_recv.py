"""switchboard/sfu/streams/recv.py: NACK generation with retries, giving up, late packets."""

from __future__ import annotations

from switchboard.sfu.streams.recv import RtpStreamRecv


def test_a_gap_is_nacked_at_once_then_every_retry_interval() -> None:
    stream = RtpStreamRecv(retry_ms=100, max_nacks=3)
    assert stream.on_packet(100, now_ms=0).nack == []
    assert stream.on_packet(103, now_ms=10).nack == [101, 102]
    assert stream.on_packet(104, now_ms=50).nack == []  # too soon to ask again
    assert stream.on_packet(105, now_ms=110).nack == [101, 102]
    assert stream.missing == [101, 102]
    assert stream.nacked == 4


def test_a_retransmission_fills_the_gap() -> None:
    stream = RtpStreamRecv(retry_ms=100)
    stream.on_packet(1, now_ms=0)
    stream.on_packet(4, now_ms=0)
    verdict = stream.on_packet(2, now_ms=5)  # late or RTX
    assert (verdict.nack, verdict.lost, stream.missing) == ([], False, [3])


def test_after_max_nacks_and_one_more_interval_the_packet_is_lost() -> None:
    stream = RtpStreamRecv(retry_ms=100, max_nacks=2)
    stream.on_packet(1, now_ms=0)
    assert stream.on_packet(3, now_ms=0).nack == [2]
    assert stream.on_packet(4, now_ms=100).nack == [2]
    assert stream.on_packet(5, now_ms=150).lost is False  # the last NACK may be answered
    verdict = stream.on_packet(6, now_ms=200)
    assert (verdict.nack, verdict.lost, stream.lost, stream.missing) == ([], True, 1, [])


def test_a_gap_wider_than_the_window_is_lost_at_once() -> None:
    stream = RtpStreamRecv(max_missing=10)
    stream.on_packet(1, now_ms=0)
    verdict = stream.on_packet(100, now_ms=0)
    assert verdict.lost is True
    assert verdict.nack == list(range(90, 100))


def test_subscriber_requests_are_forwarded_once_per_interval_and_only_if_missing() -> None:
    stream = RtpStreamRecv(retry_ms=100)
    stream.on_packet(1, now_ms=0)
    stream.on_packet(4, now_ms=0)  # 2, 3 NACKed now
    assert stream.nack_now([2, 3, 1], now_ms=50) == []  # just asked; 1 is not missing
    assert stream.nack_now([2], now_ms=100) == [2]
