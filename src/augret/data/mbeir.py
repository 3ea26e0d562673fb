"""An M-BEIR directory: which tasks it holds, where their files are, and streamed readers.

Two layouts are recognised for test files: UniIR's (``query/test/mbeir_<name>_test.jsonl``,
``qrels/test/mbeir_<name>_test_qrels.txt``) and Anserini's topic copies
(``topics/topics.mbeir-<name>.test.jsonl``, ``qrels/qrels.m-beir-<name-with-dashes>.test.txt``).
A directory may hold any subset of the 16 test tasks; absence is not an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from augret.data.ids import MBEIR_TEST_TASKS, UNION_POOL_ORDER, EvalTask
from augret.data.instructions import InstructionTable, read_instructions
from augret.data.jsonl import ErrorHandler, iter_jsonl
from augret.data.qrels import Qrels, read_qrels
from augret.data.records import Candidate, Query
from augret.errors import DataFormatError, DataNotFoundError

__all__ = [
    "LAYOUT_FILE",
    "MBEIRDir",
    "TaskFiles",
    "iter_candidates",
    "iter_queries",
]

LAYOUT_FILE = "augret.json"  # optional: {"image_root": "<dir images are relative to>"}
UNION_TEST_POOL = "cand_pool/global/mbeir_union_test_cand_pool.jsonl"


def _records(path: Path, parse, on_error: ErrorHandler | None):
    for number, obj in iter_jsonl(path, on_error=on_error):
        try:
            yield number, parse(obj)
        except DataFormatError as exc:
            err = DataFormatError(exc.reason, path=path, line=number, field=exc.field)
            if on_error is None:
                raise err from None
            on_error(err)


def iter_queries(
    path: str | Path, *, on_error: ErrorHandler | None = None, with_lines: bool = False
) -> Iterator[Query] | Iterator[tuple[int, Query]]:
    """Stream the queries of an M-BEIR query JSONL file.

    Args:
        path: The file.
        on_error: Receives each bad line's error (then skipped); ``None`` raises.
        with_lines: Yield ``(line_number, query)`` pairs instead of queries.

    Raises:
        DataFormatError: A line is malformed; the message names file, line and field.
    """
    it = _records(Path(path), Query.from_dict, on_error)
    return it if with_lines else (q for _, q in it)


def iter_candidates(
    path: str | Path, *, on_error: ErrorHandler | None = None, with_lines: bool = False
) -> Iterator[Candidate] | Iterator[tuple[int, Candidate]]:
    """Stream the candidates of an M-BEIR pool JSONL file (see :func:`iter_queries`)."""
    it = _records(Path(path), Candidate.from_dict, on_error)
    return it if with_lines else (c for _, c in it)


@dataclass(frozen=True)
class TaskFiles:
    """The files of one test task present in a directory (``None`` where absent)."""

    task: EvalTask
    queries: Path
    pool: Path | None
    qrels: Path | None


class MBEIRDir:
    """An M-BEIR data directory (the HF ``TIGER-Lab/M-BEIR`` layout, or any subset of it).

    Args:
        root: The directory.
        image_root: Directory that ``img_path`` values are relative to. Defaults to the
            ``image_root`` of ``augret.json`` in ``root`` (enhanced copies point back at their
            source) or to ``root`` itself.

    Raises:
        DataNotFoundError: ``root`` is not a directory.
    """

    def __init__(self, root: str | Path, *, image_root: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"{self.root}: no such directory")
        if image_root is None:
            layout = self.root / LAYOUT_FILE
            if layout.is_file():
                try:
                    value = json.loads(layout.read_text("utf-8")).get("image_root")
                except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
                    raise DataFormatError(f"cannot read layout file: {exc}", path=layout) from None
                image_root = (self.root / value) if value else None
        self.image_root = Path(image_root) if image_root is not None else self.root

    def __repr__(self) -> str:
        return f"MBEIRDir({str(self.root)!r})"

    # ---- paths -----------------------------------------------------------------------
    def resolve_image(self, img_path: str) -> Path:
        """The file of an ``img_path`` value (absolute paths are kept as they are)."""
        return self.image_root / img_path

    def query_file(self, name: str, split: str = "test") -> Path | None:
        """The query file of a task (e.g. ``"cirr_task7"``) or dataset (train), if present."""
        for p in (
            self.root / "query" / split / f"mbeir_{name}_{split}.jsonl",
            self.root / split / f"mbeir_{name}_{split}.jsonl",  # UniIR's pre-2024 layout
            self.root / "topics" / f"topics.mbeir-{name}.{split}.jsonl",
        ):
            if p.is_file():
                return p
        return None

    def qrels_file(self, name: str, split: str = "test") -> Path | None:
        """The qrels file of a task, if present."""
        dashed = name.replace("_", "-")
        for p in (
            self.root / "qrels" / split / f"mbeir_{name}_{split}_qrels.txt",
            self.root / "qrels" / f"qrels.m-beir-{dashed}.{split}.txt",
        ):
            if p.is_file():
                return p
        return None

    def pool_file(self, pool: str) -> Path | None:
        """A local pool file by stem (e.g. ``"mscoco_task0_test"``), if present."""
        p = self.root / "cand_pool" / "local" / f"mbeir_{pool}_cand_pool.jsonl"
        return p if p.is_file() else None

    def local_pools(self) -> dict[str, Path]:
        """Every local pool in the directory by stem, M-BEIR's and users' own."""
        folder = self.root / "cand_pool" / "local"
        if not folder.is_dir():
            return {}
        out = {}
        for p in sorted(folder.glob("mbeir_*_cand_pool.jsonl")):
            out[p.name[len("mbeir_"): -len("_cand_pool.jsonl")]] = p
        return out

    def union_pool_files(self) -> list[Path]:
        """The files that make up the test union pool.

        ``cand_pool/global/mbeir_union_test_cand_pool.jsonl`` when present, otherwise the
        disjoint concatenation of the local test pools present, in UniIR's order.
        """
        union = self.root / UNION_TEST_POOL
        if union.is_file():
            return [union]
        return [p for name in UNION_POOL_ORDER if (p := self.pool_file(name)) is not None]

    def instructions_file(self) -> Path | None:
        """``instructions/query_instructions.tsv`` if present."""
        p = self.root / "instructions" / "query_instructions.tsv"
        return p if p.is_file() else None

    def train_file(self) -> Path | None:
        """UniIR's up-sampled union training file, if present."""
        p = self.root / "query" / "union_train" / "mbeir_union_up_train.jsonl"
        return p if p.is_file() else None

    def train_pool_file(self) -> Path | None:
        """The union training pool, if present."""
        p = self.root / "cand_pool" / "global" / "mbeir_union_train_cand_pool.jsonl"
        return p if p.is_file() else None

    def split_files(self, split: str) -> list[Path]:
        """All query files of a split (``train``, ``val``, ``test``, ``union_val``...)."""
        folder = self.root / "query" / split
        return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []

    # ---- tasks -----------------------------------------------------------------------
    def tasks(self, split: str = "test") -> list[TaskFiles]:
        """The test tasks present (those with a query file), in UniIR's row order."""
        out = []
        for task in MBEIR_TEST_TASKS:
            queries = self.query_file(task.name, split)
            if queries is None:
                continue
            pool = self.pool_file(task.pool if split == "test" else
                                  task.pool.replace("_test", f"_{split}"))
            out.append(TaskFiles(task, queries, pool, self.qrels_file(task.name, split)))
        return out

    # ---- readers ---------------------------------------------------------------------
    def iter_queries(self, name: str, split: str = "test") -> Iterator[Query]:
        """Stream one task's queries.

        Raises:
            DataNotFoundError: The task's query file is absent.
        """
        path = self.query_file(name, split)
        if path is None:
            raise DataNotFoundError(f"{self.root}: no {split} query file for {name!r}")
        return iter_queries(path)

    def iter_pool(self, pool: str) -> Iterator[Candidate]:
        """Stream one local pool."""
        path = self.pool_file(pool)
        if path is None:
            raise DataNotFoundError(f"{self.root}: no local pool {pool!r}")
        return iter_candidates(path)

    def iter_union_pool(self) -> Iterator[Candidate]:
        """Stream the test union pool (see :meth:`union_pool_files`)."""
        files = self.union_pool_files()
        if not files:
            raise DataNotFoundError(f"{self.root}: no union pool and no local test pool")
        for path in files:
            yield from iter_candidates(path)

    def qrels(self, name: str, split: str = "test") -> Qrels:
        """One task's qrels (4 or 5 columns)."""
        path = self.qrels_file(name, split)
        if path is None:
            raise DataNotFoundError(f"{self.root}: no {split} qrels for {name!r}")
        return read_qrels(path)

    def instructions(self) -> InstructionTable:
        """The instruction table."""
        path = self.instructions_file()
        if path is None:
            raise DataNotFoundError(f"{self.root}: no instructions/query_instructions.tsv")
        return read_instructions(path)
