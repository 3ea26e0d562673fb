"""Reading embedding directories (``augret embed`` output, see ``docs/formats.md``).

An entry (``queries/<task>/`` or ``pools/<pool>/``) is complete once its ``entry.json`` exists;
its rows are the fp16 ``shard_*.npy`` files in name order, each aligned with the ids of
``shard_*.ids.txt``. :class:`VectorSet` streams one or more entries (or in-memory arrays) as
float32, L2-normalised batches, so an index can be built without ever holding the whole
collection in a second copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from augret.errors import DataFormatError, DataNotFoundError

__all__ = [
    "EmbeddingDir",
    "EmbeddingEntry",
    "Shard",
    "VectorSet",
    "l2_normalize",
    "read_id_file",
]

log = logging.getLogger(__name__)

GROUPS = ("queries", "pools")
BATCH_ROWS = 65_536


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` as C-contiguous float32 with unit L2 norm (zero rows stay zero)."""
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    x /= norms[:, None]
    return x


def read_id_file(path: Path) -> list[str]:
    """The ids of a one-id-per-line file (a final newline is optional).

    Raises:
        DataFormatError: A line is empty or holds whitespace.
    """
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"not UTF-8: {exc}", path=path) from None
    ids = text.split("\n")
    if ids and ids[-1] == "":
        ids.pop()
    for i, value in enumerate(ids):
        if value.endswith("\r"):
            ids[i] = value = value[:-1]
        if not value or value != value.strip() or " " in value or "\t" in value:
            raise DataFormatError(f"invalid id {value!r} (empty or with whitespace)",
                                  path=path, line=i + 1)
    return ids


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
    """One entry of an embedding directory, e.g. ``pools/mscoco_task0_test``.

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
        info_file = self.path / "entry.json"
        if not info_file.is_file():
            raise DataNotFoundError(f"{self.path}: no entry.json (entry missing or incomplete)")
        self._info_bytes = info_file.read_bytes()
        try:
            info = json.loads(self._info_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"invalid JSON: {exc}", path=info_file) from None
        if not isinstance(info, dict):
            raise DataFormatError("expected a JSON object", path=info_file)
        self.info: dict[str, Any] = info
        self._dim = dim

    def __repr__(self) -> str:
        return f"EmbeddingEntry({self.key!r})"

    @property
    def key(self) -> str:
        """``"<group>/<name>"``, e.g. ``"pools/cirr_task7"``."""
        return f"{self.group}/{self.name}"

    @property
    def fingerprint(self) -> str:
        """A short hash of ``entry.json`` (changes whenever the entry is rewritten)."""
        return hashlib.sha256(self._info_bytes).hexdigest()[:16]

    def source_file(self) -> Path | None:
        """The file the entry was embedded from, as recorded in ``entry.json``."""
        src = self.info.get("source")
        if isinstance(src, dict):
            src = src.get("path") or src.get("file")
        return Path(src) if isinstance(src, str) and src else None

    def _shard_names(self) -> list[str] | None:
        shards = self.info.get("shards")
        if isinstance(shards, list) and shards:
            names = []
            for s in shards:
                name = s.get("file") or s.get("path") or s.get("name") if isinstance(s, dict) \
                    else s
                if not isinstance(name, str):
                    return None
                names.append(Path(name).name)
            return names
        return None

    @cached_property
    def shards(self) -> list[Shard]:
        """The shards in row order, checked against their id files and ``entry.json``.

        Raises:
            DataFormatError: A shard is not a 2-D float array of the entry's dimension, its
                id file is missing or has another number of lines, or the shard count or row
                total disagrees with ``entry.json``.
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
        if self._dim is None:
            raise DataFormatError("entry has no shards", path=self.path)
        return self._dim

    @property
    def rows(self) -> int:
        """The number of vectors."""
        return sum(s.rows for s in self.shards)

    def read_ids(self) -> list[str]:
        """All ids in row order.

        Raises:
            DataFormatError: An id file's line count differs from its shard's rows.
        """
        out: list[str] = []
        for s in self.shards:
            ids = read_id_file(s.ids)
            if len(ids) != s.rows:
                raise DataFormatError(
                    f"{len(ids)} ids for the {s.rows} rows of {s.vectors.name}", path=s.ids)
            out.extend(ids)
        return out


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
        meta_file = self.root / "meta.json"
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: no such directory")
        if not meta_file.is_file():
            raise DataNotFoundError(f"{self.root}: no meta.json (not an embedding directory)")
        try:
            meta = json.loads(meta_file.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"invalid JSON: {exc}", path=meta_file) from None
        if not isinstance(meta, dict):
            raise DataFormatError("expected a JSON object", path=meta_file)
        self.meta: dict[str, Any] = meta

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
            if (p / "entry.json").is_file():
                out.append(p.name)
            else:
                log.warning("%s: no entry.json; entry skipped (incomplete?)", p)
        return out

    def has(self, group: str, name: str) -> bool:
        """Whether a complete entry exists."""
        return (self.root / group / name / "entry.json").is_file()

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


class VectorSet:
    """Rows of several entries (or arrays) seen as one collection, read batch by batch.

    Args:
        parts: ``(label, vectors, ids)`` triples, where ``vectors`` is an
            :class:`EmbeddingEntry` (ids then come from it; pass ``None``) or a 2-D array.
    """

    def __init__(self, parts: Sequence[tuple[str, EmbeddingEntry | np.ndarray,
                                             Sequence[str] | None]]) -> None:
        self._parts = list(parts)
        dims = set()
        for _, vec, _ in self._parts:
            dims.add(vec.dim if isinstance(vec, EmbeddingEntry) else int(np.shape(vec)[1]))
        if len(dims) > 1:
            raise DataFormatError(f"the sources have different dimensions: {sorted(dims)}")
        self.dim = dims.pop() if dims else 0

    @classmethod
    def from_entries(cls, entries: Sequence[EmbeddingEntry]) -> VectorSet:
        """A set over embedding entries, concatenated in the order given."""
        return cls([(e.key, e, None) for e in entries])

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, ids: Sequence[str], label: str = "array"
                    ) -> VectorSet:
        """A set over one in-memory array and its ids."""
        if np.ndim(vectors) != 2:
            raise DataFormatError(f"vectors must be 2-D, got shape {np.shape(vectors)}")
        if len(ids) != len(vectors):
            raise DataFormatError(f"{len(ids)} ids for {len(vectors)} vectors")
        return cls([(label, vectors, list(ids))])

    @property
    def labels(self) -> list[str]:
        """The label of each part (entry keys for entries)."""
        return [label for label, _, _ in self._parts]

    @property
    def part_rows(self) -> list[int]:
        """Rows of each part."""
        return [v.rows if isinstance(v, EmbeddingEntry) else len(v) for _, v, _ in self._parts]

    def __len__(self) -> int:
        return sum(self.part_rows)

    def describe(self) -> list[dict[str, Any]]:
        """Per part: ``entry`` (label), ``rows`` and, for entries, ``fingerprint``."""
        out = []
        for label, vec, _ in self._parts:
            item: dict[str, Any] = {"entry": label, "rows": self.part_rows[len(out)]}
            if isinstance(vec, EmbeddingEntry):
                item["fingerprint"] = vec.fingerprint
            out.append(item)
        return out

    def read_ids(self) -> list[str]:
        """All ids in row order (checked against the row counts)."""
        out: list[str] = []
        for _, vec, ids in self._parts:
            out.extend(vec.read_ids() if isinstance(vec, EmbeddingEntry) else ids or [])
        return out

    def _arrays(self) -> Iterator[np.ndarray]:
        for _, vec, _ in self._parts:
            if isinstance(vec, EmbeddingEntry):
                for shard in vec.shards:
                    yield shard.load()
            else:
                yield vec

    def iter_batches(self, batch_rows: int = BATCH_ROWS, *, normalize: bool = True
                     ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, float32 batch)`` in row order, at most ``batch_rows`` rows each.

        Args:
            batch_rows: The largest batch.
            normalize: L2-normalise each row (as UniIR does before indexing and search).
        """
        offset = 0
        for arr in self._arrays():
            for start in range(0, len(arr), batch_rows):
                chunk = arr[start: start + batch_rows]
                out = l2_normalize(chunk) if normalize else np.ascontiguousarray(
                    chunk, dtype=np.float32)
                yield offset + start, out
            offset += len(arr)

    def take(self, rows: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """The vectors of the given global row positions, as float32 (in the order given)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        offset = 0
        for arr in self._arrays():
            lo, hi = np.searchsorted(sorted_rows, [offset, offset + len(arr)])
            if hi > lo:
                local = sorted_rows[lo:hi] - offset
                out[order[lo:hi]] = np.asarray(arr[local], dtype=np.float32)
            offset += len(arr)
        return l2_normalize(out) if normalize else out
