"""Build the indexes of pools: one pool, or every local pool plus the union."""

from __future__ import annotations

import logging
from pathlib import Path

from augret.data.mbeir import UNION, MBEIRDir
from augret.errors import DataNotFoundError
from augret.formats.embeddings import EmbeddingDir
from augret.index.bm25 import build_bm25_index
from augret.index.config import BM25Config, IndexConfig
from augret.index.dense import DenseIndex, build_index
from augret.index.pools import modalities_from_pools, pool_entries, pool_names
from augret.index.vectors import VectorSet

__all__ = ["build_bm25_indexes", "build_dense_indexes", "build_pool_index"]

log = logging.getLogger(__name__)


def build_pool_index(emb_dir: str | Path, out_dir: str | Path, *, pool: str,
                     cfg: IndexConfig | None = None, modalities: bool | None = None,
                     data_dir: str | Path | None = None, force: bool = False,
                     progress: bool = True) -> DenseIndex:
    """Build the dense index of one pool of an embedding directory.

    Args:
        emb_dir: The embedding directory.
        out_dir: The index directory to write.
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
        DataFormatError: See :func:`augret.index.build_index`.
    """
    emb = EmbeddingDir(emb_dir)
    entries = pool_entries(emb, pool)
    vectors = VectorSet.from_entries(entries)
    codes = None
    if modalities is not False:
        ids = vectors.read_ids()
        codes = modalities_from_pools(entries, ids, data_dir=data_dir or emb.data_dir,
                                      emb_root=emb.root)
        if codes is None and modalities:
            raise DataNotFoundError(f"no pool files found for the modalities of {pool!r}; "
                                    "pass the M-BEIR directory (--data)")
    return build_index(vectors, out_dir, cfg, pool=pool, encoder=emb.encoder,
                       modalities=codes, force=force, progress=progress,
                       extra_meta={"embedding_dir": str(emb.root),
                                   "embedding_config_hash": emb.meta.get("config_hash"),
                                   "data_dir": str(data_dir or emb.data_dir or "") or None})


def build_dense_indexes(emb_dir: str | Path, out_root: str | Path, *,
                        cfg: IndexConfig | None = None, local: bool = True,
                        union: bool = True, modalities: bool | None = None,
                        data_dir: str | Path | None = None, force: bool = False,
                        progress: bool = True) -> dict[str, Path]:
    """Build ``<out_root>/<pool>/`` for every local pool entry and ``<out_root>/union/``.

    Returns:
        The index directories by pool name.
    """
    emb = EmbeddingDir(emb_dir)
    names = pool_names(emb) if local else []
    out: dict[str, Path] = {}
    for name in names:
        build_pool_index(emb.root, Path(out_root) / name, pool=name, cfg=cfg,
                         modalities=modalities, data_dir=data_dir, force=force,
                         progress=progress)
        out[name] = Path(out_root) / name
    if union:
        try:
            pool_entries(emb, UNION)
        except DataNotFoundError as exc:
            log.info("no union index: %s", exc)
        else:
            build_pool_index(emb.root, Path(out_root) / UNION, pool=UNION, cfg=cfg,
                             modalities=modalities, data_dir=data_dir, force=force,
                             progress=progress)
            out[UNION] = Path(out_root) / UNION
    if not out:
        raise DataNotFoundError(f"{emb.root}: no pool entries to index")
    return out


def build_bm25_indexes(data_dir: str | Path, out_root: str | Path, *,
                       cfg: BM25Config | None = None, local: bool = True, union: bool = True,
                       force: bool = False, progress: bool = True) -> dict[str, Path]:
    """Build ``<out_root>/<pool>/`` for every local pool file and ``<out_root>/union/``.

    Returns:
        The index directories by pool name.
    """
    data = MBEIRDir(data_dir)
    out: dict[str, Path] = {}
    for name in (data.local_pools() if local else {}):
        build_bm25_index(data.root, Path(out_root) / name, pool=name, cfg=cfg, force=force,
                         progress=progress)
        out[name] = Path(out_root) / name
    if union and data.union_pool_files():
        build_bm25_index(data.root, Path(out_root) / UNION, pool=UNION, cfg=cfg, force=force,
                         progress=progress)
        out[UNION] = Path(out_root) / UNION
    if not out:
        raise DataNotFoundError(f"{data.root}: no candidate pool to index")
    return out

