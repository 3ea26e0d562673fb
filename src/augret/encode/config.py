"""The configuration of ``augret embed``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from augret.config import check_choices, check_min, option
from augret.errors import ConfigError
from augret.ray_resources import RayResources

__all__ = ["EmbedConfig"]

_Precision = Literal["auto", "fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class EmbedConfig:
    """What ``augret embed`` does.

    The config hash of an embedding directory covers the fields that decide the vectors
    (``hash=True``); ``backbone``, ``precision`` and ``context_length`` enter it as the loaded
    encoder resolved them. Which entries are embedded, and where and how fast, do not.
    """

    encoder: str = option("clip_sf-vit-l-14",
                          help="Registered encoder name (clip_sf-vit-l-14, clip_sf-vit-b-32, "
                               "tiny, qwen3-vl-embedding-2b, lamra-ret, gme-qwen2-vl-7b, "
                               "vlm2vec-v2.0, tiny-mllm, ...), open_clip:MODEL[:TAG], "
                               "hf:ID_OR_PATH, mllm:[STYLE:]ID_OR_PATH, a UniIR .pth or an "
                               "augret checkpoint / training output directory.")
    backbone: str | None = option(None, help="open_clip architecture of a UniIR .pth "
                                             "(default: inferred from its shapes).")
    split: str = option("test", help="Query split (test, val...).")
    queries: bool = option(True, hash=False, help="Embed the split's query files.")
    pools: list[str] = option(
        factory=lambda: ["local"], hash=False,
        help="local (every local pool of the split) and/or union (the parts of the test "
             "union: the global test pool file when present, as the entry pools/union, else "
             "the local test pools); empty for none.")
    tasks: list[str] | None = option(None, hash=False,
                                     help="Only these tasks (e.g. cirr_task7,oven_task8) and "
                                          "their local pools.")
    instruction: Literal["first", "random", "none"] = option(
        "first", help="Query instruction: first (prompt_1), random (seeded per qid) or none.")
    instruction_seed: int = option(2023, help="Seed of random instructions.")
    batch_size: int = option(256, hash=False, help="Items per forward pass.")
    shard_size: int = option(50_000, help="Source rows per shard file.")
    workers: int = option(4, hash=False,
                          help="Image-decoding data loader workers of the local engine (0: in "
                               "the main process; shards of at most 4 batches are always "
                               "decoded there).")
    device: str = option("auto", hash=False,
                         help="auto, cpu, cuda, cuda:1... (ray engine: auto is cuda when "
                              "ray.gpus_per_worker > 0, else cpu).")
    precision: _Precision = option("auto", help="auto (CUDA: fp16 autocast for CLIP_SF, as "
                                                "UniIR, bf16 weights for MLLM embedders; fp32 "
                                                "on CPU), fp32, fp16 or bf16.")
    context_length: int | None = option(None, help="Text context length (default: the "
                                                   "model's, 77 for CLIP; MLLM embedders: text "
                                                   "tokens kept per item, default the "
                                                   "registry entry's).")
    on_missing_image: Literal["skip", "error", "drop"] = option(
        "skip", help="A row whose image is missing or unreadable: skip (recorded in "
                     "skipped.jsonl), error, or drop the image (embed the text).")
    overwrite: bool = option(False, hash=False,
                             help="Replace an output directory made with another config.")
    engine: Literal["local", "ray"] = option(
        "local", hash=False,
        help="local (this process) or ray (a Ray Data pool of encoder actors, each decoding "
             "its images in cpus_per_worker - 1 processes; byte-identical output).")
    ray: RayResources = option(factory=RayResources, hash=False,
                               help="The Ray actors of the ray engine.")

    def __post_init__(self) -> None:
        check_choices(self)
        bad = [p for p in self.pools if p not in ("local", "union")]
        if bad:
            raise ConfigError(f"pools: unknown {bad}; expected 'local' and/or 'union'")
        check_min(self, 1, "batch_size", "shard_size", "context_length")
        check_min(self, 0, "workers")
