"""Retriever encoders (UniIR's CLIP_SF over open_clip / Hugging Face backbones, and MLLM
embedders over Qwen-VL models: :mod:`augret.encode.mllm`) and embedding of M-BEIR directories
into embedding directories (``docs/formats.md``).

Heavy dependencies (torch, open_clip, transformers) load on first use of a model.

Example::

    from augret.encode import EmbedConfig, Item, embed_dir, load_encoder

    enc = load_encoder("clip_sf-vit-l-14")
    vecs = enc.encode_candidates([Item("a red dress"), Item(None, "photo.jpg")])
    embed_dir("M-BEIR", "emb/clip_sf", EmbedConfig(encoder="clip_sf-vit-l-14"))
"""

from __future__ import annotations

from typing import Any

from augret.encode.backbones import BackboneSpec
from augret.encode.base import Encoder, Item
from augret.encode.config import EmbedConfig
from augret.encode.embed import embed_dir
from augret.encode.registry import (
    ENCODERS,
    is_random_init,
    list_encoders,
    load_encoder,
    resolve_encoder,
)

__all__ = [
    "ENCODERS",
    "BackboneSpec",
    "CLIPScoreFusion",
    "ClipSFEncoder",
    "EmbedConfig",
    "Encoder",
    "Item",
    "embed_dir",
    "is_random_init",
    "list_encoders",
    "load_encoder",
    "resolve_encoder",
]


def __getattr__(name: str) -> Any:  # torch-backed classes load lazily
    if name in ("CLIPScoreFusion", "ClipSFEncoder"):
        from augret.encode import clip_sf

        return getattr(clip_sf, name)
    raise AttributeError(f"module 'augret.encode' has no attribute {name!r}")
