"""A persistent, crash-safe, content-addressed store of generations (SQLite in WAL mode).

The key is a hash of everything that determines an output: model id and revision, prompt
version and digest, route, decoding parameters, token budget, the text sent and the image
bytes sent. So a killed run loses at most its uncommitted batch, the same image + prompt
anywhere in a dataset (across pools and splits) is generated once, and each output records
its provenance. Several processes may share one store file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augret._paths import cache_dir
from augret.formats.fingerprint import stable_hash

__all__ = ["Generation", "GenerationStore", "default_store_path", "generation_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    revision TEXT,
    prompt_version TEXT NOT NULL,
    route TEXT NOT NULL,
    params TEXT NOT NULL,
    output_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL
)
"""


def default_store_path() -> Path:
    """The per-user store shared by all runs: ``<cache>/enhance/generations.sqlite``."""
    return cache_dir() / "enhance" / "generations.sqlite"


def generation_key(
    *,
    model: str,
    revision: str | None,
    prompt_version: str,
    route: str,
    params: dict[str, Any],
    text: str | None,
    image_sha256: str | None,
) -> str:
    """The content address of one generation: the full hex SHA-256 of its parts' JSON (text
    hashed as UTF-8, not escaped; see :func:`augret.formats.fingerprint.stable_hash`)."""
    return stable_hash([model, revision, prompt_version, route, params, text, image_sha256],
                       length=None, ensure_ascii=False)


@dataclass(frozen=True)
class Generation:
    """A stored output with its provenance."""

    key: str
    text: str
    model: str
    revision: str | None
    prompt_version: str
    route: str
    params: dict[str, Any]
    output_tokens: int
    finish_reason: str | None
    created: float


class GenerationStore:
    """The SQLite store. Thread-safe; safe for several processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def __enter__(self) -> GenerationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, Generation]:
        """The stored generations among ``keys`` (missing keys are absent from the result)."""
        out: dict[str, Generation] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), 500):
                chunk = unique[i: i + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    f"SELECT key, text, model, revision, prompt_version, route, params, "
                    f"output_tokens, finish_reason, created FROM generations "
                    f"WHERE key IN ({marks})", chunk,
                ):
                    out[row[0]] = Generation(row[0], row[1], row[2], row[3], row[4], row[5],
                                             json.loads(row[6]), row[7], row[8], row[9])
        return out

    def put_many(self, generations: Iterable[Generation]) -> None:
        """Store generations in one transaction (existing keys are kept as they are)."""
        rows = [(g.key, g.text, g.model, g.revision, g.prompt_version, g.route,
                 json.dumps(g.params, sort_keys=True), g.output_tokens, g.finish_reason,
                 g.created or time.time()) for g in generations]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
