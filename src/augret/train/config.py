"""The training config: UniIR's CLIP_SF recipe as defaults, overridable from YAML and flags.

One config for both encoder families; the sections that apply to MLLM embedders only
(``lora``, ``gradient_checkpointing``, ``encoder_options``, ``write_merged``) default to
LamRA-Ret's recipe where it has one (``configs/train-lamra-qwen2vl-2b.yaml``), and are errors
with a CLIP_SF encoder when changed.

Fields marked ``hash=False`` do not change the trained encoder: where the run writes, how it
reports, and the data paths (an experiment fingerprints the data itself, upstream).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from augret.config import check_choices, check_min, option
from augret.errors import ConfigError

__all__ = ["LORA_MODULES", "DataConfig", "GradCacheConfig", "LoraConfig", "OptimConfig",
           "TrainConfig", "ValConfig"]

#: The linear layers of a Qwen-VL language model's decoder layers (LamRA adapts all of them).
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DataConfig:
    """Where training examples come from."""

    dir: Path | None = option(None, hash=False, help="The raw M-BEIR directory.")
    view: Literal["raw", "enhanced", "mix"] = option(
        "raw", help="raw, enhanced (the texts of enhanced_dir) or mix (per example, the "
                    "enhanced texts with probability mix_ratio, else the raw ones).")
    enhanced_dir: Path | None = option(
        None, hash=False,
        help="An augret enhance output directory (its rows keep the raw text in "
             "query_txt_raw / txt_raw, so mix needs only this directory).")
    mix_ratio: float = option(0.5, help="Probability of the enhanced view per example (mix).")
    train_file: str | None = option(
        None, hash=False,
        help="Query file, relative to the data directory or absolute (default: UniIR's "
             "query/union_train/mbeir_union_up_train.jsonl, up-sampling kept as is).")
    train_pool: str | None = option(
        None, hash=False,
        help="Candidate pool file(s), comma-separated (default: the union train pool).")
    instruction: Literal["random", "first", "none"] = option(
        "random", help="random (UniIR: a random prompt per example), first or none.")
    hard_negatives: int = option(
        0, help="Hard negatives per query drawn from neg_cand_list (0: UniIR's default, "
                "in-batch negatives only).")
    max_examples: int | None = option(None, help="Use only the first N training queries.")
    on_bad_example: Literal["error", "skip"] = option(
        "error", help="An example whose image is missing or unreadable, or whose query or "
                      "candidate has neither text nor image: error (stop, naming the record "
                      "and file) or skip (leave it out of the loss, record it in "
                      "skipped.jsonl).")
    workers: int = option(4, help="Data loader workers per rank.")

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 <= self.mix_ratio <= 1.0:
            raise ConfigError(f"mix_ratio must be in [0, 1], got {self.mix_ratio!r}")
        check_min(self, 0, "hard_negatives", "workers")
        check_min(self, 1, "max_examples")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the learning-rate schedule (UniIR CLIP_SF defaults)."""

    lr: float = option(1e-5, help="Peak learning rate.")
    betas: tuple[float, float] = option((0.9, 0.98), help="AdamW betas.")
    eps: float = option(1e-6, help="AdamW epsilon.")
    weight_decay: float = option(
        0.2, help="On parameters with >= 2 dims whose names hold none of bn, ln, bias, "
                  "logit_scale; 0 on the rest.")
    schedule: Literal["cosine", "constant"] = option(
        "cosine", help="cosine (CosineAnnealingLR to 0 over the whole run) or constant.")
    warmup_steps: int = option(0, help="Linear warm-up steps (UniIR: 0).")
    warmup_ratio: float = option(
        0.0, hash_if_changed=True,
        help="Linear warm-up as a fraction of the schedule's total steps (LamRA: 0.03); "
             "set warmup_steps or warmup_ratio, not both.")
    total_steps: int | None = option(
        None, help="Length of the schedule (default: steps per epoch x epochs, as UniIR; "
                   "max_steps only stops early and does not change the schedule).")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.lr <= 0 or self.eps <= 0:
            raise ConfigError("lr and eps must be > 0")
        check_min(self, 0, "weight_decay", "warmup_steps")
        check_min(self, 1, "total_steps")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.warmup_ratio and self.warmup_steps:
            raise ConfigError("set optim.warmup_steps or optim.warmup_ratio, not both")

    def warmup(self, total: int) -> int:
        """Warm-up steps of a schedule of ``total`` steps."""
        return self.warmup_steps or round(self.warmup_ratio * total)


@dataclass(frozen=True)
class ValConfig:
    """The optional in-training retrieval check."""

    file: str | None = option(None, help="Query file (relative to the data directory or "
                                         "absolute); empty: no check.")
    pool: str | None = option(None, help="Pool file(s) its positives live in, comma-separated "
                                         "(default: the train pool).")
    size: int = option(256, help="Queries in the subset (the first N).")
    max_candidates: int = option(5000, help="Candidates: the first N rows of the pool plus "
                                            "every positive of the subset's queries.")
    every: int = option(500, help="Run every N optimizer steps (and at the end).")
    batch_size: int = option(256, help="Items per forward pass of the check.")

    def __post_init__(self) -> None:
        check_min(self, 1, "size", "max_candidates", "every", "batch_size")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters of an MLLM embedder (peft), on the language model only: the vision tower
    and its merger stay frozen (LamRA-Ret's recipe)."""

    r: int = option(128, help="Rank (LamRA-Ret: 128).")
    alpha: float = option(256.0, help="Scaling numerator: updates are scaled by alpha / r "
                                      "(LamRA-Ret: 256).")
    dropout: float = option(0.05, help="Dropout on the adapter input.")
    modules: list[str] = option(
        factory=lambda: list(LORA_MODULES),
        help="Linear layers of the language model's decoder layers that get an adapter "
             "(matched by the explicit pattern language_model.layers.N.{self_attn,mlp}."
             "<name>, never under visual).")

    def __post_init__(self) -> None:
        check_min(self, 1, "r")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        bad = [m for m in self.modules if m not in LORA_MODULES]
        if not self.modules or bad:
            raise ConfigError(f"lora.modules {bad or '[]'}: choose among {list(LORA_MODULES)}")


@dataclass(frozen=True)
class GradCacheConfig:
    """GradCache: the batch is embedded in chunks without gradients, the loss gives the
    gradients of the embeddings, and each chunk is embedded again with gradients and
    back-propagated with its cached ones. The number of in-batch negatives is then bounded by
    time, not memory; the gradients equal the full batch's (up to floating point)."""

    enabled: bool = option(False, help="Use GradCache (else one forward and backward over "
                                       "the whole micro-batch).")
    query_chunk: int = option(32, help="Queries per chunk forward.")
    candidate_chunk: int = option(32, help="Candidates (positives and hard negatives) per "
                                           "chunk forward.")

    def __post_init__(self) -> None:
        check_min(self, 1, "query_chunk", "candidate_chunk")


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    encoder: str = option("clip_sf-vit-l-14", help="Starting encoder: registered name, "
                                                   "open_clip:/hf: spec or checkpoint.")
    output_dir: Path = option(Path("runs/train"), hash=False,
                              help="Checkpoints, metrics.jsonl and the resolved config go "
                                   "here.")
    seed: int = option(2023, help="Seed (data order, instructions, positives: all keyed by "
                                  "seed, epoch and index).")
    batch_size: int = option(105, help="Queries per rank per micro-step (UniIR CLIP_SF: 105 "
                                       "on each of 8 GPUs).")
    grad_accum: int = option(1, help="Micro-steps per optimizer step.")
    epochs: int = option(20, help="Epochs (UniIR: 20).")
    max_steps: int | None = option(None, help="Stop after this many optimizer steps (the "
                                              "learning-rate schedule is unchanged).")
    symmetric_loss: bool = option(False, help="Add the candidate-to-query loss (UniIR "
                                              "CLIP_SF: query-to-candidate only).")
    max_grad_norm: float | None = option(None, help="Clip gradients to this norm (UniIR: no "
                                                    "clipping).")
    gather: bool = option(True, help="All-gather candidates across ranks with gradients "
                                     "(UniIR: yes).")
    temperature: float | None = option(
        None, hash_if_changed=True,
        help="Initial softmax temperature (logits = cosine / temperature). None: the "
             "encoder's own (CLIP_SF: its pretrained logit scale); MLLM embedders, which "
             "have none, start at 0.05 (LamRA-Ret).")
    learn_temperature: bool | None = option(
        None, hash_if_changed=True,
        help="Learn the temperature. None: each family's recipe (CLIP_SF learns its logit "
             "scale, as UniIR; MLLM embedders keep it fixed, as LamRA-Ret).")
    hard_negative_max_sim: float | None = option(
        None, hash_if_changed=True,
        help="False-negative filter: a hard negative whose cosine similarity to a query "
             "is above this is left out of that query's candidates (U-MARVEL: 0.7). "
             "Hard negatives listed among the query's own positives are never drawn.")
    grad_cache: GradCacheConfig = option(
        factory=GradCacheConfig, hash=False,
        help="GradCache: chunked forward passes, so the batch is not bounded by memory "
             "(the result does not depend on it).")
    lora: LoraConfig = option(factory=LoraConfig, hash_if_changed=True,
                              help="MLLM embedders: LoRA adapters on the language model.")
    gradient_checkpointing: bool = option(
        False, hash_if_changed=True,
        help="MLLM embedders: recompute the language model's activations in the "
             "backward pass (less memory, about a third more compute).")
    encoder_options: dict[str, Any] = option(
        factory=dict, hash_if_changed=True,
        help="MLLM embedders: spec fields of the starting encoder to override "
             "(max_image_tokens, min_image_tokens, max_text_tokens, "
             "padding_side) and attn_implementation.")
    write_merged: bool = option(
        False, hash=False,
        help="MLLM embedders: also write OUT/merged, the final model with its LoRA merged "
             "into the weights (a standalone checkpoint; OUT/final holds the adapter).")
    amp: Literal["auto", "fp16", "bf16", "off"] = option(
        "auto", help="auto (fp16 autocast + GradScaler on CUDA, off on CPU), fp16, bf16, off.")
    device: str = option("auto", help="auto, cpu, cuda.")
    log_every: int = option(10, hash=False,
                            help="Write a metrics.jsonl line every N steps.")
    save_every: int = option(1000, help="Save a checkpoint every N steps (and at the end).")
    keep_last: int = option(2, help="Checkpoints to keep (older ones are deleted).")
    resume: bool = option(False, hash=False,
                          help="Continue from the latest checkpoint in output_dir.")
    progress: bool = option(True, hash=False, help="Show a progress bar.")
    data: DataConfig = option(factory=DataConfig, help="Where training examples come from.")
    optim: OptimConfig = option(factory=OptimConfig, help="AdamW and the schedule.")
    val: ValConfig = option(factory=ValConfig, help="The in-training retrieval check.")

    def __post_init__(self) -> None:
        check_choices(self)
        check_min(self, 1, "batch_size", "grad_accum", "epochs", "log_every", "save_every",
                  "keep_last", "max_steps")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm!r}")
        if self.temperature is not None and self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        if self.hard_negative_max_sim is not None and not -1 <= self.hard_negative_max_sim <= 1:
            raise ConfigError("hard_negative_max_sim is a cosine similarity in [-1, 1], got "
                              f"{self.hard_negative_max_sim!r}")
