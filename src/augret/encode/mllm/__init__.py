"""MLLM embedders: Qwen2-VL, Qwen2.5-VL and Qwen3-VL models as retrieval encoders.

One forward pass over a chat-formatted input; the last token's hidden state, L2-normalised,
is the vector. Prompt styles (:mod:`~augret.encode.mllm.styles`) reproduce how the released
embedders form their input; loaders (:mod:`~augret.encode.mllm.loaders`) read their
checkpoint layouts; ``tiny-mllm`` is a random-init tiny model for tests and smoke runs.

Example::

    from augret.encode import Item, load_encoder

    enc = load_encoder("qwen3-vl-embedding-2b")          # or "mllm:lamra:<hub id or path>"
    q = enc.encode_queries([Item("a red dress", instruction="Find the matching product.")])
    c = enc.encode_candidates([Item(None, "dress.jpg")])
    (q @ c.T)                                            # cosine: vectors are normalised

torch and transformers load when a model is built, not on import.
"""

from __future__ import annotations

from typing import Any

from augret.encode.mllm.checkpoint import is_mllm_dir, read_mllm_dir, save_mllm_dir
from augret.encode.mllm.spec import (
    MLLM_ENCODERS,
    TINY_MLLM,
    MLLMEntry,
    MLLMSpec,
    is_mllm_name,
    parse_mllm_name,
)
from augret.encode.mllm.styles import DEFAULT_PROMPT_STYLE, FAMILIES, PROMPT_STYLES, PromptStyle

__all__ = [
    "DEFAULT_PROMPT_STYLE",
    "FAMILIES",
    "MLLM_ENCODERS",
    "PROMPT_STYLES",
    "TINY_MLLM",
    "MLLMBatch",
    "MLLMEmbedder",
    "MLLMEncoder",
    "MLLMEntry",
    "MLLMProcessor",
    "MLLMSpec",
    "PromptStyle",
    "build_mllm",
    "is_mllm_dir",
    "is_mllm_name",
    "parse_mllm_name",
    "read_mllm_dir",
    "save_mllm_dir",
]

_LAZY = {"MLLMBatch": "processor", "MLLMProcessor": "processor", "MLLMEmbedder": "model",
         "MLLMEncoder": "encoder", "build_mllm": "loaders"}


def __getattr__(name: str) -> Any:  # torch-backed names load lazily
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"augret.encode.mllm.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'augret.encode.mllm' has no attribute {name!r}")
