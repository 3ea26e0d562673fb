"""The configuration of one enhancement run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["DEFAULT_MODEL", "EnhanceConfig"]

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"


@dataclass
class EnhanceConfig:
    """Everything that decides what ``augret enhance`` writes.

    Attributes:
        split: Which split's files to enhance (``test``, ``val``, ``train``).
        side: ``queries``, ``candidates`` or ``both``.
        files: Optional glob (or list of globs) on the files' paths relative to the data dir
            (or their names): only matching files are enhanced.
        backend: ``transformers``, ``openai`` or ``vllm``.
        model: Hub id, local path, or a ``tiny`` preset (random weights, meaningless text).
        revision: Model revision (part of the store key).
        base_url: Server URL of the ``openai`` backend.
        backend_options: Extra backend keyword arguments (timeout, max_concurrency, ...).
        mode: ``replace`` (the paper: VLM text becomes the item's text) or ``append``.
        prompts: Prompt set name or YAML path.
        temperature: 0 means greedy decoding (reproducible; the default).
        top_p: Nucleus sampling threshold when sampling.
        seed: Sampling seed.
        query_tokens: Output token budget of queries.
        candidate_tokens: Output token budget of candidates.
        query_caption_words: Word limit of image-only query captions.
        candidate_caption_words: Word limit of candidate captions.
        query_text_words: Word limit of rewritten / condensed queries.
        overlong_factor: An output longer than limit × factor words is a failure.
        abort_after_failed_batches: Stop the run (resumable) after this many consecutive
            batches in which every request failed, e.g. a dead server; 0 never stops.
        batch_size: Requests per backend call.
        max_pixels: Images are downscaled to this many pixels before they are sent.
        workers: Threads that read and decode images ahead of the model.
        store: Generation store file (default: the per-user cache, shared across runs).
        engine: ``local`` (this process) or ``ray`` (a Ray Data pipeline of model-holding
            workers; same output, see :mod:`augret.enhance.ray_engine`).
        ray_address: Ray cluster address (``auto``, ``host:6379``, ``ray://host:10001``);
            ``None`` starts a local Ray instance (or joins ``$RAY_ADDRESS``).
        ray_workers: Ray workers, each holding one model (one vLLM engine per GPU).
        gpus_per_worker: GPUs each Ray worker reserves (0 on CPU; >1 for tensor parallelism).
        cpus_per_worker: CPUs each Ray worker reserves.
    """

    split: str = "test"
    side: Literal["queries", "candidates", "both"] = "both"
    files: str | list[str] | None = None
    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    model: str = DEFAULT_MODEL
    revision: str | None = None
    base_url: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    mode: Literal["replace", "append"] = "replace"
    prompts: str = "v1"
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    query_tokens: int = 128
    candidate_tokens: int = 512
    query_caption_words: int = 50
    candidate_caption_words: int = 100
    query_text_words: int = 60
    overlong_factor: float = 1.5
    abort_after_failed_batches: int = 5
    batch_size: int = 8
    max_pixels: int = 768 * 768
    workers: int = 4
    store: Path | None = None
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
