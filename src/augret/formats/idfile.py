"""Id files: one id per line, line ``i + 1`` naming row ``i`` of the vectors or index beside it.

Used by embedding shards (``shard_NNNNN.ids.txt``) and index directories (``ids.txt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from augret.data.jsonl import atomic_writer
from augret.errors import DataFormatError

__all__ = ["read_id_file", "write_id_file"]

_CHUNK = 1 << 16


def write_id_file(path: Path, ids: Sequence[str]) -> None:
    """Write ``ids`` one per line, atomically."""
    with atomic_writer(path) as f:
        for start in range(0, len(ids), _CHUNK):
            f.write("".join(f"{i}\n" for i in ids[start: start + _CHUNK]))


def read_id_file(path: Path) -> list[str]:
    """The ids of a one-id-per-line file (a final newline is optional).

    Raises:
        DataFormatError: The file is not UTF-8, or a line is empty or holds whitespace.
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
