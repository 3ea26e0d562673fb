"""Stage fingerprints and skip records: whether earlier output is reusable.

One hash function (:func:`stable_hash`) for every fingerprint and config hash. A stage that
finishes records its fingerprint beside its output: ``stage.json`` in a pipeline stage's
directory, ``runs.json`` in a run directory (one fingerprint per run file). A record that is
absent or unreadable only means the work is done again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from augret.data.jsonl import read_json_or_none, write_json

__all__ = [
    "RUNS_FILE",
    "STAGE_FILE",
    "file_stats",
    "fingerprint",
    "read_run_manifest",
    "read_stage_record",
    "stable_hash",
    "write_run_manifest",
    "write_stage_record",
]

STAGE_FILE = "stage.json"
RUNS_FILE = "runs.json"


def stable_hash(obj: Any, *, length: int | None = 16, ensure_ascii: bool = True) -> str:
    """A stable hex SHA-256 of a JSON-able value (keys sorted; other objects as ``str``).

    Args:
        obj: The value; dict key order does not matter.
        length: Hex digits kept (``None``: all 64).
        ensure_ascii: Hash non-ASCII text as ``\\u`` escapes (``True``) or as UTF-8 bytes.
            Each caller keeps one setting: it is part of the hashed bytes.

    Returns:
        The hex digest, cut to ``length``.
    """
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=ensure_ascii)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return digest if length is None else digest[:length]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (:func:`stable_hash` of their list)."""
    return stable_hash(list(parts))


def file_stats(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Path (resolved), size and mtime of each existing file, in the given order."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            st = p.stat()
            out.append({"path": str(p.resolve()), "size": st.st_size,
                        "mtime_ns": st.st_mtime_ns})
    return out


def read_stage_record(directory: str | Path) -> dict[str, Any]:
    """A stage directory's ``stage.json`` (empty when absent or unreadable)."""
    return read_json_or_none(Path(directory) / STAGE_FILE) or {}


def write_stage_record(directory: str | Path, record: dict[str, Any]) -> None:
    """Write ``stage.json`` atomically (the last file of a finished stage)."""
    write_json(Path(directory) / STAGE_FILE, record, default=str)


def read_run_manifest(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's ``runs.json``: ``{run file name: {"fingerprint", ...}}`` (empty when
    absent or unreadable)."""
    return read_json_or_none(Path(run_dir) / RUNS_FILE) or {}


def write_run_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``runs.json`` atomically."""
    write_json(Path(run_dir) / RUNS_FILE, manifest, sort_keys=True, newline=False)
