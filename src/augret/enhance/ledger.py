"""The run ledger: what one enhancement run attempted, on disk (bounded memory at any scale).

Every engine records the outcome of each generation it attempts (one attempt per content key
per run, whatever its outcome); the assembly reads it back to count each row: the first row
of a key attempted in this run counts the attempt (and is ``generated`` when it succeeded),
later rows with the key are ``cached``, and rows of a key that failed in this run take that
failure. Engines that plan the whole run
before generating (the ray engine) also queue their work here, one entry per key.

The ledger lives in the output directory while the run lasts and is removed when it ends; a
killed run's ledger is discarded by the next run (the generation store holds what finished).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LEDGER_FILE", "Attempt", "RunLedger"]

LEDGER_FILE = ".enhance_run.sqlite"
_CHUNK = 500  # keys per SQL lookup


@dataclass(frozen=True)
class Attempt:
    """The outcome of one generation attempt.

    Attributes:
        key: The content key.
        tokens: Output tokens of a success.
        reason: Why it failed (``None``: a success, stored in the generation store).
        kind: The failure's kind (:data:`augret.enhance.outputs.FAILURE_KINDS`).
    """

    key: str
    tokens: int = 0
    reason: str | None = None
    kind: str | None = None


class RunLedger:
    """This run's attempts and queued work (SQLite, thread-safe).

    Args:
        path: The ledger file; an existing one (a killed run's) is replaced.
    """

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE attempts (key TEXT PRIMARY KEY, tokens INTEGER NOT NULL,"
                         " reason TEXT, kind TEXT, taken INTEGER NOT NULL DEFAULT 0)")
        self._db.execute("CREATE TABLE queue (key TEXT PRIMARY KEY, row TEXT NOT NULL)")

    def record(self, attempts: Sequence[Attempt]) -> None:
        """Record outcomes (the first outcome of a key stands)."""
        if not attempts:
            return
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO attempts (key, tokens, reason, kind) "
                                 "VALUES (?, ?, ?, ?)",
                                 [(a.key, a.tokens, a.reason, a.kind) for a in attempts])

    def _select(self, sql: str, keys: Sequence[str]) -> list[tuple]:
        out: list[tuple] = []
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i: i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                out.extend(self._db.execute(sql.format(marks=marks), chunk).fetchall())
        return out

    def attempted(self, keys: Sequence[str]) -> set[str]:
        """The keys among ``keys`` that were attempted in this run."""
        return {k for (k,) in self._select("SELECT key FROM attempts WHERE key IN ({marks})",
                                           keys)}

    def take(self, keys: Sequence[str]) -> dict[str, Attempt]:
        """The attempts of ``keys`` in this run not handed out yet; each is handed out once,
        to the first row that asks (it counts the attempt; later rows share its outcome)."""
        found = {r[0]: Attempt(*r) for r in self._select(
            "SELECT key, tokens, reason, kind FROM attempts WHERE key IN ({marks}) "
            "AND taken = 0", keys)}
        if found:
            with self._lock:
                self._db.executemany("UPDATE attempts SET taken = 1 WHERE key = ?",
                                     [(k,) for k in found])
        return found

    def failures(self, keys: Sequence[str]) -> dict[str, Attempt]:
        """The failed attempts of this run among ``keys``."""
        return {r[0]: Attempt(*r) for r in self._select(
            "SELECT key, tokens, reason, kind FROM attempts WHERE key IN ({marks}) "
            "AND reason IS NOT NULL", keys)}

    def queue(self, rows: Iterable[tuple[str, str]]) -> None:
        """Queue ``(key, row)`` work entries; a key already queued keeps its first entry."""
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO queue VALUES (?, ?)", rows)

    def queued(self) -> Iterator[str]:
        """The queued rows, in the order their keys were first queued."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute("SELECT rowid, row FROM queue WHERE rowid > ? "
                                        "ORDER BY rowid LIMIT 1000", (last,)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, row in rows:
                yield row

    def close(self) -> None:
        """Close and delete the ledger."""
        with self._lock:
            self._db.close()
        self.path.unlink(missing_ok=True)
