"""The ``flat16`` index: exact inner-product search over float16 shards memory-mapped from the
index directory, block by block, on the CPU (NumPy) or on GPUs (torch).

This module is the ``flat16`` backend of :mod:`augret.index.backends`. It returns what a
FAISS ``flat`` index of the same vectors returns (cosine over L2-normalised rows, UniIR's
protocol), up to the order of tied scores (:mod:`augret.index.blocksearch` states the tie
rule), while holding no float32 copy of the collection: a CPU search holds one block of rows
and its scores; the float16 rows are paged in from disk as they are read.

Payload (see ``docs/formats.md``)::

    INDEX_DIR/vectors/00000.npy ...   float16 [rows, dim]; together the rows of ids.txt

Build: an embedding shard that already is a float16 ``.npy`` of the index's width is
hard-linked into ``vectors/`` (copied when the index is on another file system); other
sources (arrays, shards of another dtype) are written as float16. ``meta.json`` lists each
shard with its rows, byte size and a digest of sampled pages, and where it came from.

Why a hard link is safe: augret never rewrites a finished shard in place (a shard is written
to a temporary file and renamed), so re-embedding or deleting the embedding directory leaves
the index's links to the old files as they were (their space is freed once both names are
gone). A linked file changed in place by another program changes the index too: loading
checks every shard's size, header and sampled pages and refuses a shard that changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret import __version__
from augret.config import config_hash, config_to_dict, write_resolved
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry
from augret.formats.fingerprint import stable_hash
from augret.formats.indexes import (
    VECTORS_DIR,
    begin_write,
    read_ids,
    read_meta,
    read_modalities,
    write_ids,
    write_meta,
    write_modalities,
)
from augret.index.blocksearch import CpuEngine, RowBlocks
from augret.index.config import IndexConfig
from augret.index.memory import MemoryNeeds, flat16_needs
from augret.index.pools import (
    check_unique,
    embedding_source_meta,
    pool_entries,
    pool_modalities,
)
from augret.index.search import SearchResult, batched_search, modality_mask, query_matrix
from augret.index.vectors import VectorSet
from augret.progress import track

__all__ = ["KIND", "Flat16Index", "build_index", "build_pool_index", "memory_needs"]

log = logging.getLogger(__name__)

KIND = "flat16"
BACKEND = "flat16"
_DIGEST_PAGES = 16
_PAGE = 4096


def _digest(path: Path) -> str:
    """A short hash of a file's size and of 16 pages spread over it (first and last
    included): cheap to check on every load, and it changes whenever the file is replaced,
    truncated or rewritten."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in np.linspace(0, max(0, size - _PAGE), _DIGEST_PAGES).astype(np.int64):
            h.update(os.pread(fd, _PAGE, int(offset)))
    finally:
        os.close(fd)
    return h.hexdigest()[:16]


class Flat16Index:
    """An exact index over float16 row shards, searched block by block.

    Args:
        meta: The description in ``meta.json``.
        shards: The float16 ``(rows, dim)`` arrays (memory-mapped), in row order.
        ids: Row ids (``ids[i]`` is row ``i``).
        modalities: Optional int8 modality code per row.
        device: ``auto`` (torch on every visible GPU when there is one, else NumPy on the
            CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``cuda:N,M``.
        block_mb: Memory of one block of candidates (float32 rows and scores), in MiB.

    Raises:
        DataFormatError: Rows and ids disagree.
    """

    def __init__(self, meta: dict[str, Any], shards: Sequence[np.ndarray],
                 ids: np.ndarray | Sequence[str], modalities: np.ndarray | None = None, *,
                 device: str = "auto", block_mb: int = 256) -> None:
        self.meta = meta
        self.ids = np.asarray(ids, dtype=str)
        self.modalities = modalities
        self.blocks = RowBlocks(shards, int(meta["dimension"]))
        if len(self.blocks) != len(self.ids):
            raise DataFormatError(f"the vectors hold {len(self.blocks)} rows but there are "
                                  f"{len(self.ids)} ids")
        self.device = device
        self.block_bytes = int(block_mb) << 20
        self._engine: Any = None

    def __repr__(self) -> str:
        return f"Flat16Index({self.ntotal} x {self.dim}, pool={self.pool!r})"

    def __len__(self) -> int:
        return self.ntotal

    @property
    def kind(self) -> str:
        """``flat16``."""
        return KIND

    @property
    def pool(self) -> str | None:
        """The pool this index holds (a local pool name or ``union``)."""
        return self.meta.get("pool")

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return self.blocks.dim

    @property
    def ntotal(self) -> int:
        """The number of indexed vectors."""
        return len(self.blocks)

    @property
    def engine(self) -> Any:
        """The search engine of :attr:`device` (:class:`~augret.index.blocksearch.CpuEngine`
        or :class:`~augret.index.torchsearch.TorchEngine`), made on first use.

        Raises:
            ConfigError: GPUs asked for that torch does not see.
        """
        if self._engine is None:
            from augret.index.torchsearch import TorchEngine, resolve_devices

            normalize = bool(self.meta.get("normalized", True))
            devices = resolve_devices(self.device)
            if devices is None:
                self._engine = CpuEngine(self.blocks, normalize=normalize,
                                         block_bytes=self.block_bytes)
            else:
                self._engine = TorchEngine(self.blocks, devices, normalize=normalize,
                                           block_bytes=self.block_bytes)
            log.info("flat16 search of %s on %s", self.pool or "vectors", self._engine.device)
        return self._engine

    # ---- files -----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", block_mb: int = 256,
             **_: Any) -> Flat16Index:
        """Open a flat16 index directory, checking every shard against ``meta.json``.

        Args:
            path: The index directory.
            device: See the class.
            block_mb: See the class.
            **_: Options of other backends (ignored).

        Raises:
            DataNotFoundError: No index there.
            DataFormatError: Another kind, or a shard that is missing or changed since the
                build (rebuild the index).
        """
        path = Path(path)
        meta = read_meta(path)
        if meta.get("kind") != KIND:
            raise DataFormatError(f"a {meta.get('kind')} index, not {KIND}", path=path)
        records, dim = meta.get("shards"), meta.get("dimension")
        if not isinstance(records, list) or not isinstance(dim, int):
            raise DataFormatError("meta.json lists no shards or no dimension",
                                  path=path / "meta.json")
        ids = read_ids(path)
        shards = [_open_shard(path, rec, dim) for rec in records]
        return cls(meta, shards, ids, read_modalities(path, len(ids)), device=device,
                   block_mb=block_mb)

    # ---- search ----------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, batch_size: int = 1024,
               modalities: str | Iterable[str] | None = None, normalize: bool = True,
               progress: bool = False) -> SearchResult:
        """Top-k rows of each query by inner product (exact).

        Args:
            queries: ``(n, dim)`` query vectors (fp16 or fp32).
            k: Results per query.
            batch_size: Queries scored against a block at once.
            modalities: Keep only candidates of these modalities (needs stored modalities);
                the filter is applied inside the search, so k remain whenever k exist.
                ``None``: no filter, as UniIR.
            normalize: L2-normalise the queries first (as UniIR).
            progress: Show a progress bar.

        Raises:
            ConfigError: ``k`` < 1, a bad modality, or no stored modalities for a filter.
            DataFormatError: The queries' dimension is not the index's.
        """
        q = query_matrix(queries, self.dim, k)
        allowed = modality_mask(self.modalities, modalities)
        return batched_search(q, k, self.ids, lambda xb: self.engine.search(xb, k, allowed),
                              batch_size=batch_size, normalize=normalize, progress=progress)


def _open_shard(index_dir: Path, rec: dict[str, Any], dim: int) -> np.ndarray:
    """A shard of ``meta.json``'s list, memory-mapped after its checks."""
    file = index_dir / str(rec["file"])
    again = "; rebuild the index (augret index build ... --kind flat16 --force)"
    if not file.is_file():
        raise DataFormatError(f"{rec['file']} is missing{again}", path=index_dir)
    if file.stat().st_size != rec["bytes"] or _digest(file) != rec["digest"]:
        shared = (f" (a hard link to the embedding shard {rec['source']}, rewritten in place)"
                  if rec.get("stored") == "linked" else "")
        raise DataFormatError(f"{rec['file']} changed since the index was built{shared}"
                              f"{again}", path=index_dir)
    arr = np.load(file, mmap_mode="r")
    if arr.dtype != np.float16 or arr.shape != (rec["rows"], dim) or not arr.flags.c_contiguous:
        raise DataFormatError(f"{rec['file']} holds {arr.dtype} {arr.shape}, not float16 "
                              f"({rec['rows']}, {dim}){again}", path=index_dir)
    return arr


# ---- building ------------------------------------------------------------------------
def _linkable(arr: np.ndarray, dim: int) -> bool:
    """Whether a shard file can serve as it is: a C-ordered little-endian float16 matrix."""
    return (arr.dtype == np.dtype("<f2") and arr.ndim == 2 and arr.shape[1] == dim
            and arr.flags.c_contiguous)


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "linked"
    except OSError as exc:
        log.info("cannot hard-link %s (%s); copying it", src, exc.strerror or exc)
        shutil.copyfile(src, dst)
        return "copied"


def _write_fp16(dst: Path, batches: Iterable[np.ndarray], rows: int, dim: int) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, dim))
    done = 0
    for x in batches:
        out[done: done + len(x)] = x
        done += len(x)
    out.flush()
    del out
    tmp.replace(dst)


class _ShardWriter:
    """Fills ``vectors/``: one numbered file per shard, recorded for ``meta.json``."""

    def __init__(self, out_dir: Path, dim: int) -> None:
        self.out_dir = out_dir
        self.folder = out_dir / VECTORS_DIR
        if self.folder.exists():
            shutil.rmtree(self.folder)  # only this index's names: linked sources stay
        self.folder.mkdir(parents=True)
        self.dim = dim
        self.records: list[dict[str, Any]] = []

    def _next(self) -> Path:
        return self.folder / f"{len(self.records):05d}.npy"

    def _record(self, dst: Path, rows: int, source: str, stored: str) -> None:
        self.records.append({"file": f"{VECTORS_DIR}/{dst.name}", "rows": rows,
                             "bytes": dst.stat().st_size, "digest": _digest(dst),
                             "source": source, "stored": stored})

    def add_file(self, src: Path, arr: np.ndarray, source: str, batch_rows: int) -> None:
        dst = self._next()
        if _linkable(arr, self.dim):
            stored = _link_or_copy(src, dst)
        else:
            _write_fp16(dst, (arr[i: i + batch_rows] for i in range(0, len(arr), batch_rows)),
                        len(arr), self.dim)
            stored = "written"
        self._record(dst, len(arr), source, stored)

    def add_array(self, x: np.ndarray, source: str) -> None:
        dst = self._next()
        _write_fp16(dst, [x], len(x), self.dim)
        self._record(dst, len(x), source, "written")


def _codes(modalities: np.ndarray | Sequence[str] | None) -> np.ndarray | None:
    from augret.data.ids import MODALITIES

    if modalities is None:
        return None
    codes = np.asarray(modalities)
    if codes.dtype.kind in "USO":
        index_of = {m: i for i, m in enumerate(MODALITIES)}
        bad = next((m for m in codes.tolist() if m not in index_of), None)
        if bad is not None:
            raise ConfigError(f"unknown modality {bad!r}; use one of {list(MODALITIES)}")
        codes = np.array([index_of[m] for m in codes.tolist()], dtype=np.int8)
    return codes.astype(np.int8)


def _up_to_date(out_dir: Path, fingerprint: str) -> Flat16Index | None:
    try:
        old = read_meta(out_dir)
    except (DataNotFoundError, DataFormatError):
        return None
    if old.get("fingerprint") != fingerprint:
        return None
    try:
        return Flat16Index.load(out_dir)
    except (DataNotFoundError, DataFormatError) as exc:
        log.info("%s: %s; rebuilding", out_dir, exc)
        return None


def build_index(sources: VectorSet | Sequence[EmbeddingEntry], out_dir: str | Path,
                cfg: IndexConfig | None = None, *, pool: str | None = None,
                encoder: Any = None, modalities: np.ndarray | Sequence[str] | None = None,
                extra_meta: dict[str, Any] | None = None, force: bool = False,
                progress: bool = True) -> Flat16Index:
    """Build a flat16 index directory from embedding entries (or arrays).

    Entry shards that are float16 files are hard-linked (or copied across file systems),
    never converted; arrays and other shards are written as float16 one batch at a time.
    When ``out_dir`` already holds this index, built from the same entries with the same
    config and with its shards intact, it is loaded instead (unless ``force``).

    Args:
        sources: Embedding entries (concatenated), or a :class:`VectorSet`.
        out_dir: The index directory to write.
        cfg: Build parameters (``kind`` must be ``flat16``; default: flat16).
        pool: The pool name recorded in ``meta.json``.
        encoder: The encoder description recorded in ``meta.json``.
        modalities: Per-row modality names or int8 codes, for the modality filter.
        extra_meta: More keys for ``meta.json`` (e.g. the embedding directory).
        force: Rebuild even when an up-to-date index exists.
        progress: Show a progress bar.

    Raises:
        ConfigError: ``cfg.kind`` is not flat16, or an unknown modality.
        DataFormatError: Id files that disagree with their shards, duplicate ids, mixed
            dimensions, or an empty collection.
    """
    cfg = cfg or IndexConfig(kind=KIND)
    if cfg.kind != KIND:
        raise ConfigError(f"the flat16 backend builds kind {KIND!r}, not {cfg.kind!r}")
    entries = None if isinstance(sources, VectorSet) else list(sources)
    vectors = sources if isinstance(sources, VectorSet) else VectorSet.from_entries(entries)
    out_dir = Path(out_dir)
    codes = _codes(modalities)
    described = vectors.describe()
    fingerprint = stable_hash([config_hash(cfg), described, codes is not None, len(vectors)])
    if not force:
        found = _up_to_date(out_dir, fingerprint)
        if found is not None:
            log.info("%s is up to date (same entries and config); not rebuilt", out_dir)
            return found
    t0 = time.perf_counter()
    ids = vectors.read_ids()
    check_unique(ids, vectors.labels, vectors.part_rows)
    n, d = len(ids), vectors.dim
    if n == 0:
        raise DataFormatError("nothing to index: the sources hold no vectors")
    if codes is not None and codes.shape != (n,):
        raise DataFormatError(f"{len(codes)} modalities for {n} rows")
    begin_write(out_dir)
    writer = _ShardWriter(out_dir, d)
    with track(f"indexing {pool or 'vectors'}", n, enabled=progress) as advance:
        if entries is not None:
            for entry in entries:
                for shard in entry.shards:
                    if shard.rows:
                        writer.add_file(shard.vectors, shard.load(),
                                        f"{entry.key}/{shard.vectors.name}", cfg.batch_rows)
                        advance(shard.rows)
        else:
            for first, x in vectors.iter_batches(cfg.batch_rows, normalize=False):
                writer.add_array(x, f"rows {first}-{first + len(x) - 1}")
                advance(len(x))
    stored = [r["stored"] for r in writer.records]
    log.info("flat16 %s: %d shards (%d linked, %d copied, %d written)", pool or "index",
             len(stored), stored.count("linked"), stored.count("copied"),
             stored.count("written"))
    write_ids(out_dir, ids)
    write_modalities(out_dir, codes)
    meta: dict[str, Any] = {
        "kind": KIND,
        "backend": BACKEND,
        "pool": pool,
        "metric": "inner_product",
        "normalized": cfg.normalize,
        "dimension": d,
        "count": n,
        "dtype": "float16",
        "encoder": encoder,
        "params": {},
        "sources": described,
        "shards": writer.records,
        "recall": None,
        "modalities": codes is not None,
        "config": config_to_dict(cfg),
        "fingerprint": fingerprint,
        "augret_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.perf_counter() - t0, 3),
        **(extra_meta or {}),
    }
    write_meta(out_dir, meta)
    write_resolved(cfg, out_dir)
    return Flat16Index.load(out_dir)


def build_pool_index(emb_dir: str | Path, out_dir: str | Path, *, pool: str,
                     cfg: IndexConfig | None = None, modalities: bool | None = None,
                     data_dir: str | Path | None = None, force: bool = False,
                     progress: bool = True) -> Flat16Index:
    """Build the flat16 index of one pool of an embedding directory.

    Args:
        emb_dir: The embedding directory.
        out_dir: The index directory to write.
        pool: A ``pools/<pool>`` entry name, or ``union`` (see
            :func:`augret.index.pools.pool_entries`).
        cfg: Build parameters (``kind: flat16``).
        modalities: Store each candidate's modality for the modality filter: ``True``
            requires the pool files, ``None`` stores them when the pool files are found,
            ``False`` never.
        data_dir: Where the pool files are (default: the embedding directory's
            ``data_dir``).
        force: Rebuild even when the index is up to date.
        progress: Show a progress bar.

    Raises:
        DataNotFoundError: No such pool, or ``modalities=True`` without pool files.
        DataFormatError: See :func:`build_index`.
    """
    emb = EmbeddingDir(emb_dir)
    entries = pool_entries(emb, pool)
    codes = pool_modalities(emb, entries, pool, modalities, data_dir)
    return build_index(entries, out_dir, cfg, pool=pool, encoder=emb.encoder,
                       modalities=codes, force=force, progress=progress,
                       extra_meta=embedding_source_meta(emb, data_dir))


def memory_needs(meta: dict[str, Any], path: str | Path, *, block_mb: int = 256
                 ) -> MemoryNeeds:
    """What searching a flat16 index holds (see :func:`augret.index.memory.flat16_needs`)."""
    return flat16_needs(int(meta.get("count", 0)), int(meta.get("dimension", 0)),
                        int(block_mb) << 20)
