"""switchboard/sfu/streams/send.py: sent number -> Producer number, forgetting old ones."""

from __future__ import annotations

import pytest

from switchboard.sfu.streams.send import SentSeqMap


@pytest.mark.parametrize(
    ("sent", "query", "expected"),
    [
        pytest.param([(0, 70000), (1, 70001)], 1, 70001, id="recent"),
        pytest.param([(65535, 70000), (0, 70001)], 65535, 70000, id="across the wrap"),
        pytest.param([(5, 100)], 6, None, id="never sent"),
        pytest.param([(5, 100), (5 + 16, 200)], 5, None, id="slot reused by a newer number"),
        pytest.param([(3, 100), (3, 90)], 3, 90, id="resend remaps"),
    ],
)
def test_lookup(sent: list[tuple[int, int]], query: int, expected: int | None) -> None:
    seqs = SentSeqMap(size=16)
    for seq_out, ext_in in sent:
        seqs.add(seq_out, ext_in)
    assert seqs.get(query) == expected


def test_size_must_divide_the_sequence_space() -> None:
    with pytest.raises(ValueError):
        SentSeqMap(size=1000)
