"""Embedding directories (``augret embed`` → index): the writer and the reader.

Layout (see ``docs/formats.md``)::

    EMB_DIR/
      meta.json              encoder, dim, dtype, data_dir, config_hash, entries, union, run
      config.yaml            the resolved embed config
      queries/<task>/        one entry per query file
      pools/<pool>/          one entry per pool file
        shard_00000.npy      float16 [rows, dim], rows in source order
        shard_00000.ids.txt  one id per line, aligned with the rows
        entry.json           written last: source, rows, shards, shard_size, counts
        skipped.jsonl        rows that could not be embedded, with reasons

Shard ``i`` covers the source rows ``[i * shard_size, (i + 1) * shard_size)``; rows that
cannot be embedded are left out of both the vectors and the ids, so row ``j`` of a shard is
always the id on line ``j`` of its id file. A shard is complete when its ``.ids.txt`` exists
(written last, after the ``.npy`` and the shard's stats). While an entry is written,
``entry.partial.json`` records which source and config its shards belong to, so an
interrupted run resumes at the first incomplete shard and a changed source or config starts
the entry again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.jsonl import atomic_writer, parse_json, read_json, read_json_or_none, write_json
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats.idfile import read_id_file, write_id_file

__all__ = [
    "ENTRY_FILE",
    "FORMAT",
    "GROUPS",
    "META_FILE",
    "EmbeddingDir",
    "EmbeddingEntry",
    "EntryWriter",
    "Shard",
    "finished_entry",
    "is_embedding_dir",
    "iter_entry",
    "prepare_dir",
    "read_entry",
    "source_fingerprint",
    "write_meta",
]

log = logging.getLogger(__name__)

FORMAT = "augret-embeddings"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"
ENTRY_FILE = "entry.json"
PARTIAL_FILE = "entry.partial.json"
SKIPPED_FILE = "skipped.jsonl"
GROUPS = ("queries", "pools")


def _shard(root: Path, i: int, suffix: str) -> Path:
    return root / f"shard_{i:05d}{suffix}"


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        os.unlink(path)


def _remove_temporaries(root: Path) -> None:
    """Remove the temporary files of writes cut short by a kill (``atomic_writer``'s)."""
    for tmp in root.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


# ---- the writer ------------------------------------------------------------------------------
def source_fingerprint(path: Path) -> dict[str, Any]:
    """Path, size and modification time of a source file (an entry's ``fingerprint``)."""
    st = path.stat()
    return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_embedding_dir(path: str | Path) -> bool:
    """Whether ``path`` looks like an embedding directory (``meta.json`` and ``queries/``)."""
    return (Path(path) / META_FILE).is_file() and (Path(path) / "queries").is_dir()


def prepare_dir(out: Path, config_hash: str, *, overwrite: bool) -> dict[str, Any]:
    """Make ``out`` ready for a run of the config ``config_hash``.

    Returns:
        The directory's ``meta.json`` when it holds the same config (its entries are kept),
        else ``{}``.

    Raises:
        ConfigError: ``out`` holds embeddings of another config and not ``overwrite`` (then
            its entries, ``meta.json`` and ``config.yaml`` are removed).
    """
    meta: dict[str, Any] = {}
    if (out / META_FILE).is_file():
        meta = read_json(out / META_FILE)
        if meta.get("config_hash") != config_hash:
            if not overwrite:
                raise ConfigError(f"{out} holds embeddings of another config (hash "
                                  f"{meta.get('config_hash')}, now {config_hash}); use "
                                  "another --out or --overwrite")
            for sub in (*GROUPS, META_FILE, CONFIG_FILE):
                _remove_tree(out / sub)
            meta = {}
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(f".{META_FILE}.*.tmp"):  # a meta.json write cut short by a kill
        tmp.unlink(missing_ok=True)
    return meta


def write_meta(out: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically (after every finished entry)."""
    write_json(out / META_FILE, meta)


def finished_entry(root: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The ``entry.json`` of a finished entry of this source and config, else ``None``.

    Also removes what a kill can leave in a finished entry (shard stats, a stale
    ``entry.partial.json``, temporary files).
    """
    done = read_json_or_none(root / ENTRY_FILE)
    if done is None or done.get("fingerprint") != fingerprint:
        return None
    for stale in (*root.glob("shard_*.stats.json"), root / PARTIAL_FILE):
        stale.unlink(missing_ok=True)
    _remove_temporaries(root)
    return done


class EntryWriter:
    """Writes one entry's shards; resumes the complete shards of an interrupted run.

    Args:
        root: The entry directory.
        fingerprint: Source file fingerprint plus config hash and shard size.
        shard_size: Source rows per shard.
        dim: Embedding dimension.
    """

    def __init__(self, root: Path, fingerprint: dict[str, Any], *, shard_size: int,
                 dim: int) -> None:
        self.root = root
        self.fingerprint = fingerprint
        self.shard_size = shard_size
        self.dim = dim
        partial = read_json_or_none(root / PARTIAL_FILE)
        same = partial is not None and partial.get("fingerprint") == fingerprint
        if root.exists() and not same:
            shutil.rmtree(root)  # another source or config: start the entry again
        root.mkdir(parents=True, exist_ok=True)
        if not same:
            write_json(root / PARTIAL_FILE, {"fingerprint": fingerprint})
        self.done = self._complete_shards()

    def _complete_shards(self) -> int:
        n = 0
        while _shard(self.root, n, ".ids.txt").is_file():
            n += 1
        for stale in self.root.glob("shard_*"):  # files of the first incomplete shard
            try:
                index = int(stale.name[6:11])
            except ValueError:
                continue
            if index >= n:
                stale.unlink()
        _remove_temporaries(self.root)
        return n

    def write_shard(self, index: int, vectors: np.ndarray, ids: list[str],
                    stats: dict[str, Any]) -> None:
        """Write shard ``index`` (vectors, then stats, then ids: the ids mark completion).

        Raises:
            DataFormatError: Vectors and ids disagree in length or width.
        """
        if vectors.shape != (len(ids), self.dim):
            raise DataFormatError(f"shard {index}: {vectors.shape[0]} vectors of width "
                                  f"{vectors.shape[1] if vectors.ndim == 2 else '?'} for "
                                  f"{len(ids)} ids (dim {self.dim})")
        with atomic_writer(_shard(self.root, index, ".npy"), "wb") as f:
            np.save(f, vectors.astype(np.float16, copy=False))
        write_json(_shard(self.root, index, ".stats.json"), stats)
        write_id_file(_shard(self.root, index, ".ids.txt"), ids)

    def finish(self, info: dict[str, Any]) -> dict[str, Any]:
        """Merge shard stats, write ``skipped.jsonl`` and ``entry.json``; returns the entry.

        ``info`` is copied into the entry; an ``uninstructed`` key in it is replaced by the
        shards' total.
        """
        shards = self._complete_shards()
        _check_unique(self.root, shards, info.get("source"))
        rows = truncated = dropped = uninstructed = 0
        skipped: list[dict[str, Any]] = []
        for i in range(shards):
            st = read_json_or_none(_shard(self.root, i, ".stats.json")) or {}
            rows += int(st.get("rows", 0))
            truncated += int(st.get("truncated", 0))
            dropped += int(st.get("images_dropped", 0))
            uninstructed += int(st.get("uninstructed", 0))
            skipped += st.get("skipped", [])
        if "uninstructed" in info:  # query entries: counted per shard, so resumes count all
            info = {**info, "uninstructed": uninstructed}
        with atomic_writer(self.root / SKIPPED_FILE) as f:
            f.write("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped))
        entry = {**info, "rows": rows, "shards": shards, "shard_size": self.shard_size,
                 "dim": self.dim, "dtype": "float16", "truncated": truncated,
                 "skipped": sum(1 for s in skipped if s.get("action") == "skipped"),
                 "images_dropped": dropped, "fingerprint": self.fingerprint}
        write_json(self.root / ENTRY_FILE, entry)
        for i in range(shards):
            _shard(self.root, i, ".stats.json").unlink(missing_ok=True)
        (self.root / PARTIAL_FILE).unlink(missing_ok=True)
        return entry


def _check_unique(root: Path, shards: int, source: str | None) -> None:
    """Raise when an id occurs twice in an entry (an index needs unique ids)."""
    from augret.data.ids import parse_id

    ids = [i for n in range(shards)
           for i in _shard(root, n, ".ids.txt").read_text("utf-8").splitlines()]
    try:
        keys = np.fromiter((d * 10_000_000 + n for d, n in map(parse_id, ids)), np.int64,
                           count=len(ids))
    except DataFormatError:  # ids not of the "d:n" form
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise DataFormatError(f"id {i} occurs more than once", path=source) from None
            seen.add(i)
        return
    uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if uniq.size != keys.size:
        dup = ids[int(first[np.argmax(counts > 1)])]
        raise DataFormatError(f"id {dup} occurs more than once "
                              f"({int((counts > 1).sum())} duplicated ids)", path=source)


# ---- the reader ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """One shard of an entry: the vectors file, its id file and its row count."""

    vectors: Path
    ids: Path
    rows: int

    def load(self) -> np.ndarray:
        """The shard's vectors, memory-mapped (no data is read until sliced)."""
        return np.load(self.vectors, mmap_mode="r")


class EmbeddingEntry:
    """One finished entry of an embedding directory, e.g. ``pools/mscoco_task0_test``.

    Args:
        path: The entry folder (holding ``entry.json`` and the shards).
        dim: The expected vector dimension (``None``: taken from the first shard).

    Raises:
        DataNotFoundError: No ``entry.json`` (the entry is missing or still being written).
        DataFormatError: ``entry.json`` is unreadable.
    """

    def __init__(self, path: str | Path, *, dim: int | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.group = self.path.parent.name
        info_file = self.path / ENTRY_FILE
        if not info_file.is_file():
            raise DataNotFoundError(f"{self.path}: no {ENTRY_FILE} (entry missing or "
                                    "incomplete)")
        self._info_bytes = info_file.read_bytes()
        self.info: dict[str, Any] = parse_json(self._info_bytes, path=info_file)
        self._dim = dim

    def __repr__(self) -> str:
        return f"EmbeddingEntry({self.key!r})"

    @property
    def key(self) -> str:
        """``"<group>/<name>"``, e.g. ``"pools/cirr_task7"``."""
        return f"{self.group}/{self.name}"

    @property
    def fingerprint(self) -> str:
        """A short hash of ``entry.json``'s bytes (changes whenever the entry is rewritten)."""
        return hashlib.sha256(self._info_bytes).hexdigest()[:16]

    def source_file(self) -> Path | None:
        """The file the entry was embedded from, as recorded in ``entry.json``."""
        src = self.info.get("source")
        if isinstance(src, dict):
            src = src.get("path") or src.get("file")
        return Path(src) if isinstance(src, str) and src else None

    def _shard_names(self) -> list[str] | None:
        shards = self.info.get("shards")
        if not (isinstance(shards, list) and shards):
            return None
        names = []
        for s in shards:
            name = (s.get("file") or s.get("path") or s.get("name")) if isinstance(s, dict) \
                else s
            if not isinstance(name, str):
                return None
            names.append(Path(name).name)
        return names

    @cached_property
    def shards(self) -> list[Shard]:
        """The shards in row order, checked against their id files and ``entry.json``.

        Raises:
            DataFormatError: A shard is not a 2-D float array of the entry's dimension, its
                id file is missing, or the shard count or row total disagrees with
                ``entry.json``.
        """
        names = self._shard_names()
        files = ([self.path / n for n in names] if names is not None
                 else sorted(self.path.glob("shard_*.npy")))
        declared = self.info.get("shards")
        if isinstance(declared, int) and declared != len(files):
            raise DataFormatError(f"entry.json declares {declared} shards, found {len(files)}",
                                  path=self.path)
        out = []
        for f in files:
            if not f.is_file():
                raise DataFormatError(f"shard {f.name} listed in entry.json is missing",
                                      path=self.path)
            try:
                arr = np.load(f, mmap_mode="r")
            except (ValueError, OSError) as exc:
                raise DataFormatError(f"cannot read shard: {exc}", path=f) from None
            if arr.ndim != 2 or arr.dtype.kind != "f":
                raise DataFormatError(f"expected a 2-D float array, got {arr.dtype} "
                                      f"{arr.shape}", path=f)
            if self._dim is None:
                self._dim = int(arr.shape[1])
            if arr.shape[1] != self._dim:
                raise DataFormatError(f"dimension {arr.shape[1]}, expected {self._dim}", path=f)
            ids = f.with_name(f.name[: -len(".npy")] + ".ids.txt")
            if not ids.is_file():
                raise DataFormatError(f"id file {ids.name} is missing", path=f)
            out.append(Shard(f, ids, int(arr.shape[0])))
        rows = self.info.get("rows")
        total = sum(s.rows for s in out)
        if isinstance(rows, int) and rows != total:
            raise DataFormatError(f"entry.json declares {rows} rows, the shards hold {total}",
                                  path=self.path)
        return out

    @property
    def dim(self) -> int:
        """The vector dimension."""
        if self._dim is None:
            _ = self.shards
        if self._dim is None and isinstance(self.info.get("dim"), int):
            self._dim = int(self.info["dim"])
        if self._dim is None:
            raise DataFormatError("entry has no shards", path=self.path)
        return self._dim

    @property
    def rows(self) -> int:
        """The number of vectors."""
        return sum(s.rows for s in self.shards)

    def _shard_ids(self, s: Shard) -> list[str]:
        ids = read_id_file(s.ids)
        if len(ids) != s.rows:
            raise DataFormatError(f"{len(ids)} ids for the {s.rows} rows of {s.vectors.name}: "
                                  "ids and vectors are not aligned", path=s.ids)
        return ids

    def read_ids(self) -> list[str]:
        """All ids in row order.

        Raises:
            DataFormatError: An id file's line count differs from its shard's rows.
        """
        return [i for s in self.shards for i in self._shard_ids(s)]

    def iter_shards(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """``(ids, vectors)`` per shard in row order (vectors memory-mapped, float16)."""
        for s in self.shards:
            yield self._shard_ids(s), s.load()

    def read(self) -> tuple[list[str], np.ndarray]:
        """All ids and vectors (``[rows, dim]``, as stored) of the entry."""
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for shard_ids, vectors in self.iter_shards():
            ids += shard_ids
            parts.append(np.asarray(vectors))
        if not parts:
            return [], np.zeros((0, self.dim), np.float16)
        return ids, np.concatenate(parts)


def iter_entry(root: str | Path) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(ids, vectors)`` per shard of the finished entry at ``root`` (see
    :meth:`EmbeddingEntry.iter_shards`)."""
    return EmbeddingEntry(root).iter_shards()


def read_entry(root: str | Path) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of the finished entry at ``root`` (see :meth:`EmbeddingEntry.read`)."""
    return EmbeddingEntry(root).read()


class EmbeddingDir:
    """An embedding directory: ``meta.json``, ``queries/<task>/`` and ``pools/<pool>/``.

    Args:
        root: The directory.

    Raises:
        DataNotFoundError: ``root`` or its ``meta.json`` is missing.
        DataFormatError: ``meta.json`` is not a JSON object.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: no such directory")
        self.meta: dict[str, Any] = read_json(self.root / META_FILE,
                                              what="an embedding directory")

    def __repr__(self) -> str:
        return f"EmbeddingDir({str(self.root)!r})"

    @property
    def dim(self) -> int | None:
        """The dimension recorded in ``meta.json`` (``dim`` or ``dimension``)."""
        value = self.meta.get("dim", self.meta.get("dimension"))
        return int(value) if isinstance(value, int) else None

    @property
    def encoder(self) -> Any:
        """The encoder description recorded in ``meta.json``."""
        return self.meta.get("encoder")

    @property
    def data_dir(self) -> Path | None:
        """The M-BEIR directory the embeddings were computed from, if recorded."""
        value = self.meta.get("data_dir")
        return Path(value) if isinstance(value, str) and value else None

    @property
    def union(self) -> list[str] | None:
        """The entries the embedder recorded as the union pool (``meta.json``'s ``union``),
        e.g. ``["pools/union"]``; ``None`` when the union was not embedded.

        Raises:
            DataFormatError: ``union`` lists something other than ``pools/<name>`` entries.
        """
        declared = self.meta.get("union")
        if not (isinstance(declared, list) and declared):
            return None
        for key in declared:
            group, _, name = str(key).partition("/")
            if group != "pools" or not name:
                raise DataFormatError(f"meta.json union lists {key!r}, not a pools/<name> "
                                      "entry", path=self.root / META_FILE)
        return [str(k) for k in declared]

    def names(self, group: str) -> list[str]:
        """Names of the complete entries of ``group`` (``queries`` or ``pools``), sorted.

        Folders without ``entry.json`` are skipped with a warning.
        """
        folder = self.root / group
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.iterdir()):
            if not p.is_dir():
                continue
            if (p / ENTRY_FILE).is_file():
                out.append(p.name)
            else:
                log.warning("%s: no %s; entry skipped (incomplete?)", p, ENTRY_FILE)
        return out

    def has(self, group: str, name: str) -> bool:
        """Whether a complete entry exists."""
        return (self.root / group / name / ENTRY_FILE).is_file()

    def entry(self, group: str, name: str) -> EmbeddingEntry:
        """One entry, e.g. ``entry("pools", "cirr_task7")``.

        Raises:
            DataNotFoundError: The entry is absent or incomplete.
        """
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
        path = self.root / group / name
        if not path.is_dir():
            raise DataNotFoundError(f"{self.root}: no entry {group}/{name}")
        return EmbeddingEntry(path, dim=self.dim)
