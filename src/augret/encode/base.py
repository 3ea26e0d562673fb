"""The encoder protocol: what every retriever encoder offers, whatever its backbone.

An encoder turns :class:`Item` objects (text and/or an image) into float vectors. Queries and
candidates have separate methods so that asymmetric encoders fit the same protocol; CLIP_SF
uses one function for both. Text is embedded as given: the UniIR input rules (``format_string``,
instruction prefixes) are applied by :mod:`augret.encode.inputs`, not by encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Encoder", "Item"]


@dataclass(frozen=True)
class Item:
    """One input to embed.

    Attributes:
        text: The text (``None`` or ``""``: no text; the text part is masked out).
        image: A PIL image, an image file path, or ``None`` (no image; masked out).
        instruction: A query's task instruction, for encoders with ``separate_instruction``
            (``None``: none, or already prefixed to ``text``).
    """

    text: str | None = None
    image: Any = None  # PIL.Image.Image | str | Path | None
    instruction: str | None = None

    @property
    def has_text(self) -> bool:
        """Whether the item has non-blank text."""
        return bool(self.text and self.text.strip())

    @property
    def has_image(self) -> bool:
        """Whether the item has an image (or an image path)."""
        return self.image is not None and not (isinstance(self.image, (str, Path))
                                               and not str(self.image))


@runtime_checkable
class Encoder(Protocol):
    """A retriever encoder.

    Attributes:
        name: The registry name or source it was loaded from.
        dim: Embedding dimension.
        normalized: Whether the returned vectors are already L2-normalised (CLIP_SF: no; the
            sums are normalised at scoring time).
        separate_instruction: Whether query instructions go in :attr:`Item.instruction`
            (MLLM embedders) rather than prefixed to the text (CLIP_SF).
    """

    name: str
    dim: int
    normalized: bool
    separate_instruction: bool

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 64) -> np.ndarray:
        """Embed query items; returns float32 ``[len(items), dim]``."""
        ...

    def encode_candidates(self, items: Sequence[Item], *, batch_size: int = 64) -> np.ndarray:
        """Embed candidate items; returns float32 ``[len(items), dim]``."""
        ...
