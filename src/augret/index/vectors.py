"""Embedding rows as index input: several entries (or arrays) streamed as one collection.

:class:`VectorSet` reads the entries of an embedding directory (through
:mod:`augret.formats.embeddings`, the directory's owner) as float32, L2-normalised batches,
so an index can be built without ever holding the whole collection in a second copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from augret.errors import DataFormatError
from augret.formats.embeddings import EmbeddingEntry

__all__ = ["BATCH_ROWS", "VectorSet", "l2_normalize", "normalize_rows"]

BATCH_ROWS = 65_536


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` as C-contiguous float32 with unit L2 norm (zero rows stay zero)."""
    return normalize_rows(np.array(x, dtype=np.float32, order="C", copy=True))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale the rows of the float32 array ``x`` in place to unit L2 norm (zero rows stay
    zero); returns ``x``. The same arithmetic as :func:`l2_normalize`."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    x /= norms[:, None]
    return x


class VectorSet:
    """Rows of several entries (or arrays) seen as one collection, read batch by batch.

    Args:
        parts: ``(label, vectors, ids)`` triples, where ``vectors`` is an
            :class:`EmbeddingEntry` (ids then come from it; pass ``None``) or a 2-D array.
    """

    def __init__(self, parts: Sequence[tuple[str, EmbeddingEntry | np.ndarray,
                                             Sequence[str] | None]]) -> None:
        self._parts = list(parts)
        dims = set()
        for _, vec, _ in self._parts:
            dims.add(vec.dim if isinstance(vec, EmbeddingEntry) else int(np.shape(vec)[1]))
        if len(dims) > 1:
            raise DataFormatError(f"the sources have different dimensions: {sorted(dims)}")
        self.dim = dims.pop() if dims else 0

    @classmethod
    def from_entries(cls, entries: Sequence[EmbeddingEntry]) -> VectorSet:
        """A set over embedding entries, concatenated in the order given."""
        return cls([(e.key, e, None) for e in entries])

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, ids: Sequence[str], label: str = "array"
                    ) -> VectorSet:
        """A set over one in-memory array and its ids."""
        if np.ndim(vectors) != 2:
            raise DataFormatError(f"vectors must be 2-D, got shape {np.shape(vectors)}")
        if len(ids) != len(vectors):
            raise DataFormatError(f"{len(ids)} ids for {len(vectors)} vectors")
        return cls([(label, vectors, list(ids))])

    @property
    def labels(self) -> list[str]:
        """The label of each part (entry keys for entries)."""
        return [label for label, _, _ in self._parts]

    @property
    def part_rows(self) -> list[int]:
        """Rows of each part."""
        return [v.rows if isinstance(v, EmbeddingEntry) else len(v) for _, v, _ in self._parts]

    def __len__(self) -> int:
        return sum(self.part_rows)

    def describe(self) -> list[dict[str, Any]]:
        """Per part: ``entry`` (label), ``rows`` and, for entries, ``fingerprint``."""
        out = []
        for label, vec, _ in self._parts:
            item: dict[str, Any] = {"entry": label, "rows": self.part_rows[len(out)]}
            if isinstance(vec, EmbeddingEntry):
                item["fingerprint"] = vec.fingerprint
            out.append(item)
        return out

    def read_ids(self) -> list[str]:
        """All ids in row order (checked against the row counts)."""
        out: list[str] = []
        for _, vec, ids in self._parts:
            out.extend(vec.read_ids() if isinstance(vec, EmbeddingEntry) else ids or [])
        return out

    def _arrays(self) -> Iterator[np.ndarray]:
        for _, vec, _ in self._parts:
            if isinstance(vec, EmbeddingEntry):
                for shard in vec.shards:
                    yield shard.load()
            else:
                yield vec

    def iter_batches(self, batch_rows: int = BATCH_ROWS, *, normalize: bool = True
                     ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, float32 batch)`` in row order, at most ``batch_rows`` rows each.

        Args:
            batch_rows: The largest batch.
            normalize: L2-normalise each row (as UniIR does before indexing and search).
        """
        offset = 0
        for arr in self._arrays():
            for start in range(0, len(arr), batch_rows):
                chunk = arr[start: start + batch_rows]
                out = l2_normalize(chunk) if normalize else np.ascontiguousarray(
                    chunk, dtype=np.float32)
                yield offset + start, out
            offset += len(arr)

    def take(self, rows: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """The vectors of the given global row positions, as float32 (in the order given)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        offset = 0
        for arr in self._arrays():
            lo, hi = np.searchsorted(sorted_rows, [offset, offset + len(arr)])
            if hi > lo:
                local = sorted_rows[lo:hi] - offset
                out[order[lo:hi]] = np.asarray(arr[local], dtype=np.float32)
            offset += len(arr)
        return l2_normalize(out) if normalize else out
