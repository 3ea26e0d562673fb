"""Named encoders and how a name or checkpoint path becomes a ready encoder.

A name is resolved exactly, never by substring:

* a key of :data:`ENCODERS` (``clip_sf-vit-l-14``, ``tiny``, ...);
* a key of :data:`~augret.encode.mllm.MLLM_ENCODERS` (``qwen3-vl-embedding-2b``, ``lamra-ret``,
  ``gme-qwen2-vl-7b``, ``vlm2vec-v2.0``, ``tiny-mllm``...) or ``mllm:[<prompt style>:]<hub id
  or path>``: an MLLM embedder (:mod:`augret.encode.mllm`);
* ``open_clip:<model>[:<pretrained tag or weights file>]``, any open_clip model (SigLIP
  included), e.g. ``open_clip:ViT-B-16-SigLIP:webli``;
* ``hf:<hub id or local path>``, a Hugging Face CLIP or SigLIP model;
* an existing path: an augret encoder directory (``encoder.json`` + ``model.pt``, or an MLLM
  checkpoint directory), a training output directory (its latest checkpoint), or a UniIR
  ``.pth`` checkpoint (architecture inferred from the tensor shapes, or named with
  ``backbone``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from augret.encode.backbones import TINY_MODEL_CFG, BackboneSpec, build_backbone, infer_openai_cfg
from augret.encode.checkpoint import is_encoder_dir, load_uniir_state_dict, read_encoder_dir
from augret.encode.mllm.checkpoint import is_mllm_dir, read_mllm_dir
from augret.encode.mllm.spec import MLLM_ENCODERS, MLLMSpec, is_mllm_name, parse_mllm_name
from augret.errors import ConfigError, DataFormatError

__all__ = ["ENCODERS", "RANDOM_INIT", "is_random_init", "list_encoders", "load_encoder",
           "resolve_encoder", "resolve_mllm"]

log = logging.getLogger(__name__)


def _oc(model: str, tag: str, transform: str = "clip", quick_gelu: bool = True) -> BackboneSpec:
    return BackboneSpec("open_clip", model, tag, quick_gelu=quick_gelu, image_transform=transform)


#: Registered encoder names → backbone specs (all CLIP_SF score fusion).
ENCODERS: dict[str, BackboneSpec] = {
    # UniIR CLIP_SF Large / Base backbones: OpenAI CLIP through open_clip (QuickGELU).
    "clip_sf-vit-l-14": _oc("ViT-L-14", "openai"),
    "clip_sf-vit-b-32": _oc("ViT-B-32", "openai"),
    "clip_sf-vit-b-16": _oc("ViT-B-16", "openai"),
    "clip_sf-vit-l-14-336": _oc("ViT-L-14-336", "openai"),
    # SigLIP backbones (open_clip; squash resize and 0.5 mean/std from their pretrained cfg).
    "clip_sf-siglip-vit-b-16": _oc("ViT-B-16-SigLIP", "webli", "open_clip", False),
    "clip_sf-siglip-so400m-14-384": _oc("ViT-SO400M-14-SigLIP-384", "webli", "open_clip", False),
    # Hugging Face ports of the same OpenAI weights.
    "clip_sf-hf-vit-l-14": BackboneSpec("hf", "openai/clip-vit-large-patch14",
                                        image_transform="hf"),
    "clip_sf-hf-siglip-so400m": BackboneSpec("hf", "google/siglip-so400m-patch14-384",
                                             image_transform="hf"),
    # Random-init small CLIP with the real CLIP BPE tokenizer: offline tests and benchmarks.
    "tiny": BackboneSpec("open_clip", "tiny", model_cfg=TINY_MODEL_CFG, quick_gelu=True),
}


def list_encoders() -> dict[str, str]:
    """Registered names (CLIP_SF and MLLM embedders) with a one-line description."""
    out = {}
    for name, spec in ENCODERS.items():
        src = f"{spec.model} ({spec.pretrained})" if spec.pretrained else spec.model
        out[name] = f"{spec.kind}: {src}" if name != "tiny" else "random-init tiny CLIP (tests)"
    for name, entry in MLLM_ENCODERS.items():
        out[name] = f"mllm ({entry.spec.prompt_style}): {entry.about}"
    return out


#: Registered encoders with random weights (tests and smoke runs): their numbers mean nothing.
RANDOM_INIT = ("tiny", "tiny-mllm")


def is_random_init(name: str) -> bool:
    """Whether ``name`` is a registered random-init test encoder (exact name), or a
    checkpoint trained from one (its ``encoder.json`` names it as source or MLLM base)."""
    if name in RANDOM_INIT:
        return True
    path = Path(name)
    if not path.is_dir():
        return False
    ckpt = path if is_encoder_dir(path) else _latest_checkpoint(path)
    if ckpt is None:
        return False
    from augret.data.jsonl import read_json_or_none

    meta = read_json_or_none(ckpt / "encoder.json") or {}
    base = meta.get("mllm") if isinstance(meta.get("mllm"), dict) else {}
    return meta.get("source") in RANDOM_INIT or base.get("model") in RANDOM_INIT


def resolve_mllm(name: str) -> MLLMSpec | None:
    """The MLLM spec of a name or path (``None``: not an MLLM embedder).

    Registered MLLM names, ``mllm:`` specs, MLLM checkpoint directories and training outputs
    whose latest checkpoint is one.
    """
    if is_mllm_name(name):
        return parse_mllm_name(name)
    path = Path(name)
    if not path.is_dir():
        return None
    ckpt = path if is_encoder_dir(path) else _latest_checkpoint(path)
    if ckpt is not None and is_mllm_dir(ckpt):
        return read_mllm_dir(ckpt)[0]
    return None


def _latest_checkpoint(root: Path) -> Path | None:
    """The encoder directory of a training output directory (final, else latest step)."""
    final = root / "final"
    if is_encoder_dir(final):
        return final
    ckpts = root / "checkpoints"
    if not ckpts.is_dir():
        return None
    latest = ckpts / "latest"
    if latest.is_file():
        cand = ckpts / latest.read_text("utf-8").strip()
        if is_encoder_dir(cand):
            return cand
    steps = sorted(p for p in ckpts.glob("step_*") if is_encoder_dir(p))
    return steps[-1] if steps else None


def resolve_encoder(name: str, *, backbone: str | None = None
                    ) -> tuple[BackboneSpec, dict[str, Any] | None]:
    """The backbone spec of an encoder name or path, and its weights when they come from a
    checkpoint (``None``: the spec loads its own pretrained weights).

    Args:
        name: See the module docstring.
        backbone: UniIR ``.pth`` files: the open_clip architecture name (e.g. ``ViT-L-14``)
            instead of inferring it from the tensor shapes.

    Raises:
        ConfigError: Unknown name.
    """
    if name in ENCODERS:
        return ENCODERS[name], None
    if resolve_mllm(name) is not None:
        raise ConfigError(f"{name!r} is an MLLM embedder, not a CLIP_SF backbone; load it with "
                          "load_encoder")
    if name.startswith("open_clip:"):
        model, _, tag = name[len("open_clip:"):].partition(":")
        if not model:
            raise ConfigError(f"{name!r}: expected open_clip:<model>[:<pretrained>]")
        quick = False
        if tag:
            from augret._lazy import require

            cfg = require("open_clip.pretrained", "train").get_pretrained_cfg(model, tag) or {}
            quick = bool(cfg.get("quick_gelu", False))
        transform = "clip" if tag == "openai" else "open_clip"
        return BackboneSpec("open_clip", model, tag or None, quick_gelu=quick,
                            image_transform=transform), None
    if name.startswith("hf:"):
        if not name[3:]:
            raise ConfigError(f"{name!r}: expected hf:<hub id or local path>")
        return BackboneSpec("hf", name[3:], image_transform="hf"), None
    path = Path(name)
    if path.is_dir():
        ckpt = path if is_encoder_dir(path) else _latest_checkpoint(path)
        if ckpt is None:
            raise ConfigError(f"{path}: a directory, but neither an augret encoder directory "
                              "(encoder.json) nor a training output with checkpoints")
        spec, sd, _ = read_encoder_dir(ckpt)
        return spec, sd
    if path.is_file():
        sd = load_uniir_state_dict(path)
        if backbone:
            spec = BackboneSpec("open_clip", backbone, None, quick_gelu=True)
        else:
            spec = BackboneSpec("open_clip", "openai-state-dict", model_cfg=infer_openai_cfg(sd),
                                quick_gelu=True)
        return spec, sd
    raise ConfigError(f"unknown encoder {name!r}: not a registered name "
                      f"({', '.join([*ENCODERS, *MLLM_ENCODERS])}), not "
                      "open_clip:<model>[:<tag>], hf:<id> or mllm:<id>, and no such file or "
                      "directory")


def load_encoder(name: str, *, device: str | None = "auto", precision: str = "auto",
                 backbone: str | None = None, context_length: int | None = None,
                 **mllm_options: Any) -> Any:
    """Build a ready encoder: a :class:`~augret.encode.clip_sf.ClipSFEncoder` or an
    :class:`~augret.encode.mllm.encoder.MLLMEncoder`.

    Args:
        name: Registered name, ``open_clip:``/``hf:``/``mllm:`` spec, or checkpoint path.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda:1``...
        precision: ``auto`` (CLIP_SF: fp16 autocast on CUDA as UniIR; MLLM: bf16 weights on
            CUDA; fp32 on CPU), ``fp32``, ``fp16``, ``bf16``.
        backbone: Architecture of a UniIR ``.pth`` when shape inference is not wanted.
        context_length: Text context length (CLIP_SF: at most the model's, a random-init
            preset is built with it; MLLM: ``max_text_tokens``).
        **mllm_options: MLLM embedders only: :class:`~augret.encode.mllm.spec.MLLMSpec`
            fields to override (``max_image_tokens``, ``min_image_tokens``,
            ``padding_side``...) and ``attn_implementation``.

    Raises:
        ConfigError: Unknown name or bad option.
        DataFormatError: Checkpoint weights that do not fit the architecture.
    """
    mllm = resolve_mllm(name)
    if mllm is not None:
        from augret.encode.mllm.loaders import build_mllm

        if backbone:
            raise ConfigError(f"backbone applies to UniIR .pth checkpoints, not to {name!r}")
        attn = mllm_options.pop("attn_implementation", "auto")
        if context_length:
            mllm_options["max_text_tokens"] = context_length
        try:
            mllm = mllm.with_changes(**mllm_options)
        except TypeError as exc:
            raise ConfigError(f"bad MLLM option: {exc}") from None
        return build_mllm(name, mllm, device=device, precision=precision,
                          attn_implementation=attn)
    if mllm_options:
        raise ConfigError(f"options {sorted(mllm_options)} apply to MLLM embedders only")
    from augret.encode.clip_sf import CLIPScoreFusion, ClipSFEncoder

    spec, sd = resolve_encoder(name, backbone=backbone)
    if context_length:
        spec = spec.with_changes(context_length=context_length)
    module, processor = build_backbone(spec, load_weights=sd is None)
    if sd is not None:
        load_backbone_weights(module, sd, source=name)
    model = CLIPScoreFusion(module, spec.kind)
    return ClipSFEncoder(name, spec, model, processor, device=device, precision=precision)


def load_backbone_weights(module: Any, state_dict: dict[str, Any], *, source: str) -> None:
    """Load a backbone state dict strictly, with a readable error on mismatch."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[:4])
        raise DataFormatError(f"weights do not fit the architecture: {detail}",
                              path=source) from None
