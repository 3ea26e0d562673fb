"""The ``milvus`` backend's index: one pool of a Milvus collection, searched by vector or text.

This module opens and searches what :mod:`augret.index.milvus_build` writes. An index
directory of this backend holds no vectors: ``meta.json`` names the database (``uri``), the
``collection`` and the pool's ``filter`` expression, so one collection holding every pool
serves each local pool through its filter. Query vectors are scored by inner product on the
stored L2-normalised vectors (``flat`` is exact, the ranking of FAISS exact); query texts by
Milvus's BM25 function over the stored candidate texts (:meth:`MilvusIndex.lexical`).
Results are ordered by score, ties by row (the line of ``ids.txt``), so runs are
deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import MODALITIES
from augret.errors import ConfigError, DataFormatError
from augret.formats.embeddings import is_embedding_dir
from augret.formats.indexes import read_ids, read_meta
from augret.index.milvus_db import (
    FIELDS,
    FINGERPRINT_KEY,
    OWNER_KEY,
    Collection,
    Target,
    combine,
    is_lite,
    modality_filter,
)
from augret.index.queries import EmbeddedQueries, QuerySource, TextQueries
from augret.index.search import SearchResult, query_matrix
from augret.index.vectors import l2_normalize
from augret.progress import track

__all__ = ["MAX_K", "MilvusIndex", "MilvusTextIndex", "check_collection", "milvus_queries",
           "target_of"]

log = logging.getLogger(__name__)

MAX_K = 16_384  # Milvus's largest limit (top-k) per search
_TIE_MARGIN = 16  # fetched beyond k so that equal scores at the cut-off resolve by row


def target_of(meta: dict[str, Any], path: str | Path, *, timeout: float | None = None
              ) -> Target:
    """Where an index directory's collection is (a Lite path relative to the directory)."""
    uri = str(meta["uri"])
    if is_lite(uri) and not Path(uri).is_absolute():
        uri = str((Path(path) / uri).resolve())
    cfg = meta.get("config") or {}
    return Target(uri, str(meta["collection"]), str(meta.get("token_env") or "MILVUS_TOKEN"),
                  float(timeout or cfg.get("timeout") or 60.0))


def milvus_queries(path: str | Path, *, field: str, index_path: str | Path) -> QuerySource:
    """The queries a Milvus index searches: an embedding directory's query vectors (dense),
    or an M-BEIR directory's query texts (BM25 over the collection's texts)."""
    if is_embedding_dir(path):
        return EmbeddedQueries(path)
    return TextQueries(path, field=field, index_path=index_path)


def _check_modalities(meta: dict[str, Any], modalities: str | Iterable[str] | None
                      ) -> list[str] | None:
    if modalities is None:
        return None
    names = [modalities] if isinstance(modalities, str) else list(modalities)
    bad = [m for m in names if m not in MODALITIES]
    if bad:
        raise ConfigError(f"unknown modality {bad[0]!r}; use one of {list(MODALITIES)}")
    if not meta.get("modalities"):
        raise ConfigError("this index stores no candidate modalities; rebuild it with "
                          "modalities to filter by modality")
    return names


class MilvusIndex:
    """One pool of a Milvus collection.

    Build it with :func:`augret.index.milvus_build.build_milvus_indexes`; open it with
    :meth:`load`.

    Args:
        collection: The connected collection.
        meta: The directory's ``meta.json``.
        path: The index directory (``ids.txt`` is read from it when ``ids`` is not given).
        ids: The pool's ids in row order.
        nprobe: Override the stored IVF ``nprobe``.
        ef_search: Override the stored HNSW ``ef``.
    """

    def __init__(self, collection: Collection, meta: dict[str, Any], *,
                 path: str | Path | None = None, ids: Sequence[str] | None = None,
                 nprobe: int | None = None, ef_search: int | None = None) -> None:
        self.collection = collection
        self.meta = meta
        self.path = Path(path) if path is not None else None
        self._ids = np.asarray(ids, dtype=str) if ids is not None else None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        params = meta.get("params") or {}
        self.nprobe = nprobe or params.get("nprobe")
        self.ef_search = ef_search or params.get("ef_search")

    def __repr__(self) -> str:
        return (f"MilvusIndex({self.kind}, {self.ntotal} x {self.dim}, pool={self.pool!r}, "
                f"{self.collection.target})")

    def __len__(self) -> int:
        return self.ntotal

    @property
    def kind(self) -> str:
        """``flat``, ``hnsw`` or ``ivf``."""
        return str(self.meta["kind"])

    @property
    def pool(self) -> str | None:
        """The pool this index holds (a local pool name or ``union``)."""
        return self.meta.get("pool")

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self.meta["dimension"])

    @property
    def ntotal(self) -> int:
        """The number of candidates in the pool."""
        return int(self.meta["count"])

    @property
    def target(self) -> Target:
        """Where the collection is."""
        return self.collection.target

    @property
    def ids(self) -> np.ndarray:
        """The pool's ids in row order (``ids.txt``, read on first use)."""
        if self._ids is None:
            if self.path is None:
                raise ConfigError("this MilvusIndex has neither ids nor a directory")
            self._ids = read_ids(self.path)
        return self._ids

    @property
    def has_text(self) -> bool:
        """Whether the collection can be searched by text (BM25)."""
        return bool(self.meta.get("text_search"))

    # ---- files -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, nprobe: int | None = None,
             ef_search: int | None = None, timeout: float | None = None,
             **_: Any) -> MilvusIndex:
        """Open an index directory of the ``milvus`` backend and check its collection.

        Args:
            path: The index directory.
            nprobe: Override the stored IVF ``nprobe``.
            ef_search: Override the stored HNSW ``ef``.
            timeout: Seconds one call may take (default: the build's).
            **_: Options of other backends (ignored).

        Raises:
            IndexUnavailable: The database cannot be reached.
            DataNotFoundError: No such directory or collection.
            DataFormatError: The collection is half-built, was rebuilt by another build, or
                its vectors have another dimension than the index directory says.
        """
        path = Path(path)
        meta = read_meta(path)
        if meta.get("backend") != "milvus":
            raise DataFormatError("not an index directory of the milvus backend", path=path)
        collection = Collection(target_of(meta, path, timeout=timeout),
                                replicas=int((meta.get("config") or {}).get("replicas", 1)))
        check_collection(collection, meta)
        collection.load()
        return cls(collection, meta, path=path, nprobe=nprobe, ef_search=ef_search)

    # ---- search ------------------------------------------------------------------------------
    def lexical(self) -> MilvusTextIndex:
        """This pool searched by text: Milvus's BM25 function over the stored texts.

        Raises:
            ConfigError: The collection was built without text search.
        """
        if not self.has_text:
            raise ConfigError(f"{self.target} was built without text search (text_search: "
                              "false, or no pool files for the texts); lexical and hybrid "
                              "search need it")
        return MilvusTextIndex(self)

    def search(self, queries: Any, k: int, *, batch_size: int = 1024,
               modalities: str | Iterable[str] | None = None, normalize: bool = True,
               progress: bool = False, **_: Any) -> SearchResult:
        """Top-k candidates of each query: vectors by inner product, texts by BM25.

        Args:
            queries: ``(n, dim)`` query vectors, or query texts (``None`` or empty: no
                results).
            k: Results per query (at most :data:`MAX_K`).
            batch_size: Queries per Milvus request.
            modalities: Keep only candidates of these modalities (a Milvus filter).
            normalize: L2-normalise query vectors first.
            progress: Show a progress bar.
            **_: Options of other backends (e.g. BM25 ``threads``; ignored).

        Raises:
            ConfigError: ``k`` out of range, a bad modality, or texts without text search.
            DataFormatError: Query vectors of another dimension.
            IndexUnavailable: The database cannot be reached.
        """
        if isinstance(queries, (list, tuple)) and not queries:
            return SearchResult(ids=np.zeros((0, k), dtype=str),
                                scores=np.zeros((0, k), dtype=np.float32),
                                rows=np.zeros((0, k), dtype=np.int64))
        if isinstance(queries, str) or (isinstance(queries, Sequence)
                                        and all(q is None or isinstance(q, str)
                                                for q in queries)):
            return self.lexical().search(queries, k, batch_size=batch_size,
                                         modalities=modalities, progress=progress)
        q = query_matrix(queries, self.dim, k, where=str(self.target))
        q = l2_normalize(q) if normalize else np.ascontiguousarray(q, dtype=np.float32)
        return self._search(list(q), k, field=FIELDS["vector"],
                            params=self._vector_params(k), bm25=False,
                            modalities=modalities, batch_size=batch_size, progress=progress)

    def _vector_params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {"metric_type": "IP", "params": {}}
        if self.kind == "hnsw":
            params["params"]["ef"] = max(int(self.ef_search or 0), min(k + _TIE_MARGIN, MAX_K))
        if self.kind == "ivf" and self.nprobe:
            params["params"]["nprobe"] = int(self.nprobe)
        return params

    def _rows(self, hit_ids: list[str]) -> np.ndarray:
        if self._sorted is None:
            order = np.argsort(self.ids, kind="stable")
            self._sorted = (self.ids[order], order)
        keys, order = self._sorted
        found = np.asarray(hit_ids, dtype=keys.dtype if len(keys) else str)
        pos = np.searchsorted(keys, found).clip(max=max(len(keys) - 1, 0))
        if len(keys) == 0 or not np.array_equal(keys[pos], found):
            missing = next(i for i, p in zip(hit_ids, pos, strict=True)
                           if len(keys) == 0 or keys[p] != i)
            raise DataFormatError(f"{self.target} returned id {missing!r}, which is not in "
                                  f"the pool {self.pool!r} (ids.txt): the collection changed "
                                  "since this index was built")
        return order[pos].astype(np.int64)

    def _search(self, data: list[Any], k: int, *, field: str, params: dict[str, Any],
                bm25: bool, modalities: str | Iterable[str] | None, batch_size: int,
                progress: bool) -> SearchResult:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ConfigError(f"k must be an integer from 1 to {MAX_K} (Milvus's limit), "
                              f"got {k!r}")
        expr = combine(self.meta.get("filter"),
                       modality_filter(names) if (names := _check_modalities(
                           self.meta, modalities)) else None)
        fetch = min(k + _TIE_MARGIN, MAX_K)
        n = len(data)
        ids = np.full((n, k), "", dtype=object)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        rows = np.full((n, k), -1, dtype=np.int64)
        with track("Milvus search", n, enabled=progress) as advance:
            for start in range(0, n, max(1, batch_size)):
                batch = data[start: start + batch_size]
                live = [i for i, x in enumerate(batch) if not bm25 or (x and x.strip())]
                if live:
                    res = self.collection.call(
                        "search", "search", self.collection.name,
                        data=[batch[i] for i in live], anns_field=field, limit=fetch,
                        filter=expr, search_params=params, output_fields=[])
                    for i, hits in zip(live, res, strict=True):
                        self._fill(start + i, hits, k, bm25, ids, scores, rows)
                advance(len(batch))
        return SearchResult(ids=ids.astype(str), scores=scores, rows=rows)

    def _fill(self, at: int, hits: Any, k: int, bm25: bool, ids: np.ndarray,
              scores: np.ndarray, rows: np.ndarray) -> None:
        if not hits:
            return
        hit_ids = [str(h["id"]) for h in hits]
        # Milvus Lite reports BM25 as a distance (the negated score); a server, as the score
        s = np.asarray([abs(h["distance"]) if bm25 else h["distance"] for h in hits],
                       dtype=np.float32)
        r = self._rows(hit_ids)
        order = np.lexsort((r, -s))[:k]
        if bm25:
            order = order[s[order] > 0]
        m = len(order)
        ids[at, :m] = np.asarray(hit_ids, dtype=object)[order]
        scores[at, :m] = s[order]
        rows[at, :m] = r[order]


class MilvusTextIndex:
    """A :class:`MilvusIndex` searched by text (BM25 over the stored candidate texts); what a
    BM25 index is to the Searcher and to :func:`augret.index.search_to_run_dir`."""

    def __init__(self, index: MilvusIndex) -> None:
        self.index = index
        self.meta = {**index.meta, "kind": "bm25", "vector_kind": index.kind}

    def __repr__(self) -> str:
        return f"MilvusTextIndex({self.index!r})"

    def __len__(self) -> int:
        return len(self.index)

    @property
    def ids(self) -> np.ndarray:
        """The pool's ids in row order."""
        return self.index.ids

    def search(self, queries: str | Sequence[str | None], k: int, *, batch_size: int = 1024,
               modalities: str | Iterable[str] | None = None, progress: bool = False,
               **_: Any) -> SearchResult:
        """Top-k candidates of each query text by BM25 (no query token: no results).

        Args:
            queries: Query texts.
            k: Results per query (at most :data:`MAX_K`).
            batch_size: Queries per Milvus request.
            modalities: Keep only candidates of these modalities.
            progress: Show a progress bar.
            **_: Options of other backends (ignored).
        """
        texts = [queries] if isinstance(queries, str) else [q or "" for q in queries]
        return self.index._search(texts, k, field=FIELDS["sparse"],
                                  params={"metric_type": "BM25", "params": {}}, bm25=True,
                                  modalities=modalities, batch_size=batch_size,
                                  progress=progress)


def check_collection(collection: Collection, meta: dict[str, Any]) -> None:
    """Check that a collection is the complete build an index directory describes.

    Raises:
        DataNotFoundError: No such collection.
        DataFormatError: Another build's collection, another vector dimension, or fewer or
            more rows than the build inserted (half-built).
    """
    target = collection.target
    info = collection.describe()
    props = info.get("properties") or {}
    built = props.get(FINGERPRINT_KEY)
    if built != meta.get("fingerprint") or props.get(OWNER_KEY) != meta.get("owner"):
        raise DataFormatError(f"{target} holds another build (fingerprint {built}, this index "
                              f"expects {meta.get('fingerprint')}); rebuild the index")
    dim = collection.vector_dim(info)
    if dim != int(meta["dimension"]):
        raise DataFormatError(f"{target} holds vectors of dimension {dim}, the index "
                              f"directory says {meta['dimension']}")
    rows = collection.count()
    if rows != int(meta["collection_rows"]):
        raise DataFormatError(f"{target} holds {rows} rows, the build inserted "
                              f"{meta['collection_rows']}: the collection is half-built (an "
                              "interrupted build, or one still running); rerun augret index "
                              "build")
