"""Counting distinct keys in bounded memory: 8 bytes per distinct key (a 64-bit hash).

Keys are hashed with BLAKE2b to 64 bits; with n distinct keys the chance of any collision is
about n² / 2⁶⁵ (under 10⁻⁶ for the 6M items of M-BEIR). New hashes go into a small buffer that
is merged into a sorted ``uint64`` array when full.
"""

from __future__ import annotations

import hashlib
from array import array

import numpy as np

__all__ = ["UniqueCounter", "key_hash"]

_BUFFER = 1 << 18


def key_hash(*parts: str | None) -> int:
    """A 64-bit hash of the parts (``None`` and ``""`` differ)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(b"\x00" if p is None else b"\x01" + p.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little")


class UniqueCounter:
    """A set of 64-bit hashes that only counts (no membership of the original keys)."""

    __slots__ = ("_buf", "_sorted")

    def __init__(self) -> None:
        self._sorted = np.empty(0, np.uint64)
        self._buf = array("Q")

    def add(self, h: int) -> None:
        """Add one hash (see :func:`key_hash`)."""
        self._buf.append(h)
        if len(self._buf) >= _BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            new = np.frombuffer(self._buf, dtype=np.uint64)
            self._sorted = np.union1d(self._sorted, new)
            self._buf = array("Q")

    def values(self) -> np.ndarray:
        """The distinct hashes, sorted."""
        self._flush()
        return self._sorted

    def update(self, other: UniqueCounter) -> int:
        """Add every hash of ``other``; returns how many were new here."""
        before = len(self)
        self._sorted = np.union1d(self.values(), other.values())
        return len(self._sorted) - before

    def __len__(self) -> int:
        return int(self.values().size)
