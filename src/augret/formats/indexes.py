"""Index directories (``augret index`` → search / serve): the files every index kind shares.

Layout::

    INDEX_DIR/
      meta.json        written last: format, kind, pool, dimension/metric or tokenizer,
                       build parameters, sources, recall (see docs/formats.md)
      ids.txt          row -> id, one per line (row i is line i+1)
      modalities.npy   optional int8 per row, codes into augret.data.ids.MODALITIES
      config.yaml      the resolved build config
      index.faiss      FAISS kinds: the FAISS index           (written by augret.index.dense)
      vectors/         kind "flat16": float16 shards          (written by augret.index.flat16)
      bm25/            kind "bm25": the bm25s files           (written by augret.index.bm25)

A directory of the ``milvus`` backend has no payload file: ``meta.json`` names the Milvus
collection holding it (written by :mod:`augret.index.milvus_build`, read by
:mod:`augret.index.milvus`).

This module writes and reads ``meta.json``, ``ids.txt`` and ``modalities.npy`` and says where
the payload lives (:func:`payload_path`); the payload itself is written and read by the index
kinds. A directory whose subfolders are index directories (``<pool>/``, ``union/``) is an
*index root*, as ``augret index build --all`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.jsonl import atomic_writer, read_json, write_json
from augret.errors import DataFormatError, DataNotFoundError
from augret.formats.idfile import read_id_file, write_id_file

__all__ = [
    "BM25_DIR",
    "FAISS_FILE",
    "FORMAT",
    "META_FILE",
    "VECTORS_DIR",
    "begin_write",
    "index_dirs",
    "payload_path",
    "read_ids",
    "read_meta",
    "read_modalities",
    "source_info",
    "write_ids",
    "write_meta",
    "write_modalities",
]

FORMAT = "augret-index"
FORMAT_VERSION = 1
META_FILE = "meta.json"
IDS_FILE = "ids.txt"
MODALITIES_FILE = "modalities.npy"
FAISS_FILE = "index.faiss"
BM25_DIR = "bm25"
VECTORS_DIR = "vectors"
#: Payloads of the kinds that do not keep one ``index.faiss``.
_PAYLOADS = {"bm25": BM25_DIR, "flat16": VECTORS_DIR}


def payload_path(index_dir: str | Path, kind: str) -> Path:
    """Where an index kind's payload lives: ``bm25/`` for BM25, ``vectors/`` for flat16,
    ``index.faiss`` otherwise."""
    return Path(index_dir) / _PAYLOADS.get(kind, FAISS_FILE)


def begin_write(out_dir: Path) -> None:
    """Create ``out_dir`` and drop its ``meta.json``, so a crash leaves no loadable index."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)


def write_ids(out_dir: Path, ids: np.ndarray | Sequence[str]) -> None:
    """Write ``ids.txt`` atomically."""
    write_id_file(out_dir / IDS_FILE, ids)


def read_ids(index_dir: Path) -> np.ndarray:
    """The ids of an index directory as a numpy string array."""
    path = index_dir / IDS_FILE
    if not path.is_file():
        raise DataNotFoundError(f"{index_dir}: no {IDS_FILE}")
    return np.array(read_id_file(path), dtype=str)


def write_modalities(out_dir: Path, codes: np.ndarray | None) -> None:
    """Write ``modalities.npy`` (or remove a stale one when ``codes`` is ``None``)."""
    path = out_dir / MODALITIES_FILE
    if codes is None:
        path.unlink(missing_ok=True)
        return
    with atomic_writer(path, "wb") as f:
        np.save(f, np.asarray(codes, dtype=np.int8))


def read_modalities(index_dir: Path, rows: int) -> np.ndarray | None:
    """``modalities.npy`` if present, checked against the row count."""
    path = index_dir / MODALITIES_FILE
    if not path.is_file():
        return None
    codes = np.load(path)
    if codes.shape != (rows,):
        raise DataFormatError(f"{codes.shape[0]} modalities for {rows} rows", path=path)
    return codes


def source_info(path: Path) -> dict[str, Any]:
    """A pool file as a BM25 index's ``meta.json`` lists it in ``sources``."""
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime}


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically (the last file of a build), ``format`` and ``version``
    first."""
    write_json(out_dir / META_FILE, {"format": FORMAT, "version": FORMAT_VERSION, **meta},
               ensure_ascii=False, default=str)


def read_meta(index_dir: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of an index directory.

    Raises:
        DataNotFoundError: No directory or no ``meta.json`` (not an index, or a build that
            did not finish).
        DataFormatError: ``meta.json`` is not an augret index description.
    """
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise DataNotFoundError(f"{index_dir}: no such directory")
    if not (index_dir / META_FILE).is_file():
        raise DataNotFoundError(f"{index_dir}: no {META_FILE} (not an index directory, or "
                                "its build did not finish)")
    meta = read_json(index_dir / META_FILE)
    if meta.get("format") != FORMAT or "kind" not in meta:
        raise DataFormatError(f"not an {FORMAT} meta file", path=index_dir / META_FILE)
    return meta


def index_dirs(path: str | Path) -> dict[str, Path]:
    """The index directories at ``path`` by pool name.

    ``path`` is an index directory (one entry, named by its ``pool``) or an index root
    (each subfolder with a ``meta.json``).

    Raises:
        DataNotFoundError: ``path`` holds no index.
    """
    path = Path(path)
    if (path / META_FILE).is_file():
        meta = read_meta(path)
        return {str(meta.get("pool") or path.name): path}
    if not path.is_dir():
        raise DataNotFoundError(f"{path}: no such directory")
    out = {}
    for sub in sorted(path.iterdir()):
        if (sub / META_FILE).is_file():
            out[str(read_meta(sub).get("pool") or sub.name)] = sub
    if not out:
        raise DataNotFoundError(f"{path}: neither an index directory nor a folder of them")
    return out
