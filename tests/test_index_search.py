"""The over-fetching modality filter and SearchResult → Run, with a fake index."""

from __future__ import annotations

import numpy as np
import pytest

from augret.errors import ConfigError
from augret.index.search import SearchResult, modality_mask, ranked_search


class FakeIndex:
    """Rows 0..n-1 scored n-1..0 for every query; ``reach`` caps the results (like IVF)."""

    def __init__(self, n: int, reach: int | None = None) -> None:
        self.n, self.reach, self.depths = n, reach or n, []

    def __call__(self, pos: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        self.depths.append(depth)
        rows = np.tile(np.arange(depth), (len(pos), 1))
        rows[:, self.reach:] = -1
        scores = np.where(rows >= 0, self.n - 1 - rows, -np.inf).astype(np.float32)
        return scores, rows


def test_no_filter_is_one_call_of_depth_k():
    fake = FakeIndex(100)
    s, r = ranked_search(fake, 3, 5, 100)
    assert fake.depths == [5]
    assert (r == np.arange(5)).all() and (s[0] == [99, 98, 97, 96, 95]).all()
    s, r = ranked_search(FakeIndex(3), 2, 5, 3)  # fewer rows than k: padded
    assert (r[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all()


def test_filter_over_fetches_until_k_are_found():
    n = 1000
    allowed = np.zeros(n, bool)
    allowed[600:] = True  # 40% of the rows, all ranked below the others
    fake = FakeIndex(n)
    s, r = ranked_search(fake, 2, 4, n, allowed)
    assert (r == [600, 601, 602, 603]).all()
    assert (s[0] == [399, 398, 397, 396]).all()
    assert fake.depths == [15, 60, 240, 960]  # 1.5·k·n/allowed, then ×4 per round


def test_filter_pads_when_fewer_exist_and_stops_at_the_end():
    n = 50
    allowed = np.zeros(n, bool)
    allowed[[3, 7]] = True
    fake = FakeIndex(n)
    _, r = ranked_search(fake, 1, 5, n, allowed)
    assert list(r[0]) == [3, 7, -1, -1, -1]
    assert fake.depths[-1] <= n


def test_filter_stops_when_the_index_runs_dry():
    n = 10_000
    allowed = np.zeros(n, bool)
    allowed[9000:] = True
    fake = FakeIndex(n, reach=100)  # an IVF probing few lists: never reaches row 9000
    _, r = ranked_search(fake, 1, 10, n, allowed)
    assert (r == -1).all()
    assert len(fake.depths) == 1  # no deeper rounds once the index returned fewer rows


def test_modality_mask():
    codes = np.array([0, 1, 2, 1], dtype=np.int8)  # text, image, image,text, image
    assert modality_mask(codes, None) is None
    assert list(modality_mask(codes, "image")) == [False, True, False, True]
    assert list(modality_mask(codes, ["text", "image,text"])) == [True, False, True, False]
    with pytest.raises(ConfigError):
        modality_mask(None, "image")


def test_result_to_run_keeps_string_ids_and_order():
    res = SearchResult(ids=np.array([["b", "a", ""], ["c", "", ""]]),
                       scores=np.array([[0.9, 0.5, -np.inf], [0.7, -np.inf, -np.inf]],
                                       dtype=np.float32),
                       rows=np.array([[1, 0, -1], [2, -1, -1]]))
    run = res.to_run(["q1", "q2"], task_ids=3, tag="t")
    assert run.ranking("q1") == [("b", pytest.approx(0.9)), ("a", pytest.approx(0.5))]
    assert run.ranking("q2") == [("c", pytest.approx(0.7))]
    assert run.task_ids == {"q1": 3, "q2": 3} and run.tag == "t"
    with pytest.raises(ConfigError):
        res.to_run(["q1"])
