"""Ranked runs in columnar form, and their files.

A :class:`Run` holds one row per query: a ``(num_queries, depth)`` int64 matrix of document
codes (``-1`` pads short rows), the matching float64 scores and the document vocabulary the
codes index. Rows are kept in ranking order: score descending, ties in the order given (file
or insertion order, a stable sort), so FAISS's order in UniIR run files is preserved.

Three file forms are read and written:

* TREC, 6 columns: ``qid Q0 did rank score tag``;
* UniIR, 7 columns: ``qid Q0 did rank score tag task_id`` (task ids are kept);
* JSON: ``{"qid": {"did": score, ...}, ...}``.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.jsonl import atomic_writer
from augret.errors import ConfigError
from augret.evaluate import _parse

__all__ = ["Run", "read_run", "write_run"]


class Run:
    """A ranked run: per query, documents in ranking order with their scores.

    Args:
        qids: Query ids, one per row (unique).
        docs: ``(len(qids), depth)`` integer codes into ``vocab``; ``-1`` marks padding.
        scores: Scores of the same shape (values at padding are ignored).
        vocab: Document ids; ``docs`` holds indices into it.
        task_ids: Optional M-BEIR task id per query (UniIR's 7th run column).
        tag: Optional run tag (the 6th column of TREC runs).

    Raises:
        ConfigError: Shapes disagree, a code is out of range, a qid repeats, a document repeats
            within a row, or a score is NaN.
    """

    __slots__ = ("_qid_index", "_vocab_index", "docs", "qids", "scores", "tag", "task_ids",
                 "vocab")

    def __init__(
        self,
        qids: Sequence[str],
        docs: np.ndarray,
        scores: np.ndarray,
        vocab: Sequence[str],
        *,
        task_ids: Mapping[str, int] | None = None,
        tag: str | None = None,
    ) -> None:
        self.qids = list(qids)
        self.vocab = list(vocab)
        docs = np.array(docs, dtype=np.int64, copy=True)
        scores = np.array(scores, dtype=np.float64, copy=True)
        if docs.size == 0 and len(self.qids) == 0:
            docs, scores = docs.reshape(0, 0), scores.reshape(0, 0)
        if docs.ndim != 2 or docs.shape != scores.shape or docs.shape[0] != len(self.qids):
            raise ConfigError(
                f"run arrays disagree: {len(self.qids)} qids, docs {docs.shape}, "
                f"scores {scores.shape}"
            )
        if docs.size and (docs.min() < -1 or docs.max() >= len(self.vocab)):
            raise ConfigError(f"document codes must lie in [-1, {len(self.vocab)})")
        real = docs >= 0
        if np.isnan(scores[real]).any():
            raise ConfigError("run scores must not be NaN")
        if docs.shape[1] > 1:
            ordered = np.sort(docs, axis=1)
            if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
                raise ConfigError("a document appears twice in one query's ranking")
        self._qid_index: dict[str, int] | None = None
        self._vocab_index: dict[str, int] | None = None
        if len(self.qid_index) != len(self.qids):
            raise ConfigError("run qids must be unique")
        self.docs, self.scores = _rank_rows(docs, scores)
        self.task_ids = dict(task_ids) if task_ids else {}
        self.tag = tag

    # ---- views -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.qids)

    def __repr__(self) -> str:
        return f"Run({len(self.qids)} queries, depth {self.depth}, {len(self.vocab)} docs)"

    @property
    def depth(self) -> int:
        """The widest row (number of columns of :attr:`docs`)."""
        return int(self.docs.shape[1])

    @property
    def qid_index(self) -> dict[str, int]:
        """``{qid: row}`` (built once)."""
        if self._qid_index is None:
            self._qid_index = {q: i for i, q in enumerate(self.qids)}
        return self._qid_index

    @property
    def vocab_index(self) -> dict[str, int]:
        """``{did: code}`` (built once)."""
        if self._vocab_index is None:
            index = {d: i for i, d in enumerate(self.vocab)}
            if len(index) != len(self.vocab):
                raise ConfigError("run vocabulary has repeated document ids")
            self._vocab_index = index
        return self._vocab_index

    def ranking(self, qid: str) -> list[tuple[str, float]]:
        """The ``(did, score)`` pairs of one query in ranking order (empty if absent)."""
        row = self.qid_index.get(qid)
        if row is None:
            return []
        codes, scores = self.docs[row], self.scores[row]
        keep = codes >= 0
        return [(self.vocab[c], float(s)) for c, s in zip(codes[keep], scores[keep], strict=True)]

    def truncate(self, depth: int) -> Run:
        """A copy keeping the first ``depth`` documents of each query."""
        if depth < 1:
            raise ConfigError(f"depth must be a positive integer, got {depth}")
        out = Run(self.qids, self.docs[:, :depth], self.scores[:, :depth], self.vocab,
                  task_ids=self.task_ids, tag=self.tag)
        out._vocab_index = self._vocab_index  # same vocabulary
        return out

    # ---- dict form -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, run: Mapping[str, Mapping[str, float]], *, depth: int | None = None,
                  task_ids: Mapping[str, int] | None = None, tag: str | None = None) -> Run:
        """Build from ``{qid: {did: score}}``; ties keep the mapping's insertion order."""
        vmap: dict[str, int] = {}
        qids, rows, codes, scores = [], array("q"), array("q"), array("d")
        for i, (qid, docs) in enumerate(run.items()):
            qids.append(str(qid))
            for did, score in docs.items():
                rows.append(i)
                codes.append(vmap.setdefault(str(did), len(vmap)))
                scores.append(float(score))
        out = _from_flat(qids, rows, codes, scores, list(vmap), task_ids=task_ids, tag=tag)
        out._vocab_index = vmap
        return out.truncate(depth) if depth is not None else out

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{qid: {did: score}}`` with each query's documents in ranking order."""
        out: dict[str, dict[str, float]] = {}
        vocab = self.vocab
        rows = zip(self.qids, self.docs.tolist(), self.scores.tolist(), strict=True)
        for qid, codes, scores in rows:
            out[qid] = {vocab[c]: s for c, s in zip(codes, scores, strict=True) if c >= 0}
        return out


def _rank_rows(docs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending (stable), padding last; pad scores become NaN."""
    real = docs >= 0
    if docs.shape[1] > 1:
        nxt_pad = ~real[:, 1:]
        ordered = nxt_pad | (real[:, :-1] & (scores[:, :-1] >= scores[:, 1:]))
        if not ordered.all():
            key = np.where(real, -scores, np.nan)
            order = np.argsort(key, axis=1, kind="stable")
            docs = np.take_along_axis(docs, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            real = docs >= 0
    scores[~real] = np.nan
    return docs, scores


def _from_flat(qids: list[str], rows: Iterable[int] | np.ndarray, codes: Iterable[int] |
               np.ndarray, scores: Iterable[float] | np.ndarray, vocab: list[str],
               **kwargs: Any) -> Run:
    """Scatter flat ``(row, code, score)`` triples (rows in any order) into a :class:`Run`."""
    rows = np.asarray(rows, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    counts = np.bincount(rows, minlength=len(qids))
    width = int(counts.max()) if counts.size else 0
    order = np.argsort(rows, kind="stable")
    col = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    r = rows[order]
    docs_m = np.full((len(qids), width), -1, dtype=np.int64)
    score_m = np.full((len(qids), width), np.nan)
    docs_m[r, col] = codes[order]
    score_m[r, col] = scores[order]
    return Run(qids, docs_m, score_m, vocab, **kwargs)


# ---- reading -------------------------------------------------------------------------
def read_run(path: str | Path, *, depth: int | None = None) -> Run:
    """Read a TREC (6-column), UniIR (7-column) or JSON run file; the format is detected.

    A file whose first non-blank character is ``{`` is JSON; any other is read line by line
    in blocks, so memory is bounded by the result whatever the file size. Documents are
    ranked by score (ties in file order); the rank column is checked but not used.

    Args:
        path: The run file.
        depth: Keep only the first ``depth`` documents of each query (after ranking).

    Raises:
        DataNotFoundError: The file does not exist.
        DataFormatError: The file is empty, not UTF-8, or a line has a wrong column count,
            a non-integer rank or task id, a non-numeric score, a task id that differs from
            the query's earlier lines, or repeats a (qid, did) pair; the message names file
            and line.
    """
    path = Path(path)
    if _parse.first_char(path) == "{":
        run = Run.from_dict(_parse.parse_json(path))
    else:
        f = _parse.parse_trec(path)
        run = _from_flat(f.qids, f.rows, f.codes, f.scores, list(f.vocab), task_ids=f.task_ids,
                         tag=f.tag)
        run._vocab_index = f.vocab
    return run.truncate(depth) if depth is not None else run


# ---- writing -------------------------------------------------------------------------
def write_run(path: str | Path, run: Run | Mapping[str, Mapping[str, float]], *,
              tag: str | None = None, task_ids: Mapping[str, int] | int | None = None,
              fmt: str | None = None) -> None:
    """Write a run atomically as TREC/UniIR lines or as JSON.

    Args:
        path: The output file; a ``.json`` suffix selects JSON unless ``fmt`` says otherwise.
        run: The run (or its dict form).
        tag: The 6th column; defaults to the run's own tag, else ``"augret"``.
        task_ids: Write UniIR's 7th column with these task ids (one per qid, or one for all).
            Defaults to the run's own task ids when it has them; otherwise 6 columns.
        fmt: ``"trec"`` or ``"json"``; ``None`` picks by suffix.

    Raises:
        ConfigError: Bad ``fmt``, a tag or id with whitespace, or a qid without a task id.
    """
    path = Path(path)
    if not isinstance(run, Run):
        run = Run.from_dict(run)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "trec")
    if fmt == "json":
        with atomic_writer(path) as f:
            json.dump(run.to_dict(), f, ensure_ascii=False)
            f.write("\n")
        return
    if fmt != "trec":
        raise ConfigError(f"unknown run format {fmt!r}; use 'trec' or 'json'")
    tag = tag or run.tag or "augret"
    tasks = run.task_ids if task_ids is None else task_ids
    with_tasks = isinstance(tasks, int) or bool(tasks)
    for name, values in (("tag", [tag]), ("qid", run.qids), ("did", run.vocab)):
        bad = next((v for v in values if not v or any(c.isspace() for c in v)), None)
        if bad is not None:
            raise ConfigError(f"{name} {bad!r} is empty or contains whitespace")
    with atomic_writer(path) as f:
        vocab = run.vocab
        rows = zip(run.qids, run.docs.tolist(), run.scores.tolist(), strict=True)
        for qid, codes, scores in rows:
            tail = f" {tag}"
            if with_tasks:
                task = tasks if isinstance(tasks, int) else tasks.get(qid)
                if task is None:
                    raise ConfigError(f"no task id for query {qid!r}")
                tail = f" {tag} {task}"
            ranked = enumerate(zip(codes, scores, strict=True), start=1)
            f.write("".join(f"{qid} Q0 {vocab[c]} {r} {s!r}{tail}\n"
                            for r, (c, s) in ranked if c >= 0))
