"""Training checkpoints: everything ``--resume`` needs to continue exactly.

``OUT/checkpoints/step_<NNNNNNN>/`` holds

* the trained encoder as its family writes it (:meth:`~augret.train.model.TrainModel.save`),
  usable as ``--encoder`` directly: CLIP_SF ``model.pt`` (UniIR's ``{"model":
  CLIPScoreFusion state dict}`` layout) + ``encoder.json``; MLLM embedders ``adapter/`` +
  ``encoder.json`` (:mod:`augret.encode.mllm.checkpoint`);
* ``config.yaml``: the resolved training config;
* ``trainer.pt``: optimizer, scheduler and GradScaler states, the log logit scale, and the
  loop position (``step``, ``epoch``, ``batch_in_epoch``, ``world``);
* ``rng_rank<R>.pt``: Python, NumPy, torch (and CUDA) generator states of each rank.

A checkpoint is written into ``step_<N>.tmp`` and renamed once every rank has written, so a
directory without ``.tmp`` is complete; ``checkpoints/latest`` names the newest one.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from augret._lazy import require
from augret.config import write_resolved
from augret.data.jsonl import atomic_writer
from augret.errors import DataNotFoundError

__all__ = ["latest_checkpoint", "load_rng", "load_trainer", "save_checkpoint"]

log = logging.getLogger(__name__)

TRAINER_FILE = "trainer.pt"


def _rng_state() -> dict[str, Any]:
    torch = require("torch", "train")
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng(ckpt: Path, rank: int) -> bool:
    """Restore this rank's generator states; False when the checkpoint has none for it."""
    torch = require("torch", "train")
    path = ckpt / f"rng_rank{rank}.pt"
    if not path.is_file():
        return False
    st = torch.load(path, map_location="cpu", weights_only=True)
    version, internal, gauss = st["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.random.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
    return True


def _save(obj: Any, path: Path) -> None:
    torch = require("torch", "train")
    with atomic_writer(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(out_dir: Path, step: int, *, ctx: Any, model: Any, config: Any,
                    optimizer: Any, scheduler: Any, scaler: Any, position: dict[str, Any],
                    keep_last: int) -> Path:
    """Write a checkpoint of every rank's state (collective: every rank must call it).

    Args:
        out_dir: The training output directory.
        step: The optimizer step.
        ctx: The :class:`~augret.train.dist.DistContext`.
        model: The :class:`~augret.train.model.TrainModel`.
        config: The resolved training config.
        optimizer, scheduler, scaler: Their states go into ``trainer.pt``.
        position: The loop position.
        keep_last: Complete checkpoints to keep.
    """
    root = out_dir / "checkpoints"
    final = root / f"step_{step:07d}"
    tmp = root / f"step_{step:07d}.tmp"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    ctx.barrier()
    _save(_rng_state(), tmp / f"rng_rank{ctx.rank}.pt")
    if ctx.is_main:
        model.save(tmp, info={"step": step})
        write_resolved(config, tmp)
        _save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "scaler": scaler.state_dict(),
               "logit_scale": model.logit_scale.detach().float().cpu(),
               "position": {**position, "world": ctx.world}}, tmp / TRAINER_FILE)
    ctx.barrier()
    if ctx.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        with atomic_writer(root / "latest") as f:
            f.write(final.name + "\n")
        done = sorted(p for p in root.glob("step_*") if p.is_dir() and p.suffix != ".tmp")
        for old in done[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    ctx.barrier()
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run directory."""
    root = out_dir / "checkpoints"
    latest = root / "latest"
    if latest.is_file():
        cand = root / latest.read_text("utf-8").strip()
        if (cand / TRAINER_FILE).is_file():
            return cand
    done = sorted(p for p in root.glob("step_*")
                  if p.suffix != ".tmp" and (p / TRAINER_FILE).is_file())
    return done[-1] if done else None


def load_trainer(ckpt: Path) -> dict[str, Any]:
    """The optimizer/scheduler/scaler states and loop position of a checkpoint."""
    torch = require("torch", "train")
    path = ckpt / TRAINER_FILE
    if not path.is_file():
        raise DataNotFoundError(f"{ckpt}: no {TRAINER_FILE}")
    return torch.load(path, map_location="cpu", weights_only=True)
