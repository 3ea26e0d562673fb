"""Qrels files: UniIR's 5 columns (``qid 0 did rel task_id``) and TREC's 4 (``qid 0 did rel``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from augret.data.jsonl import ErrorHandler, atomic_writer, iter_lines
from augret.errors import DataFormatError

__all__ = ["QrelRow", "Qrels", "iter_qrels", "read_qrels", "write_qrels"]


@dataclass(frozen=True, slots=True)
class QrelRow:
    """One judgment line."""

    qid: str
    did: str
    relevance: int
    task_id: int | None
    line: int


def iter_qrels(path: str | Path, *, on_error: ErrorHandler | None = None) -> Iterator[QrelRow]:
    """Stream the judgment lines of a 4- or 5-column qrels file.

    Raises:
        DataFormatError: A line has another number of columns or a non-integer relevance or
            task id (the message names file and line), unless ``on_error`` takes it.
    """
    for number, text in iter_lines(path, on_error=on_error):
        parts = text.split()
        err = None
        if len(parts) not in (4, 5):
            err = DataFormatError(
                f"expected 4 columns (qid 0 did rel) or 5 (qid 0 did rel task_id), "
                f"got {len(parts)}",
                path=path,
                line=number,
            )
        else:
            try:
                rel = int(parts[3])
            except ValueError:
                err = DataFormatError(f"relevance {parts[3]!r} is not an integer", path=path,
                                      line=number, field="relevance")
            task = None
            if err is None and len(parts) == 5:
                try:
                    task = int(parts[4])
                except ValueError:
                    err = DataFormatError(f"task id {parts[4]!r} is not an integer", path=path,
                                          line=number, field="task_id")
        if err is not None:
            if on_error is None:
                raise err
            on_error(err)
            continue
        yield QrelRow(parts[0], parts[2], rel, task, number)


@dataclass
class Qrels:
    """Judgments of one qrels file: ``{qid: {did: relevance}}`` plus task ids when given."""

    judgments: dict[str, dict[str, int]] = field(default_factory=dict)
    task_ids: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.judgments)

    def positives(self, qid: str) -> list[str]:
        """The dids judged relevant (relevance > 0) for ``qid``."""
        return [d for d, r in self.judgments.get(qid, {}).items() if r > 0]

    @classmethod
    def from_dict(cls, judgments: Mapping[str, Mapping[str, int]]) -> Qrels:
        """Build from a plain ``{qid: {did: relevance}}`` mapping."""
        return cls({q: dict(d) for q, d in judgments.items()})


def read_qrels(path: str | Path) -> Qrels:
    """Read a 4- or 5-column qrels file; the task id of a query is its first row's, as UniIR."""
    qrels = Qrels()
    for row in iter_qrels(path):
        qrels.judgments.setdefault(row.qid, {})[row.did] = row.relevance
        if row.task_id is not None:
            qrels.task_ids.setdefault(row.qid, row.task_id)
    return qrels


def write_qrels(path: str | Path, qrels: Qrels, *, columns: int = 5) -> None:
    """Write qrels with 5 columns (UniIR, needs task ids) or 4 (TREC)."""
    if columns not in (4, 5):
        raise ValueError("columns must be 4 or 5")
    with atomic_writer(path) as f:
        for qid, docs in qrels.judgments.items():
            for did, rel in docs.items():
                if columns == 5:
                    f.write(f"{qid} 0 {did} {rel} {qrels.task_ids[qid]}\n")
                else:
                    f.write(f"{qid} 0 {did} {rel}\n")
