"""Training examples: a query, one random positive (and optional hard negatives), UniIR style.

Every random choice of an example (its positive, its instruction, its raw/enhanced view, its
hard negatives) is drawn from a generator seeded by ``(seed, epoch, index)``: the data does not
depend on worker count, rank count or how a run was interrupted and resumed. Queries are read
by byte offset and candidates through :class:`~augret.data.lookup.PoolLookup`, so neither the
1.1M training queries nor the 478 MB train pool are held in memory.

The order is ``DistributedSampler(shuffle=True, seed)`` per epoch (as UniIR) cut into
micro-batches with ``drop_last``; a resumed run starts at the next micro-batch of its epoch.

The data path is the encoder's processor (``prepare`` in the workers, ``collate``), so the
same examples feed every encoder family; a micro-batch is collated as one model batch, or as
GradCache chunks (queries and candidates cut into chunks of their own sizes).
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augret.data.instructions import InstructionTable
from augret.data.lookup import PoolLookup
from augret.data.mbeir import MBEIRDir
from augret.data.records import Candidate, Query
from augret.data.text import format_string
from augret.encode.base import Item
from augret.encode.batch import Prepared
from augret.encode.inputs import candidate_item, query_item
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.train.config import DataConfig

__all__ = ["BatchInfo", "EpochBatches", "TrainData", "TrainExample", "chunk_bounds",
           "open_train_data", "resolve_files"]

log = logging.getLogger(__name__)

# What stands in for a skipped example's rows (masked out of the loss).
_PLACEHOLDER = Prepared("skipped", None)


class LineIndex:
    """Byte offsets of the non-blank lines of a JSONL file; records parsed on access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        offsets = []
        pos = 0
        with path.open("rb") as f:
            for raw in f:
                if raw.strip():
                    offsets.append(pos)
                pos += len(raw)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._fh: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return int(self.offsets.size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fh": None, "_pid": -1}

    def read(self, i: int) -> dict[str, Any]:
        """The JSON object of record ``i``."""
        if self._fh is None or self._pid != os.getpid():  # one handle per worker process
            self._fh = self.path.open("rb")
            self._pid = os.getpid()
        self._fh.seek(int(self.offsets[i]))
        raw = self._fh.readline()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"invalid JSON: {exc}", path=self.path) from None


@dataclass
class TrainExample:
    """One prepared example (images decoded in a worker)."""

    index: int
    qid: str
    query: Prepared
    positive: Prepared
    pos_id: str
    negatives: list[Prepared] = field(default_factory=list)
    neg_ids: list[str] = field(default_factory=list)
    view: str = "raw"
    problem: str | None = None  # why the example cannot be used


@dataclass
class BatchInfo:
    """What the loss needs beside the model batch.

    Attributes:
        size: Queries in the batch (``B``); rows ``[0, B)`` are queries, ``[B, 2B)`` their
            positives, then ``B * k`` hard negatives (query-major), across the chunks in
            order.
        valid: ``[B]`` bool tensor, False for skipped examples.
        neg_valid: ``[B, k]`` bool tensor.
        problems: ``(qid, reason)`` of the examples left out.
        views: How many examples used each view.
        truncated: Texts cut to the context length.
    """

    size: int
    valid: Any
    neg_valid: Any
    problems: list[tuple[str, str]]
    views: dict[str, int]
    truncated: int


def resolve_files(base: MBEIRDir, value: str | None, default: Path | None,
                  what: str) -> list[Path]:
    """The files a config value names (comma-separated, relative to ``base``), else
    ``default``.

    Args:
        base: The M-BEIR directory relative paths are taken from.
        value: One path or several, comma-separated; empty: ``default``.
        default: The layout's file, or ``None`` when it has none.
        what: What the files are, for the error.

    Raises:
        DataNotFoundError: A named file is missing, or nothing is named and there is no
            default.
    """
    if value:
        paths = []
        for part in str(value).split(","):
            p = Path(part.strip())
            p = p if p.is_absolute() else base.root / p
            if not p.is_file():
                raise DataNotFoundError(f"{p}: no such {what} file")
            paths.append(p)
        return paths
    if default is None:
        raise DataNotFoundError(f"{base.root}: no default {what} file; set it in the config")
    return [default]


class TrainData:
    """The training set: ``len`` queries; ``example((index, epoch))`` builds one example.

    Args:
        cfg: The data config.
        processor: The encoder's processor: ``prepare(item, key)`` and ``collate(rows)``.
        seed: The run seed.
        separate_instruction: Query instructions go in ``Item.instruction`` (MLLM
            embedders) instead of being prefixed to the text.
        chunks: GradCache chunk sizes ``(queries, candidates)``; ``None``: one model batch.
    """

    def __init__(self, cfg: DataConfig, processor: Any, seed: int, *,
                 separate_instruction: bool = False,
                 chunks: tuple[int, int] | None = None) -> None:
        self.cfg = cfg
        self.processor = processor
        self.seed = seed
        self.separate = separate_instruction
        self.chunks = chunks
        if cfg.view in ("enhanced", "mix"):
            if cfg.enhanced_dir is None:
                raise ConfigError(f"data.view {cfg.view!r} needs data.enhanced_dir")
            self.base = MBEIRDir(cfg.enhanced_dir)
        elif cfg.dir is not None:
            self.base = MBEIRDir(cfg.dir)
        elif cfg.enhanced_dir is not None:  # raw texts from an enhanced dir's *_raw fields
            self.base = MBEIRDir(cfg.enhanced_dir)
        else:
            raise ConfigError("set data.dir (or data.enhanced_dir)")
        self.query_files = resolve_files(self.base, cfg.train_file, self.base.train_file(),
                                    "training query")
        self.pool_files = resolve_files(self.base, cfg.train_pool, self.base.train_pool_file(),
                                   "training pool")
        self.queries = LineIndex(self.query_files[0])
        if cfg.max_examples:
            self.queries.offsets = self.queries.offsets[: cfg.max_examples]
        if len(self.queries) == 0:
            raise DataFormatError("no training queries", path=self.query_files[0])
        self.lookup = PoolLookup(self.pool_files)
        self.table: InstructionTable | None = None
        if cfg.instruction != "none":
            if self.base.instructions_file() is None:
                raise DataNotFoundError(f"{self.base.root}: no instructions/"
                                        "query_instructions.tsv; set data.instruction: none")
            self.table = self.base.instructions()

    def __len__(self) -> int:
        return len(self.queries)

    def _query(self, i: int) -> Query:
        try:
            return Query.from_dict(self.queries.read(i))
        except DataFormatError as exc:
            raise DataFormatError(exc.reason, path=self.queries.path,
                                  field=exc.field) from None

    def _prompt(self, q: Query, cand_modality: str, rng: random.Random) -> str | None:
        if self.table is None:
            return None
        try:
            prompts = self.table.lookup(q.dataset_id, q.query_modality, cand_modality)
        except KeyError:
            return None
        return format_string(prompts[0] if self.cfg.instruction == "first" else rng.choice(prompts))

    def _cand(self, did: str, view: str) -> Item:
        c: Candidate = self.lookup.get(did)
        text = c.text if view == "enhanced" else c.raw_text
        return candidate_item(c, self.base, text=text)

    def example(self, key: tuple[int, int]) -> TrainExample:
        """Build and prepare example ``index`` of ``epoch`` (``key = (index, epoch)``)."""
        index, epoch = key
        rng = random.Random(f"{self.seed}:{epoch}:{index}")
        q = self._query(index)
        cfg = self.cfg
        view = cfg.view
        if view == "mix":
            view = "enhanced" if rng.random() < cfg.mix_ratio else "raw"
        if not q.pos_cand_list:
            return self._bad(index, q.qid, view, "query has no positive candidate")
        pos_id = rng.choice(q.pos_cand_list)
        if pos_id not in self.lookup:
            return self._bad(index, q.qid, view, f"positive {pos_id} is not in the train pool")
        prompt = self._prompt(q, self.lookup.modality(pos_id), rng)
        q_text = q.text if view == "enhanced" else q.raw_text
        prepare = self.processor.prepare
        qp = prepare(query_item(q, self.base, prompt, text=q_text, separate=self.separate))
        pp = prepare(self._cand(pos_id, view))
        negs, neg_ids = [], []
        if cfg.hard_negatives:
            # a negative listed among the query's positives is a false negative: never drawn
            positives = set(q.pos_cand_list)
            pool = [d for d in q.neg_cand_list if d in self.lookup and d not in positives]
            if pool:
                neg_ids = (rng.sample(pool, cfg.hard_negatives) if len(pool) >= cfg.hard_negatives
                           else pool)
                negs = [prepare(self._cand(d, view)) for d in neg_ids]
        ex = TrainExample(index, q.qid, qp, pp, pos_id, negs, neg_ids, view)
        ex.problem = _problem(qp, "query") or _problem(pp, f"positive {pos_id}")
        for n, d in zip(negs, neg_ids, strict=True):
            if _problem(n, d):
                n.text, n.pixels, n.error = "", None, "bad"  # an invalid negative: masked out
        return ex

    def _bad(self, index: int, qid: str, view: str, reason: str) -> TrainExample:
        empty = Prepared("", None)
        return TrainExample(index, qid, empty, empty, "", view=view, problem=reason)

    def collate(self, examples: list[TrainExample]) -> tuple[list[Any], BatchInfo]:
        """The model batch(es) and loss info of a list of examples (runs in the workers):
        one batch of every row, or the GradCache chunks (:func:`chunk_bounds`)."""
        torch = _torch()
        k = self.cfg.hard_negatives
        b = len(examples)
        rows: list[Prepared] = []
        problems = []
        valid = torch.ones(b, dtype=torch.bool)
        neg_valid = torch.zeros(b, k, dtype=torch.bool)
        views: dict[str, int] = {}
        for i, ex in enumerate(examples):
            views[ex.view] = views.get(ex.view, 0) + 1
            if ex.problem is not None:
                valid[i] = False
                problems.append((ex.qid, ex.problem))
        placeholder = _PLACEHOLDER
        for ex in examples:
            rows.append(placeholder if ex.problem else ex.query)
        for ex in examples:
            rows.append(placeholder if ex.problem else ex.positive)
        for i, ex in enumerate(examples):
            for j in range(k):
                n = ex.negatives[j] if j < len(ex.negatives) else None
                ok = n is not None and n.error is None and ex.problem is None
                neg_valid[i, j] = ok
                rows.append(n if ok else placeholder)
        chunks = [self.processor.collate(rows[lo:hi])
                  for lo, hi in chunk_bounds(b, k, self.chunks)]
        truncated = [t for c in chunks for t in c.truncated]
        info = BatchInfo(b, valid, neg_valid, problems, views, sum(truncated[: 2 * b]))
        return chunks, info


def chunk_bounds(b: int, k: int, chunks: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Row ranges of a micro-batch of ``b`` queries with ``k`` hard negatives each: one range
    of every row, or (GradCache, ``chunks = (queries, candidates)``) the queries in chunks of
    the first size, then the candidates (positives and negatives) in chunks of the second."""
    n = b * (2 + k)
    if chunks is None:
        return [(0, n)]
    qc, cc = chunks
    out = [(lo, min(lo + qc, b)) for lo in range(0, b, qc)]
    return out + [(lo, min(lo + cc, n)) for lo in range(b, n, cc)]


def _problem(p: Prepared, what: str) -> str | None:
    if p.error is not None:
        return f"{what}: {p.error}"
    if not p.text and p.pixels is None:
        return f"{what} has neither text nor an image"
    return None


def _torch() -> Any:
    from augret._lazy import require

    return require("torch", "train")


class _Examples:
    """Map-style dataset whose keys are ``(index, epoch)`` pairs."""

    def __init__(self, data: TrainData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> TrainExample:
        return self.data.example(key)


class EpochBatches:
    """Micro-batches of one rank for one epoch: ``DistributedSampler`` order, ``drop_last``.

    Args:
        n: Dataset size.
        batch_size: Queries per micro-batch.
        rank: This rank.
        world: Number of ranks.
        seed: Shuffle seed.
    """

    def __init__(self, n: int, batch_size: int, *, rank: int, world: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.world, self.seed = n, batch_size, rank, world, seed
        per_rank = -(-n // world)  # DistributedSampler pads to a multiple of the world size
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise ConfigError(f"{n} training queries over {world} rank(s) do not fill one batch "
                              f"of {batch_size}")

    def indices(self, epoch: int) -> list[int]:
        """This rank's example indices of ``epoch``."""
        torch = _torch()
        sampler = torch.utils.data.DistributedSampler(
            range(self.n), num_replicas=self.world, rank=self.rank, shuffle=True,
            seed=self.seed, drop_last=False)
        sampler.set_epoch(epoch)
        return list(sampler)

    def batches(self, epoch: int, start: int = 0, stop: int | None = None
                ) -> list[list[tuple[int, int]]]:
        """Micro-batches ``[start, stop)`` of ``epoch`` as ``(index, epoch)`` keys."""
        idx = self.indices(epoch)
        stop = self.batches_per_epoch if stop is None else min(stop, self.batches_per_epoch)
        bs = self.batch_size
        return [[(i, epoch) for i in idx[j * bs:(j + 1) * bs]] for j in range(start, stop)]


def open_train_data(cfg: DataConfig, processor: Any, seed: int, **kw: Any) -> TrainData:
    """Open the training set (see :class:`TrainData`)."""
    return TrainData(cfg, processor, seed, **kw)


def make_loader(data: TrainData, batches: list[list[tuple[int, int]]], workers: int,
                pin_memory: bool = False) -> Any:
    """A data loader over given micro-batches (workers decode images and tokenise).

    Its own generator seeds the workers, so starting it does not draw from the global one:
    a resumed run's dropout masks are those of the uninterrupted run (examples are keyed by
    seed, epoch and index, not by worker seeds)."""
    torch = _torch()
    return torch.utils.data.DataLoader(
        _Examples(data), batch_sampler=batches, num_workers=workers,
        collate_fn=data.collate, pin_memory=pin_memory,
        persistent_workers=False, generator=torch.Generator().manual_seed(data.seed))
