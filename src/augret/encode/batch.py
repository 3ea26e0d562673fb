"""Turning items into model batches: image decoding, tokenisation, presence masks.

Work that data loader workers do: :func:`prepare` decodes one item's image with
:func:`augret.images.decode_image` (errors are returned, not raised, so the caller decides
between skipping and failing), :func:`collate` tokenises texts and stacks the images of the
rows that have one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augret._lazy import require
from augret.encode.base import Item
from augret.errors import BadImage
from augret.images import decode_image, read_image_file

if TYPE_CHECKING:  # the processor calls prepare and collate: no import at run time
    from augret.encode.backbones import Processor

__all__ = ["Batch", "Prepared", "collate", "load_image", "prepare"]


@dataclass
class Prepared:
    """One item after image decoding.

    Attributes:
        text: The text to embed (``""``: none).
        pixels: The image tensor, or ``None``.
        error: Why the item's image could not be read (``None``: fine).
        key: The caller's key (row number, id...), passed through.
        instruction: The item's separate instruction (MLLM embedders), passed through.
    """

    text: str
    pixels: Any
    error: str | None = None
    key: Any = None
    instruction: str | None = None


@dataclass
class Batch:
    """A model batch.

    Attributes:
        text: Token tensors of every row (``input_ids`` ``[B, L]``, maybe ``attention_mask``).
        image: Pixel tensors of the rows with an image only, in row order ``[n_img, 3, H, W]``.
        txt_mask: ``[B]`` float, 1 where the row has text.
        img_mask: ``[B]`` float, 1 where the row has an image.
        truncated: Per row, whether its text was cut to the context length.
        keys: The rows' keys.
    """

    text: dict[str, Any]
    image: Any
    txt_mask: Any
    img_mask: Any
    truncated: list[bool]
    keys: list[Any]

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: Any) -> Batch:
        """The batch on ``device``."""
        return Batch({k: v.to(device, non_blocking=True) for k, v in self.text.items()},
                     self.image.to(device, non_blocking=True),
                     self.txt_mask.to(device), self.img_mask.to(device),
                     self.truncated, self.keys)


def load_image(image: Any) -> Any:
    """A loaded PIL image (mode as stored) from a PIL image or a path.

    Raises:
        BadImage: A missing, empty, corrupt or oversized file (the message says which).
    """
    if isinstance(image, (str, Path)):
        return decode_image(read_image_file(image), name=str(image), extra="train")
    return image


def prepare(item: Item, processor: Processor, key: Any = None) -> Prepared:
    """Decode and transform one item's image; texts are tokenised later, per batch."""
    text = item.text.strip() if item.has_text else ""
    pixels = None
    error = None
    if item.has_image:
        try:
            pixels = processor.image(load_image(item.image))
        except BadImage as exc:
            error = str(exc)
        except (OSError, ValueError) as exc:  # decoded, but the transform cannot use it
            error = f"unreadable image {item.image}: {exc}"
    return Prepared(text, pixels, error, key)


def collate(rows: Sequence[Prepared], processor: Processor) -> Batch:
    """Stack prepared rows into a :class:`Batch` (rows with an ``error`` must be removed or
    have had their image dropped by the caller)."""
    torch = require("torch", "train")
    texts = [r.text for r in rows]
    tokens, truncated = processor.tokenize(texts)
    truncated = [t and bool(r.text) for t, r in zip(truncated, rows, strict=True)]
    images = [r.pixels for r in rows if r.pixels is not None]
    size = processor.image_size
    image = torch.stack(images) if images else torch.zeros(0, 3, size, size)
    txt_mask = torch.tensor([1.0 if r.text else 0.0 for r in rows])
    img_mask = torch.tensor([1.0 if r.pixels is not None else 0.0 for r in rows])
    return Batch(tokens, image, txt_mask, img_mask, truncated, [r.key for r in rows])
