"""The training config: UniIR's CLIP_SF recipe as defaults, overridable from YAML and flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "ValConfig"]


@dataclass
class DataConfig:
    """Where training examples come from.

    Attributes:
        dir: The raw M-BEIR directory.
        view: ``raw``, ``enhanced`` (the texts of ``enhanced_dir``) or ``mix`` (per example, the
            enhanced texts with probability ``mix_ratio``, else the raw ones).
        enhanced_dir: An ``augret enhance`` output directory (its rows keep the raw text in
            ``query_txt_raw`` / ``txt_raw``, so ``mix`` needs only this directory).
        mix_ratio: Probability of the enhanced view per example (``mix``).
        train_file: Query file, relative to the data directory or absolute (default: UniIR's
            ``query/union_train/mbeir_union_up_train.jsonl``, up-sampling kept as is).
        train_pool: Candidate pool file(s), comma-separated (default: the union train pool).
        instruction: ``random`` (UniIR: a random prompt per example), ``first`` or ``none``.
        hard_negatives: Hard negatives per query drawn from ``neg_cand_list`` (0: UniIR's
            default, in-batch negatives only).
        max_examples: Use only the first N training queries.
        on_bad_example: An example whose image is missing or unreadable, or whose query or
            candidate has neither text nor image: ``error`` (stop, naming the record and
            file) or ``skip`` (leave it out of the loss, record it in ``skipped.jsonl``).
        workers: Data loader workers per rank.
    """

    dir: Path | None = None
    view: Literal["raw", "enhanced", "mix"] = "raw"
    enhanced_dir: Path | None = None
    mix_ratio: float = 0.5
    train_file: str | None = None
    train_pool: str | None = None
    instruction: Literal["random", "first", "none"] = "random"
    hard_negatives: int = 0
    max_examples: int | None = None
    on_bad_example: Literal["error", "skip"] = "error"
    workers: int = 4


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (UniIR CLIP_SF defaults).

    Attributes:
        lr: Peak learning rate.
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: On parameters with ≥ 2 dims whose names hold none of ``bn``, ``ln``,
            ``bias``, ``logit_scale``; 0 on the rest.
        schedule: ``cosine`` (``CosineAnnealingLR`` to 0 over the whole run) or ``constant``.
        warmup_steps: Linear warm-up steps (UniIR: 0).
        total_steps: Length of the schedule (default: steps per epoch × epochs, as UniIR;
            ``max_steps`` only stops early and does not change the schedule).
    """

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.2
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    total_steps: int | None = None


@dataclass
class ValConfig:
    """The optional in-training retrieval check.

    Attributes:
        file: Query file (relative to the data directory or absolute); empty: no check.
        pool: Pool file(s) its positives live in, comma-separated (default: the train pool).
        size: Queries in the subset (the first N).
        max_candidates: Candidates: the first N rows of the pool plus every positive of the
            subset's queries.
        every: Run every N optimizer steps (and at the end).
        batch_size: Items per forward pass of the check.
    """

    file: str | None = None
    pool: str | None = None
    size: int = 256
    max_candidates: int = 5000
    every: int = 500
    batch_size: int = 256


@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        encoder: Starting encoder: registered name, ``open_clip:``/``hf:`` spec or checkpoint.
        output_dir: Checkpoints, ``metrics.jsonl`` and the resolved config go here.
        seed: Seed (data order, instructions, positives: all keyed by seed, epoch and index).
        batch_size: Queries per rank per micro-step (UniIR CLIP_SF: 105 on each of 8 GPUs).
        grad_accum: Micro-steps per optimizer step.
        epochs: Epochs (UniIR: 20).
        max_steps: Stop after this many optimizer steps.
        symmetric_loss: Add the candidate→query loss (UniIR CLIP_SF: query→candidate only).
        max_grad_norm: Clip gradients to this norm (UniIR: no clipping).
        gather: All-gather candidates across ranks with gradients (UniIR: yes).
        amp: ``auto`` (fp16 autocast + GradScaler on CUDA, off on CPU), ``fp16``, ``bf16``,
            ``off``.
        device: ``auto``, ``cpu``, ``cuda``.
        log_every: Write a ``metrics.jsonl`` line every N steps.
        save_every: Save a checkpoint every N steps (and at the end).
        keep_last: Checkpoints to keep (older ones are deleted).
        resume: Continue from the latest checkpoint in ``output_dir``.
        progress: Show a progress bar.
    """

    encoder: str = "clip_sf-vit-l-14"
    output_dir: Path = Path("runs/train")
    seed: int = 2023
    batch_size: int = 105
    grad_accum: int = 1
    epochs: int = 20
    max_steps: int | None = None
    symmetric_loss: bool = False
    max_grad_norm: float | None = None
    gather: bool = True
    amp: Literal["auto", "fp16", "bf16", "off"] = "auto"
    device: str = "auto"
    log_every: int = 10
    save_every: int = 1000
    keep_last: int = 2
    resume: bool = False
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ValueError("batch_size, grad_accum and epochs must be >= 1")
        if self.log_every < 1 or self.save_every < 1:
            raise ValueError("log_every and save_every must be >= 1")
        if not 0.0 <= self.data.mix_ratio <= 1.0:
            raise ValueError("data.mix_ratio must be in [0, 1]")
