"""Merging a peft LoRA adapter onto a base Qwen-VL model, whatever layout its keys were saved in.

VLM2Vec saved its adapter from a ForConditionalGeneration of the layout before transformers
4.52 (``base_model.model.model.layers.N...``); augret saves its own from the base model
(``base_model.model.language_model.layers.N...``); the current layout of a
ForConditionalGeneration reads ``base_model.model.model.language_model.layers.N...``. Every
key is mapped to the base model's module path before peft loads it, and every LoRA weight
must find its module and every adapted module its weights.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.encode.mllm.sources import local_dir
from augret.errors import DataFormatError, DataNotFoundError

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "base_module_path", "merge_adapter"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_ADAPTER_PATTERNS = [ADAPTER_CONFIG, *ADAPTER_WEIGHTS]
_HEAD = ("lm_head.",)  # the generation head plays no part in embedding
_TEXT_ROOTS = ("layers.", "embed_tokens.", "norm.", "rotary_emb.")


def base_module_path(key: str) -> str | None:
    """A saved adapter key's module path relative to the base ``Qwen*VLModel`` (``None``:
    a key of the generation head, which embedding does not use)."""
    key = key.removeprefix("base_model.model.")
    if key.startswith(_HEAD):
        return None
    if key.startswith("model.language_model."):
        return "language_model." + key[len("model.language_model."):]
    if key.startswith("model.visual."):
        return "visual." + key[len("model.visual."):]
    if key.startswith("model.") and key[len("model."):].startswith(_TEXT_ROOTS):
        return "language_model." + key[len("model."):]  # the layout before transformers 4.52
    return key


def _read_adapter_weights(path: Path) -> dict[str, Any]:
    torch = require("torch", "train")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise several types on corrupt files
        raise DataFormatError(f"unreadable adapter weights: {exc}", path=path) from None


def merge_adapter(model: Any, adapter: str | Path, *, revision: str | None = None) -> Any:
    """Merge a peft LoRA adapter onto a base ``Qwen*VLModel``; returns the merged model.

    Args:
        model: The base model.
        adapter: The adapter directory or hub id.
        revision: Hub revision.

    Raises:
        DataNotFoundError: ``adapter_config.json`` or the adapter weights are missing.
        DataFormatError: Unreadable files, a non-LoRA adapter, or weights that match no
            module of the base model (or modules it targets with no weights).
    """
    peft = require("peft", "train")
    local = local_dir(str(adapter), revision, _ADAPTER_PATTERNS, "adapter")
    cfg_file = local / ADAPTER_CONFIG
    if not cfg_file.is_file():
        raise DataNotFoundError(f"{cfg_file}: missing (not a peft adapter directory)")
    weights = next((local / f for f in ADAPTER_WEIGHTS if (local / f).is_file()), None)
    if weights is None:
        raise DataNotFoundError(f"{local}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    try:
        config = peft.PeftConfig.from_pretrained(local)
    except (OSError, ValueError, TypeError) as exc:
        raise DataFormatError(f"unreadable adapter config: {exc}", path=cfg_file) from None
    if str(getattr(config, "peft_type", "")).split(".")[-1] != "LORA":
        raise DataFormatError(f"peft_type is {config.peft_type!r}; only LoRA adapters merge",
                              path=cfg_file)
    config.inference_mode = True
    state: dict[str, Any] = {}
    for key, value in _read_adapter_weights(weights).items():
        path = base_module_path(key)
        if path is not None:
            state["base_model.model." + path] = value
    try:
        with warnings.catch_warnings():
            # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            wrapped = peft.get_peft_model(model, config)
    except ValueError as exc:  # e.g. target modules not found
        raise DataFormatError(f"the adapter does not fit the base model: {exc}",
                              path=cfg_file) from None
    result = peft.set_peft_model_state_dict(wrapped, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise DataFormatError(f"{len(unexpected)} adapter weight(s) match no module of the "
                              f"base model, e.g. {sorted(unexpected)[:3]}", path=weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise DataFormatError(f"{len(missing)} adapted module weight(s) are not in the file, "
                              f"e.g. {sorted(missing)[:3]}", path=weights)
    return wrapped.merge_and_unload().eval()
