"""``augret embed``: embed the query files and candidate pools of an M-BEIR directory.

Streams each source file in shards of ``shard_size`` rows (bounded memory), decodes images in
data-loader workers, writes fp16 shards with aligned id files and resumes at the first
incomplete shard. The directory is ``docs/formats.md``'s embedding directory, written through
its owner module :mod:`augret.formats.embeddings`.

Rows that cannot be embedded: with ``on_missing_image="skip"`` (the default) a row whose image
is missing or unreadable, or that has neither text nor image, is left out of the vectors *and*
the ids and listed in the entry's ``skipped.jsonl`` (``entry.json`` counts it); ``"error"``
stops at the first such row; ``"drop"`` embeds the row without its image (mask 0) when it has
text, and records that. If the first 50 rows with an image all fail, the run stops: the image
root is wrong, not a few files.

Two engines run the same shard code (:class:`_ShardEmbedder`) and write the same bytes:
``local`` (this process holds the encoder) and ``ray`` (:mod:`augret.encode.ray_engine`: a
pool of Ray actors, each holding one encoder, embed whole shards; this process writes them in
order). A directory started by one engine can be resumed by the other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
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
from augret.formats.embeddings import META_FILE, EntryWriter

__all__ = ["META_FILE", "embed_dir"]

log = logging.getLogger(__name__)

_GUARD_ROWS = 50


# ---- what to embed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    entry: str  # "queries/<task>" or "pools/<pool>"
    kind: Literal["queries", "pool"]
    path: Path
    task: Any = None  # EvalTask of a query file


def _plan(data: MBEIRDir, cfg: EmbedConfig) -> tuple[list[_Job], list[str] | None]:
    tasks = data.tasks(cfg.split)
    if cfg.tasks:
        known = {t.task.name for t in tasks}
        missing = [t for t in cfg.tasks if t not in known]
        if missing:
            raise DataNotFoundError(f"{data.root}: no {cfg.split} query file for {missing}")
        tasks = [t for t in tasks if t.task.name in cfg.tasks]
    jobs: list[_Job] = []
    if cfg.queries:
        jobs += [_Job(f"queries/{t.task.name}", "queries", t.queries, t.task) for t in tasks]
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
    jobs += [_Job(f"pools/{name}", "pool", path) for name, path in pools.items()]
    return jobs, union


# ---- reading rows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ShardStart:
    """Where shard ``shard`` starts in its source file: row index, byte offset, lines before."""

    shard: int
    row: int
    offset: int
    line: int


def _iter_rows(path: Path, kind: str, start: int, at: _ShardStart | None = None
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


def _shard_starts(path: Path, shard_size: int, first: int) -> tuple[list[_ShardStart], int]:
    """The starts of shards ``first`` on, and the file's row count (one scan, no parsing)."""
    starts: list[_ShardStart] = []
    row = offset = 0
    with path.open("rb") as f:
        for line_no, raw in enumerate(f):
            if raw.strip():
                if row % shard_size == 0 and row // shard_size >= first:
                    starts.append(_ShardStart(row // shard_size, row, offset, line_no))
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
        from augret.encode.batch import prepare

        return prepare(self.items[i], self.processor, key=i)


def _identity(rows: list[Any]) -> list[Any]:
    return rows


# ---- one shard: the code path of both engines ------------------------------------------------
@dataclass
class _ImageGuard:
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
            if len(self.leading) < _GUARD_ROWS:
                self.leading.append(error)
            if self.strict and self.rows >= _GUARD_ROWS:
                raise DataNotFoundError(
                    f"the first {_GUARD_ROWS} images all failed (last: {error}); "
                    f"check the image root ({self.image_root})")

    def merge(self, shard: _ImageGuard) -> None:
        """Count the next shard's rows as if they had been seen here (raises likewise)."""
        for error in shard.leading:
            self.see(error)
        self.rows += shard.rows - len(shard.leading)
        self.failures += shard.failures - len(shard.leading)


def _instruction_table(data: MBEIRDir, cfg: EmbedConfig) -> Any:
    if not (cfg.queries and cfg.instruction != "none"):
        return None
    if data.instructions_file() is None:
        raise DataNotFoundError(f"{data.root}: no instructions/query_instructions.tsv; "
                                "add it or embed with --instruction none")
    return data.instructions()


class _ShardEmbedder:
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

    def _item(self, job: _Job, rec: Any) -> tuple[Any, bool]:
        """The encoder input of a record, and whether a query found no instruction."""
        if job.kind == "pool":
            return candidate_item(rec, self.data), False
        cand_mod = positive_modality(rec, file_task=job.task.task if job.task else None)
        prompt = query_prompt(rec, self.table, self.cfg.instruction, cand_modality=cand_mod,
                              seed=self.cfg.instruction_seed)
        return (query_item(rec, self.data, prompt),
                prompt is None and self.cfg.instruction != "none")

    def embed(self, job: _Job, chunk: list[tuple[int, int, Any]], guard: _ImageGuard
              ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        """Vectors (fp16), ids and stats of one shard's ``(row, line, record)`` rows.

        Raises:
            DataNotFoundError: ``on_missing_image="error"`` and an image failed, or the guard.
            DataFormatError: ``on_missing_image="error"`` and a row has nothing to embed.
        """
        from augret._lazy import require
        from augret.encode.batch import collate

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
            batch = collate(keep, self.encoder.processor)
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
    def _check(p: Any, item: Any, guard: _ImageGuard) -> str | None:
        """Why a prepared row cannot be embedded as is (``None``: it can)."""
        if item.has_image:
            guard.see(p.error)
            if p.error is not None:
                return p.error
        if not p.text and p.pixels is None:
            return "no text and no image"
        return None


# ---- entries -----------------------------------------------------------------------------------
def _open_entry(out: Path, job: _Job, cfg: EmbedConfig, chash: str, dim: int
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


def _finish_entry(job: _Job, writer: EntryWriter, fp: dict[str, Any], cfg: EmbedConfig,
                  context_length: int) -> dict[str, Any]:
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


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as ``meta.json`` lists it."""
    return {k: entry[k] for k in ("kind", "task", "source", "rows", "shards", "truncated",
                                  "skipped", "images_dropped", "uninstructed") if k in entry}


def _describe(encoder: Any) -> dict[str, Any]:
    """What ``meta.json`` and the config hash need to know of a loaded encoder."""
    return {"backbone": encoder.spec.to_dict(), "dim": encoder.dim,
            "precision": encoder.precision, "context_length": encoder.context_length}


def _resolved(cfg: EmbedConfig, enc: dict[str, Any], data: MBEIRDir) -> dict[str, Any]:
    """What the config hash takes from the loaded encoder, its weights file and the data."""
    from augret.encode.checkpoint import MODEL_FILE

    enc_path = Path(cfg.encoder)
    weights = None
    for cand in (enc_path, enc_path / MODEL_FILE):
        if cand.is_file():
            st = cand.stat()
            weights = {"file": str(cand.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            break
    return {"backbone": enc["backbone"], "weights": weights, "precision": enc["precision"],
            "context_length": enc["context_length"], "data_dir": str(data.root.resolve()),
            "image_root": str(data.image_root.resolve())}


def _start_meta(data: MBEIRDir, out: Path, cfg: EmbedConfig, enc: dict[str, Any],
                union: list[str] | None, run: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Check (or replace) an existing output directory and write the run's ``meta.json``.

    Returns:
        The meta dict (entries of earlier runs kept) and the config hash.
    """
    key = _resolved(cfg, enc, data)
    chash = config_hash(cfg, extra=key)
    meta = embedding_files.prepare_dir(out, chash, overwrite=cfg.overwrite)
    write_resolved(cfg, out)
    meta = {"format": embedding_files.FORMAT, "version": 1,
            "encoder": {"name": cfg.encoder, "architecture": "clip_sf",
                        "backbone": enc["backbone"], "weights": key["weights"]},
            "dim": enc["dim"], "dtype": "float16", "normalized": False,
            "data_dir": key["data_dir"], "image_root": key["image_root"], "split": cfg.split,
            "instruction": cfg.instruction, "context_length": enc["context_length"],
            "precision": enc["precision"], "config_hash": chash,
            "config": config_to_dict(cfg),
            "entries": meta.get("entries", {}), "union": meta.get("union"), "run": run}
    if union is not None:
        meta["union"] = union
    embedding_files.write_meta(out, meta)
    return meta, chash


# ---- the run -----------------------------------------------------------------------------------
def embed_dir(data_dir: str | Path, out_dir: str | Path, cfg: EmbedConfig | None = None, *,
              encoder: Any = None, progress: bool = True) -> dict[str, Any]:
    """Embed an M-BEIR directory (raw or enhanced) into an embedding directory.

    Args:
        data_dir: The M-BEIR directory.
        out_dir: The embedding directory (created; resumed when it holds the same config,
            whichever engine wrote it).
        cfg: The config (defaults: :class:`EmbedConfig`); ``cfg.engine`` picks the engine.
        encoder: An already loaded encoder (else ``cfg.encoder`` is loaded). With the
            ``ray`` engine the workers load ``cfg.encoder`` themselves and this one, which
            must be that encoder, only describes it (dim, precision) to the driver.
        progress: Show a progress bar.

    Returns:
        The ``meta.json`` contents.

    Raises:
        ConfigError: ``out_dir`` holds embeddings of another config (and not ``overwrite``).
        DataNotFoundError: Missing tasks, instructions or images (see the module docstring).
    """
    cfg = cfg or EmbedConfig()
    data = MBEIRDir(data_dir)
    out = Path(out_dir)
    jobs, union = _plan(data, cfg)
    if not jobs:
        raise DataNotFoundError(f"{data.root}: nothing to embed for split {cfg.split!r}")
    table = _instruction_table(data, cfg)
    if cfg.engine == "ray":
        from augret.encode.ray_engine import embed_with_ray

        return embed_with_ray(data, out, cfg, jobs, union, encoder=encoder, progress=progress)
    return _embed_local(data, out, cfg, jobs, union, table, encoder, progress)


def _embed_local(data: MBEIRDir, out: Path, cfg: EmbedConfig, jobs: list[_Job],
                 union: list[str] | None, table: Any, encoder: Any, progress: bool
                 ) -> dict[str, Any]:
    from augret._ray import Throughput
    from augret.encode.registry import load_encoder

    if encoder is None:
        encoder = load_encoder(cfg.encoder, device=cfg.device, precision=cfg.precision,
                               backbone=cfg.backbone, context_length=cfg.context_length)
    gpus = 1.0 if encoder.device.type == "cuda" else 0.0
    speed = Throughput("embed", gpus=gpus)
    run: dict[str, Any] = {"engine": "local", "gpus": gpus, "stages": {}}
    meta, chash = _start_meta(data, out, cfg, _describe(encoder), union, run)
    shards = _ShardEmbedder(data, cfg, encoder, table, loader_workers=cfg.workers)
    bar = _progress() if progress else None
    try:
        if bar is not None:
            bar.start()
        for job in jobs:
            fp, writer, entry = _open_entry(out, job, cfg, chash, encoder.dim)
            if writer is not None:
                task_id = bar.add_task(job.entry, total=None) if bar else None
                guard = _ImageGuard(str(data.image_root))
                rows = _iter_rows(job.path, job.kind, writer.done * cfg.shard_size)
                shard = writer.done
                while chunk := list(islice(rows, cfg.shard_size)):
                    vectors, ids, stats = shards.embed(job, chunk, guard)
                    writer.write_shard(shard, vectors, ids, stats)
                    shard += 1
                    speed.add(len(chunk))
                    if bar is not None:
                        bar.update(task_id, advance=len(chunk))
                entry = _finish_entry(job, writer, fp, cfg, encoder.context_length)
            meta["entries"][job.entry] = _summary(entry)
            run["stages"] = {"embed": speed.as_dict()}
            embedding_files.write_meta(out, meta)
    finally:
        if bar is not None:
            bar.stop()
    return meta


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)
