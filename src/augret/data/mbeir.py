"""An M-BEIR directory: which tasks it holds, where their files are, and streamed readers.

Every M-BEIR layout rule lives here: where query, pool and qrels files are, which files make
the union pool (:meth:`MBEIRDir.union_pools`) and how run files are named
(:func:`run_file_name`).

Query files are found in three layouts: UniIR's (``query/<split>/mbeir_<name>_<split>.jsonl``,
``qrels/<split>/mbeir_<name>_<split>_qrels.txt``), UniIR's pre-2024 one
(``<split>/mbeir_<name>_<split>.jsonl``) and Anserini's topic copies
(``topics/topics.mbeir-<name>.<split>.jsonl``,
``qrels/qrels.m-beir-<name-with-dashes>.<split>.txt``). A directory may hold any subset of the
16 test tasks; absence is not an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from augret.data.ids import MBEIR_TEST_TASKS, UNION_POOL_ORDER, EvalTask
from augret.data.instructions import InstructionTable, read_instructions
from augret.data.jsonl import ErrorHandler, iter_jsonl, read_json, write_json
from augret.data.qrels import Qrels, read_qrels
from augret.data.records import Candidate, Query
from augret.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "LAYOUT_FILE",
    "RUN_POOLS",
    "UNION",
    "UNION_TEST_POOL",
    "MBEIRDir",
    "TaskFiles",
    "iter_candidates",
    "iter_queries",
    "parse_run_file_name",
    "pool_stem",
    "read_layout",
    "run_file_name",
    "write_layout",
]

LAYOUT_FILE = "augret.json"  # optional: {"image_root": "<dir images are relative to>"}
UNION = "union"  # the union pool's name (index roots, embedding entries, run files)
RUN_POOLS: tuple[str, ...] = ("local", UNION)  # the pools a task is searched in
UNION_TEST_POOL = "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
#: Top-level folders that hold data files (query files, pools, qrels, instructions).
DATA_FOLDERS: tuple[str, ...] = ("query", "cand_pool", "qrels", "instructions", "topics")

_POOL_FILE = re.compile(r"^mbeir_(?P<stem>.+)_cand_pool\.jsonl$")
_RUN_FILE = re.compile(r"^(?P<name>.+)_(?P<pool>local|union)\.(run|txt|trec|json)$")
_UNIIR_RUN_FILE = re.compile(r"^mbeir_(?P<name>[a-z0-9]+_task\d)_(?P<pool>single|union)"
                             r"_pool_test_k\d+_run\.txt$")


def read_layout(root: str | Path) -> dict[str, object]:
    """A directory's layout file (``augret.json``; ``{}`` when absent).

    Raises:
        DataFormatError: The file is not a JSON object.
    """
    path = Path(root) / LAYOUT_FILE
    return read_json(path) if path.is_file() else {}


def write_layout(root: str | Path, info: dict[str, object]) -> None:
    """Write a directory's layout file (``augret.json``: ``image_root``, optional ``source``)."""
    write_json(Path(root) / LAYOUT_FILE, info)


def pool_stem(path: str | Path) -> str:
    """The pool name of a pool file: ``mbeir_<stem>_cand_pool.jsonl`` → ``<stem>``.

    Raises:
        DataFormatError: The file is not named like a pool file.
    """
    m = _POOL_FILE.match(Path(path).name)
    if m is None:
        raise DataFormatError("not named mbeir_<pool>_cand_pool.jsonl", path=path)
    return m["stem"]


def run_file_name(task: str, pool: str) -> str:
    """augret's name of a run file: ``<task>_<local|union>.run``, e.g. ``cirr_task7_union.run``.

    Raises:
        ConfigError: ``pool`` is neither ``local`` nor ``union``.
    """
    if pool not in RUN_POOLS:
        raise ConfigError(f"pool must be 'local' or 'union', got {pool!r}")
    return f"{task}_{pool}.run"


def parse_run_file_name(name: str) -> tuple[str, str] | None:
    """``(task, pool)`` of a run file name, or ``None`` for other names.

    Both conventions are read: augret's ``<task>_<local|union>.<run|txt|trec|json>`` and
    UniIR's ``mbeir_<task>_<single|union>_pool_test_k<k>_run.txt`` (``single`` = local).
    """
    m = _UNIIR_RUN_FILE.match(name) or _RUN_FILE.match(name)
    if m is None:
        return None
    return m["name"], "local" if m["pool"] == "single" else m["pool"]


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
            value = read_layout(self.root).get("image_root")
            image_root = (self.root / str(value)) if value else None
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

    def global_pool_file(self, split: str = "test") -> Path | None:
        """``cand_pool/global/mbeir_union_<split>_cand_pool.jsonl``, if present."""
        p = self.root / "cand_pool" / "global" / f"mbeir_union_{split}_cand_pool.jsonl"
        return p if p.is_file() else None

    def union_pools(self) -> dict[str, Path]:
        """The parts of the test union pool by name, in order (UniIR's rule).

        The global test pool (``cand_pool/global/mbeir_union_test_cand_pool.jsonl``, named
        ``union``) when present: it is the union, whatever local pools are beside it.
        Otherwise the local test pools present, named by stem, in UniIR's order
        (:data:`~augret.data.ids.UNION_POOL_ORDER`): their disjoint concatenation is the
        union. Empty when neither exists. Every stage that reads, embeds, indexes or plans
        the union goes through this method.
        """
        union = self.global_pool_file("test")
        if union is not None:
            return {UNION: union}
        return {name: p for name in UNION_POOL_ORDER if (p := self.pool_file(name)) is not None}

    def union_pool_files(self) -> list[Path]:
        """The files of :meth:`union_pools`, in order."""
        return list(self.union_pools().values())

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
        return self.global_pool_file("train")

    def split_files(self, split: str) -> list[Path]:
        """All query files of a split (``train``, ``val``, ``test``, ``union_val``...), in any
        of the recognised layouts (see the module docstring), sorted."""
        files = [p for folder in (self.root / "query" / split, self.root / split)
                 if folder.is_dir() for p in folder.glob("*.jsonl")]
        topics = self.root / "topics"
        if topics.is_dir():
            files += topics.glob(f"topics.mbeir-*.{split}.jsonl")
        return sorted(p for p in files if p.is_file())

    def data_files(self) -> list[Path]:
        """Every JSONL data file under the layout's folders (queries, pools), sorted."""
        return sorted(p for top in DATA_FOLDERS for p in (self.root / top).rglob("*.jsonl")
                      if p.is_file())

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
