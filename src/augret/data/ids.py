"""M-BEIR id tables: datasets, tasks, the 16 evaluation pairs, and UniIR's integer id hashing.

Facts come from UniIR (``src/data/preprocessing/utils.py``); see ``docs/mbeir.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from augret.errors import DataFormatError

__all__ = [
    "DATASETS",
    "MBEIR_TEST_TASKS",
    "MODALITIES",
    "TASKS",
    "UNION_POOL_ORDER",
    "Dataset",
    "EvalTask",
    "Modality",
    "Task",
    "dataset_by_name",
    "default_depth",
    "eval_task",
    "find_eval_task",
    "hash_did",
    "hash_dids",
    "hash_qid",
    "hash_qids",
    "local_pool",
    "parse_id",
    "target_modality",
    "task_for_modalities",
    "task_id",
    "unhash_did",
    "unhash_qid",
]

Modality = Literal["text", "image", "image,text"]
MODALITIES: tuple[str, ...] = ("text", "image", "image,text")

DATASET_QUERY_NUM_UPPER_BOUND = 500_000
DATASET_CAN_NUM_UPPER_BOUND = 10_000_000


@dataclass(frozen=True, slots=True)
class Dataset:
    """One M-BEIR source dataset."""

    id: int
    name: str  # display name, e.g. "VisualNews"
    slug: str  # file-name form, e.g. "visualnews"
    domain: str


DATASETS: dict[int, Dataset] = {
    d.id: d
    for d in (
        Dataset(0, "VisualNews", "visualnews", "news"),
        Dataset(1, "Fashion200K", "fashion200k", "fashion"),
        Dataset(2, "WebQA", "webqa", "wiki"),
        Dataset(3, "EDIS", "edis", "news"),
        Dataset(4, "NIGHTS", "nights", "common"),
        Dataset(5, "OVEN", "oven", "wiki"),
        Dataset(6, "InfoSeek", "infoseek", "wiki"),
        Dataset(7, "FashionIQ", "fashioniq", "fashion"),
        Dataset(8, "CIRR", "cirr", "common"),
        Dataset(9, "MSCOCO", "mscoco", "common"),
    )
}


def dataset_by_name(name: str) -> Dataset:
    """Look up a dataset by slug or display name (case-insensitive)."""
    key = name.lower()
    for d in DATASETS.values():
        if key in (d.slug, d.name.lower()):
            return d
    raise KeyError(f"unknown M-BEIR dataset {name!r}; known: {[d.slug for d in DATASETS.values()]}")


@dataclass(frozen=True, slots=True)
class Task:
    """An M-BEIR task: code id (0-8, 5 unused), modality pair and the paper's number (1-8)."""

    id: int
    query_modality: str
    cand_modality: str
    paper_number: int
    short: str  # e.g. "qt→ci"


TASKS: dict[int, Task] = {
    t.id: t
    for t in (
        Task(0, "text", "image", 1, "qt→ci"),
        Task(1, "text", "text", 2, "qt→ct"),
        Task(2, "text", "image,text", 3, "qt→(ci,ct)"),
        Task(3, "image", "text", 4, "qi→ct"),
        Task(4, "image", "image", 5, "qi→ci"),
        Task(6, "image,text", "text", 6, "(qi,qt)→ct"),
        Task(7, "image,text", "image", 7, "(qi,qt)→ci"),
        Task(8, "image,text", "image,text", 8, "(qi,qt)→(ci,ct)"),
    )
}


def task_for_modalities(query_modality: str, cand_modality: str) -> Task:
    """The task of a (query modality, candidate modality) pair, as UniIR's ``get_mbeir_task_id``."""
    for t in TASKS.values():
        if t.query_modality == query_modality and t.cand_modality == cand_modality:
            return t
    raise KeyError(f"no M-BEIR task for {query_modality} -> {cand_modality}")


@dataclass(frozen=True, slots=True)
class EvalTask:
    """One of the 16 (query file, local pool, qrels) test triples of M-BEIR.

    Attributes:
        name: ``"<dataset slug>_task<N>"``, the stem of the query and qrels files.
        dataset: The source dataset.
        task: The M-BEIR task.
        pool: The local pool stem (``mscoco_task{0,3}_test`` for MSCOCO at test time).
        metric_ks: The k values UniIR's retrieval config reports for this row.
        reported_k: The k of the paper's table (10 for Fashion200K and FashionIQ, else 5).
    """

    name: str
    dataset: Dataset
    task: Task
    pool: str
    metric_ks: tuple[int, ...]
    reported_k: int

    @property
    def reported_metric(self) -> str:
        """The paper's metric for this row as an :func:`augret.evaluate.evaluate` string."""
        return f"hit@{self.reported_k}"


def _eval_task(slug: str, task_id: int) -> EvalTask:
    dataset = dataset_by_name(slug)
    name = f"{slug}_task{task_id}"
    pool = f"{name}_test" if slug == "mscoco" else name
    wide = slug in ("fashion200k", "fashioniq")
    return EvalTask(
        name=name,
        dataset=dataset,
        task=TASKS[task_id],
        pool=pool,
        metric_ks=(10, 20, 50) if wide else (1, 5, 10),
        reported_k=10 if wide else 5,
    )


# UniIR's row order (sorted by task id, then this dataset order).
MBEIR_TEST_TASKS: tuple[EvalTask, ...] = tuple(
    _eval_task(slug, tid)
    for slug, tid in (
        ("visualnews", 0),
        ("mscoco", 0),
        ("fashion200k", 0),
        ("webqa", 1),
        ("edis", 2),
        ("webqa", 2),
        ("visualnews", 3),
        ("mscoco", 3),
        ("fashion200k", 3),
        ("nights", 4),
        ("oven", 6),
        ("infoseek", 6),
        ("fashioniq", 7),
        ("cirr", 7),
        ("oven", 8),
        ("infoseek", 8),
    )
)

_EVAL_BY_NAME = {t.name: t for t in MBEIR_TEST_TASKS}

# Order of local pools in the union (UniIR's generator), grouped by dataset.
UNION_POOL_ORDER: tuple[str, ...] = (
    "visualnews_task0",
    "visualnews_task3",
    "mscoco_task0_test",
    "mscoco_task3_test",
    "fashion200k_task0",
    "fashion200k_task3",
    "webqa_task1",
    "webqa_task2",
    "edis_task2",
    "nights_task4",
    "oven_task6",
    "oven_task8",
    "infoseek_task6",
    "infoseek_task8",
    "fashioniq_task7",
    "cirr_task7",
)


def eval_task(name: str) -> EvalTask:
    """Look up one of the 16 test triples by name, e.g. ``"cirr_task7"``."""
    try:
        return _EVAL_BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"unknown M-BEIR test task {name!r}; known: {sorted(_EVAL_BY_NAME)}"
        ) from None


def find_eval_task(name: str) -> EvalTask | None:
    """The M-BEIR test task of that name, or ``None`` (e.g. a user's own collection)."""
    return _EVAL_BY_NAME.get(name)


# Facts of a searched task, for M-BEIR tasks and users' own collections alike.
def default_depth(task: str) -> int:
    """A task's run depth: its deepest metric's k (10; 50 for Fashion200K and FashionIQ);
    10 for other names."""
    t = find_eval_task(task)
    return max(t.metric_ks) if t else 10


def local_pool(task: str) -> str:
    """The local pool of a query task (its own name for non-M-BEIR tasks)."""
    t = find_eval_task(task)
    return t.pool if t else task


def task_id(task: str) -> int | None:
    """UniIR's task id of an M-BEIR test task (``None`` for other names)."""
    t = find_eval_task(task)
    return t.task.id if t else None


def target_modality(task: str) -> str | None:
    """The candidate modality an M-BEIR task asks for (``None`` for other names)."""
    t = find_eval_task(task)
    return t.task.cand_modality if t else None


def parse_id(value: str) -> tuple[int, int]:
    """Split an M-BEIR id ``"<dataset_id>:<n>"`` into integers.

    Raises:
        DataFormatError: If ``value`` is not of that form.
    """
    head, sep, tail = value.partition(":")
    if not (sep and head.isascii() and tail.isascii() and head.isdigit() and tail.isdigit()):
        raise DataFormatError(f"id {value!r} is not of the form '<dataset_id>:<n>'")
    return int(head), int(tail)


def hash_qid(qid: str) -> int:
    """UniIR's integer form of a query id: ``d * 500_000 + n``."""
    d, n = parse_id(qid)
    return d * DATASET_QUERY_NUM_UPPER_BOUND + n


def hash_did(did: str) -> int:
    """UniIR's integer form of a candidate id: ``d * 10_000_000 + n``."""
    d, n = parse_id(did)
    return d * DATASET_CAN_NUM_UPPER_BOUND + n


def unhash_qid(value: int) -> str:
    """Inverse of :func:`hash_qid`."""
    d, n = divmod(int(value), DATASET_QUERY_NUM_UPPER_BOUND)
    return f"{d}:{n}"


def unhash_did(value: int) -> str:
    """Inverse of :func:`hash_did`."""
    d, n = divmod(int(value), DATASET_CAN_NUM_UPPER_BOUND)
    return f"{d}:{n}"


def hash_qids(qids: Iterable[str]) -> np.ndarray:
    """Vector form of :func:`hash_qid` (int64)."""
    return np.fromiter((hash_qid(q) for q in qids), dtype=np.int64)


def hash_dids(dids: Iterable[str]) -> np.ndarray:
    """Vector form of :func:`hash_did` (int64)."""
    return np.fromiter((hash_did(d) for d in dids), dtype=np.int64)
