"""What the training loop needs of an encoder family: :class:`TrainModel`.

The loop (:mod:`augret.train.loop`) is the same for every family; what differs sits behind
this small interface, with one implementation per family, chosen from the starting encoder's
name (exactly, as the encoder registry resolves it) by
:func:`augret.train.families.build_train_model`:

* :class:`~augret.train.clip_sf.ClipSFTrainModel`: UniIR's CLIP_SF, every weight trained,
  its learnable CLIP logit scale;
* :class:`~augret.train.mllm.MLLMTrainModel`: an MLLM embedder with LoRA adapters on its
  language model (peft), the vision tower frozen, a fixed or learnable temperature.

``module(batch)`` returns ``(embeddings [n, D], log logit scale)``: the temperature travels
with the embeddings, so DDP and GradCache treat both alike.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from augret._lazy import require
from augret.errors import ConfigError

__all__ = ["TrainModel", "resolve_amp"]


def resolve_amp(amp: str, device: Any, default: str) -> str:
    """The training precision of ``amp`` (``auto``: ``default`` on CUDA, off elsewhere):
    ``fp32``, ``fp16`` or ``bf16``.

    Raises:
        ConfigError: fp16 off CUDA.
    """
    mode = amp if amp != "auto" else (default if device.type == "cuda" else "off")
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("amp fp16 needs a CUDA device; use amp: bf16 or off on CPU")
    return {"off": "fp32", "fp16": "fp16", "bf16": "bf16"}[mode]


class TrainModel:
    """One encoder family as the training loop sees it.

    Attributes:
        family: ``clip_sf`` or ``mllm``.
        module: The ``nn.Module`` the loop runs, wraps in DDP and optimises (its parameters
            with ``requires_grad``): ``module(batch)`` → ``(embeddings [n, D],
            log logit scale)``.
        processor: ``prepare(item, key)`` (data-loader workers) and ``collate(rows)``.
        separate_instruction: Query instructions go in ``Item.instruction`` (MLLM styles
            place them) instead of being prefixed to the text (UniIR).
        device: The torch device.
        precision: ``fp32``, ``fp16`` or ``bf16``: the autocast dtype.
        source: The starting encoder's name (recorded in the saved directories).
    """

    family: ClassVar[str]
    #: ``amp: auto`` on CUDA.
    default_amp: ClassVar[str]
    separate_instruction: ClassVar[bool]
    module: Any
    processor: Any
    device: Any
    precision: str
    source: str

    def autocast(self) -> Any:
        """The autocast context of the forward passes."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        torch = require("torch", "train")
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def logit_scale(self) -> Any:
        """The log logit scale (``1 / temperature``) tensor."""
        return self.module.logit_scale

    def save(self, path: Any, *, info: dict[str, Any]) -> Any:
        """Write the trained encoder as a directory that ``--encoder`` loads; returns it."""
        raise NotImplementedError

    def load(self, path: Any) -> None:
        """Load the weights :meth:`save` wrote into the live model (resuming)."""
        raise NotImplementedError

    def save_merged(self, path: Any, *, info: dict[str, Any]) -> Any:
        """Write the model with its adapters merged into the weights (``write_merged``)."""
        raise ConfigError(f"write_merged applies to LoRA-trained MLLM embedders, not to "
                          f"{self.family}")
