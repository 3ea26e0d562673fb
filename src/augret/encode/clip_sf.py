"""CLIP_SF: UniIR's score-level fusion of a CLIP text and image embedding.

``e = encode_text(t) * txt_mask + encode_image(i) * img_mask``: the raw (un-normalised)
projected embeddings summed with weight 1, L2-normalised only at scoring time (UniIR
``clip_sf.py``). The backbone sits at ``clip_model`` as in UniIR's ``CLIPScoreFusion``, so the
state dict of an open_clip OpenAI-architecture backbone has exactly UniIR's keys.

A tower only runs on the rows whose mask is 1 (the other rows are exact zeros, as the product
with a 0 mask gives), which skips the image tower on text-only pools. In training a tower with
no row still runs on one row times 0, so that every parameter takes part in each step (DDP).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from augret._lazy import require
from augret.encode.backbones import BackboneSpec, Processor
from augret.encode.base import Item
from augret.encode.batch import Batch, collate, prepare
from augret.errors import DataFormatError

torch = require("torch", "train")
nn = torch.nn

__all__ = ["CLIPScoreFusion", "ClipSFEncoder", "autocast_for", "resolve_device"]

log = logging.getLogger(__name__)


class CLIPScoreFusion(nn.Module):
    """UniIR's CLIPScoreFusion over an open_clip or Hugging Face dual encoder.

    Args:
        clip_model: open_clip ``CLIP``/``CustomTextCLIP`` or HF ``CLIPModel``/``SiglipModel``.
        kind: ``open_clip`` or ``hf``.
    """

    def __init__(self, clip_model: Any, kind: str = "open_clip") -> None:
        super().__init__()
        self.clip_model = clip_model
        self.kind = kind
        self.embed_dim = _embed_dim(clip_model, kind)

    @property
    def logit_scale(self) -> Any:
        """The learnable log temperature (``exp`` of it scales the logits)."""
        return self.clip_model.logit_scale

    def encode_text(self, text: dict[str, Any]) -> Any:
        """Projected text embeddings ``[B, D]`` (not normalised)."""
        if self.kind == "hf":
            out = self.clip_model.get_text_features(**text)
            return out if torch.is_tensor(out) else out.pooler_output
        if self._trimmable:
            return self._encode_text_trimmed(text["input_ids"])
        return self.clip_model.encode_text(text["input_ids"])

    @property
    def _trimmable(self) -> bool:
        m = self.clip_model
        return (type(m).__name__ == "CLIP" and getattr(m, "text_pool_type", None) == "argmax"
                and getattr(m, "attn_mask", None) is not None
                and not isinstance(m.text_projection, nn.Linear))

    def _encode_text_trimmed(self, ids: Any) -> Any:
        """open_clip ``CLIP.encode_text`` on the columns up to the last EOT of the batch.

        With the causal mask and pooling at the EOT token (OpenAI CLIP), the padding after
        the EOT never reaches the pooled output, so dropping it changes nothing but the
        cost (short M-BEIR texts use a fraction of the 77 positions).
        """
        m = self.clip_model
        length = int(ids.argmax(dim=-1).max()) + 1
        ids = ids[:, :length]
        cast_dtype = m.transformer.get_cast_dtype()
        x = m.token_embedding(ids).to(cast_dtype) + m.positional_embedding[:length].to(cast_dtype)
        x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]
        return x @ m.text_projection

    def encode_image(self, image: Any) -> Any:
        """Projected image embeddings ``[B, D]`` (not normalised)."""
        if self.kind == "hf":
            out = self.clip_model.get_image_features(pixel_values=image)
            return out if torch.is_tensor(out) else out.pooler_output
        return self.clip_model.encode_image(image)

    def forward(self, text: dict[str, Any], image: Any, txt_mask: Any, img_mask: Any) -> Any:
        """Fused embeddings ``[B, D]``.

        Args:
            text: Token tensors of all ``B`` rows.
            image: Pixels of the rows with ``img_mask == 1`` in row order (``[n, 3, H, W]``),
                or of all ``B`` rows (UniIR's layout: zero images where the mask is 0).
            txt_mask: ``[B]`` 0/1.
            img_mask: ``[B]`` 0/1.
        """
        b = txt_mask.shape[0]
        t_idx = txt_mask.nonzero().squeeze(1)
        i_idx = img_mask.nonzero().squeeze(1)
        if image.shape[0] == b and i_idx.numel() != b:
            image = image[i_idx]  # full layout: keep the rows that have an image
        txt = self._tower(self.encode_text, {k: v[t_idx] for k, v in text.items()}, t_idx, b,
                          lambda: {k: v[:1] for k, v in text.items()})
        img = self._tower(self.encode_image, image, i_idx, b,
                          lambda: image[:1] if image.shape[0] else image.new_zeros(
                              1, *image.shape[1:]))
        return txt + img

    def _tower(self, fn: Any, x: Any, idx: Any, b: int, one_row: Any) -> Any:
        if idx.numel() == b:
            return fn(x)
        if idx.numel() == 0:
            device = self.logit_scale.device
            if self.training and torch.is_grad_enabled():
                out = fn(one_row())
                return out.new_zeros(b, out.shape[1]) + out.sum() * 0.0
            return torch.zeros(b, self.embed_dim, device=device)
        out = fn(x)
        return out.new_zeros(b, out.shape[1]).index_copy(0, idx, out)


def _embed_dim(model: Any, kind: str) -> int:
    if kind == "hf":
        cfg = model.config
        dim = getattr(cfg, "projection_dim", None)
        if dim is None:
            dim = getattr(getattr(cfg, "text_config", cfg), "hidden_size", None)
        return int(dim)
    proj = getattr(model, "text_projection", None)
    if proj is not None:
        return int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[-1])
    return int(model.visual.output_dim)


def resolve_device(device: str | None) -> Any:
    """``auto``/``None`` → CUDA when available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_for(device: Any, precision: str) -> Any:
    """The autocast context of a precision: ``auto`` is fp16 on CUDA (UniIR), fp32 on CPU."""
    dev = torch.device(device)
    if precision == "auto":
        precision = "fp16" if dev.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return torch.autocast(dev.type, dtype=dtype)


def resolved_precision(device: Any, precision: str) -> str:
    """``auto`` resolved for a device."""
    if precision != "auto":
        return precision
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


class ClipSFEncoder:
    """A ready-to-use CLIP_SF encoder: model, processor, device and precision.

    Implements :class:`augret.encode.base.Encoder`. Build one with
    :func:`augret.encode.load_encoder`.

    Attributes:
        name: Registry name or checkpoint it came from.
        spec: The backbone spec (enough to rebuild the architecture).
        model: The :class:`CLIPScoreFusion` module.
        processor: Its text/image processor.
        dim: Embedding dimension.
        normalized: ``False``: CLIP_SF sums are normalised at scoring time.
        separate_instruction: ``False``: query instructions are prefixed to the text (UniIR).
    """

    normalized = False
    separate_instruction = False
    architecture = "clip_sf"

    def __init__(self, name: str, spec: BackboneSpec, model: CLIPScoreFusion,
                 processor: Processor, *, device: str | None = "auto",
                 precision: str = "auto") -> None:
        self.name = name
        self.spec = spec
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.precision = resolved_precision(self.device, precision)
        self.dim = model.embed_dim

    def __repr__(self) -> str:
        return f"ClipSFEncoder({self.name!r}, dim={self.dim}, device={self.device})"

    @property
    def context_length(self) -> int:
        """Text context length in tokens."""
        return self.processor.context_length

    def describe(self) -> dict[str, Any]:
        """What embedding metas and config hashes record of this encoder."""
        return {"architecture": self.architecture, "backbone": self.spec.to_dict(),
                "dim": self.dim, "precision": self.precision,
                "context_length": self.context_length, "normalized": self.normalized}

    def embed_batch(self, batch: Batch) -> np.ndarray:
        """Fused float32 embeddings of a collated batch."""
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            b = batch.to(self.device)
            out = self.model(b.text, b.image, b.txt_mask, b.img_mask)
        return out.float().cpu().numpy()

    def _encode(self, items: Sequence[Item], batch_size: int) -> np.ndarray:
        out = np.zeros((len(items), self.dim), np.float32)
        for start in range(0, len(items), batch_size):
            rows = [prepare(it, self.processor, key=start + i)
                    for i, it in enumerate(items[start:start + batch_size])]
            for r in rows:
                if r.error is not None:
                    raise DataFormatError(f"item {r.key}: {r.error}")
                if not r.text and r.pixels is None:
                    raise DataFormatError(f"item {r.key} has neither text nor an image")
            out[start:start + len(rows)] = self.embed_batch(collate(rows, self.processor))
        return out

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 64) -> np.ndarray:
        """Embed query items (text as given: add instructions with
        :func:`augret.encode.inputs.query_item`)."""
        return self._encode(items, batch_size)

    def encode_candidates(self, items: Sequence[Item], *, batch_size: int = 64) -> np.ndarray:
        """Embed candidate items."""
        return self._encode(items, batch_size)
