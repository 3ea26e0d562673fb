"""Items → MLLM model batches: image budgeting and patching, prompt rendering, tokenisation.

:meth:`MLLMProcessor.prepare` is the data-loader worker's part (decode one image, resize it to
the pixel budget and cut it into patches); :meth:`MLLMProcessor.collate` renders each row's
prompt (:mod:`augret.encode.mllm.styles`), expands the image placeholder to one
``<|image_pad|>`` per merged visual token (as the Qwen-VL processors do), tokenises and pads
the batch, and concatenates the rows' patches in row order.

Texts are cut to ``max_text_tokens`` before rendering, so the template and the image tokens
are never truncated. Special-token strings inside user text or instructions are removed, so a
text cannot inject an image placeholder or end a turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from augret._lazy import require
from augret.encode.base import Item
from augret.encode.batch import Prepared, load_image
from augret.encode.mllm.spec import MLLMSpec
from augret.encode.mllm.styles import IMAGE_TOKEN, Family, get_style
from augret.errors import BadImage, DataFormatError

__all__ = ["MLLMBatch", "MLLMProcessor", "VisionInput"]


@dataclass
class VisionInput:
    """One image after the image processor.

    Attributes:
        pixel_values: Its patches ``[n_patches, C * T * P * P]``.
        grid_thw: ``[1, 3]`` temporal, height and width patch counts.
    """

    pixel_values: Any
    grid_thw: Any

    def tokens(self, merge_size: int) -> int:
        """Merged visual tokens the image takes in the sequence."""
        return int(self.grid_thw.prod()) // (merge_size * merge_size)


@dataclass
class MLLMBatch:
    """A model batch.

    Attributes:
        input_ids: ``[B, L]`` token ids (padded).
        attention_mask: ``[B, L]`` 1 on real tokens.
        pixel_values: Patches of the batch's images in row order, or ``None``.
        image_grid_thw: ``[n_images, 3]``, or ``None``.
        truncated: Per row, whether its text was cut to ``max_text_tokens``.
        keys: The rows' keys.
        texts: The rendered prompts (before image token expansion), for inspection.
    """

    input_ids: Any
    attention_mask: Any
    pixel_values: Any
    image_grid_thw: Any
    truncated: list[bool]
    keys: list[Any]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: Any) -> MLLMBatch:
        """The batch on ``device``."""
        def move(t: Any) -> Any:
            return None if t is None else t.to(device, non_blocking=True)

        return MLLMBatch(move(self.input_ids), move(self.attention_mask),
                         move(self.pixel_values), move(self.image_grid_thw), self.truncated,
                         self.keys, self.texts)


class MLLMProcessor:
    """Turns items into :class:`MLLMBatch` es for one model family and prompt style.

    Holds no model, so data-loader workers can use (and pickle) it.

    Args:
        tokenizer: The model's Hugging Face tokenizer.
        image_processor: Its Qwen-VL image processor.
        spec: The embedder's spec (style, budgets, padding side).
        family: The model family.
    """

    def __init__(self, tokenizer: Any, image_processor: Any, spec: MLLMSpec,
                 family: Family) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.spec = spec
        self.family = family
        self.style = get_style(spec.prompt_style)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self._specials = sorted(
            {t for t in (*tokenizer.all_special_tokens, *tokenizer.get_added_vocab())
             if t.startswith("<") and t.endswith(">")}, key=len, reverse=True)

    @property
    def context_length(self) -> int:
        """Text tokens kept per item."""
        return self.spec.max_text_tokens

    # ---- per item (data-loader workers) ----------------------------------------------------
    def image(self, img: Any) -> VisionInput:
        """Patches of one PIL image within the pixel budget."""
        px = self.family.token_pixels
        size = {"shortest_edge": self.spec.min_image_tokens * px,
                "longest_edge": self.spec.max_image_tokens * px}
        out = self.image_processor(images=[img.convert("RGB")], size=size, return_tensors="pt")
        return VisionInput(out["pixel_values"], out["image_grid_thw"])

    def prepare(self, item: Item, key: Any = None) -> Prepared:
        """Decode and patch one item's image (errors are returned in ``error``, not raised)."""
        text = item.text.strip() if item.has_text else ""
        pixels = None
        error = None
        if item.has_image:
            try:
                pixels = self.image(load_image(item.image))
            except BadImage as exc:
                error = str(exc)
            except (OSError, ValueError) as exc:  # decoded, but the processor cannot use it
                error = f"unreadable image {item.image}: {exc}"
        return Prepared(text, pixels, error, key, instruction=item.instruction)

    # ---- per batch -----------------------------------------------------------------------
    def _clean(self, s: str | None) -> str | None:
        if s is None:
            return None
        for tok in self._specials:
            if tok in s:
                s = s.replace(tok, "")
        return s

    def _cut(self, text: str) -> tuple[str, bool]:
        """``text`` cut to ``max_text_tokens`` tokens, and whether it was cut."""
        if not text:
            return text, False
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.spec.max_text_tokens
        if len(ids) <= limit:
            return text, False
        return self.tokenizer.decode(ids[:limit]), True

    def render(self, text: str, instruction: str | None, image: bool) -> str:
        """The prompt of one item (its image placeholder not yet expanded)."""
        return self.style.render(text, instruction, image, self.family)

    def collate(self, rows: Sequence[Prepared]) -> MLLMBatch:
        """Stack prepared rows into a batch (rows with an ``error`` must have been removed or
        had their image dropped by the caller).

        Raises:
            DataFormatError: A row has neither text nor image.
        """
        torch = require("torch", "train")
        merge = self.family.merge_size
        texts, expanded, truncated = [], [], []
        pixels, grids = [], []
        for r in rows:
            if not r.text and r.pixels is None:
                raise DataFormatError(f"item {r.key} has neither text nor an image")
            body, cut = self._cut(self._clean(r.text) or "")
            prompt = self.render(body, self._clean(r.instruction), r.pixels is not None)
            texts.append(prompt)
            truncated.append(cut)
            if r.pixels is not None:
                n = r.pixels.tokens(merge)
                prompt = prompt.replace(IMAGE_TOKEN, IMAGE_TOKEN * n, 1)
                pixels.append(r.pixels.pixel_values)
                grids.append(r.pixels.grid_thw)
            expanded.append(prompt)
        enc = self.tokenizer(expanded, padding=True, padding_side=self.spec.padding_side,
                             add_special_tokens=False, return_tensors="pt")
        return MLLMBatch(enc["input_ids"], enc["attention_mask"],
                         torch.cat(pixels) if pixels else None,
                         torch.cat(grids) if grids else None,
                         truncated, [r.key for r in rows], texts)
