"""The MLLM embedder module: a Qwen-VL base model whose pooled last-token state is the vector.

:class:`MLLMEmbedder` is a plain ``nn.Module``: ``embedder(batch)`` returns L2-normalised
float32 vectors ``[B, D]`` (float64 for a float64 model) with gradients when grad mode is on
(training, e.g. under LoRA and GradCache) and is what the no-grad embedding path runs under
``torch.inference_mode``.

Pooling takes each row's last attended token, found from the attention mask, so it is the same
token with left or right padding. Positions follow the prompt style: ``mrope`` computes the
model's multimodal rotary positions over each row's real tokens (``get_rope_index`` with the
attention mask); ``sequential`` gives the real tokens 0, 1, 2, ... on all three rotary
sections. Either way padding does not move a row's positions, so a vector is the same alone
and inside a padded batch.
"""

from __future__ import annotations

from typing import Any

from augret._lazy import require
from augret.encode.mllm.processor import MLLMBatch

torch = require("torch", "train")
nn = torch.nn

__all__ = ["MLLMEmbedder", "last_token_index", "sequential_positions"]


def last_token_index(attention_mask: Any) -> Any:
    """Index of each row's last attended token ``[B]`` (left or right padding)."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).long().argmax(dim=1)


def sequential_positions(attention_mask: Any) -> Any:
    """1-D positions of the real tokens (0, 1, ...), the same on the 3 rotary sections
    ``[3, B, L]``; padding positions are 0."""
    pos = attention_mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 0)
    return pos.unsqueeze(0).expand(3, -1, -1)


class MLLMEmbedder(nn.Module):
    """A Qwen2-VL / Qwen2.5-VL / Qwen3-VL base model as an embedder.

    Args:
        model: The transformers base model (``Qwen2VLModel``, ``Qwen2_5_VLModel`` or
            ``Qwen3VLModel``; a peft wrapper of one during training), with ``.language_model``
            and ``.visual``.
        positions: ``mrope`` or ``sequential`` (the prompt style's).
        image_token_id: The ``<|image_pad|>`` token id.
    """

    def __init__(self, model: Any, positions: str, image_token_id: int) -> None:
        super().__init__()
        if positions not in ("mrope", "sequential"):
            raise ValueError(f"positions must be 'mrope' or 'sequential', got {positions!r}")
        self.model = model
        self.positions = positions
        self.image_token_id = int(image_token_id)

    @property
    def backbone(self) -> Any:
        """The transformers base model (under a peft wrapper, the wrapped one)."""
        get = getattr(self.model, "get_base_model", None)
        return get() if callable(get) else self.model

    @property
    def dim(self) -> int:
        """Embedding width: the language model's hidden size."""
        cfg = self.backbone.config
        return int(getattr(cfg, "text_config", cfg).hidden_size)

    def position_ids(self, batch: MLLMBatch, mm_token_type_ids: Any) -> Any:
        """Rotary positions ``[3, B, L]`` of a batch."""
        if self.positions == "sequential" or batch.image_grid_thw is None:
            # text-only rows: M-RoPE positions are the sequential ones
            return sequential_positions(batch.attention_mask)
        pos, _ = self.backbone.get_rope_index(
            batch.input_ids, mm_token_type_ids=mm_token_type_ids,
            image_grid_thw=batch.image_grid_thw, attention_mask=batch.attention_mask)
        return pos

    def forward(self, batch: MLLMBatch) -> Any:
        """L2-normalised float32 embeddings ``[B, D]`` of a batch on the model's device."""
        ids, mask = batch.input_ids, batch.attention_mask
        mm = (ids == self.image_token_id).int()
        out = self.model(input_ids=ids, attention_mask=mask,
                         position_ids=self.position_ids(batch, mm),
                         pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw,
                         mm_token_type_ids=mm, use_cache=False)
        hidden = out.last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pooled = hidden[rows, last_token_index(mask)]
        if pooled.dtype != torch.float64:  # float64 (gradient tests) stays float64
            pooled = pooled.float()
        return nn.functional.normalize(pooled, p=2, dim=-1)
