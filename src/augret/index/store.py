"""Opening an index directory of any kind by its ``meta.json``.

The directory's shared files (``meta.json``, ``ids.txt``, ``modalities.npy``) belong to
:mod:`augret.formats.indexes`; each kind reads its own payload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augret.formats.indexes import read_meta

__all__ = ["load_index"]


def load_index(path: str | Path, **options: Any) -> Any:
    """Open an index directory of any kind.

    Args:
        path: The index directory.
        **options: Passed to :meth:`DenseIndex.load` or :meth:`BM25Index.load`
            (e.g. ``gpu="off"``).

    Returns:
        A :class:`~augret.index.DenseIndex` or :class:`~augret.index.BM25Index`.
    """
    meta = read_meta(path)
    if meta["kind"] == "bm25":
        from augret.index.bm25 import BM25Index

        return BM25Index.load(path, **options)
    from augret.index.dense import DenseIndex

    return DenseIndex.load(path, **options)
