"""Tiny checkpoints in the layouts of the released MLLM embedders, written by tests.

Each writer saves a random-init tiny Qwen-VL model (augret's tiny presets) the way the real
release stores it: the config class and format, the weight key layout, the head, the
adapter files. The in-memory model is returned beside the directory, so a test can compare
what the loader builds with vectors computed from the original weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from augret.encode.mllm.model import MLLMEmbedder
from augret.encode.mllm.processor import MLLMProcessor
from augret.encode.mllm.spec import MLLMSpec
from augret.encode.mllm.styles import FAMILIES, get_style
from augret.enhance.tiny import build_tiny_vlm

_CACHE: dict[str, tuple[Any, Any]] = {}


def tiny_vlm(preset: str) -> tuple[Any, Any]:
    """``(ForConditionalGeneration model, processor)`` of a tiny preset (built once)."""
    if preset not in _CACHE:
        _CACHE[preset] = build_tiny_vlm(preset, cache=False)
    return _CACHE[preset]


def legacy_key(key: str) -> str:
    """A current transformers key in the layout before 4.52 (``model.*``, ``visual.*``)."""
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    if key.startswith("model.visual."):
        return "visual." + key[len("model.visual."):]
    return key


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A nested Qwen2-VL / Qwen2.5-VL config.json in the older flat format (text settings at
    the top, ``rope_scaling`` with ``mrope_section``), as pre-4.52 releases ship it."""
    t, v = config["text_config"], dict(config["vision_config"])
    keep = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps",
            "bos_token_id", "eos_token_id", "hidden_act", "initializer_range",
            "attention_dropout", "tie_word_embeddings")
    out = {"architectures": config["architectures"], "model_type": config["model_type"],
           **{k: t[k] for k in keep},
           "rope_theta": t["rope_parameters"]["rope_theta"],
           "rope_scaling": {"type": "mrope",
                            "mrope_section": t["rope_parameters"]["mrope_section"]},
           **{k: config[k] for k in ("image_token_id", "video_token_id",
                                     "vision_start_token_id", "vision_end_token_id")},
           "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0", "use_cache": True}
    v.pop("model_type", None)
    v.pop("rope_parameters", None)
    out["vision_config"] = v
    return out


def write_merged(root: Path, preset: str, *, legacy: bool, head: bool = True,
                 flat: bool = False, extra: dict[str, str] | None = None) -> Path:
    """Save a tiny preset as merged weights.

    Args:
        root: The directory to create.
        preset: ``tiny-qwen2-vl``, ``tiny-qwen2.5-vl`` or ``tiny-qwen3-vl``.
        legacy: Keys in the pre-4.52 layout (``model.*``, ``visual.*``).
        head: Keep ``lm_head.weight`` (generation checkpoints) or drop it (embedding-only).
        flat: Write config.json in the older flat format.
        extra: More files to write (name → text), e.g. remote code that must never run.
    """
    model, processor = tiny_vlm(preset)
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if not head:
        sd.pop("lm_head.weight")
    if legacy:
        sd = {legacy_key(k): v for k, v in sd.items()}
    save_file(sd, str(root / "model.safetensors"), metadata={"format": "pt"})
    if flat:
        config = json.loads((root / "config.json").read_text())
        (root / "config.json").write_text(json.dumps(flat_config(config), indent=2))
    for name, text in (extra or {}).items():
        (root / name).write_text(text)
    return root


def reference_vectors(base: Any, processor: Any, family: str, spec: MLLMSpec | str,
                      items: list[Any]) -> torch.Tensor:
    """Vectors computed straight from an in-memory base model (``Qwen*VLModel``) with a spec
    (or a prompt style and default budgets)."""
    if isinstance(spec, str):
        spec = MLLMSpec("reference", spec)
    proc = MLLMProcessor(processor.tokenizer, processor.image_processor, spec,
                         FAMILIES[family])
    emb = MLLMEmbedder(base, get_style(spec.prompt_style).positions,
                       proc.image_token_id).eval()
    with torch.inference_mode():
        return emb(proc.collate([proc.prepare(it, i) for i, it in enumerate(items)]))


def lora_weights(base: Any, targets: tuple[str, ...], r: int, seed: int
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random LoRA ``(A, B)`` pairs for every targeted linear of the language model, keyed by
    module path relative to the base ``Qwen*VLModel``."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, mod in base.named_modules():
        if name.startswith("language_model.") and name.rsplit(".", 1)[-1] in targets:
            a = torch.randn(r, mod.in_features, generator=gen) * 0.3
            b = torch.randn(mod.out_features, r, generator=gen) * 0.3
            out[name] = (a, b)
    return out


def merged_copy(base: Any, lora: dict[str, tuple[torch.Tensor, torch.Tensor]],
                scale: float) -> Any:
    """A copy of ``base`` with ``W + scale * B @ A`` merged by hand (the reference)."""
    import copy

    merged = copy.deepcopy(base)
    mods = dict(merged.named_modules())
    with torch.no_grad():
        for name, (a, b) in lora.items():
            mods[name].weight += scale * (b @ a)
    return merged


def write_adapter(root: Path, lora: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
                  base_path: str, r: int, alpha: int, targets: tuple[str, ...],
                  key_prefix: str) -> Path:
    """A peft LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)
    whose weight keys are ``base_model.model.<key_prefix><module path in the language
    model>.lora_A.weight``: ``model.`` for the pre-4.52 layout of a ForConditionalGeneration
    (VLM2Vec), ``language_model.`` for augret's base-model adapters."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "task_type": None, "r": r, "lora_alpha": alpha,
              "lora_dropout": 0.0, "target_modules": list(targets), "bias": "none",
              "base_model_name_or_path": base_path, "inference_mode": True,
              "fan_in_fan_out": False, "use_dora": False, "init_lora_weights": True}
    (root / "adapter_config.json").write_text(json.dumps(config, indent=2))
    sd = {}
    for name, (a, b) in lora.items():
        path = key_prefix + name[len("language_model."):]
        sd[f"base_model.model.{path}.lora_A.weight"] = a.contiguous()
        sd[f"base_model.model.{path}.lora_B.weight"] = b.contiguous()
    save_file(sd, str(root / "adapter_model.safetensors"), metadata={"format": "pt"})
    return root
