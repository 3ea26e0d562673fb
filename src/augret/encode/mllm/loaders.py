"""Loading MLLM embedders: released checkpoint layouts, peft adapters and augret directories.

What each layout is and how it loads (tested with tiny checkpoints of the same layout):

* merged weights in transformers' current layout (``model.language_model.*``,
  ``model.visual.*``; Qwen3-VL-Embedding, with or without ``lm_head``), or in the layout
  before transformers 4.52 (``model.*`` for the language model, ``visual.*``; LamRA-Ret,
  GME): the ``model_type`` of ``config.json`` picks the family, whose generation class's
  ``from_pretrained`` maps either key layout; its base model (``Qwen2VLModel``,
  ``Qwen2_5_VLModel`` or ``Qwen3VLModel``) is kept and the generation head, present or not,
  is dropped. Any other missing or mis-shaped weight is an error naming the directory.
* a peft LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors`` or ``.bin``;
  VLM2Vec-V2.0, augret's own checkpoints) merged onto its base: adapter keys are mapped from
  whichever layout they were saved in to the base model's module paths, every LoRA weight must
  find its module, and the merged model is what embeds (:mod:`augret.encode.mllm.adapters`).
* ``tiny-mllm``: built in memory (:mod:`augret.encode.mllm.tiny`).

Hub ids are fetched with ``huggingface_hub`` (weights, configs, tokenizer files only; no
remote code is ever run). No GME or LamRA code is needed: the prompt styles and the pooling
of :mod:`augret.encode.mllm.styles` and :mod:`augret.encode.mllm.model` are their forward.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.data.jsonl import read_json
from augret.encode.mllm.adapters import merge_adapter
from augret.encode.mllm.sources import file_fingerprints, local_dir, quiet_transformers
from augret.encode.mllm.spec import TINY_MLLM, MLLMSpec
from augret.encode.mllm.styles import FAMILIES, Family, get_style
from augret.errors import ConfigError, DataFormatError, DataNotFoundError

__all__ = ["attention_implementation", "build_mllm", "resolve_precision"]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
_MODEL_CLASSES = {"qwen2_vl": "Qwen2VLModel", "qwen2_5_vl": "Qwen2_5_VLModel",
                  "qwen3_vl": "Qwen3VLModel"}
# Checkpoints are read through the generation class, whose key mapping covers both layouts
# (the base class's does not map the current one in every transformers release).
_LOAD_CLASSES = {"qwen2_vl": "Qwen2VLForConditionalGeneration",
                 "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
                 "qwen3_vl": "Qwen3VLForConditionalGeneration"}
_IGNORED_KEYS = ("lm_head.",)  # the generation head plays no part in embedding


# ---- devices and dtypes ------------------------------------------------------------------------
def resolve_precision(device: Any, precision: str) -> str:
    """``auto`` → ``bf16`` on CUDA (``fp16`` where bf16 is unsupported), ``fp32`` on CPU.

    Raises:
        ConfigError: An unknown precision.
    """
    torch = require("torch", "train")
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise ConfigError(f"precision must be auto, fp32, fp16 or bf16 (got {precision!r})")
    if precision != "auto":
        return precision
    if torch.device(device).type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _dtype(precision: str) -> Any:
    torch = require("torch", "train")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def attention_implementation(device: Any, precision: str, requested: str = "auto") -> str:
    """``flash_attention_2`` on CUDA in half precision when flash-attn is installed, else
    ``sdpa`` (``requested`` other than ``auto`` is used as given)."""
    if requested != "auto":
        return requested
    torch = require("torch", "train")
    if (torch.device(device).type == "cuda" and precision in ("bf16", "fp16")
            and importlib.util.find_spec("flash_attn") is not None):
        return "flash_attention_2"
    return "sdpa"


def _family(model_type: Any, where: Path) -> Family:
    if model_type not in FAMILIES:
        raise DataFormatError(f"model_type is {model_type!r}; an MLLM embedder needs one of "
                              f"{', '.join(FAMILIES)}", path=where / CONFIG_FILE)
    return FAMILIES[model_type]


def _load_merged(local: Path, dtype: Any, attn: str) -> tuple[Any, Family]:
    """The base model of a merged checkpoint directory."""
    tf = require("transformers", "train")
    if not (local / CONFIG_FILE).is_file():
        raise DataNotFoundError(f"{local / CONFIG_FILE}: missing (not a transformers "
                                "checkpoint directory)")
    if not any((local / f).is_file() for f in WEIGHT_FILES):
        raise DataNotFoundError(f"{local}: no weights ({' or '.join(WEIGHT_FILES)})")
    cfg_file = local / CONFIG_FILE
    family = _family(read_json(cfg_file).get("model_type"), local)
    try:
        config = tf.AutoConfig.from_pretrained(local)
    except Exception as exc:  # transformers and huggingface_hub raise many validation types
        raise DataFormatError(f"invalid config: {exc}", path=cfg_file) from None
    cls = getattr(tf, _LOAD_CLASSES[family.name])
    name = _MODEL_CLASSES[family.name]
    try:
        with quiet_transformers():
            full, info = cls.from_pretrained(local, config=config, dtype=dtype,
                                             attn_implementation=attn,
                                             output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataFormatError(f"cannot load {name} weights: {exc}", path=local) from None
    problems = []
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(_IGNORED_KEYS)]
    if missing:
        problems.append(f"missing {sorted(missing)[:5]}")
    if info.get("mismatched_keys"):
        problems.append(f"wrong shapes {sorted(map(str, info['mismatched_keys']))[:5]}")
    if problems:
        raise DataFormatError(f"weights do not fit {name}: {'; '.join(problems)}", path=local)
    extra = [k for k in info.get("unexpected_keys", []) if not k.startswith(_IGNORED_KEYS)]
    if extra:
        log.warning("%s: %d weight(s) not used by %s (e.g. %s)", local, len(extra), name,
                    sorted(extra)[:3])
    return full.model.eval(), family


# ---- the whole encoder -------------------------------------------------------------------------
def build_mllm(name: str, spec: MLLMSpec, *, device: str | None = "auto",
               precision: str = "auto", attn_implementation: str = "auto") -> Any:
    """Build a ready :class:`~augret.encode.mllm.encoder.MLLMEncoder` from a spec.

    Args:
        name: What to call it (registry name, spec or checkpoint path).
        spec: What to build.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda:1``...
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32``, ``fp16``, ``bf16``: the
            weights' dtype.
        attn_implementation: ``auto`` (flash-attn 2 when installed on CUDA, else sdpa),
            ``sdpa``, ``eager`` or ``flash_attention_2``.

    Raises:
        ConfigError: Bad options.
        DataNotFoundError, DataFormatError: Missing or wrong checkpoint files (named).
    """
    from augret.encode.clip_sf import resolve_device
    from augret.encode.mllm.encoder import MLLMEncoder
    from augret.encode.mllm.model import MLLMEmbedder
    from augret.encode.mllm.processor import MLLMProcessor

    tf = require("transformers", "train")
    dev = resolve_device(device)
    prec = resolve_precision(dev, precision)
    dtype = _dtype(prec)
    attn = attention_implementation(dev, prec, attn_implementation)
    style = get_style(spec.prompt_style)
    dirs: list[Path | None] = []
    if spec.model == TINY_MLLM:
        from augret.encode.mllm.tiny import build_tiny_mllm

        base, hf_processor = build_tiny_mllm()
        tokenizer, image_processor = hf_processor.tokenizer, hf_processor.image_processor
        base = base.to(dtype)
        base.config._attn_implementation = attn
        family = FAMILIES["qwen2_vl"]
    else:
        local = local_dir(spec.model, spec.revision, _MODEL_PATTERNS, "model")
        base, family = _load_merged(local, dtype, attn)
        dirs.append(local)
        proc_dir = local if spec.processor in (None, spec.model) else local_dir(
            spec.processor, None, _MODEL_PATTERNS, "processor")
        try:
            with quiet_transformers():
                tokenizer = tf.AutoTokenizer.from_pretrained(proc_dir)
                image_processor = tf.AutoImageProcessor.from_pretrained(proc_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataFormatError(f"cannot load the tokenizer and image processor: {exc}",
                                  path=proc_dir) from None
    if spec.adapter:
        base = merge_adapter(base, spec.adapter)
        adapter_dir = Path(spec.adapter)
        dirs.append(adapter_dir if adapter_dir.is_dir() else None)
    processor = MLLMProcessor(tokenizer, image_processor, spec, family)
    expected = getattr(base.config, "image_token_id", None)
    if expected is not None and processor.image_token_id != expected:
        raise DataFormatError(f"the tokenizer's <|image_pad|> id {processor.image_token_id} is "
                              f"not the model's image_token_id {expected}", path=spec.model)
    embedder = MLLMEmbedder(base, style.positions, processor.image_token_id)
    return MLLMEncoder(name, spec, embedder, processor, device=dev, precision=prec,
                       weights=file_fingerprints(*dirs))
