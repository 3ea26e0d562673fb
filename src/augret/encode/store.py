"""Embedding directory entries: fp16 shards with aligned id files, written atomically.

One entry (``queries/<task>`` or ``pools/<pool>``) is one source file. Shard ``i`` covers the
source rows ``[i * shard_size, (i + 1) * shard_size)``; rows that cannot be embedded are left
out of both the vectors and the ids and listed in ``skipped.jsonl``, so row ``j`` of
``shard_i.npy`` is always the id on line ``j`` of ``shard_i.ids.txt``.

A shard is complete when its ``.ids.txt`` exists (written last, after the ``.npy`` and the
shard's stats). ``entry.partial.json`` records which source and config the shards belong to,
so an interrupted run resumes at the first incomplete shard, and a changed source or config
starts the entry again. ``entry.json`` is written last of all.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.jsonl import atomic_writer
from augret.errors import DataFormatError, DataNotFoundError

__all__ = [
    "ENTRY_FILE",
    "EntryWriter",
    "entry_is_current",
    "iter_entry",
    "read_entry",
    "source_fingerprint",
    "tidy_entry",
]

ENTRY_FILE = "entry.json"
PARTIAL_FILE = "entry.partial.json"
SKIPPED_FILE = "skipped.jsonl"


def source_fingerprint(path: Path) -> dict[str, Any]:
    """Path, size and modification time of a source file."""
    st = path.stat()
    return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _shard(root: Path, i: int, suffix: str) -> Path:
    return root / f"shard_{i:05d}{suffix}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    with atomic_writer(path) as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def entry_is_current(root: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether ``root`` holds a finished entry of this source and config."""
    done = _read_json(root / ENTRY_FILE)
    return done is not None and done.get("fingerprint") == fingerprint


def tidy_entry(root: Path) -> None:
    """Remove what a kill can leave in a finished entry: shard stats and
    ``entry.partial.json`` (killed after ``entry.json`` was written), temporary files."""
    for stale in (*root.glob("shard_*.stats.json"), root / PARTIAL_FILE):
        stale.unlink(missing_ok=True)
    _remove_temporaries(root)


def _remove_temporaries(root: Path) -> None:
    """Remove the temporary files of writes cut short by a kill (``atomic_writer``'s)."""
    for tmp in root.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


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
        partial = _read_json(root / PARTIAL_FILE)
        if root.exists() and (partial is None or partial.get("fingerprint") != fingerprint):
            shutil.rmtree(root)  # another source or config: start the entry again
        root.mkdir(parents=True, exist_ok=True)
        if partial is None or partial.get("fingerprint") != fingerprint:
            _write_json(root / PARTIAL_FILE, {"fingerprint": fingerprint})
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
        _write_json(_shard(self.root, index, ".stats.json"), stats)
        with atomic_writer(_shard(self.root, index, ".ids.txt")) as f:
            f.write("".join(f"{i}\n" for i in ids))

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
            st = _read_json(_shard(self.root, i, ".stats.json")) or {}
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
        _write_json(self.root / ENTRY_FILE, entry)
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


def iter_entry(root: str | Path) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield ``(ids, vectors)`` per shard of a finished entry, checking their alignment.

    Raises:
        DataNotFoundError: No finished entry at ``root``.
        DataFormatError: A shard is missing, or its vectors and ids disagree, or the total
            differs from ``entry.json``.
    """
    root = Path(root)
    entry = _read_json(root / ENTRY_FILE)
    if entry is None:
        raise DataNotFoundError(f"{root}: no finished embedding entry ({ENTRY_FILE})")
    total = 0
    for i in range(int(entry["shards"])):
        npy, ids_file = _shard(root, i, ".npy"), _shard(root, i, ".ids.txt")
        if not (npy.is_file() and ids_file.is_file()):
            raise DataFormatError(f"shard {i} is missing", path=root)
        vectors = np.load(npy, mmap_mode="r")
        ids = ids_file.read_text("utf-8").splitlines()
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or vectors.shape[1] != entry["dim"]:
            raise DataFormatError(f"{vectors.shape[0]} vectors but {len(ids)} ids "
                                  f"(dim {entry['dim']}): ids and vectors are not aligned",
                                  path=npy)
        total += len(ids)
        yield ids, vectors
    if total != entry["rows"]:
        raise DataFormatError(f"{total} rows in the shards, {entry['rows']} in {ENTRY_FILE}",
                              path=root)


def read_entry(root: str | Path) -> tuple[list[str], np.ndarray]:
    """All ids and vectors (float16 ``[rows, dim]``) of a finished entry (see
    :func:`iter_entry`)."""
    all_ids: list[str] = []
    parts: list[np.ndarray] = []
    dim = None
    for ids, vectors in iter_entry(root):
        all_ids += ids
        parts.append(np.asarray(vectors))
        dim = vectors.shape[1]
    if not parts:
        entry = _read_json(Path(root) / ENTRY_FILE) or {}
        return [], np.zeros((0, int(entry.get("dim", dim or 0))), np.float16)
    return all_ids, np.concatenate(parts)


def remove_tree(path: Path) -> None:
    """Remove a directory tree if present."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        os.unlink(path)
