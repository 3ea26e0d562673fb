"""Which embedding entries make up a pool, id uniqueness, and candidate modalities.

A local pool is its ``pools/<pool>`` entry. The union pool follows the one union rule,
:meth:`augret.data.MBEIRDir.union_pools` (the global test pool when present, else the local
test pools in UniIR's order). Its entries are, in this order of preference: those listed by
``meta.json``'s ``union`` (the embedder records the rule's parts), a ``pools/union`` entry
(the embedded global pool), or the rule applied to the embedding directory's data
directory: its local test pool entries, or an error when the data directory's union is a
global pool that was not embedded. Without a data directory at hand, the local M-BEIR pool
entries present, in UniIR's order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import MODALITIES, UNION_POOL_ORDER
from augret.data.lookup import PoolLookup
from augret.data.mbeir import UNION, MBEIRDir
from augret.errors import DataFormatError, DataNotFoundError
from augret.formats.embeddings import EmbeddingDir, EmbeddingEntry

__all__ = [
    "UNION",
    "check_unique",
    "embedded_pools",
    "embedding_source_meta",
    "entry_pool_files",
    "modalities_from_pools",
    "pool_entries",
    "pool_modalities",
    "pool_names",
]

log = logging.getLogger(__name__)


def pool_names(emb: EmbeddingDir) -> list[str]:
    """The local pool entries of an embedding directory (``union`` excluded)."""
    return [n for n in emb.names("pools") if n != UNION]


def pool_entries(emb: EmbeddingDir, pool: str) -> list[EmbeddingEntry]:
    """The entries whose rows form ``pool`` (a local pool name or ``"union"``).

    Raises:
        DataNotFoundError: The pool (or, for the union, every local M-BEIR pool) is absent.
    """
    if pool != UNION:
        return [emb.entry("pools", pool)]
    declared = emb.union
    if declared is not None:  # the embedder's own list of union entries
        return [emb.entry("pools", key.partition("/")[2]) for key in declared]
    if emb.has("pools", UNION):
        return [emb.entry("pools", UNION)]
    parts = _data_union(emb)
    if parts is not None and UNION in parts:
        raise DataNotFoundError(
            f"the union pool of {emb.data_dir} is its global test pool {parts[UNION]}, "
            f"which {emb.root} does not hold (its local pools are not the union); embed it "
            "with augret embed --pools union")
    names = list(parts) if parts else list(UNION_POOL_ORDER)
    present = [n for n in names if emb.has("pools", n)]
    if not present:
        raise DataNotFoundError(f"{emb.root}: no pools/union entry and none of the M-BEIR "
                                f"local pools {list(UNION_POOL_ORDER)}")
    missing = [n for n in names if n not in present]
    if missing:
        log.warning("union of %d local pools; absent: %s", len(present), ", ".join(missing))
    others = [n for n in pool_names(emb) if n not in UNION_POOL_ORDER]
    if others:
        log.info("pools not in M-BEIR's union (not included): %s", ", ".join(others))
    return [emb.entry("pools", n) for n in present]


def embedded_pools(emb_dir: str | Path, *, local: bool = True, union: bool = True
                   ) -> list[str]:
    """The pools an embedding directory can index: its local pool entries, then ``union``
    when its entries make one (:func:`pool_entries`).

    Raises:
        DataNotFoundError: None of the pools asked for is there.
    """
    emb = EmbeddingDir(emb_dir)
    names = pool_names(emb) if local else []
    if union:
        try:
            pool_entries(emb, UNION)
        except DataNotFoundError as exc:
            log.info("no union index: %s", exc)
        else:
            names.append(UNION)
    if not names:
        raise DataNotFoundError(f"{emb.root}: no pool entries to index")
    return names


def _data_union(emb: EmbeddingDir) -> dict[str, Path] | None:
    """The union parts of the embedding directory's data directory (``None``: not at hand)."""
    root = emb.data_dir
    if root is None or not root.is_dir():
        return None
    return MBEIRDir(root).union_pools()


def _locate(labels: Sequence[str], part_rows: Sequence[int], row: int) -> tuple[str, int]:
    bounds = np.cumsum(part_rows)
    part = int(np.searchsorted(bounds, row, side="right"))
    start = int(bounds[part - 1]) if part else 0
    return labels[part], row - start


def check_unique(ids: Sequence[str], labels: Sequence[str], part_rows: Sequence[int]) -> None:
    """Raise if an id occurs twice (UniIR asserts the same of its union).

    Args:
        ids: All ids in row order.
        labels: The name of each part (e.g. entry keys), for the message.
        part_rows: Rows of each part.

    Raises:
        DataFormatError: Naming the first duplicated id and the two places it occurs.
    """
    if len(set(ids)) == len(ids):
        return
    arr = np.asarray(ids, dtype=str)
    order = np.argsort(arr, kind="stable")
    s = arr[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    a, b = int(order[dup[0]]), int(order[dup[0] + 1])
    (la, ra), (lb, rb) = _locate(labels, part_rows, a), _locate(labels, part_rows, b)
    n_dup = len(np.unique(s[dup]))
    raise DataFormatError(f"id {str(s[dup[0]])!r} occurs more than once: {la} row {ra} and "
                          f"{lb} row {rb} ({n_dup} duplicated id(s) in all)")


def _resolve(src: Path, roots: Sequence[Path | None]) -> Path | None:
    if src.is_absolute():
        return src if src.is_file() else None
    for root in roots:
        if root is not None and (root / src).is_file():
            return root / src
    return src if src.is_file() else None


def _pool_files(entry: EmbeddingEntry, data: MBEIRDir | None, emb_root: Path | None
                ) -> list[Path]:
    src = entry.source_file()
    if src is not None:
        found = _resolve(src, [data.root if data else None, emb_root])
        if found is not None:
            return [found]
    if data is None:
        return []
    if entry.name == UNION:
        return data.union_pool_files()
    path = data.pool_file(entry.name)
    return [path] if path is not None else []


def entry_pool_files(entries: Sequence[EmbeddingEntry], *, data_dir: str | Path | None = None,
                     emb_root: str | Path | None = None) -> list[Path] | None:
    """The pool files holding the records of the entries' rows.

    Each entry's pool file is its recorded source (``entry.json``), else the pool of the same
    name in ``data_dir``.

    Returns:
        The files, each once, or ``None`` when an entry's pool file cannot be found.
    """
    data = MBEIRDir(data_dir) if data_dir is not None and Path(data_dir).is_dir() else None
    files: list[Path] = []
    for entry in entries:
        found = _pool_files(entry, data, Path(emb_root) if emb_root else None)
        if not found:
            log.info("no pool file found for %s", entry.key)
            return None
        files.extend(f for f in found if f not in files)
    return files


def modalities_from_pools(entries: Sequence[EmbeddingEntry], ids: Sequence[str], *,
                          data_dir: str | Path | None = None,
                          emb_root: str | Path | None = None) -> np.ndarray | None:
    """The modality of every indexed id, read from the entries' pool files
    (:func:`entry_pool_files`). Reading uses :class:`augret.data.lookup.PoolLookup` (cached).

    Returns:
        int8 codes into :data:`augret.data.ids.MODALITIES`, or ``None`` when a pool file
        cannot be found.

    Raises:
        DataFormatError: An id is not in its pool file.
    """
    files = entry_pool_files(entries, data_dir=data_dir, emb_root=emb_root)
    if files is None:
        return None
    lookup = PoolLookup(files)
    codes = np.empty(len(ids), dtype=np.int8)
    index = {m: i for i, m in enumerate(MODALITIES)}
    for i, did in enumerate(ids):
        try:
            codes[i] = index[lookup.modality(did)]
        except KeyError:
            raise DataFormatError(f"indexed id {did!r} is not in the pool files "
                                  f"{', '.join(map(str, files))}") from None
    return codes


def pool_modalities(emb: EmbeddingDir, entries: Sequence[EmbeddingEntry], pool: str,
                    modalities: bool | None, data_dir: str | Path | None) -> np.ndarray | None:
    """The modality codes a pool's index stores (:func:`modalities_from_pools`).

    Args:
        emb: The embedding directory.
        entries: The pool's entries (:func:`pool_entries`).
        pool: The pool's name, for the error.
        modalities: ``True`` requires the pool files, ``None`` stores the codes when the pool
            files are found, ``False`` never.
        data_dir: Where the pool files are (default: the embedding directory's
            ``data_dir``).

    Raises:
        DataNotFoundError: ``modalities=True`` and the pool files are not found.
        DataFormatError: An id is not in its pool file.
    """
    if modalities is False:
        return None
    ids = [did for entry in entries for did in entry.read_ids()]
    codes = modalities_from_pools(entries, ids, data_dir=data_dir or emb.data_dir,
                                  emb_root=emb.root)
    if codes is None and modalities:
        raise DataNotFoundError(f"no pool files found for the modalities of {pool!r}; "
                                "pass the M-BEIR directory (--data)")
    return codes


def embedding_source_meta(emb: EmbeddingDir, data_dir: str | Path | None) -> dict[str, Any]:
    """What an index's ``meta.json`` records of the embeddings it was built from."""
    return {"embedding_dir": str(emb.root),
            "embedding_config_hash": emb.meta.get("config_hash"),
            "data_dir": str(data_dir or emb.data_dir or "") or None}
