"""augret's MLLM checkpoint directory: what a trained MLLM embedder is saved as, and read from.

Layout (``docs/formats.md``)::

    CKPT/
      encoder.json     {"format": "augret-encoder", "version": 1, "architecture": "mllm",
                        "source": <where training started>, "mllm": <MLLMSpec of the base:
                        model = base hub id / path / tiny-mllm, prompt style, budgets>,
                        "weights": "adapter" | "merged", ...extra fields (e.g. step)}
      adapter/         weights "adapter": peft's save_pretrained of a LoRA on the base model
        adapter_config.json        (base_model_name_or_path = the spec's model)
        adapter_model.safetensors  keys base_model.model.language_model.layers.N....lora_A.weight
      merged/          weights "merged": save_pretrained of the merged base model
        config.json, model.safetensors[.index.json], tokenizer and processor files

An adapter directory is loaded by building the base model of the spec and merging the adapter
onto it (:func:`augret.encode.mllm.loaders.merge_adapter`); a merged one as any released
merged checkpoint. Training writes the rest of its checkpoint (optimizer, RNG...) beside these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augret.data.jsonl import read_json, write_json
from augret.encode.mllm.sources import quiet_transformers
from augret.encode.mllm.spec import MLLMSpec
from augret.errors import DataFormatError, DataNotFoundError

__all__ = ["ADAPTER_DIR", "ENCODER_FILE", "MERGED_DIR", "is_mllm_dir", "read_mllm_dir",
           "save_mllm_dir"]

ENCODER_FILE = "encoder.json"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
FORMAT = "augret-encoder"


def _read_meta(root: Path) -> dict[str, Any]:
    meta_file = root / ENCODER_FILE
    meta = read_json(meta_file, what="an augret encoder directory")
    if meta.get("format") != FORMAT:
        raise DataFormatError(f"format is {meta.get('format')!r}, expected {FORMAT!r}",
                              path=meta_file)
    return meta


def is_mllm_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an augret encoder directory of an MLLM embedder."""
    root = Path(path)
    if not (root / ENCODER_FILE).is_file():
        return False
    try:
        return _read_meta(root).get("architecture") == "mllm"
    except (DataFormatError, DataNotFoundError):
        return False


def read_mllm_dir(path: str | Path) -> tuple[MLLMSpec, dict[str, Any]]:
    """The loadable spec of an MLLM checkpoint directory (adapter or merged weights resolved
    to their subdirectories) and its ``encoder.json``.

    Raises:
        DataNotFoundError: Not an encoder directory, or its weights subdirectory is missing.
        DataFormatError: ``encoder.json`` is unreadable, of another architecture, or names
            unknown weights.
    """
    root = Path(path)
    meta = _read_meta(root)
    meta_file = root / ENCODER_FILE
    if meta.get("architecture") != "mllm":
        raise DataFormatError(f"architecture is {meta.get('architecture')!r}, not 'mllm'",
                              path=meta_file)
    if not isinstance(meta.get("mllm"), dict):
        raise DataFormatError("no 'mllm' spec", path=meta_file, field="mllm")
    spec = MLLMSpec.from_dict(meta["mllm"])
    weights = meta.get("weights")
    if weights == "adapter":
        sub = root / ADAPTER_DIR
        spec = spec.with_changes(adapter=str(sub))
    elif weights == "merged":
        sub = root / MERGED_DIR
        spec = spec.with_changes(model=str(sub), adapter=None, processor=str(sub),
                                 revision=None)
    else:
        raise DataFormatError(f"weights is {weights!r}, expected 'adapter' or 'merged'",
                              path=meta_file, field="weights")
    if not sub.is_dir():
        raise DataNotFoundError(f"{sub}: missing (encoder.json says weights: {weights})")
    return spec, meta


def save_mllm_dir(out_dir: str | Path, model: Any, spec: MLLMSpec, *, source: str,
                  processor: Any = None, info: dict[str, Any] | None = None) -> Path:
    """Write an MLLM checkpoint directory.

    A peft-wrapped base model (training with LoRA) is saved as ``adapter/``; a plain one
    (e.g. after ``merge_and_unload``) as ``merged/`` with the processor beside it.

    Args:
        out_dir: The directory (created).
        model: The base model (``MLLMEmbedder.model``): a peft ``PeftModel`` or a
            transformers ``Qwen*VLModel``.
        spec: The spec of the base it was trained from (``model`` = base id or path).
        source: Where training started (registry name or spec), for the record.
        processor: Anything with ``tokenizer`` and ``image_processor`` (an
            :class:`~augret.encode.mllm.processor.MLLMProcessor` or a Hugging Face processor),
            saved with merged weights so the directory loads without the base's files.
        info: Extra fields for ``encoder.json`` (e.g. the training step).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    adapter = callable(getattr(model, "get_base_model", None))
    with quiet_transformers():
        if adapter:
            model.save_pretrained(out / ADAPTER_DIR)
        else:
            model.save_pretrained(out / MERGED_DIR)
            if processor is not None:
                processor.tokenizer.save_pretrained(out / MERGED_DIR)
                processor.image_processor.save_pretrained(out / MERGED_DIR)
    base = spec.with_changes(adapter=None)
    meta = {"format": FORMAT, "version": 1, "architecture": "mllm", "source": source,
            "mllm": base.to_dict(), "weights": "adapter" if adapter else "merged",
            **(info or {})}
    write_json(out / ENCODER_FILE, meta)
    return out
