"""The training loop: in-batch contrastive training of any encoder family, 1 to N ranks.

Read top to bottom: set up ranks and seeds, build the model of the starting encoder's family
(:class:`~augret.train.model.TrainModel`: CLIP_SF, or an MLLM embedder with LoRA), the data,
AdamW with UniIR's parameter groups, the cosine schedule and the GradScaler; resume if asked;
then for each optimizer step run ``grad_accum`` micro-steps (one forward and backward, or
GradCache's chunked ones; DDP syncs only on the last), step, log, check and save.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from augret._lazy import require
from augret.config import config_to_dict, write_resolved
from augret.data.jsonl import atomic_writer
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.progress import progress_bar
from augret.train.checkpoint import (
    latest_checkpoint,
    load_rng,
    load_trainer,
    save_checkpoint,
)
from augret.train.config import TrainConfig
from augret.train.data import BatchInfo, EpochBatches, TrainData, make_loader, resolve_files
from augret.train.dist import DistContext, setup, teardown
from augret.train.families import build_train_model
from augret.train.loss import contrastive_loss
from augret.train.model import TrainModel

__all__ = ["build_optimizer", "train"]

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"  # what train() returned; written by rank 0 at the end
# Keys that may differ between a run and its resumption.
RUNTIME_KEYS = ("max_steps", "resume", "progress", "log_every", "save_every", "keep_last",
                "device", "output_dir", "val", "grad_cache", "write_merged")


def build_optimizer(model: Any, cfg: Any) -> Any:
    """AdamW with UniIR's groups: no weight decay for params with < 2 dims or whose names hold
    ``bn``, ``ln``, ``bias`` or ``logit_scale``."""
    torch = require("torch", "train")
    no_decay, decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or any(s in name for s in ("bn", "ln", "bias", "logit_scale"))
        (no_decay if skip else decay).append(p)
    return torch.optim.AdamW(
        [{"params": no_decay, "weight_decay": 0.0},
         {"params": decay, "weight_decay": cfg.weight_decay}],
        lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def _lr_factor(schedule: str, warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        t = min(step - warmup, max(total - warmup, 1))
        # CosineAnnealingLR(T_max=total, eta_min=0) in closed form
        return 0.5 * (1.0 + math.cos(math.pi * t / max(total - warmup, 1)))

    return factor


def _seed_all(seed: int) -> None:
    torch = require("torch", "train")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Metrics:
    """``metrics.jsonl`` of rank 0."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = path
        self.enabled = enabled
        if enabled and resume_step is not None and path.is_file():
            kept = [line for line in path.read_text("utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept), "utf-8")
        elif enabled and resume_step is None:
            path.unlink(missing_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def _check_resume_config(out: Path, cfg: TrainConfig) -> None:
    import yaml

    saved = out / "config.yaml"
    if not saved.is_file():
        return
    old = yaml.safe_load(saved.read_text("utf-8")) or {}
    new = config_to_dict(cfg)
    diff = sorted(k for k in set(old) | set(new)
                  if k not in RUNTIME_KEYS and old.get(k) != new.get(k))
    if diff:
        raise ConfigError(f"--resume with a config that differs from {saved} in {diff}; "
                          "only run-time keys may change "
                          f"({', '.join(RUNTIME_KEYS)})")


def _record_skips(out: Path, ctx: DistContext, step: int, info: BatchInfo) -> None:
    with (out / f"skipped_rank{ctx.rank}.jsonl").open("a", encoding="utf-8") as f:
        for qid, reason in info.problems:
            f.write(json.dumps({"step": step, "qid": qid, "reason": reason}) + "\n")


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train as configured; returns a summary (final step, loss, paths).

    The starting encoder's family decides what trains: every weight of a CLIP_SF encoder, or
    LoRA adapters on an MLLM embedder's language model. Run under ``torchrun
    --nproc_per_node N`` for N ranks; the same call works alone. A worker group that
    ``torchrun --max_restarts`` restarted continues from the latest checkpoint.

    Raises:
        ConfigError: Bad or inconsistent config (e.g. ``resume`` with changed settings).
        DataNotFoundError: Missing data, or a bad example with ``on_bad_example: error``.
    """
    ctx = setup(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        teardown(ctx)


def _elastic_restart() -> int:
    """How many times ``torchrun --max_restarts`` has restarted this worker group."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def _train(cfg: TrainConfig, ctx: DistContext) -> dict[str, Any]:
    torch = require("torch", "train")
    from augret.train.step import full_batch_step, grad_cache_step

    out = Path(cfg.output_dir)
    restart = _elastic_restart()
    # an elastic restart re-runs the original command line: continue from the latest
    # checkpoint, as --resume would, instead of starting over
    ckpt = latest_checkpoint(out) if cfg.resume or restart else None
    if cfg.resume and ckpt is None:
        raise DataNotFoundError(f"{out}: --resume, but no checkpoint to resume from")
    if ckpt is not None:
        _check_resume_config(out, cfg)
        if not cfg.resume:
            log.info("torchrun restart %d: continuing from %s", restart, ckpt)
    # model: the starting encoder's family (same init on every rank)
    model = build_train_model(cfg, ctx.device)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_resolved(cfg, out)
        (out / SUMMARY_FILE).unlink(missing_ok=True)
    ctx.barrier()
    _seed_all(cfg.seed + ctx.rank)  # UniIR: seed + rank

    # the pool's offset cache: rank 0 builds it, then the first rank of each other node (a
    # node-local cache is built there, a shared one read), then the rest read it
    gc = cfg.grad_cache
    turn = 0 if ctx.is_main else (1 if ctx.local_rank == 0 else 2)
    for phase in range(3):
        if phase == turn:
            data = TrainData(cfg.data, model.processor, cfg.seed,
                             separate_instruction=model.separate_instruction,
                             chunks=(gc.query_chunk, gc.candidate_chunk) if gc.enabled else None)
        if phase < 2:
            ctx.barrier()
    order = EpochBatches(len(data), cfg.batch_size, rank=ctx.rank, world=ctx.world,
                         seed=cfg.seed)
    micro_per_epoch = (order.batches_per_epoch // cfg.grad_accum) * cfg.grad_accum
    steps_per_epoch = micro_per_epoch // cfg.grad_accum
    if steps_per_epoch == 0:
        raise ConfigError(f"an epoch has {order.batches_per_epoch} micro-batches, fewer than "
                          f"grad_accum={cfg.grad_accum}")
    total = cfg.optim.total_steps or steps_per_epoch * cfg.epochs
    max_steps = min(cfg.max_steps or total, steps_per_epoch * cfg.epochs)

    optimizer = build_optimizer(model.module, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_factor(cfg.optim.schedule, cfg.optim.warmup(total), total))
    scaler = torch.amp.GradScaler("cuda", enabled=model.precision == "fp16")
    step, epoch, batch_in_epoch = 0, 0, 0
    if ckpt is not None:
        step, epoch, batch_in_epoch = _resume(ckpt, ctx, model, optimizer, scheduler, scaler)

    ddp = model.module
    if ctx.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model.module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    no_sync = ddp.no_sync if ctx.world > 1 else nullcontext
    micro_step = grad_cache_step if gc.enabled else full_batch_step
    metrics = _Metrics(out / METRICS_FILE, ctx.is_main, step if ckpt is not None else None)
    check = _build_check(cfg, data, model) if ctx.is_main and cfg.val.file else None
    bar = _progress(cfg, ctx, max_steps, step)
    last: dict[str, Any] = {}
    t_log, n_log = time.perf_counter(), 0
    while step < max_steps:
        batches = order.batches(epoch, batch_in_epoch, micro_per_epoch)
        loader = make_loader(data, batches, cfg.data.workers,
                             pin_memory=ctx.device.type == "cuda")
        it = iter(loader)
        while step < max_steps and batch_in_epoch < micro_per_epoch:
            # one optimizer step = grad_accum micro-steps
            loss_sum = acc_sum = 0.0
            for micro in range(cfg.grad_accum):
                chunks, info = next(it)
                if info.problems:
                    _bad_examples(cfg, info)
                    _record_skips(out, ctx, step, info)
                res = micro_step(
                    ddp, chunks, partial(_loss, info=info, cfg=cfg, ctx=ctx), device=ctx.device,
                    autocast=model.autocast,
                    backward=lambda loss: scaler.scale(loss / cfg.grad_accum).backward(),
                    sync=micro == cfg.grad_accum - 1, no_sync=no_sync)
                loss_sum += _global_mean(res.loss, ctx)
                acc_sum += float(res.accuracy)
                n_log += int(res.n_valid)
            if cfg.max_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.module.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            batch_in_epoch += cfg.grad_accum
            last = {"step": step, "epoch": epoch, "loss": loss_sum / cfg.grad_accum,
                    "accuracy": acc_sum / cfg.grad_accum,
                    "lr": optimizer.param_groups[0]["lr"],
                    "logit_scale": float(model.logit_scale.detach().exp())}
            if step % cfg.log_every == 0 or step == max_steps:
                now = time.perf_counter()
                last["samples_per_s"] = n_log / max(now - t_log, 1e-9)
                metrics.write(last)
                t_log, n_log = now, 0
            if bar is not None:
                bar.update(bar.task_ids[0], completed=step,
                           description=f"loss {last['loss']:.4f}")
            if check is not None and (step % cfg.val.every == 0 or step == max_steps):
                res_val = _run_check(model, check, cfg)
                metrics.write({"step": step, **{f"val_{k}": v for k, v in res_val.items()}})
            if step % cfg.save_every == 0 or step == max_steps:
                position = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch}
                if batch_in_epoch >= micro_per_epoch:
                    position.update(epoch=epoch + 1, batch_in_epoch=0)
                save_checkpoint(out, step, ctx=ctx, model=model, config=cfg,
                                optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                position=position, keep_last=cfg.keep_last)
        del it, loader
        if batch_in_epoch >= micro_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
    if bar is not None:
        bar.stop()
    final = merged = None
    if ctx.is_main:
        final = model.save(out / "final", info={"step": step})
        if cfg.write_merged:
            merged = model.save_merged(out / "merged", info={"step": step})
    summary = {"step": step, "epoch": epoch, "loss": last.get("loss"), "output_dir": str(out),
               "final": str(final) if final else str(out / "final"),
               "steps_per_epoch": steps_per_epoch, "total_steps": total,
               "world": ctx.world, "family": model.family}
    if cfg.write_merged:
        summary["merged"] = str(merged) if merged else str(out / "merged")
    if ctx.is_main:
        with atomic_writer(out / SUMMARY_FILE) as f:
            f.write(json.dumps(summary, indent=2) + "\n")
    ctx.barrier()
    return summary


def _loss(emb: Any, logit_scale: Any, *, info: BatchInfo, cfg: TrainConfig,
          ctx: DistContext) -> tuple[Any, Any, Any]:
    """The contrastive loss of a micro-batch's embeddings (rows: queries, positives, hard
    negatives)."""
    b, k = info.size, cfg.data.hard_negatives
    dev = emb.device
    return contrastive_loss(
        emb[:b], emb[b:2 * b], logit_scale, valid=info.valid.to(dev),
        negatives=emb[2 * b:].reshape(b, k, -1) if k else None,
        neg_valid=info.neg_valid.to(dev), rank=ctx.rank, world=ctx.world, gather=cfg.gather,
        symmetric=cfg.symmetric_loss, neg_max_sim=cfg.hard_negative_max_sim)


def _resume(ckpt: Path, ctx: DistContext, model: TrainModel, optimizer: Any, scheduler: Any,
            scaler: Any) -> tuple[int, int, int]:
    """Restore a checkpoint's weights, optimizer, schedule, scaler, temperature and RNG;
    returns the loop position ``(step, epoch, batch_in_epoch)``."""
    torch = require("torch", "train")
    model.load(ckpt)
    tr = load_trainer(ckpt)
    optimizer.load_state_dict(tr["optimizer"])
    scheduler.load_state_dict(tr["scheduler"])
    scaler.load_state_dict(tr["scaler"])
    if "logit_scale" in tr:
        with torch.no_grad():
            model.logit_scale.copy_(tr["logit_scale"])
    pos = tr["position"]
    if pos.get("world") != ctx.world:
        log.warning("resuming with %d rank(s), the checkpoint had %s: the data order "
                    "changes", ctx.world, pos.get("world"))
    if not load_rng(ckpt, ctx.rank):
        log.warning("%s has no RNG state for rank %d", ckpt, ctx.rank)
    log.info("resumed from %s (step %d)", ckpt, pos["step"])
    return pos["step"], pos["epoch"], pos["batch_in_epoch"]


def _global_mean(x: Any, ctx: DistContext) -> float:
    if ctx.world == 1:
        return float(x)
    torch = require("torch", "train")
    y = x.clone().float()
    torch.distributed.all_reduce(y)
    return float(y) / ctx.world


def _bad_examples(cfg: TrainConfig, info: BatchInfo) -> None:
    if cfg.data.on_bad_example == "error":
        qid, reason = info.problems[0]
        err = DataNotFoundError if "image" in reason else DataFormatError
        raise err(f"training example {qid}: {reason} (set data.on_bad_example: skip to "
                  "record and skip such examples)")
    if not bool(info.valid.any()):
        log.warning("a whole batch was skipped (first: %s: %s)", *info.problems[0])


def _build_check(cfg: TrainConfig, data: TrainData, model: TrainModel) -> Any:
    from augret.train.validate import build_check

    qfile = resolve_files(data.base, cfg.val.file, None, "validation query")[0]
    pools = resolve_files(data.base, cfg.val.pool, data.pool_files[0], "validation pool") \
        if cfg.val.pool else data.pool_files
    view = "enhanced" if cfg.data.view in ("enhanced", "mix") else "raw"
    return build_check(data.base, qfile, pools, size=cfg.val.size,
                       max_candidates=cfg.val.max_candidates, view=view,
                       separate_instruction=model.separate_instruction)


def _run_check(model: TrainModel, check: Any, cfg: TrainConfig) -> dict[str, Any]:
    from augret.train.validate import run_check

    return run_check(model.module, model.processor, check, device=model.device,
                     autocast=model.autocast, batch_size=cfg.val.batch_size)


def _progress(cfg: TrainConfig, ctx: DistContext, total: int, start: int) -> Any:
    if not (cfg.progress and ctx.is_main):
        return None
    bar = progress_bar("description", "bar", "count")
    bar.add_task("training", total=total, completed=start)
    bar.start()
    return bar
