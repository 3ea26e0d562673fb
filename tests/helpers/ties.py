"""Comparing two exact top-k results "up to ties".

Two exact searches of the same vectors may order equal (or, across BLAS kernels, nearly
equal) scores differently, and may keep different rows among those tied at the k-th place.
Everything else must agree: the score at every rank, and the rows (with their scores) whose
score is clearly above the k-th one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from augret.evaluate.runs import Run


def _check(a: Sequence[tuple[object, float]], b: Sequence[tuple[object, float]], atol: float,
           where: str) -> int:
    """Compare one query's ``(doc, score)`` lists, best first; returns the tied swaps."""
    assert len(a) == len(b), f"{where}: {len(a)} results against {len(b)}"
    sa = np.array([s for _, s in a], dtype=np.float64)
    sb = np.array([s for _, s in b], dtype=np.float64)
    assert np.allclose(sa, sb, rtol=0, atol=atol), f"{where}: scores differ: {sa} / {sb}"
    if not a:
        return 0
    floor = min(sa.min(), sb.min()) + atol  # rows within atol of the k-th score may differ
    da = {d: s for d, s in a}
    db = {d: s for d, s in b}
    above_a = {d for d, s in a if s > floor}
    above_b = {d for d, s in b if s > floor}
    assert above_a == above_b, f"{where}: rows above the k-th score differ: " \
                               f"{sorted(map(str, above_a ^ above_b))}"
    for d in above_a:
        assert abs(da[d] - db[d]) <= atol, f"{where}: {d} scored {da[d]} and {db[d]}"
    for pos, ((d1, s1), (d2, _)) in enumerate(zip(a, b, strict=True)):
        if d1 != d2 and d2 in da:  # a swap: the two must be tied
            assert abs(da[d2] - s1) <= atol, f"{where}: rank {pos + 1}: {d1} against {d2}"
    return sum(d1 != d2 for (d1, _), (d2, _) in zip(a, b, strict=True))


def assert_topk_equal_up_to_ties(scores_a: np.ndarray, rows_a: np.ndarray,
                                 scores_b: np.ndarray, rows_b: np.ndarray, *,
                                 atol: float = 1e-5) -> int:
    """Assert two ``(scores, rows)`` top-k results agree up to ties (padding: row ``-1``).

    Returns:
        The number of ranks where the rows differ (all of them among tied scores).
    """
    assert rows_a.shape == rows_b.shape
    swaps = 0
    for i in range(len(rows_a)):
        a = [(int(r), float(s)) for r, s in zip(rows_a[i], scores_a[i], strict=True) if r >= 0]
        b = [(int(r), float(s)) for r, s in zip(rows_b[i], scores_b[i], strict=True) if r >= 0]
        swaps += _check(a, b, atol, f"query {i}")
    return swaps


def assert_runs_equal_up_to_ties(a: Run, b: Run, *, atol: float = 1e-5) -> int:
    """Assert two runs hold the same queries and rankings up to ties.

    Returns:
        The number of ranks where the documents differ (all of them among tied scores).
    """
    assert a.qids == b.qids
    swaps = 0
    for qid in a.qids:
        swaps += _check(list(a.ranking(qid)), list(b.ranking(qid)), atol, qid)
    return swaps
