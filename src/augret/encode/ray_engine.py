"""``augret embed --engine ray``: the same embedding as a Ray Data pipeline.

The unit of work is one shard: a source file, the shard's index and where its first row is
(row, byte offset, line). A dataset of shard descriptors, one block each, flows through
``map_batches`` into a fixed pool of :class:`EmbedActor` (``batch_size=1``), each holding
one encoder and embedding a shard with the single-process code
(:class:`augret.encode.shards.ShardEmbedder`). The driver consumes the results as they stream
in, holds back those that arrive early and writes them in exactly the single-process order
through :class:`~augret.formats.embeddings.EntryWriter`: the files are byte-identical to the
``local`` engine's, and either engine resumes the other's directory.

Failures:

* a row that cannot be embedded is a recorded skip, as in a single process;
* an error a single process would raise (``on_missing_image: error``, invalid JSON, the
  first-50-images guard) travels back with its shard and is raised when the driver reaches
  that shard, after writing everything before it;
* a lost actor is restarted by Ray Data and its in-flight shard retried (Ray Data's default
  actor fault tolerance); its finished shards are not redone;
* a killed driver resumes, like the local engine, at the first shard it had not written.

Workers open the source files and images by the driver's paths: every node needs the same
view of the data directory (a shared file system).
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from augret._ray import Throughput, actor_pool, ray_session
from augret.data.mbeir import MBEIRDir
from augret.encode.config import EmbedConfig
from augret.encode.shards import (
    EmbedJob,
    EmbedPlan,
    ImageGuard,
    ShardEmbedder,
    ShardStart,
    describe_encoder,
    entry_summary,
    finish_entry,
    instruction_table,
    iter_rows,
    open_entry,
    shard_starts,
    start_meta,
)
from augret.errors import AugretError, ConfigError, DataFormatError, DataNotFoundError
from augret.formats import embeddings as embedding_files
from augret.formats.embeddings import EntryWriter
from augret.progress import progress_bar
from augret.ray_resources import RayResources

__all__ = ["EmbedActor", "embed_with_ray"]

log = logging.getLogger(__name__)

_LOG_EVERY_S = 30.0  # progress log lines when there is no progress bar


def _worker_device(cfg: EmbedConfig, res: RayResources) -> str:
    """``auto`` on a worker: CUDA only when the actor reserved a GPU (Ray leaves the GPUs of a
    node visible to actors that reserved none)."""
    if cfg.device != "auto":
        return cfg.device
    return "cuda" if res.gpus_per_worker > 0 else "cpu"


def _threads(res: RayResources) -> int:
    """Torch threads of an actor: its reserved CPUs (Ray's ``OMP_NUM_THREADS`` rule)."""
    return max(1, math.floor(res.cpus_per_worker))


# ---- the worker side ---------------------------------------------------------------------------
@dataclass
class _ShardResult:
    """One embedded shard (or the error a single process would have raised on it)."""

    seq: int
    rows: int  # source rows read
    vectors: np.ndarray | None
    ids: list[str]
    stats: dict[str, Any]
    guard: ImageGuard
    error: AugretError | None = None


def _load(cfg: EmbedConfig, device: str, threads: int) -> Any:
    from augret._lazy import require
    from augret.encode.registry import load_encoder

    require("torch", "train").set_num_threads(threads)
    return load_encoder(cfg.encoder, device=device, precision=cfg.precision,
                        backbone=cfg.backbone, context_length=cfg.context_length)


def _describe_on_worker(cfg: EmbedConfig, device: str, threads: int) -> dict[str, Any]:
    return describe_encoder(_load(cfg, device, threads))


class EmbedActor:
    """A Ray Data actor holding one encoder; a batch is one shard descriptor (or more).

    Args:
        data_dir: The M-BEIR directory (the same path on every node).
        cfg: The run's config.
        jobs: The entries to embed, by name.
        device: Torch device of the encoder.
        threads: Torch threads.
        loader_workers: Image-decoding data loader processes for large shards.
    """

    def __init__(self, data_dir: str, cfg: EmbedConfig, jobs: dict[str, EmbedJob],
                 device: str, threads: int, loader_workers: int) -> None:
        data = MBEIRDir(data_dir)
        encoder = _load(cfg, device, threads)
        self.cfg, self.jobs = cfg, jobs
        self.image_root = str(data.image_root)
        self.shards = ShardEmbedder(data, cfg, encoder, instruction_table(data, cfg),
                                    loader_workers)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for i in range(len(batch["seq"])):
            start = ShardStart(int(batch["shard"][i]), int(batch["row"][i]),
                               int(batch["offset"][i]), int(batch["line"][i]))
            result = self._shard(int(batch["seq"][i]), str(batch["entry"][i]), start)
            results.append(pickle.dumps(result, protocol=5))
        return {"seq": batch["seq"], "result": np.array(results, dtype=object)}

    def _shard(self, seq: int, entry: str, start: ShardStart) -> _ShardResult:
        job = self.jobs[entry]
        guard = ImageGuard(self.image_root, strict=False)  # the driver checks in order
        rows = 0
        try:
            it = iter_rows(job.path, job.kind, start.row, at=start)
            chunk = list(islice(it, self.cfg.shard_size))
            rows = len(chunk)
            vectors, ids, stats = self.shards.embed(job, chunk, guard)
        except (DataFormatError, DataNotFoundError) as exc:  # raised by the driver, in order
            return _ShardResult(seq, rows, None, [], {}, guard, exc)
        return _ShardResult(seq, rows, vectors, ids, stats, guard)


# ---- the driver side ---------------------------------------------------------------------------
@dataclass
class _Entry:
    job: EmbedJob
    fp: dict[str, Any]
    writer: EntryWriter | None  # None: finished by an earlier run
    entry: dict[str, Any] | None
    starts: list[ShardStart]
    guard: ImageGuard


class _Committer:
    """Writes shard results in the single-process order, whatever order they arrive in.

    Entries are finished, and ``meta.json`` updated, in job order; a shard's error (or the
    image guard) is raised when its turn comes, so what is on disk at a failure is what a
    single process leaves.
    """

    def __init__(self, entries: list[_Entry], out: Path, meta: dict[str, Any],
                 cfg: EmbedConfig, context_length: int, stages: dict[str, Throughput]) -> None:
        self.entries, self.out, self.meta, self.cfg = entries, out, meta, cfg
        self.context_length = context_length
        self.stages = stages
        self.buffer: dict[int, _ShardResult] = {}
        self.cursor = 0  # the entry being written
        self.pos = 0  # its next shard (index into starts)
        self.seq = 0  # the next shard overall
        self.duplicates = 0

    @property
    def done(self) -> bool:
        return self.cursor == len(self.entries)

    def add(self, result: _ShardResult) -> None:
        """Take one result and write whatever is now next in line."""
        if result.seq < self.seq or result.seq in self.buffer:
            self.duplicates += 1  # never written twice
            log.warning("shard %d came back twice; the second copy is dropped", result.seq)
            return
        self.buffer[result.seq] = result
        self.advance()

    def advance(self) -> None:
        while not self.done:
            e = self.entries[self.cursor]
            if e.writer is not None and self.pos < len(e.starts):
                result = self.buffer.pop(self.seq, None)
                if result is None:
                    return
                self._write(e, e.starts[self.pos], result)
                self.pos += 1
                self.seq += 1
                continue
            if e.writer is not None:
                e.entry = finish_entry(e.job, e.writer, e.fp, self.cfg, self.context_length)
                log.info("%s: %d rows (%s)", e.job.entry, e.entry["rows"],
                         self.stages["embed"].line())
            assert e.entry is not None
            self.meta["entries"][e.job.entry] = entry_summary(e.entry)
            self.meta["run"]["stages"] = {k: t.as_dict() for k, t in self.stages.items()}
            embedding_files.write_meta(self.out, self.meta)
            self.cursor += 1
            self.pos = 0

    def _write(self, e: _Entry, start: ShardStart, result: _ShardResult) -> None:
        assert e.writer is not None
        e.guard.merge(result.guard)  # the first-50-images check, raised at the same row
        if result.error is not None:
            raise result.error
        assert result.vectors is not None
        e.writer.write_shard(start.shard, result.vectors, result.ids, result.stats)
        self.stages["write"].add(result.rows)


def _check_encoder(encoder: Any, cfg: EmbedConfig, device: str) -> dict[str, Any]:
    """Describe a loaded encoder the workers will load again: it must be ``cfg.encoder``."""
    from augret.encode.clip_sf import resolved_precision

    if getattr(encoder, "name", None) != cfg.encoder:
        raise ConfigError(f"engine 'ray': the workers load {cfg.encoder!r}, but the encoder "
                          f"passed in is {getattr(encoder, 'name', encoder)!r}")
    want = resolved_precision(device, cfg.precision)
    if encoder.precision != want:
        raise ConfigError(f"engine 'ray': the encoder passed in runs at {encoder.precision} "
                          f"but the workers ({device}) would run at {want}")
    return describe_encoder(encoder)


def _describe_remotely(ray: Any, cfg: EmbedConfig, res: RayResources, device: str
                       ) -> dict[str, Any]:
    """Load the encoder once on a worker like the actors' (same device) and describe it."""
    # a GPU task's worker exits after the call (Ray's default), freeing its GPU memory
    fn = ray.remote(num_cpus=res.cpus_per_worker,
                    num_gpus=res.gpus_per_worker)(_describe_on_worker)
    try:
        return ray.get(fn.remote(cfg, device, _threads(res)))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, AugretError):
            raise cause from None
        raise


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def embed_with_ray(data: MBEIRDir, out: Path, cfg: EmbedConfig, plan: EmbedPlan, *,
                   encoder: Any = None, progress: bool = True) -> dict[str, Any]:
    """Embed ``plan`` on a Ray actor pool (see the module doc).

    Args:
        data: The M-BEIR directory.
        out: The embedding directory.
        cfg: The config (``engine: ray`` and its Ray knobs).
        plan: The entries to embed (:func:`~augret.encode.shards.plan_embedding`).
        encoder: An already loaded ``cfg.encoder``, used only to describe it (else one
            worker loads it once to describe it).
        progress: Show a progress bar with rows/s, GPUs and ETA.

    Returns:
        The ``meta.json`` contents; ``run`` holds the workers and per-stage throughput.
    """
    res = cfg.ray
    device = _worker_device(cfg, res)
    with ray_session(res) as ray:
        enc = (_check_encoder(encoder, cfg, device) if encoder is not None
               else _describe_remotely(ray, cfg, res, device))
        run: dict[str, Any] = {"engine": "ray", "address": res.address, "workers": res.workers,
                               "gpus_per_worker": res.gpus_per_worker,
                               "cpus_per_worker": res.cpus_per_worker, "gpus": res.gpus,
                               "stages": {}}
        meta, chash = start_meta(data, out, cfg, enc, plan.union, run)
        entries: list[_Entry] = []
        descriptors: list[dict[str, Any]] = []
        todo = 0
        for job in plan.jobs:
            fp, writer, entry = open_entry(out, job, cfg, chash, enc["dim"])
            starts: list[ShardStart] = []
            if writer is not None:
                starts, rows = shard_starts(job.path, cfg.shard_size, writer.done)
                todo += rows - min(rows, writer.done * cfg.shard_size)
            for s in starts:
                descriptors.append({"seq": len(descriptors), "entry": job.entry,
                                    "shard": s.shard, "row": s.row, "offset": s.offset,
                                    "line": s.line})
            entries.append(_Entry(job, fp, writer, entry, starts,
                                  ImageGuard(str(data.image_root))))
        stages = {"embed": Throughput("embed", total=todo, gpus=res.gpus),
                  "write": Throughput("write", total=todo, gpus=res.gpus)}
        committer = _Committer(entries, out, meta, cfg, enc["context_length"], stages)
        committer.advance()  # entries finished by an earlier run
        if descriptors:
            log.info("embedding %d rows in %d shard(s) on %d Ray worker(s) (%g GPU)", todo,
                     len(descriptors), res.workers, res.gpus)
            _stream(ray, data, cfg, res, device, entries, descriptors, committer, progress)
        if not committer.done:
            raise AugretError(f"the Ray pipeline returned {committer.seq} of "
                              f"{len(descriptors)} shards")
    log.info("ray embed: %d rows embedded (%s), written (%s)", stages["write"].rows,
             stages["embed"].line(), stages["write"].line())
    return meta


def _stream(ray: Any, data: MBEIRDir, cfg: EmbedConfig, res: RayResources, device: str,
            entries: list[_Entry], descriptors: list[dict[str, Any]], committer: _Committer,
            progress: bool) -> None:
    """Run the actor pool over the descriptors and commit the results as they arrive."""
    jobs = {e.job.entry: e.job for e in entries if e.starts}
    ds = ray.data.from_items(descriptors, override_num_blocks=len(descriptors))
    ds = ds.map_batches(
        EmbedActor, batch_size=1,
        fn_constructor_kwargs={"data_dir": str(data.root), "cfg": cfg, "jobs": jobs,
                               "device": device, "threads": _threads(res),
                               "loader_workers": max(0, math.floor(res.cpus_per_worker) - 1)},
        **actor_pool(res))
    embed, write = committer.stages["embed"], committer.stages["write"]
    bar = progress_bar("description", "count", "rate", "elapsed") if progress else None
    task = bar.add_task(f"ray x{res.workers}", total=embed.total,
                        rate="starting workers") if bar else None
    rows = iter(ds.iter_rows())
    last_log = time.perf_counter()
    try:
        if bar is not None:
            bar.start()
        for row in rows:
            result: _ShardResult = pickle.loads(row["result"])
            embed.add(result.rows)
            committer.add(result)
            speed = (f"embed {embed.rows_per_s:.1f} | write {write.rows_per_s:.1f} rows/s | "
                     f"{res.gpus:g} GPU | ETA {_fmt_eta(write.eta_s)}")
            if bar is not None:
                bar.update(task, completed=write.rows, rate=speed)
            elif time.perf_counter() - last_log > _LOG_EVERY_S:
                last_log = time.perf_counter()
                log.info("%d/%d rows: %s", write.rows, write.total, speed)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # stops the pipeline (and its actors) on an error
        if bar is not None:
            bar.stop()
