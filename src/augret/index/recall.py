"""Exact top-k by streaming (no full copy of the collection) and recall of approximate results."""

from __future__ import annotations

import numpy as np

from augret.index.vectors import BATCH_ROWS, VectorSet

__all__ = ["exact_topk", "recall_at_k"]


def _merge(best_s: np.ndarray, best_r: np.ndarray, s: np.ndarray, r: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    cs = np.concatenate([best_s, s], axis=1)
    cr = np.concatenate([best_r, r], axis=1)
    if cs.shape[1] > k:
        part = np.argpartition(-cs, k - 1, axis=1)[:, :k]
        cs = np.take_along_axis(cs, part, axis=1)
        cr = np.take_along_axis(cr, part, axis=1)
    return cs, cr


def exact_topk(vectors: VectorSet, queries: np.ndarray, k: int, *,
               batch_rows: int = BATCH_ROWS, normalize: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of ``queries`` over ``vectors``, one batch in memory at a time.

    Args:
        vectors: The collection (streamed).
        queries: ``(q, dim)`` float32 queries (already normalised as wanted).
        k: Results per query.
        batch_rows: Collection rows per matrix product.
        normalize: L2-normalise the collection rows (as the index does).

    Returns:
        ``(scores, rows)``, each ``(q, k)``, best first.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_r = np.full((len(q), 0), -1, dtype=np.int64)
    for offset, x in vectors.iter_batches(batch_rows, normalize=normalize):
        s = q @ x.T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s, best_r = _merge(best_s, best_r, np.take_along_axis(s, part, axis=1),
                                part.astype(np.int64) + offset, k)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_r, order, axis=1)


def recall_at_k(approx_rows: np.ndarray, exact_rows: np.ndarray, k: int) -> float:
    """Mean over queries of ``|approx top-k ∩ exact top-k| / |exact top-k|``."""
    total = 0.0
    for a, e in zip(approx_rows[:, :k].tolist(), exact_rows[:, :k].tolist(), strict=True):
        truth = {x for x in e if x >= 0}
        if truth:
            total += len(truth.intersection(a)) / len(truth)
    return total / max(1, len(approx_rows))
