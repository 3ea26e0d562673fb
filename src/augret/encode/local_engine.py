"""``augret embed --engine local``: this process holds the encoder and embeds shard by shard.

Each entry's source file is read in shards of ``shard_size`` rows; a shard's images are
decoded in ``workers`` data loader processes (:class:`~augret.encode.shards.ShardEmbedder`)
and written before the next shard is read, so memory stays bounded and a killed run resumes
at its first incomplete shard.
"""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from typing import Any

from augret.data.mbeir import MBEIRDir
from augret.encode.config import EmbedConfig
from augret.encode.shards import (
    EmbedPlan,
    ImageGuard,
    ShardEmbedder,
    describe_encoder,
    entry_summary,
    finish_entry,
    iter_rows,
    open_entry,
    start_meta,
)
from augret.formats import embeddings as embedding_files
from augret.progress import progress_bar

__all__ = ["embed_local"]

log = logging.getLogger(__name__)


def embed_local(data: MBEIRDir, out: Path, cfg: EmbedConfig, plan: EmbedPlan, *,
                encoder: Any = None, progress: bool = True) -> dict[str, Any]:
    """Embed ``plan`` in this process.

    Args:
        data: The M-BEIR directory.
        out: The embedding directory.
        cfg: The config.
        plan: The entries to embed (:func:`~augret.encode.shards.plan_embedding`).
        encoder: An already loaded encoder (else ``cfg.encoder`` is loaded).
        progress: Show a progress bar per entry.

    Returns:
        The ``meta.json`` contents; ``run`` holds the embedding throughput.
    """
    from augret._ray import Throughput
    from augret.encode.registry import load_encoder

    if encoder is None:
        encoder = load_encoder(cfg.encoder, device=cfg.device, precision=cfg.precision,
                               backbone=cfg.backbone, context_length=cfg.context_length)
    gpus = 1.0 if encoder.device.type == "cuda" else 0.0
    speed = Throughput("embed", gpus=gpus)
    run: dict[str, Any] = {"engine": "local", "gpus": gpus, "stages": {}}
    meta, chash = start_meta(data, out, cfg, describe_encoder(encoder), plan.union, run)
    shards = ShardEmbedder(data, cfg, encoder, plan.table, loader_workers=cfg.workers)
    bar = progress_bar("description", "count", "elapsed") if progress else None
    try:
        if bar is not None:
            bar.start()
        for job in plan.jobs:
            fp, writer, entry = open_entry(out, job, cfg, chash, encoder.dim)
            if writer is not None:
                task_id = bar.add_task(job.entry, total=None) if bar else None
                guard = ImageGuard(str(data.image_root))
                rows = iter_rows(job.path, job.kind, writer.done * cfg.shard_size)
                shard = writer.done
                while chunk := list(islice(rows, cfg.shard_size)):
                    vectors, ids, stats = shards.embed(job, chunk, guard)
                    writer.write_shard(shard, vectors, ids, stats)
                    shard += 1
                    speed.add(len(chunk))
                    if bar is not None:
                        bar.update(task_id, advance=len(chunk))
                entry = finish_entry(job, writer, fp, cfg, encoder.context_length)
            meta["entries"][job.entry] = entry_summary(entry)
            run["stages"] = {"embed": speed.as_dict()}
            embedding_files.write_meta(out, meta)
    finally:
        if bar is not None:
            bar.stop()
    return meta
