"""Backbones for CLIP_SF: open_clip models and Hugging Face CLIP/SigLIP, with their processors.

A :class:`BackboneSpec` says how to build a backbone (it is stored in ``encoder.json`` of every
checkpoint, so a checkpoint rebuilds itself). A :class:`Processor` turns texts into token
tensors (counting truncations) and images into pixel tensors; it holds no model, so data
loader workers can use it.

Text follows ``clip.tokenize(..., context_length=77, truncate=True)``: ``[SOT] + BPE + [EOT]``,
cut to the context length with the last kept token replaced by EOT. Images follow OpenAI CLIP's
preprocessing (resize the short side bicubic, centre crop, RGB, tensor, CLIP mean/std) for
OpenAI-architecture models, open_clip's own pipeline for other open_clip models, and the
model's image processor for Hugging Face models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.errors import AugretError, ConfigError, DataNotFoundError

__all__ = [
    "OPENAI_MEAN",
    "OPENAI_STD",
    "TINY_MODEL_CFG",
    "BackboneSpec",
    "Processor",
    "build_backbone",
    "infer_openai_cfg",
]

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# A small random-init CLIP with OpenAI's layout (head width 64, QuickGELU, 77 tokens, the real
# 49,408-token BPE vocabulary): shape inference of UniIR checkpoints rebuilds it exactly.
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1,
                 "layers": 2},
}


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone.

    Attributes:
        kind: ``open_clip`` (a named open_clip model, or an explicit ``model_cfg``) or ``hf``.
        model: open_clip model name (``"ViT-L-14"``), Hugging Face hub id or local path, or a
            label (``"tiny"``, ``"openai-state-dict"``) when ``model_cfg`` defines the model.
        pretrained: open_clip pretrained tag or weights file (``None``: random init).
        quick_gelu: open_clip: use QuickGELU (OpenAI's weights were trained with it).
        model_cfg: open_clip: an explicit ``CLIP(**model_cfg)`` architecture.
        context_length: Text context length (``None``: the model's own).
        image_transform: ``clip`` (OpenAI's preprocessing), ``open_clip`` (the model's
            preprocess config) or ``hf`` (the model's image processor).
        seed: Seed of the random initialisation (``model_cfg`` models without weights).
    """

    kind: str
    model: str
    pretrained: str | None = None
    quick_gelu: bool = False
    model_cfg: dict[str, Any] | None = None
    context_length: int | None = None
    image_transform: str = "clip"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneSpec:
        """Inverse of :meth:`to_dict`."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown backbone spec key(s) {sorted(unknown)}")
        return cls(**d)

    def with_changes(self, **kw: Any) -> BackboneSpec:
        """A copy with some fields replaced."""
        return replace(self, **kw)


# ---- processors ----------------------------------------------------------------------------
class Processor:
    """Texts → token tensors (with truncation flags) and images → pixel tensors.

    Args:
        tokenizer: ``open_clip`` SimpleTokenizer, another open_clip tokenizer, or an HF
            tokenizer (``hf=True``).
        image_transform: PIL image → float tensor ``[3, H, W]``.
        image_size: Side of the square model input.
        context_length: Text context length.
        hf: Whether ``tokenizer`` is a Hugging Face tokenizer.
        text_keys: HF: which tokenizer outputs the model takes.
        pad_max_length: HF: pad to the context length (SigLIP needs it).
    """

    def __init__(self, tokenizer: Any, image_transform: Any, image_size: int,
                 context_length: int, *, hf: bool = False,
                 text_keys: tuple[str, ...] = ("input_ids",),
                 pad_max_length: bool = True) -> None:
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.image_size = image_size
        self.context_length = context_length
        self.hf = hf
        self.text_keys = text_keys
        self.pad_max_length = pad_max_length

    def tokenize(self, texts: Sequence[str]) -> tuple[dict[str, Any], list[bool]]:
        """Token tensors of ``texts`` and, per text, whether it was truncated."""
        torch = require("torch", "train")
        if self.hf:
            return self._tokenize_hf(texts)
        tok = self.tokenizer
        if hasattr(tok, "sot_token_id") and hasattr(tok, "encode"):  # CLIP BPE: count exactly
            ctx = self.context_length
            out = torch.zeros(len(texts), ctx, dtype=torch.long)
            flags = []
            for i, text in enumerate(texts):
                ids = [tok.sot_token_id, *tok.encode(text), tok.eot_token_id]
                flags.append(len(ids) > ctx)
                if len(ids) > ctx:
                    ids = ids[:ctx]
                    ids[-1] = tok.eot_token_id
                out[i, : len(ids)] = torch.tensor(ids)
            return {"input_ids": out}, flags
        ids = tok(list(texts), context_length=self.context_length)
        flags = [False] * len(texts)
        inner = getattr(tok, "tokenizer", None)  # open_clip's HFTokenizer wraps an HF one
        if inner is not None:
            lengths = inner(list(texts), truncation=False)["input_ids"]
            flags = [len(x) > self.context_length for x in lengths]
        return {"input_ids": ids}, flags

    def _tokenize_hf(self, texts: Sequence[str]) -> tuple[dict[str, Any], list[bool]]:
        enc = self.tokenizer(list(texts), padding="max_length" if self.pad_max_length else True,
                             truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        full = self.tokenizer(list(texts), truncation=False)["input_ids"]
        flags = [len(x) > self.context_length for x in full]
        return {k: enc[k] for k in self.text_keys if k in enc}, flags

    def image(self, img: Any) -> Any:
        """Pixel tensor ``[3, H, W]`` of a PIL image."""
        return self.image_transform(img)

    def prepare(self, item: Any, key: Any = None) -> Any:
        """:func:`augret.encode.batch.prepare` of one item (data-loader workers)."""
        from augret.encode.batch import prepare

        return prepare(item, self, key)

    def collate(self, rows: Sequence[Any]) -> Any:
        """:func:`augret.encode.batch.collate` of prepared rows."""
        from augret.encode.batch import collate

        return collate(rows, self)


def clip_image_transform(size: int, mean: Sequence[float] = OPENAI_MEAN,
                         std: Sequence[float] = OPENAI_STD) -> Any:
    """OpenAI CLIP's eval preprocessing (``clip.load``'s ``preprocess``), step for step."""
    T = require("torchvision.transforms", "train")

    return T.Compose([
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        _to_rgb,
        T.ToTensor(),
        T.Normalize(tuple(mean), tuple(std)),
    ])


def _to_rgb(image: Any) -> Any:
    return image.convert("RGB")


class _HFImageTransform:
    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> Any:
        return self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]


# ---- builders ------------------------------------------------------------------------------
def infer_openai_cfg(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The open_clip ``CLIP`` config of an OpenAI-layout ViT state dict, from tensor shapes.

    Heads are ``width // 64`` as in every OpenAI CLIP (and augret's ``tiny``).

    Raises:
        ConfigError: The state dict is not an OpenAI-layout ViT CLIP.
    """
    need = ("visual.conv1.weight", "visual.positional_embedding", "text_projection",
            "positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in need if k not in state_dict]
    if missing:
        raise ConfigError(f"not an OpenAI-layout ViT CLIP state dict (missing {missing}); "
                          "name the architecture with --backbone")
    conv = state_dict["visual.conv1.weight"]
    vision_width, patch = int(conv.shape[0]), int(conv.shape[-1])
    vision_layers = len({k.split(".")[3] for k in state_dict
                         if k.startswith("visual.transformer.resblocks.")})
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = int(state_dict["ln_final.weight"].shape[0])
    text_layers = len({k.split(".")[2] for k in state_dict
                       if k.startswith("transformer.resblocks.")})
    return {
        "embed_dim": int(state_dict["text_projection"].shape[1]),
        "quick_gelu": True,
        "vision_cfg": {"image_size": patch * grid, "layers": vision_layers,
                       "width": vision_width, "patch_size": patch},
        "text_cfg": {"context_length": int(state_dict["positional_embedding"].shape[0]),
                     "vocab_size": int(state_dict["token_embedding.weight"].shape[0]),
                     "width": text_width, "heads": max(1, text_width // 64),
                     "layers": text_layers},
    }


def build_backbone(spec: BackboneSpec, *, load_weights: bool = True) -> tuple[Any, Processor]:
    """Build the backbone module and its processor.

    Args:
        spec: What to build.
        load_weights: Load ``spec.pretrained`` / hub weights (``False`` when a checkpoint's
            weights will be loaded on top).

    Returns:
        ``(module, processor)``; the module is an open_clip ``CLIP``/``CustomTextCLIP`` or a
        Hugging Face ``CLIPModel``/``SiglipModel``, in float32 and eval mode.
    """
    if spec.kind == "open_clip":
        return _build_open_clip(spec, load_weights)
    if spec.kind == "hf":
        return _build_hf(spec, load_weights)
    raise ConfigError(f"unknown backbone kind {spec.kind!r}; expected 'open_clip' or 'hf'")


def _build_open_clip(spec: BackboneSpec, load_weights: bool) -> tuple[Any, Processor]:
    torch = require("torch", "train")
    open_clip = require("open_clip", "train")
    if spec.model_cfg is not None:
        cfg = dict(spec.model_cfg)
        if spec.context_length:
            cfg["text_cfg"] = {**cfg["text_cfg"], "context_length": spec.context_length}
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(spec.seed)  # random init is reproducible and the same on every rank
        try:
            model = open_clip.model.CLIP(**cfg)
        finally:
            torch.random.set_rng_state(gen_state)
        if load_weights and spec.pretrained:
            _load_weights_file(model, spec.pretrained)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(
            context_length=cfg["text_cfg"].get("context_length", 77))
    else:
        pp = _pretrained_preprocess(spec) if not load_weights else None
        try:
            model = open_clip.create_model(
                spec.model, pretrained=spec.pretrained if load_weights else None,
                force_quick_gelu=spec.quick_gelu, force_preprocess_cfg=pp,
                force_context_length=spec.context_length, precision="fp32")
        except RuntimeError as exc:
            raise AugretError(f"open_clip could not build {spec.model!r} "
                              f"(pretrained {spec.pretrained!r}): {exc}") from None
        try:
            tokenizer = open_clip.get_tokenizer(spec.model, context_length=spec.context_length)
        except Exception as exc:  # HF tokenizers of SigLIP models come from the hub
            raise AugretError(f"open_clip could not load the tokenizer of {spec.model!r}: "
                              f"{exc}") from None
    model = model.float().eval()
    ctx = int(model.context_length if getattr(model, "context_length", None)
              else getattr(tokenizer, "context_length", 77))
    if spec.context_length and spec.context_length > ctx:
        raise ConfigError(f"context length {spec.context_length} exceeds the model's {ctx}")
    size = _image_size(model)
    if spec.image_transform == "clip":
        transform = clip_image_transform(size)
    else:
        pp = open_clip.PreprocessCfg(**model.visual.preprocess_cfg)
        transform = open_clip.image_transform_v2(pp, is_train=False)
    return model, Processor(tokenizer, transform, size, spec.context_length or ctx)


def _pretrained_preprocess(spec: BackboneSpec) -> dict[str, Any] | None:
    """The preprocessing of a pretrained tag, for a model rebuilt without its weights."""
    if not spec.pretrained:
        return None
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.model, spec.pretrained) or {}
    keys = ("mean", "std", "interpolation", "resize_mode")
    return {k: cfg[k] for k in keys if k in cfg} or None


def _image_size(model: Any) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _load_weights_file(model: Any, path: str) -> None:
    torch = require("torch", "train")
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"{p}: no such weights file")
    sd = torch.load(p, map_location="cpu", weights_only=True)
    model.load_state_dict(sd.get("state_dict", sd))


def _side(size: Any) -> int:
    """The square side of an HF image processor size (int, dict or SizeDict)."""
    if isinstance(size, int):
        return size
    for key in ("height", "shortest_edge"):
        value = getattr(size, key, None)
        if value is None and hasattr(size, "get"):
            value = size.get(key)
        if value:
            return int(value)
    return 224


def _build_hf(spec: BackboneSpec, load_weights: bool) -> tuple[Any, Processor]:
    transformers = require("transformers", "train")
    try:
        if load_weights:
            model = transformers.AutoModel.from_pretrained(spec.model, revision=spec.pretrained)
        else:
            config = transformers.AutoConfig.from_pretrained(spec.model)
            model = transformers.AutoModel.from_config(config)
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec.model)
        image_processor = transformers.AutoImageProcessor.from_pretrained(spec.model)
    except OSError as exc:
        raise AugretError(f"could not load Hugging Face model {spec.model!r}: {exc}") from None
    if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
        raise ConfigError(f"{spec.model!r} is a {type(model).__name__}, not a dual encoder "
                          "with get_text_features/get_image_features (CLIP, SigLIP)")
    model = model.float().eval()
    text_cfg = getattr(model.config, "text_config", model.config)
    ctx = int(getattr(text_cfg, "max_position_embeddings", 77))
    if spec.context_length and spec.context_length > ctx:
        raise ConfigError(f"context length {spec.context_length} exceeds the model's {ctx}")
    ctx = spec.context_length or ctx
    size = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) \
        else image_processor.size
    side = _side(size)
    is_clip = model.config.model_type == "clip"
    return model, Processor(
        tokenizer, _HFImageTransform(image_processor), side, ctx, hf=True,
        text_keys=("input_ids", "attention_mask") if is_clip else ("input_ids",),
        pad_max_length=not is_clip)
