"""The shared core of the embedding engines: what to embed, how a shard is embedded, and the
entries and ``meta.json`` around it.

Both engines of ``augret embed`` (:mod:`augret.encode.local_engine`,
:mod:`augret.encode.ray_engine`) are built from these parts and run the same shard code
(:class:`ShardEmbedder`), so they write the same bytes and resume each other's directories:

* :func:`plan_embedding`: the entries of a run (:class:`EmbedJob`), the union's entries and
  the instruction table;
* :func:`shard_starts` / :func:`iter_rows`: where each shard starts in its source file, and
  its rows (parsed, with the file and line of a bad one);
* :class:`ShardEmbedder`: one shard's rows to fp16 vectors, ids and stats; rows that cannot
  be embedded follow ``on_missing_image``;
* :class:`ImageGuard`: the "first 50 images all failed" check of an entry, mergeable shard
  by shard;
* :func:`start_meta`, :func:`open_entry`, :func:`finish_entry`, :func:`entry_summary`: the
  embedding directory around the shards, through :mod:`augret.formats.embeddings`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from augret.config import config_hash, config_to_dict, write_resolved
from augret.data.ids import UNION_POOL_ORDER
from augret.data.mbeir import UNION, MBEIRDir, pool_stem
from augret.data.records import Candidate, Query
from augret.encode.config import EmbedConfig
from augret.encode.inputs import (
    candidate_item,
    positive_modality,
    query_item,
    query_prompt,
)
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.formats import embeddings as embedding_files
from augret.formats.embeddings import EntryWriter

__all__ = [
    "GUARD_ROWS",
    "EmbedJob",
    "EmbedPlan",
    "ImageGuard",
    "ShardEmbedder",
    "ShardStart",
    "describe_encoder",
    "entry_summary",
    "finish_entry",
    "instruction_table",
    "iter_rows",
    "open_entry",
    "plan_embedding",
    "shard_starts",
    "start_meta",
]

log = logging.getLogger(__name__)

GUARD_ROWS = 50  # rows with an image that must not all fail before the run stops


# ---- what to embed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbedJob:
    """One entry to embed: a query file or a pool file.

    Attributes:
        entry: ``"queries/<task>"`` or ``"pools/<pool>"``.
        kind: ``"queries"`` or ``"pool"``.
        path: The source file.
        task: The :class:`~augret.data.ids.EvalTask` of a query file (``None`` for pools).
    """

    entry: str
    kind: Literal["queries", "pool"]
    path: Path
    task: Any = None


@dataclass(frozen=True)
class EmbedPlan:
    """What a run embeds.

    Attributes:
        jobs: The entries, in the order they are written.
        union: The entries that make up the union pool (``meta.json``'s ``union``), or
            ``None`` when the union is not embedded.
        table: The query instruction table (``None`` without instructions).
    """

    jobs: list[EmbedJob]
    union: list[str] | None
    table: Any = None


def plan_embedding(data: MBEIRDir, cfg: EmbedConfig) -> EmbedPlan:
    """The entries ``cfg`` asks for in ``data``, and the instruction table they need.

    Raises:
        ConfigError: The union is asked for with a split other than ``test``.
        DataNotFoundError: A task without a query file, no pool for the union, nothing to
            embed, or no instruction file for instructed queries.
    """
    jobs, union = _jobs(data, cfg)
    if not jobs:
        raise DataNotFoundError(f"{data.root}: nothing to embed for split {cfg.split!r}")
    return EmbedPlan(jobs, union, instruction_table(data, cfg))


def _jobs(data: MBEIRDir, cfg: EmbedConfig) -> tuple[list[EmbedJob], list[str] | None]:
    tasks = data.tasks(cfg.split)
    if cfg.tasks:
        known = {t.task.name for t in tasks}
        missing = [t for t in cfg.tasks if t not in known]
        if missing:
            raise DataNotFoundError(f"{data.root}: no {cfg.split} query file for {missing}")
        tasks = [t for t in tasks if t.task.name in cfg.tasks]
    jobs: list[EmbedJob] = []
    if cfg.queries:
        jobs += [EmbedJob(f"queries/{t.task.name}", "queries", t.queries, t.task) for t in tasks]
    pools: dict[str, Path] = {}
    if "local" in cfg.pools:
        if cfg.tasks:
            pools.update({pool_stem(t.pool): t.pool for t in tasks if t.pool is not None})
        else:
            others = {"train", "val", "test"} - {cfg.split}
            pools.update({name: p for name, p in data.local_pools().items()
                          if not any(name.endswith(f"_{o}") for o in others)})
    union: list[str] | None = None
    if "union" in cfg.pools:
        if cfg.split != "test":
            raise ConfigError("the union pool exists for the test split only")
        parts = data.union_pools()
        if not parts:
            raise DataNotFoundError(f"{data.root}: no global test pool and no local test pool")
        if UNION not in parts and len(parts) < len(UNION_POOL_ORDER):
            log.warning("union: %d of %d local test pools present; the union is their "
                        "concatenation", len(parts), len(UNION_POOL_ORDER))
        pools.update(parts)
        union = [f"pools/{n}" for n in parts]
    jobs += [EmbedJob(f"pools/{name}", "pool", path) for name, path in pools.items()]
    return jobs, union


# ---- reading rows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardStart:
    """Where shard ``shard`` starts in its source file: row index, byte offset, lines before."""

    shard: int
    row: int
    offset: int
    line: int


def iter_rows(path: Path, kind: str, start: int, at: ShardStart | None = None
              ) -> Iterator[tuple[int, int, Any]]:
    """``(row, line, record)`` from row ``start`` on; rows before it are counted, not parsed.

    ``at`` starts reading at a known row's byte offset instead of the top of the file.
    """
    parse = Query.from_dict if kind == "queries" else Candidate.from_dict
    row = at.row if at else 0
    with path.open("rb") as f:
        if at:
            f.seek(at.offset)
        for line_no, raw in enumerate(f, start=(at.line if at else 0) + 1):
            if not raw.strip():
                continue
            if row >= start:
                try:
                    rec = parse(json.loads(raw))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise DataFormatError(f"invalid JSON: {exc}", path=path,
                                          line=line_no) from None
                except DataFormatError as exc:
                    raise DataFormatError(exc.reason, path=path, line=line_no,
                                          field=exc.field) from None
                yield row, line_no, rec
            row += 1


def shard_starts(path: Path, shard_size: int, first: int) -> tuple[list[ShardStart], int]:
    """The starts of shards ``first`` on, and the file's row count (one scan, no parsing)."""
    starts: list[ShardStart] = []
    row = offset = 0
    with path.open("rb") as f:
        for line_no, raw in enumerate(f):
            if raw.strip():
                if row % shard_size == 0 and row // shard_size >= first:
                    starts.append(ShardStart(row // shard_size, row, offset, line_no))
                row += 1
            offset += len(raw)
    return starts, row


class _Rows:
    """A map-style dataset over one shard's items: image decoding in the workers."""

    def __init__(self, items: list[Any], processor: Any) -> None:
        self.items = items
        self.processor = processor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.processor.prepare(self.items[i], key=i)


def _identity(rows: list[Any]) -> list[Any]:
    return rows


# ---- one shard: the code path of both engines ------------------------------------------------
@dataclass
class ImageGuard:
    """The "first 50 images all failed" check of one entry (counted from where a run starts).

    A Ray worker sees one shard, not the entry: it embeds with ``strict=False`` and the
    driver :meth:`merge`\\ s the shard's guard into the entry's in shard order, so the check
    fires at the same row, with the same message, as in a single process.
    """

    image_root: str
    strict: bool = True
    rows: int = 0
    failures: int = 0
    leading: list[str] = field(default_factory=list)  # errors before the first good image

    def see(self, error: str | None) -> None:
        """Count one row with an image (``error``: why it failed, ``None``: it loaded)."""
        self.rows += 1
        if error is None:
            return
        self.failures += 1
        if self.failures == self.rows:
            if len(self.leading) < GUARD_ROWS:
                self.leading.append(error)
            if self.strict and self.rows >= GUARD_ROWS:
                raise DataNotFoundError(
                    f"the first {GUARD_ROWS} images all failed (last: {error}); "
                    f"check the image root ({self.image_root})")

    def merge(self, shard: ImageGuard) -> None:
        """Count the next shard's rows as if they had been seen here (raises likewise)."""
        for error in shard.leading:
            self.see(error)
        self.rows += shard.rows - len(shard.leading)
        self.failures += shard.failures - len(shard.leading)


def instruction_table(data: MBEIRDir, cfg: EmbedConfig) -> Any:
    """The query instruction table of ``data`` when ``cfg`` embeds instructed queries (a
    directory without query files to embed needs none).

    Raises:
        DataNotFoundError: Instructed queries but no ``instructions/query_instructions.tsv``.
    """
    if not (cfg.queries and cfg.instruction != "none"):
        return None
    if not any(not cfg.tasks or t.task.name in cfg.tasks for t in data.tasks(cfg.split)):
        return None  # no query file to embed (e.g. an own collection): nothing to instruct
    if data.instructions_file() is None:
        raise DataNotFoundError(f"{data.root}: no instructions/query_instructions.tsv; "
                                "add it or embed with --instruction none")
    return data.instructions()


class ShardEmbedder:
    """Embeds the rows of one shard; both engines call :meth:`embed`.

    Args:
        data: The M-BEIR directory.
        cfg: The run's config.
        encoder: A loaded encoder.
        table: The instruction table (``None`` without instructions).
        loader_workers: Image-decoding data loader processes for large shards.
    """

    def __init__(self, data: MBEIRDir, cfg: EmbedConfig, encoder: Any, table: Any,
                 loader_workers: int) -> None:
        self.data, self.cfg, self.encoder, self.table = data, cfg, encoder, table
        self.loader_workers = loader_workers

    def _item(self, job: EmbedJob, rec: Any) -> tuple[Any, bool]:
        """The encoder input of a record, and whether a query found no instruction."""
        if job.kind == "pool":
            return candidate_item(rec, self.data), False
        cand_mod = positive_modality(rec, file_task=job.task.task if job.task else None)
        prompt = query_prompt(rec, self.table, self.cfg.instruction, cand_modality=cand_mod,
                              seed=self.cfg.instruction_seed)
        return (query_item(rec, self.data, prompt,
                           separate=self.encoder.separate_instruction),
                prompt is None and self.cfg.instruction != "none")

    def embed(self, job: EmbedJob, chunk: list[tuple[int, int, Any]], guard: ImageGuard
              ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        """Vectors (fp16), ids and stats of one shard's ``(row, line, record)`` rows.

        Raises:
            DataNotFoundError: ``on_missing_image="error"`` and an image failed, or the guard.
            DataFormatError: ``on_missing_image="error"`` and a row has nothing to embed.
        """
        from augret._lazy import require

        torch = require("torch", "train")
        cfg = self.cfg
        items, uninstructed = [], 0
        for _, _, rec in chunk:
            item, missing = self._item(job, rec)
            items.append(item)
            uninstructed += missing
        # starting workers costs more than decoding a few batches in this process
        workers = self.loader_workers if len(items) > 4 * cfg.batch_size else 0
        loader = torch.utils.data.DataLoader(
            _Rows(items, self.encoder.processor), batch_size=cfg.batch_size,
            num_workers=workers, collate_fn=_identity,
            persistent_workers=False, pin_memory=self.encoder.device.type == "cuda")
        vectors: list[np.ndarray] = []
        ids: list[str] = []
        skipped: list[dict[str, Any]] = []
        truncated = dropped = 0
        for prepared in loader:
            keep = []
            for p in prepared:
                row, line, rec = chunk[p.key]
                rid = rec.id
                reason = self._check(p, items[p.key], guard)
                if reason is None:
                    keep.append(p)
                    continue
                if cfg.on_missing_image == "error":
                    err = DataNotFoundError if p.error else DataFormatError
                    raise err(f"{job.path}:{line} ({rid}): {reason}")
                if cfg.on_missing_image == "drop" and p.error and p.text:
                    p.pixels, p.error = None, None
                    dropped += 1
                    skipped.append({"row": row, "line": line, "id": rid, "reason": reason,
                                    "action": "image dropped"})
                    keep.append(p)
                    continue
                skipped.append({"row": row, "line": line, "id": rid, "reason": reason,
                                "action": "skipped"})
            if not keep:
                continue
            batch = self.encoder.processor.collate(keep)
            truncated += sum(batch.truncated)
            vectors.append(self.encoder.embed_batch(batch))
            for p in keep:
                rec = chunk[p.key][2]
                ids.append(rec.id)
        dim = self.encoder.dim
        out = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        stats: dict[str, Any] = {"rows": len(ids), "input_rows": len(chunk),
                                 "truncated": truncated, "images_dropped": dropped,
                                 "skipped": skipped}
        if job.kind == "queries":
            stats["uninstructed"] = uninstructed
        return out.astype(np.float16), ids, stats

    @staticmethod
    def _check(p: Any, item: Any, guard: ImageGuard) -> str | None:
        """Why a prepared row cannot be embedded as is (``None``: it can)."""
        if item.has_image:
            guard.see(p.error)
            if p.error is not None:
                return p.error
        if not p.text and p.pixels is None:
            return "no text and no image"
        return None


# ---- entries -----------------------------------------------------------------------------------
def open_entry(out: Path, job: EmbedJob, cfg: EmbedConfig, chash: str, dim: int
               ) -> tuple[dict[str, Any], EntryWriter | None, dict[str, Any] | None]:
    """``(fingerprint, writer, None)`` for an entry to (re)write, ``(fp, None, entry)`` for a
    finished one."""
    fp = {**embedding_files.source_fingerprint(job.path), "config_hash": chash,
          "shard_size": cfg.shard_size}
    root = out / job.entry
    done = embedding_files.finished_entry(root, fp)
    if done is not None:
        log.info("%s: up to date", job.entry)
        return fp, None, done
    writer = EntryWriter(root, fp, shard_size=cfg.shard_size, dim=dim)
    if writer.done:
        log.info("%s: resuming after %d complete shard(s)", job.entry, writer.done)
    return fp, writer, None


def finish_entry(job: EmbedJob, writer: EntryWriter, fp: dict[str, Any], cfg: EmbedConfig,
                 context_length: int) -> dict[str, Any]:
    """Write an entry's ``entry.json`` once all its shards are written; warn about what was
    left out or cut. Returns the entry."""
    info: dict[str, Any] = {"entry": job.entry, "kind": job.kind, "source": str(job.path),
                            "source_size": fp["size"], "source_mtime_ns": fp["mtime_ns"]}
    if job.kind == "queries":
        info["uninstructed"] = 0  # summed over the shards by EntryWriter.finish
    if job.task is not None:
        info["task"] = job.task.name
    entry = writer.finish(info)
    if entry.get("uninstructed") and cfg.instruction != "none":
        log.warning("%s: %d queries had no instruction row for their key", job.entry,
                    entry["uninstructed"])
    if entry["truncated"]:
        log.warning("%s: %d text(s) longer than %d tokens were truncated", job.entry,
                    entry["truncated"], context_length)
    if entry["skipped"]:
        log.warning("%s: skipped %d row(s); see %s", job.entry, entry["skipped"],
                    writer.root / "skipped.jsonl")
    return entry


def entry_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as ``meta.json`` lists it."""
    return {k: entry[k] for k in ("kind", "task", "source", "rows", "shards", "truncated",
                                  "skipped", "images_dropped", "uninstructed") if k in entry}


def describe_encoder(encoder: Any) -> dict[str, Any]:
    """What ``meta.json`` and the config hash need to know of a loaded encoder."""
    return encoder.describe()


def _resolved(cfg: EmbedConfig, enc: dict[str, Any], data: MBEIRDir) -> dict[str, Any]:
    """What the config hash takes from the loaded encoder, its weights file and the data."""
    from augret.encode.checkpoint import MODEL_FILE

    enc_path = Path(cfg.encoder)
    weights = enc.get("weights")  # MLLM encoders fingerprint their own weight files
    if weights is None:
        for cand in (enc_path, enc_path / MODEL_FILE):
            if cand.is_file():
                st = cand.stat()
                weights = {"file": str(cand.resolve()), "size": st.st_size,
                           "mtime_ns": st.st_mtime_ns}
                break
    return {"backbone": enc["backbone"], "weights": weights, "precision": enc["precision"],
            "context_length": enc["context_length"], "data_dir": str(data.root.resolve()),
            "image_root": str(data.image_root.resolve())}


def start_meta(data: MBEIRDir, out: Path, cfg: EmbedConfig, enc: dict[str, Any],
               union: list[str] | None, run: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Check (or replace) an existing output directory and write the run's ``meta.json``.

    Args:
        data: The M-BEIR directory.
        out: The embedding directory.
        cfg: The run's config.
        enc: The encoder as :func:`describe_encoder` describes it.
        union: The union's entries (:attr:`EmbedPlan.union`).
        run: The engine's run record (``meta.json``'s ``run``), updated as it goes.

    Returns:
        The meta dict (entries of earlier runs kept) and the config hash.
    """
    key = _resolved(cfg, enc, data)
    chash = config_hash(cfg, extra=key)
    meta = embedding_files.prepare_dir(out, chash, overwrite=cfg.overwrite)
    write_resolved(cfg, out)
    meta = {"format": embedding_files.FORMAT, "version": 1,
            "encoder": {"name": cfg.encoder, "architecture": enc["architecture"],
                        "backbone": enc["backbone"], "weights": key["weights"]},
            "dim": enc["dim"], "dtype": "float16", "normalized": enc["normalized"],
            "data_dir": key["data_dir"], "image_root": key["image_root"], "split": cfg.split,
            "instruction": cfg.instruction, "context_length": enc["context_length"],
            "precision": enc["precision"], "config_hash": chash,
            "config": config_to_dict(cfg),
            "entries": meta.get("entries", {}), "union": meta.get("union"), "run": run}
    if union is not None:
        meta["union"] = union
    embedding_files.write_meta(out, meta)
    return meta, chash
