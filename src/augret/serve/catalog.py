"""The indexed items: id membership, pool records and image files, by id only.

Records are read from the pool files through :class:`augret.data.lookup.PoolLookup` (an
offset index; the pools are never loaded). An image is only ever found through the record of
an *indexed* id, so no request can name a file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import hash_dids
from augret.data.lookup import PoolLookup
from augret.data.mbeir import UNION, MBEIRDir
from augret.data.records import Candidate
from augret.errors import DataFormatError, DataNotFoundError
from augret.formats.embeddings import EmbeddingEntry
from augret.serve.errors import ItemNotFound

__all__ = ["ID_PATTERN", "Catalog", "pool_files"]

log = logging.getLogger(__name__)

#: What an item id looks like (``<dataset id>:<n>``, matched whole with ``fullmatch``);
#: anything else is refused before lookup.
ID_PATTERN = re.compile(r"[0-9]{1,9}:[0-9]{1,15}")


def _entry_source(emb_root: Path, entry: str) -> Path | None:
    try:
        return EmbeddingEntry(emb_root / entry).source_file()
    except (OSError, DataNotFoundError, DataFormatError):
        return None


def _recorded_files(meta: dict[str, Any]) -> list[Path] | None:
    """The pool files an index was built from, as its ``meta.json`` records them."""
    out: list[Path] = []
    emb_root = Path(meta["embedding_dir"]) if meta.get("embedding_dir") else None
    for src in meta.get("sources") or []:
        if not isinstance(src, dict):
            return None
        path = Path(src["path"]) if src.get("path") else None  # BM25 indexes
        if path is None and src.get("entry") and emb_root is not None:  # dense: via entries
            path = _entry_source(emb_root, str(src["entry"]))
        if path is None or not path.is_file():
            return None
        if path not in out:
            out.append(path)
    return out or None


def pool_files(meta: dict[str, Any], data: MBEIRDir | None) -> list[Path]:
    """The pool files holding the records of an index's rows.

    With ``data`` (an explicit data directory) the index's pool is looked up there by name
    (``union``: :meth:`MBEIRDir.union_pool_files`); otherwise the files recorded at build
    time are used, falling back to the ``data_dir`` recorded in ``meta.json``.

    Raises:
        DataNotFoundError: No pool file can be found.
    """
    pool = meta.get("pool")
    if data is None:
        recorded = _recorded_files(meta)
        if recorded:
            return recorded
        if meta.get("data_dir") and Path(meta["data_dir"]).is_dir():
            data = MBEIRDir(meta["data_dir"])
    if data is None:
        raise DataNotFoundError("the index records no readable pool files and no data "
                                "directory; pass the M-BEIR directory (--data)")
    if pool == UNION:
        files = data.union_pool_files()
    else:
        path = data.pool_file(str(pool)) if pool else None
        files = [path] if path is not None else []
    if not files:
        raise DataNotFoundError(f"{data.root}: no pool file for the index's pool {pool!r}")
    return files


class Catalog:
    """Indexed ids and their records.

    Args:
        ids: Every indexed id.
        files: The pool files holding their records.
        data: The M-BEIR directory image paths are resolved against (default: the one
            holding the first pool file).
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, files: Sequence[Path],
                 data: MBEIRDir | None = None) -> None:
        self.files = [Path(f) for f in files]
        self.lookup = PoolLookup(self.files)
        self.data = data if data is not None else MBEIRDir(self.files[0].parents[2])
        ids = np.asarray(ids, dtype=str)
        try:
            self._keys: np.ndarray | None = np.unique(hash_dids(ids.tolist()))
            self._ids: set[str] | None = None
        except DataFormatError:  # ids beyond the <dataset>:<n> form: a plain set
            self._keys, self._ids = None, set(ids.tolist())
        self.size = len(ids)

    def __len__(self) -> int:
        return self.size

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, str) or not ID_PATTERN.fullmatch(item_id):
            return False
        if self._ids is not None:
            return item_id in self._ids
        assert self._keys is not None
        key = hash_dids([item_id])[0]
        i = int(np.searchsorted(self._keys, key))
        return i < self._keys.size and bool(self._keys[i] == key)

    def records(self, ids: Sequence[str]) -> list[Candidate | None]:
        """The pool records of ``ids`` (``None`` for an id absent from the pool files)."""
        known = [i for i in ids if i in self.lookup]
        found = dict(zip(known, self.lookup.get_many(known), strict=True)) if known else {}
        missing = [i for i in ids if i not in found]
        if missing:
            log.warning("%d indexed id(s) not in the pool files (e.g. %s)", len(missing),
                        missing[0])
        return [found.get(i) for i in ids]

    def image_path(self, record: Candidate) -> Path | None:
        """The image file of a record, or ``None`` when it has none."""
        return self.data.resolve_image(record.img_path) if record.img_path else None

    def image_file(self, item_id: str) -> Path:
        """The image file of an indexed item.

        Raises:
            ItemNotFound: The id is malformed, not indexed, or its item has no image file.
        """
        if item_id not in self:
            raise ItemNotFound("no indexed item with that id")
        (record,) = self.records([item_id])
        if record is None or record.did != item_id:
            raise ItemNotFound("no indexed item with that id")
        path = self.image_path(record)
        if path is None:
            raise ItemNotFound(f"item {item_id} has no image")
        if not path.is_file():
            log.warning("image of %s is missing: %s", item_id, path)
            raise ItemNotFound(f"the image of item {item_id} is missing")
        return path
