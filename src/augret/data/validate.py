"""Validate an M-BEIR directory (any subset of tasks) and report every problem found.

Nothing stops at the first bad line: each file is streamed once, every finding gets a
severity, file, line and field, and the report counts them per file and per kind (keeping
the first ``max_examples`` of each kind per file). Id sets are kept as sorted ``int64``
arrays of UniIR's hashed ids, so memory stays proportional to the number of ids (about 20
bytes each), never to Python sets of strings.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.ids import (
    DATASET_CAN_NUM_UPPER_BOUND,
    DATASET_QUERY_NUM_UPPER_BOUND,
    DATASETS,
    MBEIR_TEST_TASKS,
    MODALITIES,
    UNION_POOL_ORDER,
    EvalTask,
    parse_id,
)
from augret.data.instructions import InstructionTable, read_instructions
from augret.data.mbeir import LAYOUT_FILE, MBEIRDir, iter_candidates, iter_queries
from augret.data.qrels import iter_qrels
from augret.errors import DataFormatError
from augret.progress import progress_bar

__all__ = [
    "FileStats",
    "Finding",
    "TaskSummary",
    "ValidationReport",
    "findings_by_kind",
    "validate_mbeir",
]

log = logging.getLogger(__name__)

ERROR, WARNING = "error", "warning"
_MOD_CODE = {m: i for i, m in enumerate(MODALITIES)}
_CROSS = {5: 6, 6: 5}  # OVEN and InfoSeek list each other's dids as positives
_MAX_DATASET = 10**9  # keeps d * 10_000_000 + n inside int64
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Finding:
    """One problem: severity (``"error"``/``"warning"``), kind, where, and what."""

    severity: str
    kind: str
    file: str | None
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" {self.field}"
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class FileStats:
    """Counts of one file. ``lines`` counts non-blank lines, ``records`` the parsed ones."""

    file: str
    role: str  # queries | pool | union_pool | qrels | instructions | layout
    task: str | None = None
    lines: int = 0
    records: int = 0
    errors: int = 0
    warnings: int = 0
    missing_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class TaskSummary:
    """Sizes of one test task's files (``None`` where a file is absent)."""

    name: str
    queries: int | None
    qrels_queries: int | None
    qrels_rows: int | None
    pool: str | None
    pool_size: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class ValidationReport:
    """The result of :func:`validate_mbeir`.

    Attributes:
        root: The directory validated.
        split: The split validated.
        tasks_present: The M-BEIR test tasks with a query file, in UniIR's order.
        pools_present: Every local pool stem found (M-BEIR's and users' own).
        files: Per-file counts, in the order checked.
        tasks: Per-task sizes (queries vs qrels, pool size).
        findings: The first ``max_examples`` findings of each kind per file.
        counts: Total number of findings per ``(severity, kind)``.
        seconds: Wall time of the validation.
    """

    root: str
    split: str
    tasks_present: list[str] = field(default_factory=list)
    pools_present: list[str] = field(default_factory=list)
    files: list[FileStats] = field(default_factory=list)
    tasks: list[TaskSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        """Number of errors (all of them, not only the listed examples)."""
        return sum(n for (sev, _), n in self.counts.items() if sev == ERROR)

    @property
    def warnings(self) -> int:
        """Number of warnings."""
        return sum(n for (sev, _), n in self.counts.items() if sev == WARNING)

    @property
    def ok(self) -> bool:
        """``True`` when there is no error (warnings allowed)."""
        return self.errors == 0

    @property
    def total(self) -> FileStats:
        """The per-file counts summed over all files."""
        t = FileStats(file="total", role="")
        for f in self.files:
            t.lines += f.lines
            t.records += f.records
            t.errors += f.errors
            t.warnings += f.warnings
            t.missing_images += f.missing_images
        return t

    def examples(self, severity: str | None = None, kind: str | None = None) -> list[Finding]:
        """The listed findings, optionally of one severity and/or kind."""
        return [f for f in self.findings if (severity is None or f.severity == severity)
                and (kind is None or f.kind == kind)]

    def summary(self) -> str:
        """One line: valid or not, with error and warning counts."""
        state = "valid" if self.ok else "INVALID"
        bad = sorted({f.file for f in self.files if f.errors})
        where = f" in {len(bad)} file(s)" if bad else ""
        return (f"{self.root} ({self.split}) is {state}: {self.errors} error(s){where}, "
                f"{self.warnings} warning(s); {len(self.tasks_present)} task(s), "
                f"{len(self.pools_present)} local pool(s), {self.total.records} records")

    def to_dict(self) -> dict[str, Any]:
        """The report as one JSON-ready object."""
        return {
            "root": self.root,
            "split": self.split,
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "tasks_present": self.tasks_present,
            "pools_present": self.pools_present,
            "files": [f.to_dict() for f in self.files],
            "total": self.total.to_dict(),
            "tasks": [t.to_dict() for t in self.tasks],
            "counts": [{"severity": s, "kind": k, "count": n}
                       for (s, k), n in sorted(self.counts.items())],
            "findings": [f.to_dict() for f in self.findings],
            "seconds": round(self.seconds, 3),
        }


# ---- small helpers ---------------------------------------------------------------------

@dataclass
class _Index:
    """The dids of one pool: sorted hashed keys with their line and modality code."""

    name: str
    file: str
    keys: np.ndarray
    lines: np.ndarray
    mods: np.ndarray

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found mask, position)`` of each key (position only meaningful where found)."""
        if len(self.keys) == 0:
            return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == keys, pos


def _np(buf: array, dtype: Any) -> np.ndarray:
    return np.frombuffer(buf, dtype=dtype).copy() if len(buf) else np.zeros(0, dtype)


def _unhash(key: int, bound: int) -> str:
    d, n = divmod(int(key), bound)
    return f"{d}:{n}"


def _parse_kind(err: DataFormatError, role: str) -> str:
    reason = err.reason
    if reason.startswith("invalid UTF-8"):
        return "encoding"
    if reason == "file is empty":
        return "empty_file"
    if reason.startswith(("invalid JSON", "expected a JSON object")):
        return "bad_json"
    return "qrels_format" if role == "qrels" else "schema"


class _Progress:
    """A transient rich progress bar over bytes of files, shown only on a terminal."""

    def __init__(self, total_bytes: int) -> None:
        self._bar = None
        self._done = 0
        self._line_bytes = 0.0
        bar = progress_bar("description", "bar", "percent", "elapsed", enabled=total_bytes > 0)
        if not bar.disable:
            self._bar = bar
            self._task = self._bar.add_task("validating", total=total_bytes)
            self._bar.start()

    def file(self, path: Path) -> None:
        if self._bar is not None:
            with path.open("rb") as f:  # mean line length of the first MiB, to estimate
                head = f.read(1 << 20)
            self._line_bytes = len(head) / max(1, head.count(b"\n"))
            self._bar.update(self._task, description=f"validating {path.name}")

    def records(self, path: Path, n: int) -> None:
        if self._bar is not None:
            est = self._done + min(path.stat().st_size, int(n * self._line_bytes))
            self._bar.update(self._task, completed=est,
                             description=f"validating {path.name}: {n:,} records")

    def done(self, path: Path) -> None:
        if self._bar is not None:
            self._done += path.stat().st_size
            self._bar.update(self._task, completed=self._done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---- the validator ---------------------------------------------------------------------

class _Validator:
    def __init__(self, root: str | Path, split: str, check_images: bool, max_examples: int):
        self.root = Path(root).resolve() if Path(root).exists() else Path(root)
        self.split = split
        self.check_images = check_images
        self.max_examples = max_examples
        self.report = ValidationReport(root=str(self.root), split=split)
        self._files: dict[str, FileStats] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._shown: Counter[tuple[str | None, str]] = Counter()
        self.mbeir = self._open_dir()
        self._progress: _Progress | None = None

    # -- recording ---------------------------------------------------------------------
    def _rel(self, path: Path) -> str:
        try:
            return Path(os.path.abspath(path)).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def stats(self, path: Path, role: str, task: str | None = None) -> FileStats:
        key = self._rel(path)
        if key not in self._files:
            self._files[key] = FileStats(key, role, task)
        return self._files[key]

    def add(self, severity: str, kind: str, file: FileStats | None, line: int | None,
            fld: str | None, message: str) -> None:
        """Record one finding, listing it if its kind is under the cap for the file."""
        self._count(severity, kind, file, 1)
        self._list(severity, kind, file, line, fld, message)

    def add_many(self, severity: str, kind: str, file: FileStats,
                 examples: Iterable[tuple[int | None, str | None, str]], count: int) -> None:
        """Record ``count`` findings whose first examples ``examples`` yields (lazily)."""
        if count <= 0:
            return
        self._count(severity, kind, file, count)
        for line, fld, message in itertools.islice(examples, self.max_examples):
            self._list(severity, kind, file, line, fld, message)

    def _count(self, severity: str, kind: str, file: FileStats | None, n: int) -> None:
        self._counts[(severity, kind)] += n
        if file is not None:
            if severity == ERROR:
                file.errors += n
            else:
                file.warnings += n

    def _list(self, severity: str, kind: str, file: FileStats | None, line: int | None,
              fld: str | None, message: str) -> None:
        name = file.file if file is not None else None
        if self._shown[(name, kind)] < self.max_examples:
            self._shown[(name, kind)] += 1
            self.report.findings.append(Finding(severity, kind, name, line, fld, message))

    def _on_parse_error(self, st: FileStats, bad_lines: list[int]):
        def handler(err: DataFormatError) -> None:
            if err.line is not None:
                bad_lines[0] += 1
            self.add(ERROR, _parse_kind(err, st.role), st, err.line, err.field, err.reason)
        return handler

    # -- ids ---------------------------------------------------------------------------
    def _key(self, value: str, bound: int, st: FileStats, line: int | None, fld: str,
             parsed: bool = False) -> int | None:
        """UniIR's hashed id, or ``None`` (with an error) when it cannot be hashed uniquely.

        ``parsed``: the record parser already checked the ``"d:n"`` form (fast path).
        """
        if parsed:
            head, _, tail = value.partition(":")
            d, n = int(head), int(tail)
        else:
            try:
                if not value.isascii():  # parse_id's isdigit() accepts "²", int() does not
                    raise DataFormatError(f"id {value!r} is not of the form '<dataset_id>:<n>'")
                d, n = parse_id(value)
            except DataFormatError as exc:
                self.add(ERROR, "schema", st, line, fld, exc.reason)
                return None
        if n >= bound or d >= _MAX_DATASET:
            self.add(ERROR, "id_range", st, line, fld,
                     f"id {value!r}: n must be below {bound:,} for UniIR's integer ids "
                     f"to be unique")
            return None
        return d * bound + n

    # -- set-up ------------------------------------------------------------------------
    def _open_dir(self) -> MBEIRDir:
        try:
            return MBEIRDir(self.root)
        except DataFormatError as exc:  # a bad augret.json: report it, use root for images
            st = self.stats(self.root / LAYOUT_FILE, "layout")
            self.add(ERROR, "layout", st, None, "image_root", exc.reason)
            return MBEIRDir(self.root, image_root=self.root)

    def _split_pools(self) -> dict[str, Path]:
        """Local pools of this split: all, minus those named for another split."""
        others = tuple(f"_{s}" for s in _SPLITS if s != self.split)
        return {n: p for n, p in self.mbeir.local_pools().items() if not n.endswith(others)}

    # -- images ------------------------------------------------------------------------
    def _images_checkable(self) -> bool:
        if not self.check_images:
            return False
        if not self.mbeir.image_root.is_dir():
            layout = self.root / LAYOUT_FILE
            st = self.stats(layout, "layout") if layout.is_file() else None
            self.add(ERROR, "missing_image", st, None, "image_root",
                     f"image root {self.mbeir.image_root} does not exist; images not checked")
            return False
        return True

    def _check_image(self, st: FileStats, line: int, fld: str, img_path: str) -> None:
        if not os.path.isfile(self.mbeir.resolve_image(img_path)):
            st.missing_images += 1
            self.add(ERROR, "missing_image", st, line, fld, f"image file not found: {img_path}")

    # -- pools -------------------------------------------------------------------------
    def scan_pool(self, name: str, path: Path, role: str = "pool") -> _Index:
        st = self.stats(path, role, name)
        self._progress.file(path)
        keys, lines, mods = array("q"), array("i"), array("b")
        bad = [0]
        images = self._images
        for line, cand in iter_candidates(path, on_error=self._on_parse_error(st, bad),
                                          with_lines=True):
            st.records += 1
            if not st.records & 0xFFFF:
                self._progress.records(path, st.records)
            key = self._key(cand.did, DATASET_CAN_NUM_UPPER_BOUND, st, line, "did", True)
            if key is not None:
                keys.append(key)
                lines.append(line)
                mods.append(_MOD_CODE[cand.modality])
            for fld, message in cand.problems():
                self.add(ERROR, "modality_mismatch", st, line, fld, message)
            if images and cand.img_path:
                self._check_image(st, line, "img_path", cand.img_path)
        st.lines = st.records + bad[0]
        self._progress.done(path)
        return self._index(name, st, _np(keys, np.int64), _np(lines, np.int32),
                           _np(mods, np.int8), "did", DATASET_CAN_NUM_UPPER_BOUND)

    def _index(self, name: str, st: FileStats, keys: np.ndarray, lines: np.ndarray,
               mods: np.ndarray, what: str, bound: int) -> _Index:
        """Sort the ids, report duplicates (kept: the first occurrence)."""
        order = np.argsort(keys, kind="stable")
        keys, lines, mods = keys[order], lines[order], mods[order]
        dup = np.flatnonzero(keys[1:] == keys[:-1]) + 1 if len(keys) else np.zeros(0, np.int64)
        if len(dup):
            first = np.searchsorted(keys, keys[dup])
            by_line = np.argsort(lines[dup], kind="stable")
            self.add_many(ERROR, "duplicate_id", st, (
                (int(lines[dup[i]]), what,
                 f"duplicate {what} {_unhash(keys[dup[i]], bound)!r} (first on line "
                 f"{int(lines[first[i]])})") for i in by_line), len(dup))
            keep = np.ones(len(keys), bool)
            keep[dup] = False
            keys, lines, mods = keys[keep], lines[keep], mods[keep]
        return _Index(name, st.file, keys, lines, mods)

    def check_disjoint(self, indexes: list[_Index]) -> None:
        """Local pools of one split must not share dids (their union is the global pool)."""
        if len(indexes) < 2:
            return
        keys = np.concatenate([ix.keys for ix in indexes])
        probe = np.sort(keys)  # cheap first pass: most directories have no overlap at all
        if not (probe[1:] == probe[:-1]).any():
            return
        del probe
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        dup = np.flatnonzero(keys[1:] == keys[:-1]) + 1
        first = np.searchsorted(keys, keys[dup])
        offsets = np.cumsum([0] + [len(ix.keys) for ix in indexes])

        def where(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            idx = order[pos]
            owner = np.searchsorted(offsets, idx, side="right") - 1
            return owner, idx - offsets[owner]

        owner, local = where(dup)
        first_owner, first_local = where(first)
        for i, ix in enumerate(indexes):
            mine = np.flatnonzero(owner == i)
            if not len(mine):
                continue
            self.add_many(ERROR, "duplicate_across_pools", self._files[ix.file], (
                (int(ix.lines[local[j]]), "did",
                 f"did {_unhash(keys[dup[j]], DATASET_CAN_NUM_UPPER_BOUND)!r} is also in pool "
                 f"{indexes[first_owner[j]].name!r} (line "
                 f"{int(indexes[first_owner[j]].lines[first_local[j]])}); local pools must be "
                 f"disjoint") for j in mine), len(mine))

    def check_union_subset(self, union: _Index, locals_: list[_Index]) -> None:
        for ix in locals_:
            if ix.name not in UNION_POOL_ORDER:
                continue
            found, _ = union.find(ix.keys)
            missing = np.flatnonzero(~found)
            self.add_many(WARNING, "union_mismatch", self._files[ix.file], (
                (int(ix.lines[i]), "did",
                 f"did {_unhash(ix.keys[i], DATASET_CAN_NUM_UPPER_BOUND)!r} is not in the "
                 f"union pool {union.file}") for i in missing), len(missing))

    # -- queries -----------------------------------------------------------------------
    def scan_queries(self, path: Path, task: EvalTask | None) -> dict[str, np.ndarray]:
        name = task.name if task else path.stem
        st = self.stats(path, "queries", name)
        self._progress.file(path)
        q_keys, q_lines = array("q"), array("i")
        p_keys, p_lines, p_qkeys = array("q"), array("i"), array("q")
        bad = [0]
        images = self._images
        cross = _CROSS.get(task.dataset.id) if task else None
        for line, q in iter_queries(path, on_error=self._on_parse_error(st, bad),
                                    with_lines=True):
            st.records += 1
            qkey = self._key(q.qid, DATASET_QUERY_NUM_UPPER_BOUND, st, line, "qid", True)
            if qkey is not None:
                q_keys.append(qkey)
                q_lines.append(line)
            for fld, message in q.problems():
                kind = "task_mismatch" if fld == "task_id" else "modality_mismatch"
                self.add(ERROR, kind, st, line, fld, message)
            if task is not None:
                self._check_query_task(st, line, q, task)
                if not q.pos_cand_list:
                    self.add(WARNING, "no_positives", st, line, "pos_cand_list",
                             "pos_cand_list is empty")
            for did in q.pos_cand_list:
                dkey = self._key(did, DATASET_CAN_NUM_UPPER_BOUND, st, line, "pos_cand_list",
                                 True)
                if dkey is not None:
                    p_keys.append(dkey)
                    p_lines.append(line)
                    p_qkeys.append(-1 if qkey is None else qkey)
            if images and q.query_img_path:
                self._check_image(st, line, "query_img_path", q.query_img_path)
        st.lines = st.records + bad[0]
        self._progress.done(path)
        qidx = self._index(name, st, _np(q_keys, np.int64), _np(q_lines, np.int32),
                           np.zeros(len(q_keys), np.int8), "qid", DATASET_QUERY_NUM_UPPER_BOUND)
        out = {"q_keys": qidx.keys, "q_lines": qidx.lines, "p_keys": _np(p_keys, np.int64),
               "p_lines": _np(p_lines, np.int32), "p_qkeys": _np(p_qkeys, np.int64)}
        if task is not None:
            self.check_dids(st, task, out["p_keys"], out["p_lines"], "pos_cand_list",
                            "dangling_positive", check_modality=True, cross=cross)
        return out

    def _check_query_task(self, st: FileStats, line: int, q: Any, task: EvalTask) -> None:
        want = task.task
        if q.query_modality != want.query_modality:
            self.add(ERROR, "task_mismatch", st, line, "query_modality",
                     f"query modality {q.query_modality!r} but {task.name} is "
                     f"{want.query_modality} -> {want.cand_modality}")
        if q.task_id is not None and q.task_id != want.id:
            self.add(ERROR, "task_mismatch", st, line, "task_id",
                     f"task_id {q.task_id} in a {task.name} file (task {want.id})")
        if q.dataset_id != task.dataset.id:
            self.add(ERROR, "task_mismatch", st, line, "qid",
                     f"qid {q.qid!r} is of dataset {q.dataset_id}, the file is "
                     f"{task.dataset.name} ({task.dataset.id})")

    # -- did look-ups ------------------------------------------------------------------
    def _lookup_index(self, task: EvalTask) -> _Index | None:
        return self._pools.get(self._pool_name(task)) or self._union

    def _pool_name(self, task: EvalTask) -> str:
        return task.pool if self.split == "test" else task.pool.replace("_test", f"_{self.split}")

    def check_dids(self, st: FileStats, task: EvalTask, keys: np.ndarray, lines: np.ndarray,
                   fld: str, kind: str, *, check_modality: bool, cross: int | None) -> None:
        """Every did must be in the task's pool (cross-dataset ones in the other dataset's)."""
        if not len(keys):
            return
        dataset = keys // DATASET_CAN_NUM_UPPER_BOUND
        is_cross = dataset == cross if cross is not None else np.zeros(len(keys), bool)
        own, own_lines = keys[~is_cross], lines[~is_cross]
        index = self._lookup_index(task)
        if index is None:
            self.add(WARNING, "unchecked", st, None, fld,
                     f"{len(own)} did(s) not checked: pool {self._pool_name(task)!r} is absent")
        elif len(own):
            found, pos = index.find(own)
            miss = np.flatnonzero(~found)
            self.add_many(ERROR, kind, st, (
                (int(own_lines[i]), fld,
                 f"did {_unhash(own[i], DATASET_CAN_NUM_UPPER_BOUND)!r} is not in "
                 f"{index.name!r}") for i in miss), len(miss))
            if check_modality:
                want = _MOD_CODE[task.task.cand_modality]
                bad = np.flatnonzero(found & (index.mods[pos] != want))
                self.add_many(ERROR, "task_mismatch", st, (
                    (int(own_lines[i]), fld,
                     f"positive {_unhash(own[i], DATASET_CAN_NUM_UPPER_BOUND)!r} has modality "
                     f"{MODALITIES[index.mods[pos[i]]]!r}, task {task.task.id} expects "
                     f"{task.task.cand_modality!r}") for i in bad), len(bad))
        if cross is not None and is_cross.any():
            self._check_cross(st, keys[is_cross], lines[is_cross], fld, kind, cross)

    def _check_cross(self, st: FileStats, keys: np.ndarray, lines: np.ndarray, fld: str,
                     kind: str, other: int) -> None:
        names = [t.pool for t in MBEIR_TEST_TASKS if t.dataset.id == other]
        present = [self._pools[n] for n in names if n in self._pools]
        if self._union is not None:
            present, complete = [self._union], True
        else:
            complete = len(present) == len(names)
        found = np.zeros(len(keys), bool)
        for ix in present:
            found |= ix.find(keys)[0]
        miss = np.flatnonzero(~found)
        other_name = DATASETS[other].name
        if not present:
            self.add(WARNING, "unchecked", st, None, fld,
                     f"{len(keys)} {other_name} did(s) not checked: cannot check, pool absent "
                     f"({', '.join(names)})")
        elif complete:
            self.add_many(ERROR, kind, st, (
                (int(lines[i]), fld, f"{other_name} did "
                 f"{_unhash(keys[i], DATASET_CAN_NUM_UPPER_BOUND)!r} is in no {other_name} "
                 f"pool") for i in miss), len(miss))
        else:
            absent = [n for n in names if n not in self._pools]
            self.add_many(WARNING, "unchecked", st, (
                (int(lines[i]), fld, f"{other_name} did "
                 f"{_unhash(keys[i], DATASET_CAN_NUM_UPPER_BOUND)!r} not in the present "
                 f"{other_name} pool; cannot check, pool absent: {', '.join(absent)}")
                for i in miss), len(miss))

    # -- qrels -------------------------------------------------------------------------
    def scan_qrels(self, path: Path, task: EvalTask, queries: dict[str, np.ndarray] | None
                   ) -> TaskSummary:
        st = self.stats(path, "qrels", task.name)
        self._progress.file(path)
        q_keys, d_keys, r_lines = array("q"), array("q"), array("i")
        bad = [0]
        for row in iter_qrels(path, on_error=self._on_parse_error(st, bad)):
            st.records += 1
            if row.task_id is not None and row.task_id != task.task.id:
                self.add(ERROR, "task_mismatch", st, row.line, "task_id",
                         f"task id {row.task_id} in {task.name} qrels (task {task.task.id})")
            qk = self._key(row.qid, DATASET_QUERY_NUM_UPPER_BOUND, st, row.line, "qid")
            dk = self._key(row.did, DATASET_CAN_NUM_UPPER_BOUND, st, row.line, "did")
            if row.relevance > 0 and qk is not None and dk is not None:
                q_keys.append(qk)
                d_keys.append(dk)
                r_lines.append(row.line)
        st.lines = st.records + bad[0]
        self._progress.done(path)
        qk, dk, rl = _np(q_keys, np.int64), _np(d_keys, np.int64), _np(r_lines, np.int32)
        self.check_dids(st, task, dk, rl, "did", "dangling_qrels_did", check_modality=False,
                        cross=_CROSS.get(task.dataset.id))
        judged = np.unique(qk)
        if queries is None:
            self.add(WARNING, "unchecked", st, None, "qid",
                     f"no {self.split} query file for {task.name}; qids not checked")
        else:
            self._compare_queries_qrels(st, task, queries, qk, dk, rl, judged)
        return TaskSummary(task.name, None if queries is None else len(queries["q_keys"]),
                           len(judged), st.records, None, None)

    def _compare_queries_qrels(self, st: FileStats, task: EvalTask, queries: dict[str, np.ndarray],
                               qk: np.ndarray, dk: np.ndarray, rl: np.ndarray,
                               judged: np.ndarray) -> None:
        qfile = self._files[self._rel(self._query_paths[task.name])]
        known = np.isin(qk, queries["q_keys"])
        miss = np.flatnonzero(~known)
        self.add_many(ERROR, "dangling_qrels_qid", st, (
            (int(rl[i]), "qid", f"qid {_unhash(qk[i], DATASET_QUERY_NUM_UPPER_BOUND)!r} is "
             f"not in {qfile.file}") for i in miss), len(miss))
        unjudged = np.flatnonzero(~np.isin(queries["q_keys"], judged))
        order = np.argsort(queries["q_lines"][unjudged], kind="stable")
        self.add_many(WARNING, "no_qrels", qfile, (
            (int(queries["q_lines"][unjudged[i]]), "qid",
             f"query {_unhash(queries['q_keys'][unjudged[i]], DATASET_QUERY_NUM_UPPER_BOUND)!r}"
             f" has no positive judgment in {st.file}") for i in order), len(unjudged))
        if len(judged) != len(queries["q_keys"]):
            self.add(WARNING, "count_mismatch", st, None, None,
                     f"{len(queries['q_keys'])} queries but {len(judged)} judged qids")
        # pos_cand_list and qrels should list the same (qid, did) pairs
        pairs_q = _pairs(queries["p_qkeys"], queries["p_keys"])
        pairs_r = _pairs(qk, dk)
        only_q = np.flatnonzero(~np.isin(pairs_q, pairs_r) & (pairs_q >= 0))
        self.add_many(WARNING, "qrels_mismatch", qfile, (
            (int(queries["p_lines"][i]), "pos_cand_list",
             f"positive {_unhash(queries['p_keys'][i], DATASET_CAN_NUM_UPPER_BOUND)!r} is not "
             f"in {st.file}") for i in only_q), len(only_q))
        only_r = np.flatnonzero(~np.isin(pairs_r, pairs_q) & known & (pairs_r >= 0))
        self.add_many(WARNING, "qrels_mismatch", st, (
            (int(rl[i]), "did", f"judged did {_unhash(dk[i], DATASET_CAN_NUM_UPPER_BOUND)!r} "
             f"is not in the query's pos_cand_list") for i in only_r), len(only_r))

    # -- instructions ------------------------------------------------------------------
    def check_instructions(self, tasks: list[EvalTask]) -> None:
        path = self.mbeir.instructions_file()
        if path is None:
            return
        st = self.stats(path, "instructions")
        try:
            table: InstructionTable = read_instructions(path)
        except DataFormatError as exc:
            self.add(ERROR, "instructions", st, exc.line, exc.field, exc.reason)
            return
        st.records = st.lines = len(table.prompts)
        for t in tasks:
            try:
                table.lookup(t.dataset.id, t.task.query_modality, t.task.cand_modality)
            except KeyError as exc:
                self.add(WARNING, "instructions", st, None, None, f"{exc.args[0]} ({t.name})")

    # -- the run -----------------------------------------------------------------------
    def run(self) -> ValidationReport:
        start = time.perf_counter()
        rep = self.report
        split = self.split
        task_files = self.mbeir.tasks(split)
        self._query_paths = {tf.task.name: tf.queries for tf in task_files}
        rep.tasks_present = [tf.task.name for tf in task_files]
        rep.pools_present = list(self.mbeir.local_pools())
        pools = self._split_pools()
        union_path = self.mbeir.global_pool_file(split)
        present = {tf.task.name for tf in task_files}
        orphans = [(t, q) for t in MBEIR_TEST_TASKS if t.name not in present
                   and (q := self.mbeir.qrels_file(t.name, split)) is not None]
        known = set(self._query_paths.values())
        extra_queries = [p for p in self.mbeir.split_files(split) if p not in known]
        log.debug("%s: %d task(s) %s, %d local pool(s)", self.root, len(task_files),
                 rep.tasks_present, len(pools))
        if not (task_files or pools or union_path or orphans or extra_queries):
            self.add(ERROR, "nothing_found", None, None, None,
                     f"no M-BEIR {split} query file, qrels or candidate pool under {self.root}")
        files = [*pools.values(), *([union_path] if union_path else []),
                 *(tf.queries for tf in task_files), *(tf.qrels for tf in task_files if tf.qrels),
                 *(q for _, q in orphans), *extra_queries]
        self._progress = _Progress(sum(p.stat().st_size for p in files))
        try:
            self._images = self._images_checkable()
            self._run(task_files, pools, union_path, orphans, extra_queries)
        finally:
            self._progress.close()
        rep.files = list(self._files.values())
        rep.counts = dict(self._counts)
        rep.seconds = time.perf_counter() - start
        log.debug("%s (%.1fs)", rep.summary(), rep.seconds)
        return rep

    def _run(self, task_files, pools, union_path, orphans, extra_queries) -> None:
        self._pools = {name: self.scan_pool(name, path) for name, path in pools.items()}
        self.check_disjoint(list(self._pools.values()))
        self._union = None
        if union_path is not None:
            self._union = self.scan_pool(f"union_{self.split}", union_path, "union_pool")
            self.check_union_subset(self._union, list(self._pools.values()))
        for tf in task_files:
            queries = self.scan_queries(tf.queries, tf.task)
            pool = self._pools.get(self._pool_name(tf.task))
            if tf.qrels is not None:
                summary = self.scan_qrels(tf.qrels, tf.task, queries)
            else:
                self.add(WARNING, "missing_file", self._files[self._rel(tf.queries)], None, None,
                         f"no {self.split} qrels file for {tf.task.name}")
                summary = TaskSummary(tf.task.name, len(queries["q_keys"]), None, None, None,
                                      None)
            summary.pool = pool.name if pool is not None else None
            summary.pool_size = len(pool.keys) if pool is not None else None
            self.report.tasks.append(summary)
        for task, qrels in orphans:
            self.report.tasks.append(self.scan_qrels(qrels, task, None))
        for path in extra_queries:
            self.scan_queries(path, None)
        self.check_instructions([tf.task for tf in task_files])


def _pairs(qkeys: np.ndarray, dkeys: np.ndarray) -> np.ndarray:
    """``(qid, did)`` as one int64 (``-1`` where a key is too large to combine)."""
    ok = (qkeys >= 0) & (qkeys < 2**31) & (dkeys < 2**32)
    return np.where(ok, (qkeys << 32) | np.where(ok, dkeys, 0), -1)


def validate_mbeir(
    root: str | Path,
    *,
    split: str = "test",
    check_images: bool = True,
    max_examples: int = 20,
) -> ValidationReport:
    """Validate an M-BEIR directory holding any subset of the 16 test tasks.

    Checks the tasks present (absence is not an error): record schema (bad JSON, wrong
    types, unknown modality, bad ids, non-UTF-8, empty files), duplicate ids in a file and
    across local pools, dangling qrels qids and dids and positives (OVEN and InfoSeek may
    list each other's dids), queries without qrels, modality/field and task mismatches,
    missing image files and query vs qrels counts. Users' own pools in
    ``cand_pool/local`` are checked too.

    Args:
        root: The directory (UniIR's or Anserini's file names, or an imported collection).
        split: The split whose query and qrels files are checked.
        check_images: Check that every referenced image file exists.
        max_examples: How many findings of each kind to list per file (all are counted).

    Returns:
        The report; ``report.ok`` is ``False`` when there is any error.

    Raises:
        DataNotFoundError: ``root`` is not a directory.
    """
    return _Validator(root, split, check_images, max_examples).run()


def findings_by_kind(report: ValidationReport) -> Iterator[tuple[str, str, int, list[Finding]]]:
    """``(severity, kind, count, examples)`` per kind, errors first (for display)."""
    for (sev, kind), n in sorted(report.counts.items(), key=lambda kv: (kv[0][0] != ERROR,
                                                                         kv[0][1])):
        yield sev, kind, n, report.examples(sev, kind)
