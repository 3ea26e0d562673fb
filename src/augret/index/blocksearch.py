"""Exact inner-product top-k over blocks of stored rows: the CPU engine of ``flat16``.

The candidates are 2-D float16 arrays (memory-mapped shards) read as one sequence of rows
(:class:`RowBlocks`). A search walks them block by block: a block is converted to float32
and L2-normalised (the arithmetic the FAISS flat index applies at build time), scored against
a batch of float32 queries with one matrix product, and its best rows are merged into
per-query top-k buffers. Memory: one block and its scores, plus the buffers; never a float32
copy of the collection.

Ties (both engines, this one and :mod:`augret.index.torchsearch`): results are ordered by
score, highest first, and equal scores by row, lowest first, so the row order of the index
(``ids.txt``) decides. This is also the rule for which of several rows tied at the k-th
place are kept. FAISS orders equal scores its own way, so results equal ``IndexFlatIP``'s up
to the order of tied rows.

The NumPy engine keeps, per query, the k-th best score found so far; a row of a later block
can only enter with a strictly higher score (a tie loses to the earlier row), so after the
first blocks only a few rows per block are candidates and the merge stays small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from augret.index.vectors import normalize_rows

__all__ = ["CpuEngine", "RowBlocks", "block_rows", "merge_topk", "topk_blocks"]

#: Bytes per (query, row) cell of a block's work: float32 scores, the partitioned copy of
#: the first block's scores, and boolean masks.
CELL_BYTES = 12


def block_rows(block_bytes: int, dim: int, queries: int, *, cell_bytes: int = CELL_BYTES
               ) -> int:
    """Rows per block so that a block's float32 rows and its work per query fit the budget.

    Args:
        block_bytes: The budget of one block.
        dim: The vector dimension.
        queries: Queries scored against a block at once.
        cell_bytes: Work bytes per (query, row) cell.
    """
    return max(1, int(block_bytes) // (4 * dim + cell_bytes * max(1, queries)))


class RowBlocks:
    """Several 2-D arrays (e.g. memory-mapped shards) read as one sequence of rows.

    Args:
        arrays: The arrays, in row order; each ``(rows, dim)``.
        dim: The dimension (needed when there are no rows).
    """

    def __init__(self, arrays: Sequence[np.ndarray], dim: int) -> None:
        self.arrays = [a for a in arrays if len(a)]
        self.dim = int(dim)
        self.starts = np.cumsum([0, *(len(a) for a in self.arrays)]).astype(np.int64)
        self.rows = int(self.starts[-1])

    def __len__(self) -> int:
        return self.rows

    def read(self, out: np.ndarray, start: int) -> np.ndarray:
        """Fill ``out`` (``(m, dim)``, any float dtype) with rows ``[start, start + m)``."""
        done, m = 0, len(out)
        part = int(np.searchsorted(self.starts, start, side="right")) - 1
        while done < m:
            arr = self.arrays[part]
            a = start + done - int(self.starts[part])
            b = min(len(arr), a + m - done)
            out[done: done + b - a] = arr[a:b]
            done += b - a
            part += 1
        return out

    def iter(self, rows: int, *, lo: int = 0, hi: int | None = None,
             dtype: type = np.float32) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block)`` over rows ``[lo, hi)``, at most ``rows`` per block.

        Every block is a view of one reused buffer of ``dtype``: use it before taking the
        next one.
        """
        hi = self.rows if hi is None else hi
        if hi <= lo:
            return
        buf = np.empty((min(rows, hi - lo), self.dim), dtype)
        for start in range(lo, hi, rows):
            m = min(rows, hi - start)
            yield start, self.read(buf[:m], start)


def _kth_largest(s: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest value of each row of ``s`` (which has more than k columns)."""
    n = s.shape[1]
    return np.partition(s, n - k, axis=1)[:, n - k]


def _block_candidates(s: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """Which cells of a block's scores may enter the top k: above the running k-th best, and
    among the block's own top k (equal scores: lower rows first)."""
    mask = s > kth[:, None]
    over = np.flatnonzero(np.count_nonzero(mask, axis=1) > k)
    if over.size:
        every = over.size == len(s)  # e.g. the first block: no copies
        sub, sub_mask = (s, mask) if every else (s[over], mask[over])
        bound = _kth_largest(sub, k)
        sub_mask &= sub >= bound[:, None]
        tied = np.flatnonzero(np.count_nonzero(sub_mask, axis=1) > k)  # ties at the k-th
        if tied.size:
            t, b = sub[tied], bound[tied, None]
            eq = t == b
            room = k - np.count_nonzero(t > b, axis=1)[:, None]
            sub_mask[tied] = (t > b) | (eq & (np.cumsum(eq, axis=1) <= room))
        if not every:
            mask[over] = sub_mask
    return mask


def _merge(best_s: np.ndarray, best_r: np.ndarray, qi: np.ndarray, s: np.ndarray,
           r: np.ndarray, k: int) -> None:
    """Merge candidates ``(query qi, score s, row r)`` into the sorted buffers in place."""
    hit = np.unique(qi)
    pos = np.searchsorted(hit, qi)
    groups = np.concatenate([np.repeat(np.arange(hit.size), k), pos])
    scores = np.concatenate([best_s[hit].ravel(), s])
    rows = np.concatenate([best_r[hit].ravel(), r])
    order = np.lexsort((rows, -scores, groups))
    counts = k + np.bincount(pos, minlength=hit.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(order.size) - starts[groups[order]]
    take = order[rank < k]
    best_s[hit] = scores[take].reshape(-1, k)
    best_r[hit] = rows[take].reshape(-1, k)


def topk_blocks(queries: np.ndarray, blocks: Iterator[tuple[int, np.ndarray]], k: int, *,
                allowed: np.ndarray | None = None, normalize: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over blocks given in increasing row order.

    Args:
        queries: ``(q, dim)`` float32 queries (normalised as wanted).
        blocks: ``(first row, float32 block)``; blocks are normalised in place.
        k: Results per query.
        allowed: Boolean mask over all rows; other rows are never returned.
        normalize: L2-normalise each block's rows first.

    Returns:
        ``(scores, rows)``, each ``(q, k)``: float32 scores (``-inf`` padding) and int64
        rows (``-1`` padding), highest score first, equal scores by lower row.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_r = np.full((len(q), k), -1, dtype=np.int64)
    if not len(q):
        return best_s, best_r
    for first, x in blocks:
        if normalize:
            normalize_rows(x)
        s = q @ x.T
        if allowed is not None:
            s[:, ~allowed[first: first + len(x)]] = -np.inf
        qi, ci = np.divmod(np.flatnonzero(_block_candidates(s, best_s[:, -1], k)), len(x))
        if qi.size:
            _merge(best_s, best_r, qi, s[qi, ci], ci.astype(np.int64) + first, k)
    return best_s, best_r


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-part ``(scores, rows)`` top-k results (e.g. one per GPU) with the tie rule.

    Padding (row ``-1``) sorts last.
    """
    s = np.concatenate([p[0] for p in parts], axis=1)
    r = np.concatenate([p[1] for p in parts], axis=1)
    key = np.where(r < 0, np.iinfo(np.int64).max, r)
    order = np.lexsort((key, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(r, order, axis=1)


class CpuEngine:
    """The NumPy engine: blocks read from the shards into one float32 buffer.

    Args:
        blocks: The stored rows.
        normalize: L2-normalise rows before scoring.
        block_bytes: The memory budget of one block (its float32 rows and score work).
    """

    device = "cpu"

    def __init__(self, blocks: RowBlocks, *, normalize: bool = True,
                 block_bytes: int = 256 << 20) -> None:
        self.blocks = blocks
        self.normalize = normalize
        self.block_bytes = block_bytes

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` of float32 queries (see :func:`topk_blocks`)."""
        rows = block_rows(self.block_bytes, self.blocks.dim, len(queries))
        return topk_blocks(queries, self.blocks.iter(rows), k, allowed=allowed,
                           normalize=self.normalize)
