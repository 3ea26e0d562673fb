"""Top-k search results and the candidate-modality filter shared by dense and BM25 indexes.

The filter over-fetches: it asks the index for more than k results, keeps those of the wanted
modalities, and asks again with a deeper cut-off (×4 each round) for the queries that still
have fewer than k, until k are found or the whole index was ranked. Without a filter (the
default, as UniIR) results are exactly the index's top k.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from augret.data.ids import MODALITIES
from augret.errors import ConfigError, DataFormatError
from augret.evaluate.runs import Run
from augret.index.vectors import l2_normalize
from augret.progress import track

__all__ = ["SearchResult", "Searchable", "batched_search", "modality_mask", "query_matrix",
           "ranked_search", "search"]

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
_MAX_CELLS = 1 << 24  # queries × depth per over-fetching call (~200 MB of results)


@dataclass
class SearchResult:
    """Top-k results of a batch of queries, best first.

    Attributes:
        ids: ``(n_queries, k)`` candidate ids (``""`` where fewer than k were found).
        scores: ``(n_queries, k)`` float32 scores (``-inf`` where padded).
        rows: ``(n_queries, k)`` index row positions (``-1`` where padded).
    """

    ids: np.ndarray
    scores: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def to_run(self, qids: Sequence[str], *, task_ids: Mapping[str, int] | int | None = None,
               tag: str | None = None) -> Run:
        """The results as an :class:`augret.evaluate.Run` (ids stay strings).

        Args:
            qids: One query id per result row.
            task_ids: UniIR's task id per query, or one for all.
            tag: The run tag.
        """
        if len(qids) != len(self):
            raise ConfigError(f"{len(qids)} qids for {len(self)} result rows")
        real = self.rows >= 0
        _, first, inverse = np.unique(self.rows[real], return_index=True, return_inverse=True)
        vocab = [str(x) for x in self.ids[real][first].tolist()]
        docs = np.full(self.rows.shape, -1, dtype=np.int64)
        docs[real] = inverse.ravel()
        scores = np.where(real, self.scores.astype(np.float64), np.nan)
        if isinstance(task_ids, int):
            task_ids = dict.fromkeys(qids, task_ids)
        return Run(qids, docs, scores, vocab, task_ids=task_ids, tag=tag)


class Searchable(Protocol):
    """What :func:`search` needs: a dense or BM25 index."""

    def search(self, queries: Any, k: int, *, batch_size: int = ...,
               modalities: str | Iterable[str] | None = ...) -> SearchResult: ...


def search(index: Searchable, queries: Any, k: int, *, batch_size: int = 1024,
           modalities: str | Iterable[str] | None = None) -> SearchResult:
    """Top-k search of ``queries`` in ``index``.

    Args:
        index: A :class:`~augret.index.dense.DenseIndex` (``queries``: a ``(n, dim)`` array,
            L2-normalised here) or a :class:`~augret.index.bm25.BM25Index` (``queries``: texts).
        queries: The query vectors or texts.
        k: Results per query.
        batch_size: Queries per index call.
        modalities: Keep only candidates of these modalities (``"image"``, ``"text"``,
            ``"image,text"``); ``None`` (default, as UniIR) does not filter.

    Returns:
        ids and scores, best first.
    """
    return index.search(queries, k, batch_size=batch_size, modalities=modalities)


def query_matrix(queries: Any, dim: int, k: int, *, where: str = "an index") -> np.ndarray:
    """``queries`` as an ``(n, dim)`` array (one vector becomes one row), checked for a search
    of ``k`` results.

    Args:
        queries: Query vectors.
        dim: The index's dimension.
        k: Results per query.
        where: The index, as the dimension error names it.

    Raises:
        ConfigError: ``k`` < 1.
        DataFormatError: The queries' dimension is not ``dim``.
    """
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or (q.shape[0] and q.shape[1] != dim):
        raise DataFormatError(f"queries of shape {q.shape} for {where} of dimension {dim}")
    if k < 1:
        raise ConfigError(f"k must be a positive integer, got {k}")
    return q


def batched_search(queries: np.ndarray, k: int, ids: np.ndarray,
                   search_batch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], *,
                   batch_size: int, normalize: bool, progress: bool) -> SearchResult:
    """Search ``queries`` (checked by :func:`query_matrix`) batch by batch.

    Args:
        queries: ``(n, dim)`` query vectors.
        k: Results per query.
        ids: The index's ids, by row.
        search_batch: ``float32 (m, dim) -> (scores, rows)``, each ``(m, k)``, rows ``-1``
            where empty.
        batch_size: Queries per call of ``search_batch``.
        normalize: L2-normalise each batch first (as UniIR).
        progress: Show a progress bar.
    """
    n = len(queries)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    rows = np.full((n, k), -1, dtype=np.int64)
    if n and len(ids):
        with track("searching", n, enabled=progress) as advance:
            for start in range(0, n, batch_size):
                xb = queries[start: start + batch_size]
                xb = l2_normalize(xb) if normalize else np.ascontiguousarray(xb, np.float32)
                s, r = search_batch(xb)
                scores[start: start + len(xb)] = s
                rows[start: start + len(xb)] = r
                advance(len(xb))
    found = np.where(rows >= 0, ids[np.clip(rows, 0, None)] if len(ids) else "", "")
    return SearchResult(ids=found, scores=scores, rows=rows)


def modality_mask(codes: np.ndarray | None, modalities: str | Iterable[str] | None
                  ) -> np.ndarray | None:
    """Rows whose modality is allowed (``None`` when there is no filter).

    Args:
        codes: Per-row int8 codes into :data:`augret.data.ids.MODALITIES`.
        modalities: Allowed modality names.

    Raises:
        ConfigError: A filter is asked for but the index stores no modalities, or a name is
            not a modality.
    """
    if modalities is None:
        return None
    names = [modalities] if isinstance(modalities, str) else list(modalities)
    bad = [m for m in names if m not in MODALITIES]
    if bad:
        raise ConfigError(f"unknown modality {bad[0]!r}; use one of {list(MODALITIES)}")
    if codes is None:
        raise ConfigError("this index stores no candidate modalities; rebuild it with "
                          "modalities to filter by modality")
    return np.isin(codes, [MODALITIES.index(m) for m in names])


def _pad(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n, width = rows.shape
    if width >= k:
        return scores[:, :k], rows[:, :k]
    s = np.full((n, k), -np.inf, dtype=np.float32)
    r = np.full((n, k), -1, dtype=np.int64)
    s[:, :width], r[:, :width] = scores, rows
    return s, r


def ranked_search(search_fn: SearchFn, n_queries: int, k: int, ntotal: int,
                  allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ``(scores, rows)`` of ``n_queries`` queries, with an optional row filter.

    Args:
        search_fn: ``(query positions, depth) -> (scores, rows)``, rows ``-1`` where empty,
            each row sorted best first.
        n_queries: Number of queries.
        k: Results wanted per query.
        ntotal: Rows in the index.
        allowed: Boolean mask over index rows, or ``None``.

    Returns:
        float32 scores (``-inf`` padding) and int64 rows (``-1`` padding), ``(n_queries, k)``.
    """
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    rows = np.full((n_queries, k), -1, dtype=np.int64)
    if n_queries == 0 or ntotal == 0:
        return scores, rows
    everyone = np.arange(n_queries)
    if allowed is None:  # UniIR's protocol: the index's own top k
        s, r = search_fn(everyone, min(k, ntotal))
        r = np.asarray(r, dtype=np.int64)
        s = np.where(r >= 0, np.asarray(s, dtype=np.float32), -np.inf).astype(np.float32)
        return _pad(s, r, k)
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        return scores, rows
    target = min(k, n_allowed)
    fetch = min(ntotal, max(2 * k, math.ceil(1.5 * k * ntotal / n_allowed)))
    pending = everyone
    while pending.size:
        chunk = max(1, _MAX_CELLS // fetch)
        unfinished = []
        for start in range(0, pending.size, chunk):
            part = pending[start: start + chunk]
            s, r = search_fn(part, fetch)
            r = np.asarray(r, dtype=np.int64)
            keep = (r >= 0) & allowed[np.clip(r, 0, None)]
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            kr = np.take_along_axis(r, order, axis=1)
            ks = np.take_along_axis(np.asarray(s, dtype=np.float32), order, axis=1)
            kk = np.take_along_axis(keep, order, axis=1)
            kr[~kk], ks[~kk] = -1, -np.inf
            ks, kr = _pad(ks, kr, k)
            rows[part], scores[part] = kr, ks
            # deeper only helps where the index filled every slot (an IVF or HNSW index may
            # run out of reachable candidates before the end of the collection)
            short = (keep.sum(axis=1) < target) & (r >= 0).all(axis=1)
            unfinished.append(part[short])
        if fetch >= ntotal:
            break
        pending = np.concatenate(unfinished) if unfinished else everyone[:0]
        fetch = min(ntotal, fetch * 4)
    return scores, rows
