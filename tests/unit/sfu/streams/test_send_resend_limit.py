"""switchboard/sfu/streams/send.py: ``SentSeqMap.may_resend``, one resend per packet per
interval (a subscriber repeating its NACKs gets each packet once per 100 ms)."""

from __future__ import annotations

import pytest

from switchboard.sfu.streams.send import SentSeqMap

INTERVAL_MS = 100.0


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([("add", 7, 70), ("ask", 7, 0)], [True], id="first resend"),
        pytest.param(
            [("add", 7, 70), ("ask", 7, 0), ("ask", 7, 99.9)], [True, False], id="again too soon"
        ),
        pytest.param(
            [("add", 7, 70), ("ask", 7, 0), ("ask", 7, 100)], [True, True], id="again after 100 ms"
        ),
        pytest.param(
            [("add", 7, 70), ("ask", 7, 0), ("add", 7 + 16, 86), ("ask", 7 + 16, 1)],
            [True, True],
            id="slot reused by a newer packet: its own first resend",
        ),
        pytest.param(
            [("add", 7, 70), ("ask", 7, 0), ("add", 7, 70), ("ask", 7, 1)],
            [True, False],
            id="the same packet recorded again keeps its resend time",
        ),
        pytest.param(
            [("add", 7, 70), ("add", 8, 71), ("ask", 7, 0), ("ask", 8, 0)],
            [True, True],
            id="packets are limited one by one",
        ),
    ],
)
def test_may_resend(steps: list[tuple[str, int, float]], expected: list[bool]) -> None:
    seqs = SentSeqMap(size=16)
    got = []
    for step, seq, value in steps:
        if step == "add":
            seqs.add(seq, int(value))
        else:
            got.append(seqs.may_resend(seq, value, INTERVAL_MS))
    assert got == expected
