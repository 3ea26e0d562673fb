"""The index backends: which code builds, opens and searches each kind of index directory.

Every backend is a peer behind the same three calls of :mod:`augret.index`:
:func:`~augret.index.build_indexes` picks the backend of its build config
(:func:`backend_for`), :func:`load_index` the backend of an index directory's ``meta.json``
(:func:`backend_of`), and :func:`~augret.index.search_to_run_dir` opens the queries the
backend searches (:attr:`IndexBackend.queries`) and searches its loaded indexes.

==========  =======================================  ======================  ============
backend     kinds (``meta.json``)                    build config            queries
==========  =======================================  ======================  ============
``faiss``   ``flat``, ``ivf``, ``hnsw``, ``ivfpq``,  :class:`IndexConfig`    embedded
            ``pq``
``flat16``  ``flat16``                               :class:`IndexConfig`    embedded
``bm25``    ``bm25``                                 :class:`BM25Config`     texts
``milvus``  ``flat``, ``hnsw``, ``ivf``              :class:`MilvusConfig`   embedded or
                                                                             texts
==========  =======================================  ======================  ============

A new backend (a vector database, another exact kind) is one more :class:`IndexBackend` in
:data:`BACKENDS`. Its index directories record ``"backend": "<name>"`` in ``meta.json``; a
directory without it belongs to the first registered backend that has its ``kind``. When
it shares a build config class with another backend, that config names it in a ``backend``
field, or its ``kind`` is one only this backend builds (``IndexConfig(kind="flat16")``). A
backend that keeps several pools in one store (Milvus: one collection, a filter per pool) also
gives ``build_pools``, which builds them all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augret.errors import ConfigError, DataFormatError
from augret.formats.indexes import read_meta
from augret.index import bm25, dense, flat16, milvus, milvus_build
from augret.index.config import (
    DENSE_KINDS,
    FLAT16_KINDS,
    MILVUS_KINDS,
    BM25Config,
    IndexConfig,
    MilvusConfig,
)
from augret.index.memory import MemoryNeeds
from augret.index.pools import embedded_pools
from augret.index.queries import EmbeddedQueries, QuerySource, TextQueries

__all__ = ["BACKENDS", "IndexBackend", "backend_for", "backend_of", "load_index"]


@dataclass(frozen=True)
class IndexBackend:
    """One way to index, open and search.

    Attributes:
        name: The backend's name (``meta.json``'s ``backend``, a config's ``backend``).
        kinds: The ``meta.json`` kinds it writes and opens.
        config: Its build config class.
        pools: ``(source, *, local, union) -> pool names``: the pools a source directory
            offers (raises :class:`~augret.errors.DataNotFoundError` when none).
        build: ``(source, out_dir, *, pool, cfg, force, progress, **options) -> index``:
            build one pool's index directory.
        options: The build options it takes beyond those.
        load: ``(path, **options) -> index``: open one of its index directories; the
            index has ``meta``, ``ids`` and ``search(queries, k, ...)``. Options of
            other backends are ignored.
        queries: ``(queries_path, *, field, index_path) -> QuerySource``: the queries its
            indexes search.
        memory: ``(meta, path) -> MemoryNeeds``: what searching one of its indexes holds
            (``augret index info``); ``None``: its payload's size on disk.
        build_pools: ``(source, targets, *, root, cfg, force, progress, **options) ->
            {pool: index}``: build the index directories of several pools at once
            (``targets``: pool -> directory; ``root``: the directory they share); ``None``:
            :attr:`build` runs once per pool.
    """

    name: str
    kinds: tuple[str, ...]
    config: type
    pools: Callable[..., list[str]]
    build: Callable[..., Any]
    options: tuple[str, ...]
    load: Callable[..., Any]
    queries: Callable[..., QuerySource]
    memory: Callable[[dict[str, Any], Path], MemoryNeeds] | None = None
    build_pools: Callable[..., dict[str, Any]] | None = None


def _embedded_queries(path: str | Path, *, field: str, index_path: str | Path
                      ) -> QuerySource:
    return EmbeddedQueries(path)


def _text_queries(path: str | Path, *, field: str, index_path: str | Path) -> QuerySource:
    return TextQueries(path, field=field, index_path=index_path)


#: The backends by name, in the order :func:`backend_of` tries them.
BACKENDS: dict[str, IndexBackend] = {
    "faiss": IndexBackend(
        name="faiss", kinds=DENSE_KINDS, config=IndexConfig, pools=embedded_pools,
        build=dense.build_pool_index, options=("modalities", "data_dir"),
        load=dense.DenseIndex.load, queries=_embedded_queries, memory=dense.memory_needs),
    "flat16": IndexBackend(
        name="flat16", kinds=FLAT16_KINDS, config=IndexConfig, pools=embedded_pools,
        build=flat16.build_pool_index, options=("modalities", "data_dir"),
        load=flat16.Flat16Index.load, queries=_embedded_queries, memory=flat16.memory_needs),
    "bm25": IndexBackend(
        name="bm25", kinds=("bm25",), config=BM25Config, pools=bm25.text_pools,
        build=bm25.build_bm25_index, options=(), load=bm25.BM25Index.load,
        queries=_text_queries),
    "milvus": IndexBackend(
        name="milvus", kinds=MILVUS_KINDS, config=MilvusConfig, pools=embedded_pools,
        build=milvus_build.build_milvus_pool, options=("modalities", "data_dir"),
        load=milvus.MilvusIndex.load, queries=milvus.milvus_queries,
        build_pools=milvus_build.build_milvus_indexes),
}


def backend_for(cfg: Any) -> IndexBackend:
    """The backend a build config builds with: the one its ``backend`` field names, else the
    one whose config class it is (of several, the one that builds its ``kind``).

    Raises:
        ConfigError: No such backend, or no backend takes this config.
    """
    name = getattr(cfg, "backend", None)
    if name is not None:
        if name not in BACKENDS:
            raise ConfigError(f"unknown index backend {name!r}; known: {sorted(BACKENDS)}")
        return BACKENDS[name]
    takers = [b for b in BACKENDS.values() if isinstance(cfg, b.config)]
    kind = getattr(cfg, "kind", None)
    for backend in takers:
        if kind in backend.kinds:
            return backend
    if takers:
        return takers[0]
    raise ConfigError(f"no index backend is built from a {type(cfg).__name__}")


def backend_of(meta: dict[str, Any], *, path: str | Path | None = None) -> IndexBackend:
    """The backend of an index directory, from its ``meta.json``.

    Raises:
        DataFormatError: An unknown backend or kind.
    """
    name = meta.get("backend")
    if name is not None:
        if name not in BACKENDS:
            raise DataFormatError(f"index backend {name!r} unknown here; known: "
                                  f"{sorted(BACKENDS)}", path=path)
        return BACKENDS[name]
    kind = meta.get("kind")
    for backend in BACKENDS.values():
        if kind in backend.kinds:
            return backend
    raise DataFormatError(f"index kind {kind!r} unknown here", path=path)


def load_index(path: str | Path, **options: Any) -> Any:
    """Open an index directory of any backend.

    Args:
        path: The index directory.
        **options: Passed to the backend's loader (e.g. ``gpu="off"``, ``nprobe=64`` for
            FAISS; ``device="cuda"``, ``block_mb=512`` for flat16; ``mmap=True`` for BM25;
            ``timeout=10`` for Milvus); options of other backends are ignored.

    Returns:
        The backend's index (:class:`~augret.index.dense.DenseIndex`,
        :class:`~augret.index.flat16.Flat16Index`, :class:`~augret.index.bm25.BM25Index`,
        :class:`~augret.index.milvus.MilvusIndex`): ``meta``, ``ids`` and
        ``search(queries, k, ...)`` returning a :class:`~augret.index.search.SearchResult`.

    Raises:
        DataNotFoundError: No index there.
        DataFormatError: An unknown backend or kind, or files that disagree.
    """
    return backend_of(read_meta(path), path=path).load(path, **options)
