"""did → record lookup over pool files without holding millions of Python objects.

:class:`PoolLookup` scans the pool files once, keeping per line only the hashed did (int64),
the file number, the byte offset and the modality (about 20 bytes a line, ~110 MB for the
5.6M union), sorted by did. A lookup is a binary search, a seek and one ``json.loads``. The
index is cached on disk, keyed by each file's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from augret._paths import cache_dir
from augret.data.ids import MODALITIES, hash_did
from augret.data.records import Candidate
from augret.errors import DataFormatError, DataNotFoundError

__all__ = ["PoolLookup"]

log = logging.getLogger(__name__)

_DID = re.compile(rb'"did"\s*:\s*"(\d+):(\d+)"')
_MODALITY = re.compile(rb'"modality"\s*:\s*"([a-z,]+)"')
_MOD_CODE = {m.encode(): i for i, m in enumerate(MODALITIES)}
_FORMAT_VERSION = 1


class PoolLookup:
    """Random access to candidates by did over one or more pool JSONL files.

    Args:
        files: Pool files (e.g. ``MBEIRDir.union_pool_files()``).
        cache: Directory for the offset index (``None``: augret's cache dir; ``False``: none).

    Raises:
        DataFormatError: A line has no readable did, or a did occurs twice.
    """

    def __init__(self, files: Sequence[str | Path], *, cache: str | Path | bool | None = None):
        self.files = [Path(f) for f in files]
        for f in self.files:
            if not f.is_file():
                raise DataNotFoundError(f"{f}: no such file")
        cache_file = self._cache_file(cache)
        if cache_file is not None and cache_file.is_file():
            data = np.load(cache_file)
            self._keys, self._file, self._offset, self._modality = (
                data["keys"], data["files"], data["offset"], data["modality"])
        else:
            self._build()
            if cache_file is not None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_suffix(".tmp.npz")
                np.savez(tmp, keys=self._keys, files=self._file, offset=self._offset,
                         modality=self._modality)
                tmp.replace(cache_file)

    def _cache_file(self, cache: str | Path | bool | None) -> Path | None:
        if cache is False:
            return None
        folder = cache_dir() / "pool-offsets" if cache in (None, True) else Path(cache)
        h = hashlib.sha256(str(_FORMAT_VERSION).encode())
        for f in self.files:
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return folder / f"{h.hexdigest()[:24]}.npz"

    def _build(self) -> None:
        keys: list[np.ndarray] = []
        files: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        mods: list[np.ndarray] = []
        for fi, path in enumerate(self.files):
            k, o, m = _scan(path)
            keys.append(k)
            offsets.append(o)
            mods.append(m)
            files.append(np.full(len(k), fi, dtype=np.int16))
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        order = np.argsort(key, kind="stable")
        self._keys = key[order]
        self._file = np.concatenate(files)[order] if files else np.zeros(0, np.int16)
        self._offset = np.concatenate(offsets)[order] if offsets else np.zeros(0, np.int64)
        self._modality = np.concatenate(mods)[order] if mods else np.zeros(0, np.int8)
        dup = np.flatnonzero(self._keys[1:] == self._keys[:-1])
        if dup.size:
            from augret.data.ids import unhash_did

            raise DataFormatError(
                f"did {unhash_did(self._keys[dup[0]])} occurs more than once "
                f"({dup.size} duplicated dids in all)", path=", ".join(map(str, self.files)))
        log.debug("indexed %d candidates in %d files", len(self._keys), len(self.files))

    def __len__(self) -> int:
        return int(self._keys.size)

    def _position(self, did: str) -> int | None:
        try:
            key = hash_did(did)
        except DataFormatError:
            return None
        i = int(np.searchsorted(self._keys, key))
        return i if i < self._keys.size and self._keys[i] == key else None

    def __contains__(self, did: object) -> bool:
        return isinstance(did, str) and self._position(did) is not None

    def contains_many(self, dids: Iterable[str]) -> np.ndarray:
        """Boolean mask: which of ``dids`` are in the pools."""
        from augret.data.ids import hash_dids

        keys = hash_dids(dids)
        i = np.searchsorted(self._keys, keys).clip(max=max(self._keys.size - 1, 0))
        return (self._keys[i] == keys) if self._keys.size else np.zeros(keys.size, bool)

    def modality(self, did: str) -> str:
        """The modality of a candidate, without reading its line.

        Raises:
            KeyError: Unknown did.
        """
        i = self._position(did)
        if i is None:
            raise KeyError(did)
        return MODALITIES[int(self._modality[i])]

    def get(self, did: str) -> Candidate:
        """The full record of a candidate.

        Raises:
            KeyError: Unknown did.
        """
        return self.get_many([did])[0]

    def get_many(self, dids: Sequence[str]) -> list[Candidate]:
        """Records of several dids, in the order asked; reads each file in offset order."""
        positions = []
        for did in dids:
            i = self._position(did)
            if i is None:
                raise KeyError(did)
            positions.append(i)
        out: list[Candidate | None] = [None] * len(positions)
        order = sorted(range(len(positions)),
                       key=lambda j: (self._file[positions[j]], self._offset[positions[j]]))
        handles: dict[int, object] = {}
        try:
            for j in order:
                p = positions[j]
                fi = int(self._file[p])
                if fi not in handles:
                    handles[fi] = self.files[fi].open("rb")
                f = handles[fi]
                f.seek(int(self._offset[p]))  # type: ignore[attr-defined]
                out[j] = Candidate.from_dict(json.loads(f.readline()))  # type: ignore[attr-defined]
        finally:
            for f in handles.values():
                f.close()  # type: ignore[attr-defined]
        return out  # type: ignore[return-value]


def _scan(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = np.empty(1 << 16, np.int64)
    offsets = np.empty(1 << 16, np.int64)
    mods = np.empty(1 << 16, np.int8)
    n = 0
    pos = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            start = pos
            pos += len(line)
            if not line.strip():
                continue
            m = _DID.search(line)
            mm = _MODALITY.search(line)
            if m is None or mm is None or mm.group(1) not in _MOD_CODE:
                did, mod = _slow_fields(path, number, line)
            else:
                did = int(m.group(1)) * 10_000_000 + int(m.group(2))
                mod = _MOD_CODE[mm.group(1)]
            if n == keys.size:
                keys = np.resize(keys, n * 2)
                offsets = np.resize(offsets, n * 2)
                mods = np.resize(mods, n * 2)
            keys[n], offsets[n], mods[n] = did, start, mod
            n += 1
    return keys[:n].copy(), offsets[:n].copy(), mods[:n].copy()


def _slow_fields(path: Path, number: int, line: bytes) -> tuple[int, int]:
    try:
        c = Candidate.from_dict(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"invalid JSON: {exc}", path=path, line=number) from None
    except DataFormatError as exc:
        raise DataFormatError(exc.reason, path=path, line=number, field=exc.field) from None
    return hash_did(c.did), MODALITIES.index(c.modality)
