"""Dense FAISS indexes over embedding entries: build (streamed), save, load, search.

This module is the ``faiss`` backend of :mod:`augret.index.backends`. Every kind scores by
inner product on L2-normalised vectors (cosine). The exact kind is a
plain ``IndexFlatIP``: UniIR's ``IDMap,Flat`` gives the same ranking, but its int64 ids are
hashed dids; here FAISS row ``i`` is line ``i + 1`` of ``ids.txt``, so ids stay strings and
any id format works. Approximate kinds (IVF, HNSW, IVF-PQ, PQ) are trained on a bounded
random sample and report recall@k against exact search in ``meta.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret import __version__
from augret.config import config_hash, config_to_dict, write_resolved
from augret.errors import ConfigError, DataFormatError
from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry
from augret.formats.fingerprint import stable_hash
from augret.formats.indexes import (
    begin_write,
    payload_path,
    read_ids,
    read_meta,
    read_modalities,
    write_ids,
    write_meta,
    write_modalities,
)
from augret.index import _faiss
from augret.index.config import IndexConfig, check_gpu_mode
from augret.index.memory import MemoryNeeds, flat_needs, vector_bytes
from augret.index.pools import (
    check_unique,
    embedding_source_meta,
    pool_entries,
    pool_modalities,
)
from augret.index.recall import exact_topk, recall_at_k
from augret.index.search import (
    SearchResult,
    batched_search,
    modality_mask,
    query_matrix,
    ranked_search,
)
from augret.index.vectors import VectorSet
from augret.progress import track

__all__ = ["DenseIndex", "build_index", "build_pool_index", "memory_needs"]

log = logging.getLogger(__name__)


class DenseIndex:
    """A FAISS index with its row ids, optional row modalities and description.

    Args:
        index: A CPU FAISS index.
        ids: Row ids (``ids[i]`` is FAISS row ``i``).
        meta: The description written to ``meta.json``.
        modalities: Optional int8 modality code per row.
        gpu: ``auto`` searches on FAISS GPUs when present, ``on`` requires them, ``off``.
    """

    def __init__(self, index: Any, ids: np.ndarray | Sequence[str], meta: dict[str, Any],
                 modalities: np.ndarray | None = None, *, gpu: str = "auto") -> None:
        self.index = index
        self.ids = np.asarray(ids, dtype=str)
        self.meta = meta
        self.modalities = modalities
        if self.index.ntotal != len(self.ids):
            raise DataFormatError(f"the index holds {self.index.ntotal} vectors but there are "
                                  f"{len(self.ids)} ids")
        check_gpu_mode(gpu)
        self._gpu_mode = gpu
        self._gpu_index: Any = None
        self._nprobe: int | None = None

    def __repr__(self) -> str:
        return f"DenseIndex({self.kind}, {self.ntotal} x {self.dim}, pool={self.pool!r})"

    def __len__(self) -> int:
        return self.ntotal

    @property
    def kind(self) -> str:
        """``flat``, ``ivf``, ``hnsw``, ``ivfpq`` or ``pq``."""
        return str(self.meta.get("kind", "flat"))

    @property
    def pool(self) -> str | None:
        """The pool this index holds (a local pool name or ``union``)."""
        return self.meta.get("pool")

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """The number of indexed vectors."""
        return int(self.index.ntotal)

    # ---- files -----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, gpu: str = "auto", nprobe: int | None = None,
             ef_search: int | None = None, **_: Any) -> DenseIndex:
        """Open an index directory written by :meth:`save` / :func:`build_index`.

        Args:
            path: The index directory.
            gpu: See the class.
            nprobe: Override the stored IVF ``nprobe``.
            ef_search: Override the stored HNSW ``efSearch``.
            **_: Options of other backends (ignored).

        Raises:
            DataNotFoundError: Missing files.
            DataFormatError: The files disagree (row counts, kind).
        """
        path = Path(path)
        meta = read_meta(path)
        if meta["kind"] == "bm25":
            raise DataFormatError("this is a BM25 index; open it with BM25Index.load",
                                  path=path)
        fa = _faiss.faiss()
        file = payload_path(path, meta["kind"])
        if not file.is_file():
            raise DataFormatError(f"no {file.name}", path=path)
        index = fa.read_index(str(file))
        ids = read_ids(path)
        out = cls(index, ids, meta, read_modalities(path, len(ids)), gpu=gpu)
        params = meta.get("params", {})
        out.set_search_params(nprobe=nprobe or params.get("nprobe"),
                              ef_search=ef_search or params.get("ef_search"))
        return out

    def save(self, out_dir: str | Path) -> Path:
        """Write the index directory (``meta.json`` last). Returns it."""
        out_dir = Path(out_dir)
        fa = _faiss.faiss()
        begin_write(out_dir)
        file = payload_path(out_dir, self.kind)
        tmp = file.with_name(f".{file.name}.tmp")
        fa.write_index(self.index, str(tmp))
        tmp.replace(file)
        write_ids(out_dir, self.ids)
        write_modalities(out_dir, self.modalities)
        self.meta["modalities"] = self.modalities is not None
        write_meta(out_dir, self.meta)
        return out_dir

    # ---- search ----------------------------------------------------------------------
    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None
                          ) -> None:
        """Set IVF ``nprobe`` / HNSW ``efSearch`` for later searches (ignored where absent)."""
        fa = _faiss.faiss()
        for index in (self.index, self._gpu_index):
            if index is not None:
                _faiss.set_search_params(fa, index, self.kind, nprobe=nprobe,
                                         ef_search=ef_search)
        if nprobe is not None:
            self._nprobe = nprobe

    def _backend(self, depth: int) -> Any:
        if self._gpu_mode == "off" or depth > _faiss.GPU_MAX_K or self.kind == "hnsw":
            return self.index
        if self._gpu_index is None:
            fa = _faiss.faiss()
            if not _faiss.want_gpu(fa, self._gpu_mode):
                self._gpu_mode = "off"
                return self.index
            self._gpu_index = _faiss.to_gpus(fa, self.index)
            _faiss.set_search_params(fa, self._gpu_index, self.kind, nprobe=self._nprobe)
        return self._gpu_index

    def search(self, queries: np.ndarray, k: int, *, batch_size: int = 1024,
               modalities: str | Iterable[str] | None = None, normalize: bool = True,
               progress: bool = False) -> SearchResult:
        """Top-k rows of each query by inner product.

        Args:
            queries: ``(n, dim)`` query vectors (fp16 or fp32).
            k: Results per query.
            batch_size: Queries per FAISS call.
            modalities: Keep only candidates of these modalities (needs stored modalities;
                over-fetches so that k remain). ``None``: no filter, as UniIR.
            normalize: L2-normalise the queries first (as UniIR).
            progress: Show a progress bar.

        Raises:
            ConfigError: ``k`` < 1, a bad modality, or no stored modalities for a filter.
            DataFormatError: The queries' dimension is not the index's.
        """
        q = query_matrix(queries, self.dim, k)
        allowed = modality_mask(self.modalities, modalities)

        def search_batch(xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            def run(pos: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
                return self._backend(depth).search(xb[pos], depth)

            return ranked_search(run, len(xb), k, self.ntotal, allowed)

        return batched_search(q, k, self.ids, search_batch, batch_size=batch_size,
                              normalize=normalize, progress=progress)


# ---- building ------------------------------------------------------------------------
def _fill_flat(fa: Any, vectors: VectorSet, cfg: IndexConfig, advance: Any) -> Any:
    n, d = len(vectors), vectors.dim
    index, view = _faiss.flat_index_filled(fa, d, n)
    for offset, x in vectors.iter_batches(cfg.batch_rows, normalize=cfg.normalize):
        if view is not None:
            view[offset: offset + len(x)] = x
        else:
            index.add(x)
        advance(len(x))
    return index


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(n, size), replace=False))


def _train_and_fill(fa: Any, vectors: VectorSet, cfg: IndexConfig, factory: str,
                    struct: dict[str, int], use_gpu: bool, advance: Any) -> Any:
    n, d = len(vectors), vectors.dim
    index = fa.index_factory(d, factory, fa.METRIC_INNER_PRODUCT)
    if cfg.kind == "hnsw":
        index.hnsw.efConstruction = cfg.ef_construction
    work = _faiss.to_gpu(fa, index) if use_gpu and cfg.kind != "hnsw" else index
    if not index.is_trained:
        nlist = struct.get("nlist", 1)
        size = cfg.train_size or min(n, max(100_000, 64 * nlist))
        need = max(nlist, 2 ** struct["pq_nbits"] if "pq_nbits" in struct else 1)
        if min(n, size) < need:
            raise ConfigError(f"{cfg.kind} needs at least {need} training vectors, the "
                              f"collection has {n}; use fewer lists or bits, or kind 'flat'")
        rows = _sample(n, size, np.random.default_rng(cfg.seed))
        log.info("training %s on %d of %d vectors", factory, len(rows), n)
        work.train(vectors.take(rows, normalize=cfg.normalize))
    for _, x in vectors.iter_batches(cfg.batch_rows, normalize=cfg.normalize):
        work.add(x)
        advance(len(x))
    return _faiss.to_cpu(fa, work) if work is not index else index


def _measure_recall(fa: Any, index: DenseIndex, vectors: VectorSet, cfg: IndexConfig
                    ) -> dict[str, Any]:
    n = len(vectors)
    rows = _sample(n, cfg.recall_queries, np.random.default_rng(cfg.seed + 1))
    queries = vectors.take(rows, normalize=cfg.normalize)
    k = min(cfg.recall_k, n)
    t0 = time.perf_counter()
    _, exact = exact_topk(vectors, queries, k, batch_rows=cfg.batch_rows,
                          normalize=cfg.normalize)
    t1 = time.perf_counter()
    approx = index.search(queries, k, normalize=False).rows
    t2 = time.perf_counter()
    value = recall_at_k(approx, exact, k)
    log.info("recall@%d of %s against exact search: %.4f (%d queries)", k, index.kind, value,
             len(rows))
    return {"k": k, "queries": len(rows), "recall": round(value, 4),
            "nprobe": index.meta["params"].get("nprobe"),
            "ef_search": index.meta["params"].get("ef_search"),
            "exact_seconds": round(t1 - t0, 3), "approx_seconds": round(t2 - t1, 3),
            "sample": "indexed vectors as queries (seeded)"}


def _fingerprint(cfg: IndexConfig, vectors: VectorSet, sources: list[dict[str, Any]],
                 with_modalities: bool) -> str:
    return stable_hash([config_hash(cfg), sources,
                        with_modalities, len(vectors)])


def build_index(vectors: VectorSet | Sequence[EmbeddingEntry], out_dir: str | Path | None,
                cfg: IndexConfig | None = None, *, pool: str | None = None,
                encoder: Any = None, modalities: np.ndarray | Sequence[str] | None = None,
                extra_meta: dict[str, Any] | None = None, force: bool = False,
                progress: bool = True) -> DenseIndex:
    """Build a dense index from embedding entries (or arrays), streaming shard by shard.

    Rows are converted to float32 and L2-normalised one batch at a time; the exact kind is
    filled in place (one allocation of ``n × dim × 4`` bytes), the approximate kinds are
    trained on a sample then filled batch by batch. When ``out_dir`` already holds an index
    built from the same entries with the same config, it is loaded instead (unless ``force``).

    Args:
        vectors: The rows, as a :class:`VectorSet` or a list of entries (concatenated).
        out_dir: Where to write the index directory (``None``: keep it in memory only).
        cfg: Build parameters (defaults: exact).
        pool: The pool name recorded in ``meta.json`` (``union`` for the union).
        encoder: The encoder description recorded in ``meta.json``.
        modalities: Per-row modality names or int8 codes, for the modality filter.
        extra_meta: More keys for ``meta.json`` (e.g. the embedding directory).
        force: Rebuild even when an up-to-date index exists.
        progress: Show progress bars.

    Returns:
        The index (on CPU).

    Raises:
        DataFormatError: Id files that disagree with their shards, duplicate ids, mixed
            dimensions, or an empty collection.
        ConfigError: Impossible parameters (e.g. ``pq_m`` not dividing the dimension).
    """
    from augret.data.ids import MODALITIES

    cfg = cfg or IndexConfig()
    if not isinstance(vectors, VectorSet):
        vectors = VectorSet.from_entries(list(vectors))
    fa = _faiss.faiss()
    codes = None
    if modalities is not None:
        codes = np.asarray(modalities)
        if codes.dtype.kind in "USO":
            index_of = {m: i for i, m in enumerate(MODALITIES)}
            bad = next((m for m in codes.tolist() if m not in index_of), None)
            if bad is not None:
                raise ConfigError(f"unknown modality {bad!r}; use one of {list(MODALITIES)}")
            codes = np.array([index_of[m] for m in codes.tolist()], dtype=np.int8)
        codes = codes.astype(np.int8)
    sources = vectors.describe()
    fingerprint = _fingerprint(cfg, vectors, sources, codes is not None)
    if out_dir is not None and not force:
        try:
            old = read_meta(out_dir)
        except Exception:  # no index there yet (or a broken one): build
            old = {}
        if old.get("fingerprint") == fingerprint and payload_path(out_dir, cfg.kind).is_file():
            log.info("%s is up to date (same entries and config); not rebuilt", out_dir)
            return DenseIndex.load(out_dir, gpu=cfg.gpu)
    t0 = time.perf_counter()
    ids = vectors.read_ids()
    check_unique(ids, vectors.labels, vectors.part_rows)
    n, d = len(ids), vectors.dim
    if n == 0:
        raise DataFormatError("nothing to index: the sources hold no vectors")
    if codes is not None and codes.shape != (n,):
        raise DataFormatError(f"{len(codes)} modalities for {n} rows")
    factory, struct = _faiss.factory(cfg.kind, d, n, nlist=cfg.nlist, hnsw_m=cfg.hnsw_m,
                                     pq_m=cfg.pq_m, pq_nbits=cfg.pq_nbits)
    use_gpu = _faiss.want_gpu(fa, cfg.gpu)
    log.info("building %s index (%s) of %d x %d%s", cfg.kind, factory, n, d,
             " on GPU" if use_gpu else "")
    with track(f"indexing {pool or 'vectors'}", n, enabled=progress) as advance:
        if cfg.kind == "flat":
            index = _fill_flat(fa, vectors, cfg, advance)
        else:
            index = _train_and_fill(fa, vectors, cfg, factory, struct, use_gpu, advance)
    params = {**struct}
    if cfg.kind in ("ivf", "ivfpq"):
        params["nprobe"] = min(cfg.nprobe, struct["nlist"])
    if cfg.kind == "hnsw":
        params.update(ef_construction=cfg.ef_construction, ef_search=cfg.ef_search)
    meta: dict[str, Any] = {
        "kind": cfg.kind,
        "pool": pool,
        "factory": factory,
        "metric": "inner_product",
        "normalized": cfg.normalize,
        "dimension": d,
        "count": n,
        "encoder": encoder,
        "params": params,
        "sources": sources,
        "recall": None,
        "modalities": codes is not None,
        "config": config_to_dict(cfg),
        "fingerprint": fingerprint,
        "gpu": use_gpu,
        "faiss_version": getattr(fa, "__version__", None),
        "augret_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra_meta or {}),
    }
    out = DenseIndex(index, ids, meta, codes, gpu=cfg.gpu)
    out.set_search_params(nprobe=params.get("nprobe"), ef_search=params.get("ef_search"))
    if cfg.kind != "flat" and cfg.recall_queries > 0:
        meta["recall"] = _measure_recall(fa, out, vectors, cfg)
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        out.save(out_dir)
        write_resolved(cfg, out_dir)
    return out


def build_pool_index(emb_dir: str | Path, out_dir: str | Path | None, *, pool: str,
                     cfg: IndexConfig | None = None, modalities: bool | None = None,
                     data_dir: str | Path | None = None, force: bool = False,
                     progress: bool = True) -> DenseIndex:
    """Build the dense index of one pool of an embedding directory.

    Args:
        emb_dir: The embedding directory.
        out_dir: The index directory to write (``None``: keep it in memory only).
        pool: A ``pools/<pool>`` entry name, or ``union`` (see
            :func:`augret.index.pools.pool_entries`).
        cfg: Build parameters (default: exact).
        modalities: Store each candidate's modality for the modality filter: ``True``
            requires the pool files, ``None`` stores them when the pool files are found,
            ``False`` never.
        data_dir: Where the pool files are (default: the embedding directory's
            ``data_dir``; each entry's recorded source file is tried first).
        force: Rebuild even when the index is up to date.
        progress: Show progress bars.

    Raises:
        DataNotFoundError: No such pool, or ``modalities=True`` without pool files.
        DataFormatError: See :func:`build_index`.
    """
    emb = EmbeddingDir(emb_dir)
    entries = pool_entries(emb, pool)
    codes = pool_modalities(emb, entries, pool, modalities, data_dir)
    return build_index(VectorSet.from_entries(entries), out_dir, cfg, pool=pool,
                       encoder=emb.encoder, modalities=codes, force=force, progress=progress,
                       extra_meta=embedding_source_meta(emb, data_dir))


def memory_needs(meta: dict[str, Any], path: str | Path) -> MemoryNeeds:
    """What searching a FAISS index holds: the float32 vectors for ``flat`` (in RAM, or on
    the GPUs for a FAISS GPU search), the index file's size for the other kinds."""
    n, d = int(meta.get("count", 0)), int(meta.get("dimension", 0))
    if meta.get("kind") == "flat":
        return flat_needs(n, d)
    file = payload_path(path, str(meta.get("kind")))
    size = file.stat().st_size if file.is_file() else 0
    return MemoryNeeds(fp32=vector_bytes(n, d, 4), fp16=vector_bytes(n, d, 2), ram=size,
                       gpu=None if meta.get("kind") == "hnsw" else size)
