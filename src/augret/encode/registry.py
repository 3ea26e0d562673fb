"""Named encoders and how a name or checkpoint path becomes a ready encoder.

A name is resolved exactly, never by substring:

* a key of :data:`ENCODERS` (``clip_sf-vit-l-14``, ``tiny``, ...);
* ``open_clip:<model>[:<pretrained tag or weights file>]``, any open_clip model (SigLIP
  included), e.g. ``open_clip:ViT-B-16-SigLIP:webli``;
* ``hf:<hub id or local path>``, a Hugging Face CLIP or SigLIP model;
* an existing path: an augret encoder directory (``encoder.json`` + ``model.pt``), a training
  output directory (its latest checkpoint), or a UniIR ``.pth`` checkpoint (architecture
  inferred from the tensor shapes, or named with ``backbone``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from augret.encode.backbones import TINY_MODEL_CFG, BackboneSpec, build_backbone, infer_openai_cfg
from augret.encode.checkpoint import is_encoder_dir, load_uniir_state_dict, read_encoder_dir
from augret.errors import ConfigError, DataFormatError

__all__ = ["ENCODERS", "list_encoders", "load_encoder", "resolve_encoder"]

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
    """Registered names with a one-line description."""
    out = {}
    for name, spec in ENCODERS.items():
        src = f"{spec.model} ({spec.pretrained})" if spec.pretrained else spec.model
        out[name] = f"{spec.kind}: {src}" if name != "tiny" else "random-init tiny CLIP (tests)"
    return out


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
                      f"({', '.join(ENCODERS)}), not open_clip:<model>[:<tag>] or "
                      "hf:<id>, and no such file or directory")


def load_encoder(name: str, *, device: str | None = "auto", precision: str = "auto",
                 backbone: str | None = None, context_length: int | None = None) -> Any:
    """Build a ready :class:`~augret.encode.clip_sf.ClipSFEncoder`.

    Args:
        name: Registered name, ``open_clip:``/``hf:`` spec, or checkpoint path.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda:1``...
        precision: ``auto`` (fp16 autocast on CUDA as UniIR, fp32 on CPU), ``fp32``,
            ``fp16``, ``bf16``.
        backbone: Architecture of a UniIR ``.pth`` when shape inference is not wanted.
        context_length: Text context length (at most the model's; a random-init preset
            is built with it).

    Raises:
        ConfigError: Unknown name or bad option.
        DataFormatError: Checkpoint weights that do not fit the architecture.
    """
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
