"""Contrastive training of retrievers on raw, enhanced or mixed M-BEIR data.

Two encoder families, one loop: CLIP_SF with UniIR's recipe by default (in-batch
query→candidate loss with CLIP's learnable logit scale, candidates gathered across ranks,
AdamW 1e-5 with its weight-decay groups, cosine schedule, AMP), and MLLM embedders with
LamRA-Ret's (LoRA on the language model, fixed temperature 0.05, bf16, GradCache for large
batches; ``configs/train-lamra-qwen2vl-2b.yaml``). One code path from one process to
``torchrun`` with N ranks, exact resumption.

Example::

    from augret.config import load_config
    from augret.train import TrainConfig, train

    cfg = load_config(TrainConfig, "configs/train-tiny.yaml", {"data.dir": "runs/sample"})
    summary = train(cfg)

On N processes or GPUs (``torchrun`` in a subprocess; see ``docs/scaling.md``)::

    from augret.train import run_torchrun

    summary = run_torchrun("configs/train-tiny.yaml", "runs/tiny", nproc=2,
                           overrides={"data.dir": "runs/sample", "device": "cpu"})
"""

from __future__ import annotations

from typing import Any

from augret.train.config import (
    DataConfig,
    GradCacheConfig,
    LoraConfig,
    OptimConfig,
    TrainConfig,
    ValConfig,
)
from augret.train.launch import TrainingFailed, run_torchrun, torchrun_command, torchrun_env

__all__ = ["DataConfig", "GradCacheConfig", "LoraConfig", "OptimConfig", "TrainConfig",
           "TrainingFailed", "ValConfig", "run_torchrun", "torchrun_command", "torchrun_env",
           "train"]


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train as configured (see :func:`augret.train.loop.train`)."""
    from augret.train.loop import train as _train

    return _train(cfg)
