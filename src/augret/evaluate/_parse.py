"""Parsing of TREC / UniIR / JSON run files into flat arrays (private to runs.py).

TREC and UniIR files are streamed line by line into compact arrays, so memory stays bounded
apart from the result; checks that span lines (task ids, repeated documents) run on the
arrays at the end, and every error names file and line.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.jsonl import iter_lines
from augret.errors import DataFormatError, DataNotFoundError

COLUMNS = {6: "qid Q0 did rank score tag", 7: "qid Q0 did rank score tag task_id"}


@dataclass
class FlatRun:
    """Flat ``(row, code, score)`` triples of a run file, rows and codes in first-seen order."""

    qids: list[str]
    vocab: dict[str, int]  # did -> code, in code order
    rows: np.ndarray
    codes: np.ndarray
    scores: np.ndarray
    numbers: np.ndarray  # the line number of each triple
    task_ids: dict[str, int] = field(default_factory=dict)
    tag: str | None = None


def first_char(path: Path) -> str:
    """The first non-blank character of the file (after a BOM), ``""`` when there is none."""
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise DataNotFoundError(f"{path}: is a directory, expected a file")
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            stripped = chunk.lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
            if stripped:
                return chr(stripped[0])
    return ""


def _check_line(path: Path, number: int, parts: list[str], ncols: int) -> None:
    """Raise the error of one line, if it has one."""
    if len(parts) != ncols or ncols not in COLUMNS:
        want = (f"{ncols} columns ({COLUMNS[ncols]})" if ncols in COLUMNS else
                f"6 columns ({COLUMNS[6]}) or 7 ({COLUMNS[7]})")
        raise DataFormatError(f"expected {want}, got {len(parts)}", path=path, line=number)
    try:
        int(parts[3])
    except ValueError:
        raise DataFormatError(f"rank {parts[3]!r} is not an integer", path=path, line=number,
                              field="rank") from None
    try:
        value = float(parts[4])
    except ValueError:
        value = float("nan")
    if value != value:
        raise DataFormatError(f"score {parts[4]!r} is not a number", path=path, line=number,
                              field="score")
    if ncols == 7:
        try:
            int(parts[6])
        except ValueError:
            raise DataFormatError(f"task id {parts[6]!r} is not an integer", path=path,
                                  line=number, field="task_id") from None


def parse_trec(path: Path) -> FlatRun:
    """Parse a 6- or 7-column run file, streaming its lines.

    Raises:
        DataFormatError: As :func:`augret.evaluate.runs.read_run` documents.
    """
    qmap: dict[str, int] = {}
    vmap: dict[str, int] = {}
    rows, codes, numbers, tasks = array("q"), array("q"), array("q"), array("q")
    scores = array("d")
    add_row, add_code, add_score = rows.append, codes.append, scores.append
    add_number, add_task = numbers.append, tasks.append
    qindex, vindex = qmap.setdefault, vmap.setdefault
    ncols, tag = 0, None
    for number, text in iter_lines(path):
        parts = text.split()
        if not ncols:
            ncols = len(parts)
            if ncols not in COLUMNS:
                _check_line(path, number, parts, ncols)
            tag = parts[5]
        try:
            if len(parts) != ncols:
                raise ValueError
            int(parts[3])
            value = float(parts[4])
            if value != value:
                raise ValueError
            if ncols == 7:
                add_task(int(parts[6]))
        except ValueError:
            _check_line(path, number, parts, ncols)
            raise  # unreachable: _check_line raises for this line
        add_row(qindex(parts[0], len(qmap)))
        add_code(vindex(parts[2], len(vmap)))
        add_score(value)
        add_number(number)
    flat = FlatRun(list(qmap), vmap, np.frombuffer(rows, dtype=np.int64),
                   np.frombuffer(codes, dtype=np.int64), np.frombuffer(scores, dtype=np.float64),
                   np.frombuffer(numbers, dtype=np.int64), tag=tag)
    if ncols == 7:
        flat.task_ids = _task_ids(path, flat, np.frombuffer(tasks, dtype=np.int64))
    _check_duplicates(path, flat)
    return flat


def _task_ids(path: Path, flat: FlatRun, tasks: np.ndarray) -> dict[str, int]:
    _, first = np.unique(flat.rows, return_index=True)  # rows are 0..n-1, all present
    per_row = tasks[first]
    bad = np.flatnonzero(tasks != per_row[flat.rows])
    if bad.size:
        i = bad[0]
        raise DataFormatError(
            f"query {flat.qids[flat.rows[i]]} has task id {tasks[i]} here but "
            f"{per_row[flat.rows[i]]} before", path=path, line=int(flat.numbers[i]),
            field="task_id")
    return dict(zip(flat.qids, per_row.tolist(), strict=True))


def _check_duplicates(path: Path, flat: FlatRun) -> None:
    keys = flat.rows * max(len(flat.vocab), 1) + flat.codes
    vocab = list(flat.vocab)
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if same.size:
        # report the repetition that comes first in the file
        first, second = order[same], order[same + 1]
        j = int(np.argmin(flat.numbers[second]))
        a, b = first[j], second[j]
        raise DataFormatError(
            f"document {vocab[flat.codes[b]]} appears twice for query "
            f"{flat.qids[flat.rows[b]]} (first at line {flat.numbers[a]})",
            path=path, line=int(flat.numbers[b]), field="did")


def parse_json(path: Path) -> dict[str, dict[str, Any]]:
    """Load and check a ``{qid: {did: score}}`` JSON run."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(f"invalid UTF-8 byte 0x{raw[exc.start]:02x}", path=path,
                              line=line) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON: {exc.msg} at column {exc.colno}", path=path,
                              line=exc.lineno) from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"expected a JSON object {{qid: {{did: score}}}}, got "
                              f"{type(obj).__name__}", path=path)
    for qid, docs in obj.items():
        if not isinstance(docs, dict):
            raise DataFormatError(f"expected an object {{did: score}}, got "
                                  f"{type(docs).__name__}", path=path, field=qid)
        for did, score in docs.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
                raise DataFormatError(f"score of {did!r} is not a number: {score!r}",
                                      path=path, field=qid)
    return obj
