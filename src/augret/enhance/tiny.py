"""Tiny, randomly initialised Qwen-VL models for offline smoke runs and tests.

The presets use the real Qwen2-VL, Qwen2.5-VL and Qwen3-VL architectures from ``transformers``
at toy sizes, with a processor built entirely locally (:mod:`augret.tiny_qwen`: a byte-level
BPE tokenizer trained on a fixed corpus, so it is deterministic, the Qwen special tokens, the
matching Qwen image processor with small pixel limits, and a Qwen-style chat template). Nothing
is downloaded. The weights are random (fixed seed), so **the generated text is meaningless**: the
presets exist to exercise the whole pipeline (chat template, image placeholders, batching,
budgets, servers) on a CPU in seconds.

>>> model, processor = build_tiny_vlm("tiny-qwen2-vl")  # doctest: +SKIP
>>> path = tiny_model_dir("tiny-qwen3-vl")  # saved once; from_pretrained(path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augret._lazy import require
from augret._paths import cache_dir
from augret.data.jsonl import read_json_or_none
from augret.enhance.backends._hf import quiet_progress
from augret.errors import ConfigError
from augret.tiny_qwen import (
    MERGE_SIZE,
    MIN_TRANSFORMERS,
    PATCH_SIZES,
    SPECIAL_TOKENS,
    TEMPORAL_PATCH_SIZE,
    build_qwen_processor,
    check_transformers,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

__all__ = [
    "MIN_TRANSFORMERS",
    "TINY_ALIASES",
    "TINY_PRESETS",
    "TINY_SEED",
    "TINY_VERSION",
    "build_tiny_processor",
    "build_tiny_vlm",
    "check_transformers",
    "is_tiny_model",
    "resolve_tiny_preset",
    "tiny_model_dir",
]

logger = logging.getLogger(__name__)

#: Canonical preset names.
TINY_PRESETS: tuple[str, ...] = ("tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl")
#: Short names accepted wherever a preset is.
TINY_ALIASES: dict[str, str] = {"tiny": "tiny-qwen2-vl"}
#: Bumped whenever the recipe changes; part of the cache directory name.
TINY_VERSION = "v1"
#: Seed for the random weights (identical weights on every build of a preset).
TINY_SEED = 1234
#: Name of the marker file written next to a saved tiny model.
MARKER_FILE = "augret-tiny.json"

_MEANINGLESS = (
    "tiny preset %s: randomly initialised weights, outputs are meaningless "
    "(for offline smoke runs and tests only)"
)

_PRESET_SPECS: dict[str, dict[str, Any]] = {
    "tiny-qwen2-vl": {"family": "qwen2_vl", "patch_size": PATCH_SIZES["qwen2_vl"]},
    "tiny-qwen2.5-vl": {"family": "qwen2_5_vl", "patch_size": PATCH_SIZES["qwen2_5_vl"]},
    "tiny-qwen3-vl": {"family": "qwen3_vl", "patch_size": PATCH_SIZES["qwen3_vl"]},
}

_TEXT_HIDDEN = 64
_TEXT_HEADS = 4  # head_dim 16: the three M-RoPE sections must sum to 8
_MERGE = MERGE_SIZE
_TEMPORAL = TEMPORAL_PATCH_SIZE


def resolve_tiny_preset(name: str) -> str | None:
    """The canonical preset for ``name`` (``tiny`` -> ``tiny-qwen2-vl``), or ``None``.

    Args:
        name: A model name as given by the user.

    Returns:
        One of :data:`TINY_PRESETS`, or ``None`` when ``name`` is not a tiny preset.
    """
    name = TINY_ALIASES.get(name, name)
    return name if name in TINY_PRESETS else None


def is_tiny_model(name: str) -> bool:
    """Whether ``name`` names a tiny preset (exact match on presets and aliases)."""
    return resolve_tiny_preset(name) is not None


def _canonical(preset: str) -> str:
    resolved = resolve_tiny_preset(preset)
    if resolved is None:
        valid = ", ".join([*TINY_PRESETS, *TINY_ALIASES])
        raise ConfigError(f"unknown tiny preset {preset!r}; valid presets: {valid}")
    return resolved


def build_tiny_processor(preset: str = "tiny-qwen2-vl") -> ProcessorMixin:
    """Build the locally-made processor of a preset (tokenizer, image processor, template).

    Args:
        preset: One of :data:`TINY_PRESETS` or an alias.

    Returns:
        A ``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` / ``Qwen3VLProcessor``
        (:func:`augret.tiny_qwen.build_qwen_processor` of the preset's family).

    Raises:
        ConfigError: If ``preset`` is unknown.
    """
    return build_qwen_processor(_PRESET_SPECS[_canonical(preset)]["family"], extra="enhance")


def _build_config(preset: str, tokenizer: Any) -> Any:
    tf = require("transformers", "enhance")
    spec = _PRESET_SPECS[preset]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up, as real checkpoints do
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    text: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": _TEXT_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": _TEXT_HEADS,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "initializer_range": 0.1,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision_common = {
        "depth": 2,
        "num_heads": 2,
        "in_channels": 3,
        "patch_size": spec["patch_size"],
        "spatial_merge_size": _MERGE,
        "temporal_patch_size": _TEMPORAL,
        "initializer_range": 0.1,
    }
    family = spec["family"]
    if family == "qwen2_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [2, 3, 3],
        }
        vision = {**vision_common, "embed_dim": 32, "hidden_size": _TEXT_HIDDEN, "mlp_ratio": 2}
        vision["depth"] = 1
        return tf.Qwen2VLConfig(text_config=text, vision_config=vision, **special)
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [2, 3, 3],
        }
        vision = {
            **vision_common,
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": _TEXT_HIDDEN,
            "window_size": spec["patch_size"] * _MERGE * 2,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        }
        return tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
    text["head_dim"] = _TEXT_HIDDEN // _TEXT_HEADS
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [4, 2, 2],
        "mrope_interleaved": True,
    }
    vision = {
        **vision_common,
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": _TEXT_HIDDEN,
        "num_position_embeddings": 144,
        "deepstack_visual_indexes": [0],
    }
    return tf.Qwen3VLConfig(text_config=text, vision_config=vision, **special)


def _model_class(preset: str) -> Any:
    tf = require("transformers", "enhance")
    return {
        "qwen2_vl": tf.Qwen2VLForConditionalGeneration,
        "qwen2_5_vl": tf.Qwen2_5_VLForConditionalGeneration,
        "qwen3_vl": tf.Qwen3VLForConditionalGeneration,
    }[_PRESET_SPECS[preset]["family"]]


def _build_fresh(preset: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    torch = require("torch", "enhance")
    tf = require("transformers", "enhance")
    processor = build_tiny_processor(preset)
    tokenizer = processor.tokenizer
    config = _build_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = _model_class(preset)(config)
    model = model.to(torch.float32).eval()
    eos = [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    model.generation_config = tf.GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model, processor


def _is_complete(path: Path, preset: str) -> bool:
    marker = path / MARKER_FILE
    if not marker.is_file():
        return False
    info = read_json_or_none(marker)
    if info is None:
        return False
    return info.get("preset") == preset and info.get("version") == TINY_VERSION


def _save(model: Any, processor: Any, target: Path, preset: str) -> None:
    """Save into a temporary sibling directory, then rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with quiet_progress():
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
        marker = {
            "preset": preset,
            "version": TINY_VERSION,
            "seed": TINY_SEED,
            "note": "randomly initialised weights; outputs are meaningless (tests and smoke runs)",
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first (target exists and is not empty): keep theirs.
            if not _is_complete(target, preset):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path, preset: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    tf = require("transformers", "enhance")
    torch = require("torch", "enhance")
    with quiet_progress():
        processor = tf.AutoProcessor.from_pretrained(path)
        model = _model_class(preset).from_pretrained(path, dtype=torch.float32).eval()
    return model, processor


def tiny_model_dir(preset: str = "tiny-qwen2-vl") -> Path:
    """The local directory of a saved tiny preset, building and saving it on first use.

    The directory holds ``save_pretrained`` output of both the model and the processor, so
    ``AutoProcessor.from_pretrained(path)`` / ``AutoModelForImageTextToText.from_pretrained(path)``
    (and OpenAI-compatible servers that load local paths) can use it.

    Args:
        preset: One of :data:`TINY_PRESETS` or an alias.

    Returns:
        ``cache_dir()/tiny/<preset>-v1``.

    Raises:
        ConfigError: If ``preset`` is unknown.
        MissingExtraError: ``transformers`` is older than :data:`MIN_TRANSFORMERS`.
    """
    preset = _canonical(preset)
    check_transformers()
    path = cache_dir() / "tiny" / f"{preset}-{TINY_VERSION}"
    if not _is_complete(path, preset):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)  # partial or stale: rebuild
        model, processor = _build_fresh(preset)
        _save(model, processor, path, preset)
        logger.info("saved tiny preset %s to %s", preset, path)
    return path


def build_tiny_vlm(
    preset: str = "tiny-qwen2-vl", *, cache: bool = True
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a tiny, randomly initialised Qwen-VL model and its local processor.

    The same preset always yields identical weights (seed :data:`TINY_SEED`) and the same
    tokenizer. Outputs are meaningless; use these models for offline smoke runs and tests.

    Args:
        preset: ``tiny-qwen2-vl`` (alias ``tiny``), ``tiny-qwen2.5-vl`` or ``tiny-qwen3-vl``.
        cache: If true, load from (building and saving on first use) :func:`tiny_model_dir`,
            exactly what a backend given the local path would load; if false, build in memory
            without touching the disk.

    Returns:
        ``(model, processor)``, the model in float32 on the CPU in eval mode.

    Raises:
        ConfigError: If ``preset`` is unknown.
    """
    preset = _canonical(preset)
    logger.warning(_MEANINGLESS, preset)
    if not cache:
        return _build_fresh(preset)
    return _load(tiny_model_dir(preset), preset)
