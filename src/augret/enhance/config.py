"""The configuration of one enhancement run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from augret.config import check_choices, check_min, option
from augret.errors import ConfigError
from augret.ray_resources import RayResources

__all__ = ["DEFAULT_MODEL", "EnhanceConfig"]

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"


@dataclass(frozen=True)
class EnhanceConfig:
    """Everything that decides what ``augret enhance`` writes.

    Fields marked ``hash=False`` choose where and how fast the work runs, or which files it
    covers, not the text generated for an item; experiment fingerprints leave them out.
    """

    split: str = option("test", hash=False,
                        help="Which split's files to enhance (test, val, train).")
    side: Literal["queries", "candidates", "both"] = option(
        "both", hash=False, help="Enhance the query files, the candidate pools, or both.")
    files: str | list[str] | None = option(
        None, help="Glob (or list of globs) on the files' paths relative to the data "
                   "directory, or their names: only matching files are enhanced.")
    backend: Literal["transformers", "openai", "vllm", "fake", "reference"] = option(
        "transformers", help="The generation backend (fake: a deterministic stand-in with "
                             "fault injection, for tests and benchmarks, meaningless text; "
                             "reference: a simulated perfect VLM that answers from "
                             "ground-truth records, no model).")
    model: str = option(DEFAULT_MODEL, help="Hub id, local path, or a tiny preset (random "
                                            "weights: meaningless text); for reference, scene "
                                            "records or annotations (JSONL), or a data "
                                            "directory with scenes.jsonl (a relative path is "
                                            "also looked up in the data directory).")
    revision: str | None = option(None, help="Model revision (part of the store key).")
    base_url: str | None = option(None, help="Server URL of the openai backend.")
    backend_options: dict[str, Any] = option(
        factory=dict, help="Extra backend keyword arguments (timeout, max_concurrency, ...).")
    mode: Literal["replace", "append"] = option(
        "replace", help="replace (the paper: the VLM text becomes the item's text) or append "
                        "(after the original).")
    prompts: str = option("v1", help="Prompt set name or YAML path.")
    temperature: float = option(0.0, help="Sampling temperature; 0 decodes greedily "
                                          "(reproducible).")
    top_p: float = option(1.0, help="Nucleus sampling threshold when sampling.")
    seed: int = option(0, help="Sampling seed.")
    query_tokens: int = option(128, help="Output token budget of queries.")
    candidate_tokens: int = option(512, help="Output token budget of candidates.")
    query_caption_words: int = option(50, help="Word limit of image-only query captions.")
    candidate_caption_words: int = option(100, help="Word limit of candidate captions.")
    query_text_words: int = option(60, help="Word limit of rewritten / condensed queries.")
    overlong_factor: float = option(1.5, help="An output longer than limit x factor words is "
                                              "over-long.")
    overlong: Literal["truncate", "fail"] = option(
        "truncate", help="An over-long output is cut to the word limit (at a word boundary, a "
                         "sentence boundary when one is close) and flagged, or fails.")
    retry_failed: bool = option(
        False, hash=False,
        help="Also retry the failures recorded in the store as deterministic (empty or "
             "over-long output, corrupt image); transient ones are always retried.")
    abort_after_failed_batches: int = option(
        5, help="Stop the run (resumable) after this many consecutive batches in which every "
                "request failed, e.g. a dead server; 0 never stops.")
    batch_size: int = option(8, help="Requests per backend call.")
    max_pixels: int = option(768 * 768, help="Images are downscaled to this many pixels "
                                             "before they are sent.")
    workers: int = option(4, hash=False,
                          help="Threads that read and decode images ahead of the model.")
    store: Path | None = option(None, hash=False,
                                help="Generation store file (default: the per-user cache, "
                                     "shared across runs).")
    engine: Literal["local", "ray"] = option(
        "local", hash=False,
        help="local (this process) or ray (a Ray Data pipeline of model-holding workers; "
             "the same output).")
    ray: RayResources = option(factory=RayResources, hash=False,
                               help="The Ray actors of the ray engine.")

    def __post_init__(self) -> None:
        check_choices(self)
        check_min(self, 1, "query_tokens", "candidate_tokens", "query_caption_words",
                  "candidate_caption_words", "query_text_words", "batch_size", "max_pixels")
        check_min(self, 0, "abort_after_failed_batches", "workers", "temperature")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.overlong_factor < 1:
            raise ConfigError(f"overlong_factor must be >= 1, got {self.overlong_factor!r}")
