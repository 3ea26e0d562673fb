"""A persistent, crash-safe, content-addressed store of generations (SQLite in WAL mode).

The key is a hash of everything that determines an output: model id and revision, prompt
version and digest, route, decoding parameters, token and word budgets, the over-long
policy, the text sent and the image bytes sent. So a killed run loses at most its
uncommitted batch, the same image + prompt anywhere in a dataset (across pools and splits)
is generated once, and each output records its provenance. Deterministic failures (the same
input fails the same way) are recorded too, with their reason, so they are not paid for
again. Several processes may share one store file.
"""

from __future__ import annotations

import contextlib
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

__all__ = ["Generation", "GenerationStore", "RecordedFailure", "default_store_path",
           "generation_key"]

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
    created REAL NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    model TEXT NOT NULL,
    revision TEXT,
    prompt_version TEXT NOT NULL,
    route TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_COLUMNS = ("key, text, model, revision, prompt_version, route, params, output_tokens, "
            "finish_reason, created, truncated")


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
    truncated: bool = False


@dataclass(frozen=True)
class RecordedFailure:
    """A deterministic failure with its reason (see :mod:`augret.enhance.outputs`)."""

    key: str
    kind: str
    reason: str
    model: str
    revision: str | None
    prompt_version: str
    route: str
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
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(generations)")}
        if "truncated" not in columns:  # a store written before outputs could be truncated
            with contextlib.suppress(sqlite3.OperationalError):  # another process did it
                self._db.execute("ALTER TABLE generations ADD COLUMN truncated INTEGER "
                                 "NOT NULL DEFAULT 0")

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

    def _select(self, sql: str, keys: Sequence[str]) -> list[tuple]:
        out: list[tuple] = []
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), 500):
                chunk = unique[i: i + 500]
                marks = ",".join("?" * len(chunk))
                out.extend(self._db.execute(sql.format(marks=marks), chunk).fetchall())
        return out

    def get_many(self, keys: Sequence[str]) -> dict[str, Generation]:
        """The stored generations among ``keys`` (missing keys are absent from the result)."""
        rows = self._select(f"SELECT {_COLUMNS} FROM generations WHERE key IN ({{marks}})",
                            keys)
        return {r[0]: Generation(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7],
                                 r[8], r[9], bool(r[10])) for r in rows}

    def get_failures(self, keys: Sequence[str]) -> dict[str, RecordedFailure]:
        """The recorded failures among ``keys``."""
        rows = self._select("SELECT key, kind, reason, model, revision, prompt_version, route, "
                            "created FROM failures WHERE key IN ({marks})", keys)
        return {r[0]: RecordedFailure(*r) for r in rows}

    def failure_count(self) -> int:
        """How many failures are recorded."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM failures").fetchone()[0])

    def _write(self, statements: Sequence[tuple[str, list[tuple]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    if rows:
                        self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def put_many(self, generations: Iterable[Generation],
                 failures: Iterable[RecordedFailure] = ()) -> None:
        """Store generations and deterministic failures in one transaction.

        An existing generation is kept as it is; a generation replaces a recorded failure of
        its key (a retry that succeeded); a failure replaces an earlier failure of its key and
        is ignored where the key has a generation.
        """
        rows = [(g.key, g.text, g.model, g.revision, g.prompt_version, g.route,
                 json.dumps(g.params, sort_keys=True), g.output_tokens, g.finish_reason,
                 g.created or time.time(), int(g.truncated)) for g in generations]
        fails = [(f.key, f.kind, f.reason, f.model, f.revision, f.prompt_version, f.route,
                  f.created or time.time()) for f in failures]
        if not rows and not fails:
            return
        self._write([
            (f"INSERT OR IGNORE INTO generations ({_COLUMNS}) VALUES "
             f"(?,?,?,?,?,?,?,?,?,?,?)", rows),
            ("DELETE FROM failures WHERE key = ?", [(r[0],) for r in rows]),
            ("INSERT OR REPLACE INTO failures SELECT ?,?,?,?,?,?,?,? WHERE NOT EXISTS "
             "(SELECT 1 FROM generations WHERE key = ?)", [(*f, f[0]) for f in fails]),
        ])
