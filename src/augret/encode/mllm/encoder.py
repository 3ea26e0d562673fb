"""The ready-to-use MLLM encoder: embedder module, processor, device and precision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from augret._lazy import require
from augret.encode.base import Item
from augret.encode.mllm.model import MLLMEmbedder
from augret.encode.mllm.processor import MLLMBatch, MLLMProcessor
from augret.encode.mllm.spec import MLLMSpec
from augret.errors import DataFormatError

__all__ = ["MLLMEncoder"]


class MLLMEncoder:
    """An MLLM embedder ready to embed items (implements :class:`augret.encode.base.Encoder`).

    Build one with :func:`augret.encode.load_encoder`. Two paths run the same module:
    :meth:`embed_batch` (no grad, numpy out) for embedding, and :meth:`encode` (a tensor with
    gradients when grad mode is on and the module is trainable) for training.

    Attributes:
        name: Registry name, ``mllm:`` spec or checkpoint it came from.
        spec: Its :class:`~augret.encode.mllm.spec.MLLMSpec`.
        model: The :class:`~augret.encode.mllm.model.MLLMEmbedder` module.
        processor: Its :class:`~augret.encode.mllm.processor.MLLMProcessor`.
        device: Torch device.
        precision: ``fp32``, ``bf16`` or ``fp16`` (the weights' dtype).
        dim: Embedding width.
        normalized: ``True``: vectors are L2-normalised.
        separate_instruction: ``True``: query instructions come in ``Item.instruction``.
        weights: Fingerprints of the local weight files it was loaded from (config hashes).
    """

    normalized = True
    separate_instruction = True
    architecture = "mllm"

    def __init__(self, name: str, spec: MLLMSpec, model: MLLMEmbedder,
                 processor: MLLMProcessor, *, device: Any, precision: str,
                 weights: list[dict[str, Any]] | None = None) -> None:
        self.name = name
        self.spec = spec
        self.device = device
        self.model = model.to(device).eval()
        self.processor = processor
        self.precision = precision
        self.dim = model.dim
        self.weights = weights or []

    def __repr__(self) -> str:
        return (f"MLLMEncoder({self.name!r}, style={self.spec.prompt_style}, dim={self.dim}, "
                f"device={self.device}, {self.precision})")

    @property
    def context_length(self) -> int:
        """Text tokens kept per item (``max_text_tokens``)."""
        return self.processor.context_length

    def describe(self) -> dict[str, Any]:
        """What embedding metas and config hashes record of this encoder."""
        return {"architecture": self.architecture, "backbone": self.spec.to_dict(),
                "dim": self.dim, "precision": self.precision,
                "context_length": self.context_length, "normalized": self.normalized,
                "weights": self.weights or None}

    def encode(self, batch: MLLMBatch) -> Any:
        """Embeddings ``[B, D]`` (float32 tensor) of a collated batch, with gradients when
        grad mode is on: the training forward."""
        return self.model(batch.to(self.device))

    def embed_batch(self, batch: MLLMBatch) -> np.ndarray:
        """Float32 embeddings of a collated batch (no grad)."""
        torch = require("torch", "train")
        with torch.inference_mode():
            out = self.model(batch.to(self.device))
        return out.cpu().numpy()

    def _encode(self, items: Sequence[Item], batch_size: int) -> np.ndarray:
        out = np.zeros((len(items), self.dim), np.float32)
        for start in range(0, len(items), batch_size):
            rows = [self.processor.prepare(it, key=start + i)
                    for i, it in enumerate(items[start:start + batch_size])]
            for r in rows:
                if r.error is not None:
                    raise DataFormatError(f"item {r.key}: {r.error}")
            out[start:start + len(rows)] = self.embed_batch(self.processor.collate(rows))
        return out

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 64) -> np.ndarray:
        """Embed query items (their instruction in ``Item.instruction``)."""
        return self._encode(items, batch_size)

    def encode_candidates(self, items: Sequence[Item], *, batch_size: int = 64) -> np.ndarray:
        """Embed candidate items."""
        return self._encode(items, batch_size)
