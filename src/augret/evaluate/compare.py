"""Comparing two systems: per-metric (or per-table-row) deltas with paired significance tests.

Both tests work on per-query score differences ``d = b - a`` and are two-sided:

* **randomisation** (permutation, sign-flip): under H0 the sign of each ``d_i`` is arbitrary;
  ``p = (1 + #{|Σ s_i d_i| ≥ |Σ d_i|}) / (1 + n_samples)`` over random sign vectors ``s``.
  Queries with ``d_i = 0`` do not change the statistic and are dropped first, which makes
  hit@k comparisons (mostly ties) cheap.
* **bootstrap** (paired, shift method): resample queries with replacement;
  ``p = (1 + #{|mean(d*) - mean(d)| ≥ |mean(d)|}) / (1 + n_samples)``.

Both are vectorised in chunks of random matrices and seeded, so p-values are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from augret.data.ids import MBEIR_TEST_TASKS, eval_task
from augret.errors import ConfigError
from augret.evaluate.metrics import EvalResult

__all__ = [
    "TESTS",
    "Comparison",
    "compare_results",
    "compare_tables",
    "paired_bootstrap_test",
    "paired_randomization_test",
    "paired_test",
]

TESTS = ("randomization", "bootstrap")
_CHUNK_CELLS = 1 << 22  # random matrix cells per chunk (~32 MB as float64)


@dataclass(frozen=True)
class Comparison:
    """One compared metric (of one table row, when ``task`` is set).

    Attributes:
        metric: e.g. ``"hit@5"``.
        a: System A's mean.
        b: System B's mean.
        delta: ``b - a``.
        p_value: Two-sided p-value of the paired test.
        num_queries: Queries compared.
        test: ``"randomization"`` or ``"bootstrap"``.
        task: M-BEIR task name for table rows, else ``None``.
        pool: ``"local"`` or ``"union"`` for table rows, else ``None``.
    """

    metric: str
    a: float
    b: float
    delta: float
    p_value: float
    num_queries: int
    test: str
    task: str | None = None
    pool: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``task``/``pool`` omitted when unset)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(f"paired scores must be 1-D and of one length, got {a.shape} and "
                          f"{b.shape}")
    return b - a


def _check(n_samples: int) -> None:
    if n_samples < 1:
        raise ConfigError(f"n_samples must be a positive integer, got {n_samples}")


def paired_randomization_test(a: np.ndarray, b: np.ndarray, *, n_samples: int = 10_000,
                              seed: int = 0) -> float:
    """Two-sided paired randomisation (sign-flip permutation) test on per-query scores.

    Args:
        a: System A's per-query scores.
        b: System B's, aligned with ``a``.
        n_samples: Random sign vectors to draw.
        seed: Seed of the generator (same inputs and seed give the same p-value).

    Returns:
        The p-value, in ``(0, 1]``.
    """
    _check(n_samples)
    d = _diffs(a, b)
    d = d[d != 0]
    observed = abs(d.sum())
    if d.size == 0:
        return 1.0
    tol = 1e-9 * (1.0 + observed)
    total = d.sum()
    # One random byte flips 8 queries: table[j, v] = sum of d[8j + bit] over v's set bits,
    # so the flipped sum of a sample is a gather-and-add over n/8 bytes.
    nbytes = -(-d.size // 8)
    groups = np.zeros(nbytes * 8)
    groups[: d.size] = d
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    table = (groups.reshape(nbytes, 8) @ bits.T).ravel()
    offsets = np.arange(nbytes, dtype=np.intp) * 256
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // nbytes)
    count = 0
    for start in range(0, n_samples, chunk):
        m = min(chunk, n_samples - start)
        draws = rng.integers(0, 256, size=(m, nbytes), dtype=np.uint8)
        flipped = table[draws.astype(np.intp) + offsets].sum(axis=1)
        stats = np.abs(total - 2.0 * flipped)
        count += int((stats >= observed - tol).sum())
    return (count + 1) / (n_samples + 1)


def paired_bootstrap_test(a: np.ndarray, b: np.ndarray, *, n_samples: int = 10_000,
                          seed: int = 0) -> float:
    """Two-sided paired bootstrap test (shift method) on per-query scores.

    Args:
        a: System A's per-query scores.
        b: System B's, aligned with ``a``.
        n_samples: Bootstrap resamples.
        seed: Seed of the generator.

    Returns:
        The p-value, in ``(0, 1]``.
    """
    _check(n_samples)
    d = _diffs(a, b)
    if d.size == 0 or not d.any():
        return 1.0
    mean = d.mean()
    shifted = d - mean
    tol = 1e-9 * (1.0 + abs(mean))
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // d.size)
    count = 0
    for start in range(0, n_samples, chunk):
        m = min(chunk, n_samples - start)
        idx = rng.integers(0, d.size, size=(m, d.size), dtype=np.int32)
        stats = np.abs(shifted[idx].mean(axis=1))
        count += int((stats >= abs(mean) - tol).sum())
    return (count + 1) / (n_samples + 1)


def paired_test(a: np.ndarray, b: np.ndarray, *, test: str = "randomization",
                n_samples: int = 10_000, seed: int = 0) -> float:
    """Dispatch to :func:`paired_randomization_test` or :func:`paired_bootstrap_test`."""
    if test == "randomization":
        return paired_randomization_test(a, b, n_samples=n_samples, seed=seed)
    if test == "bootstrap":
        return paired_bootstrap_test(a, b, n_samples=n_samples, seed=seed)
    raise ConfigError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")


def compare_results(a: EvalResult, b: EvalResult, *, metrics: Iterable[str] | None = None,
                    test: str = "randomization", n_samples: int = 10_000, seed: int = 0,
                    task: str | None = None, pool: str | None = None) -> list[Comparison]:
    """Compare two results of the same qrels, metric by metric.

    Args:
        a: System A (evaluated with ``per_query=True``).
        b: System B, same qrels and metrics.
        metrics: Metrics to compare; default: all of ``a``'s.
        test: ``"randomization"`` or ``"bootstrap"``.
        n_samples: Samples of the test.
        seed: Seed of the test.
        task: Label the comparisons with this M-BEIR task name.
        pool: Label the comparisons with this pool.

    Raises:
        ConfigError: The results lack per-query scores, a metric, or cover different queries.
    """
    if a.qids != b.qids:
        raise ConfigError("the two results cover different queries; evaluate both runs "
                          "against the same qrels")
    out = []
    for m in (list(metrics) if metrics is not None else list(a.metrics)):
        if m not in a.per_query or m not in b.per_query:
            raise ConfigError(f"no per-query scores for {m!r}; evaluate with per_query=True")
        p = paired_test(a.per_query[m], b.per_query[m], test=test, n_samples=n_samples,
                        seed=seed)
        ma, mb = a.metrics[m], b.metrics[m]
        out.append(Comparison(m, ma, mb, mb - ma, p, a.num_queries, test, task, pool))
    return out


def compare_tables(a: Mapping[tuple[str, str], EvalResult],
                   b: Mapping[tuple[str, str], EvalResult], *,
                   metrics: Iterable[str] | None = None, test: str = "randomization",
                   n_samples: int = 10_000, seed: int = 0) -> list[Comparison]:
    """Compare two M-BEIR result sets row by row, ``(task name, pool)`` keys in both.

    Rows come in UniIR's order, local before union. Each row compares the task's reported
    metric (hit@5, or hit@10 for Fashion200K and FashionIQ) unless ``metrics`` is given.
    Rows present in only one set are skipped.
    """
    order = {t.name: i for i, t in enumerate(MBEIR_TEST_TASKS)}
    keys = sorted(set(a) & set(b), key=lambda k: (order.get(k[0], 99), k[1] != "local", k))
    out: list[Comparison] = []
    for name, pool in keys:
        try:
            want = list(metrics) if metrics is not None else [eval_task(name).reported_metric]
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        out.extend(compare_results(a[name, pool], b[name, pool], metrics=want, test=test,
                                   n_samples=n_samples, seed=seed, task=name, pool=pool))
    return out
