"""Dense (FAISS) and lexical (BM25) indexes, search, run files and rank fusion.

* :func:`build_index` / :func:`build_pool_index`: a FAISS index from embedding entries,
  streamed shard by shard (exact ``flat``, UniIR's protocol; ``ivf``, ``hnsw``, ``ivfpq``,
  ``pq`` for large custom collections, with recall against exact stored in ``meta.json``).
* :class:`BM25Index` / :func:`build_bm25_index`: BM25 (bm25s) over candidate texts.
* :func:`search`: top-k ids and scores of query vectors (or texts), optional modality filter.
* :func:`search_to_run_dir`: every query task against its local pool and/or the union,
  written as ``<task>_<local|union>.run`` files for :mod:`augret.evaluate`.
* :func:`fuse_runs`: reciprocal rank fusion (hybrid dense + BM25).

faiss and bm25s are imported only when used (``pip install 'augret[index]'``).
"""

from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry
from augret.formats.indexes import index_dirs, read_meta
from augret.index.bm25 import BM25Index, Tokenizer, build_bm25_index
from augret.index.build import build_bm25_indexes, build_dense_indexes, build_pool_index
from augret.index.config import BM25Config, IndexConfig, SearchConfig
from augret.index.dense import DenseIndex, build_index
from augret.index.fusion import fuse_run_dirs, fuse_runs
from augret.index.pools import UNION, pool_entries
from augret.index.runs import (
    default_depth,
    search_bm25_tasks,
    search_dense_tasks,
    search_entry,
    search_to_run_dir,
    write_runs,
)
from augret.index.search import SearchResult, search
from augret.index.store import load_index
from augret.index.vectors import VectorSet

__all__ = [
    "UNION",
    "BM25Config",
    "BM25Index",
    "DenseIndex",
    "EmbeddingDir",
    "EmbeddingEntry",
    "IndexConfig",
    "SearchConfig",
    "SearchResult",
    "Tokenizer",
    "VectorSet",
    "build_bm25_index",
    "build_bm25_indexes",
    "build_dense_indexes",
    "build_index",
    "build_pool_index",
    "default_depth",
    "fuse_run_dirs",
    "fuse_runs",
    "index_dirs",
    "load_index",
    "pool_entries",
    "read_meta",
    "search",
    "search_bm25_tasks",
    "search_dense_tasks",
    "search_entry",
    "search_to_run_dir",
    "write_runs",
]
