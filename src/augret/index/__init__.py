"""Indexes, search, run files and rank fusion.

* :func:`build_indexes`: the index directories of a pool, or of every local pool plus the
  union. The config picks the backend: :class:`IndexConfig` builds FAISS indexes from an
  embedding directory, streamed shard by shard (exact ``flat``, UniIR's protocol; ``ivf``,
  ``hnsw``, ``ivfpq``, ``pq`` for large custom collections, with recall against exact stored
  in ``meta.json``), or with ``kind="flat16"`` the exact flat16 index (the embedding shards
  hard-linked, searched block by block on the CPU or GPUs: :mod:`augret.index.flat16`);
  :class:`BM25Config` builds BM25 (bm25s) over an M-BEIR directory's candidate texts.
* :func:`load_index`: open an index directory of any backend; ``index.search(queries, k)``
  gives top-k ids and scores of query vectors (dense) or texts (BM25), with an optional
  modality filter.
* :func:`search_to_run_dir`: every query task against its local pool and/or the union,
  written as ``<task>_<local|union>.run`` files for :mod:`augret.evaluate`.
* :func:`fuse_runs` / :func:`fuse_run_dirs`: reciprocal rank fusion (hybrid dense + BM25)
  of runs, or of run directories.

Backends are peers in :mod:`augret.index.backends`. faiss and bm25s are imported only when
used (``pip install 'augret[index]'``); flat16 needs NumPy only on the CPU and torch for GPUs.

Example::

    from augret.index import BM25Config, build_indexes, load_index, search_to_run_dir

    build_indexes("emb/clip_sf", "idx/dense")                 # FAISS: every pool + union
    build_indexes("M-BEIR", "idx/bm25", BM25Config())         # BM25: every pool + union
    search_to_run_dir("emb/clip_sf", "idx/dense", "runs/dense")
    search_to_run_dir("M-BEIR", "idx/bm25", "runs/bm25")
    hits = load_index("idx/bm25/union").search(["a red dress"], k=10)
"""

from augret.index.backends import load_index
from augret.index.build import build_indexes
from augret.index.config import BM25Config, IndexConfig, SearchConfig
from augret.index.fusion import fuse_run_dirs, fuse_runs
from augret.index.runs import search_to_run_dir

__all__ = [
    "BM25Config",
    "IndexConfig",
    "SearchConfig",
    "build_indexes",
    "fuse_run_dirs",
    "fuse_runs",
    "load_index",
    "search_to_run_dir",
]
