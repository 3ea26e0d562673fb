"""augret.evaluate.compare: paired randomisation and bootstrap tests, per-metric and per-row."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from augret.errors import ConfigError
from augret.evaluate import evaluate
from augret.evaluate.compare import (
    compare_results,
    compare_tables,
    paired_bootstrap_test,
    paired_randomization_test,
    paired_test,
)


def _exact_randomization_p(a, b):
    d = np.asarray(b) - np.asarray(a)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=d.size)))
    stats = np.abs(signs @ d)
    return float((stats >= abs(d.sum()) - 1e-12).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_randomization_matches_exact_enumeration(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(12), rng.random(12) + 0.1 * seed
    exact = _exact_randomization_p(a, b)
    approx = paired_randomization_test(a, b, n_samples=50_000, seed=seed)
    assert approx == pytest.approx(exact, abs=0.01)


def test_randomization_with_ties_and_odd_lengths():
    # hit@k-like scores: differences in {-1, 0, 1}; 9 and 17 nonzero (not multiples of 8)
    for n in (9, 17):
        a, b = np.zeros(n + 5), np.zeros(n + 5)
        a[:2] = 1  # A wins twice
        b[2:n] = 1  # B wins n - 2 times; the last 5 queries tie
        keep = a != b
        exact = _exact_randomization_p(a[keep], b[keep])
        assert paired_randomization_test(a, b, n_samples=40_000) == pytest.approx(exact, abs=0.01)


def test_identical_systems_and_determinism():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    assert paired_randomization_test(a, a) == 1.0
    assert paired_bootstrap_test(a, a) == 1.0
    b = a + rng.normal(0, 0.05, 500)
    assert paired_randomization_test(a, b, seed=7) == paired_randomization_test(a, b, seed=7)
    assert paired_bootstrap_test(a, b, seed=7) == paired_bootstrap_test(a, b, seed=7)


def test_clear_difference_is_significant_and_tests_agree():
    rng = np.random.default_rng(1)
    a = (rng.random(2000) < 0.4).astype(float)
    b = np.maximum(a, (rng.random(2000) < 0.1).astype(float))  # B fixes some of A's misses
    p_rand = paired_test(a, b, test="randomization", n_samples=2000)
    p_boot = paired_test(a, b, test="bootstrap", n_samples=2000)
    assert p_rand == pytest.approx(1 / 2001) and p_boot == pytest.approx(1 / 2001)
    noise_a, noise_b = rng.random(300), rng.random(300)
    p1 = paired_test(noise_a, noise_b, test="randomization")
    p2 = paired_test(noise_a, noise_b, test="bootstrap")
    assert p1 > 0.01 and abs(p1 - p2) < 0.05


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown test"):
        paired_test([1.0], [0.0], test="t-test")
    with pytest.raises(ConfigError, match="n_samples"):
        paired_randomization_test([1.0], [0.0], n_samples=0)
    with pytest.raises(ConfigError, match="one length"):
        paired_bootstrap_test([1.0, 2.0], [0.0])


def test_fast_for_20k_queries():
    rng = np.random.default_rng(0)
    a, b = rng.random(20_000), rng.random(20_000)
    start = time.perf_counter()
    paired_randomization_test(a, b)  # 10,000 samples
    assert time.perf_counter() - start < 5.0


QRELS = {f"q{i}": {f"d{i}": 1} for i in range(200)}
RUN_A = {f"q{i}": {f"d{i}": 1.0 if i % 2 else 0.0, "x": 0.5} for i in range(200)}
RUN_B = {f"q{i}": {f"d{i}": 1.0, "x": 0.5} for i in range(200)}


def test_compare_results():
    a = evaluate(QRELS, RUN_A, "hit@1,hit@5", per_query=True)
    b = evaluate(QRELS, RUN_B, "hit@1,hit@5", per_query=True)
    rows = compare_results(a, b, n_samples=1000)
    assert [r.metric for r in rows] == ["hit@1", "hit@5"]
    assert rows[0].a == 0.5 and rows[0].b == 1.0 and rows[0].delta == 0.5
    assert rows[0].p_value == pytest.approx(1 / 1001)
    assert rows[1].delta == 0.0 and rows[1].p_value == 1.0
    assert rows[0].to_dict() == {"metric": "hit@1", "a": 0.5, "b": 1.0, "delta": 0.5,
                                 "p_value": rows[0].p_value, "num_queries": 200,
                                 "test": "randomization"}
    with pytest.raises(ConfigError, match="per_query"):
        compare_results(evaluate(QRELS, RUN_A, "hit@1"), b)
    other = evaluate({"z": {"d": 1}}, RUN_B, "hit@1", per_query=True)
    with pytest.raises(ConfigError, match="different queries"):
        compare_results(a, other)


def test_compare_tables_rows_in_uniir_order():
    a = evaluate(QRELS, RUN_A, "hit@5,hit@10", per_query=True)
    b = evaluate(QRELS, RUN_B, "hit@5,hit@10", per_query=True)
    keys = [("fashioniq_task7", "union"), ("cirr_task7", "local"), ("visualnews_task0", "union"),
            ("visualnews_task0", "local")]
    rows = compare_tables({k: a for k in keys}, {k: b for k in keys[:3]}, n_samples=100)
    assert [(r.task, r.pool, r.metric) for r in rows] == [
        ("visualnews_task0", "union", "hit@5"),
        ("fashioniq_task7", "union", "hit@10"),
        ("cirr_task7", "local", "hit@5"),
    ]
