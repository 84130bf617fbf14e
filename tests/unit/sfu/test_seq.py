"""SeqUnwrapper and SeqRewriter (switchboard/sfu/rtp/seq.py), as tables.

A rewriter case is a script of operations on extended input numbers, run left to right:
``"70000"`` rewrites 70000, ``"d70002"`` drops 70002, ``"s70010"`` syncs on 70010. The
expected list holds one output per rewrite (16-bit wire values), None where it is refused.
"""

from __future__ import annotations

import pytest

from switchboard.sfu.rtp.seq import SEQ_MOD, SeqRewriter, SeqUnwrapper


def run(script: str, first_out: int = 0, max_drops: int | None = None) -> list[int | None]:
    """Run ``script`` on a fresh rewriter; return what each rewrite gave."""
    cls = SeqRewriter if max_drops is None else type("R", (SeqRewriter,), {"MAX_DROPS": max_drops})
    rewriter = cls(first_out)
    outputs: list[int | None] = []
    for op in script.split():
        if op[0] == "d":
            rewriter.drop(int(op[1:]))
        elif op[0] == "s":
            rewriter.sync(int(op[1:]))
        else:
            outputs.append(rewriter.rewrite(int(op)))
    return outputs


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param([1000], [1000 + SEQ_MOD], id="first value, one cycle up"),
        pytest.param([0], [SEQ_MOD], id="first value 0"),
        pytest.param([65535], [65535 + SEQ_MOD], id="first value 65535"),
        pytest.param([10, 11, 12], [65546, 65547, 65548], id="forward"),
        pytest.param([65534, 65535, 0, 1], [131070, 131071, 131072, 131073], id="wrap forward"),
        pytest.param(
            [65535, 1, 0, 65534, 2],
            [131071, 131073, 131072, 131070, 131074],
            id="reorder across the wrap",
        ),
        pytest.param([1, 65535], [65537, 65535], id="older than the first, across the wrap"),
        pytest.param([10, 5, 11], [65546, 65541, 65547], id="an older number keeps the max"),
        pytest.param([0, 32767], [65536, 98303], id="jump just under half a cycle is forward"),
        pytest.param([0, 32768], [65536, 32768], id="jump of half a cycle is backward"),
        pytest.param(
            [0, 30000, 60000, 24464, 54464, 18928],
            [65536 + k * 30000 for k in range(6)],
            id="several wraps in large steps",
        ),
    ],
)
def test_unwrapper(wire: list[int], expected: list[int]) -> None:
    unwrapper = SeqUnwrapper()
    assert [unwrapper.unwrap(seq) for seq in wire] == expected


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param("70000 70001 70002", [0, 1, 2], id="plain"),
        pytest.param("70000 70002 70001", [0, 2, 1], id="reorder passes through"),
        pytest.param("70000 70003", [0, 3], id="a loss upstream stays a gap"),
        pytest.param("70000 70001 d70002 70003 70004", [0, 1, 2, 3], id="drop closes its gap"),
        pytest.param("70000 d70001 d70002 d70003 70004", [0, 1], id="drops close a run"),
        pytest.param("70000 d70002 70001 70003", [0, 1, 2], id="drop, then an older input"),
        pytest.param("70000 d70002 70003 70001", [0, 2, 1], id="drop, then newer, then older"),
        pytest.param("70000 d70001 70001 70002", [0, None, 1], id="a dropped input is refused"),
        pytest.param("d70000 70000 70001", [0, 1], id="drop before the first output is ignored"),
        pytest.param("70000 d69999 70001", [0, 1], id="drop at the floor is ignored"),
        pytest.param("70000 70001 s5000 5000 5001", [0, 1, 2, 3], id="sync after a switch"),
        pytest.param("70000 70005 s9000 9000", [0, 5, 6], id="sync follows the highest output"),
        pytest.param("70000 70001 s5000 5003", [0, 1, 5], id="sync, then a loss upstream"),
        pytest.param("70000 d70001 s5000 5000 5001", [0, 1, 2], id="sync forgets drops"),
        pytest.param("s5000 5000 5001", [0, 1], id="sync before the first output"),
        pytest.param("70000 69999", [0, None], id="input below the first is refused"),
        pytest.param("70000 s9000 9000 8999 8000", [0, 1, None, None], id="input at/below floor"),
    ],
)
def test_rewriter(script: str, expected: list[int | None]) -> None:
    assert run(script) == expected


@pytest.mark.parametrize(
    ("script", "first_out", "expected"),
    [
        pytest.param("70000 70001", 100, [100, 101], id="first_out"),
        pytest.param("70000 70001 70002", 65534, [65534, 65535, 0], id="output wraps"),
        pytest.param("100 d101 102 103", 65535, [65535, 0, 1], id="drop across the output wrap"),
        pytest.param("65535 65536 65537", 0, [0, 1, 2], id="extended input past 16 bits"),
        pytest.param("70000 s5000 5000", 65535, [65535, 0], id="sync across the output wrap"),
        pytest.param(
            "70000 " + " ".join(str(70001 + i) for i in range(SEQ_MOD)),
            0,
            [i % SEQ_MOD for i in range(SEQ_MOD + 1)],
            id="a whole cycle of outputs",
        ),
    ],
)
def test_rewriter_output_wrap(script: str, first_out: int, expected: list[int | None]) -> None:
    assert run(script, first_out) == expected


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param("100 d101 d103 102 104", [0, 1, 2], id="at the limit nothing is folded"),
        pytest.param(
            "100 d101 d103 d105 102 104 106", [0, 1, 2, 3], id="oldest drop folds, outputs agree"
        ),
        pytest.param("100 d101 d103 d105 101", [0, None], id="folded drop refused"),
        pytest.param("100 d101 d103 d105 100", [0, None], id="input below a folded drop refused"),
        pytest.param("100 d101 d103 d105 103", [0, None], id="remembered drop still refused"),
        pytest.param(
            "100 d102 d101 d104 103 105", [0, 1, 2], id="out-of-order drops fold the oldest"
        ),
    ],
)
def test_rewriter_max_drops_folding(script: str, expected: list[int | None]) -> None:
    assert run(script, max_drops=2) == expected


def test_rewriter_max_drops_real_limit() -> None:
    """MAX_DROPS + 1 withheld odd inputs: the oldest folds; later outputs stay gap-free."""
    drops = [2 * i + 1 for i in range(SeqRewriter.MAX_DROPS + 1)]
    script = "0 " + " ".join(f"d{n}" for n in drops) + " 2 1 4 " + str(drops[-1] + 1)
    assert run(script) == [0, 1, None, 2, len(drops)]


def test_unwrap_then_rewrite() -> None:
    """Wire numbers across a wrap, one withheld, give a gap-free consumer sequence."""
    unwrapper, rewriter = SeqUnwrapper(), SeqRewriter(first_out=500)
    outputs: list[int | None] = []
    for seq in (65533, 65534, 65535, 0, 1):
        ext = unwrapper.unwrap(seq)
        if seq == 65535:
            rewriter.drop(ext)
        else:
            outputs.append(rewriter.rewrite(ext))
    assert outputs == [500, 501, 502, 503]
