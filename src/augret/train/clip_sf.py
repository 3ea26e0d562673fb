"""CLIP_SF as a :class:`~augret.train.model.TrainModel`: UniIR's recipe, every weight trained.

The checkpoint is an augret encoder directory (``model.pt`` in UniIR's layout +
``encoder.json``), written and read by :mod:`augret.encode.checkpoint`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.errors import ConfigError
from augret.train.config import LoraConfig
from augret.train.model import TrainModel, resolve_amp

__all__ = ["ClipSFTrainModel"]

torch = require("torch", "train")


class _Forward(torch.nn.Module):
    """``CLIPScoreFusion`` with the loop's signature: ``batch`` → (embeddings, logit scale)."""

    def __init__(self, fusion: Any) -> None:
        super().__init__()
        self.fusion = fusion

    @property
    def logit_scale(self) -> Any:
        return self.fusion.logit_scale

    def forward(self, batch: Any) -> tuple[Any, Any]:
        emb = self.fusion(batch.text, batch.image, batch.txt_mask, batch.img_mask)
        return emb, self.fusion.logit_scale


class ClipSFTrainModel(TrainModel):
    """A CLIP_SF encoder in training (see :class:`~augret.train.model.TrainModel`)."""

    family = "clip_sf"
    default_amp = "fp16"  # UniIR: fp16 autocast with a GradScaler
    separate_instruction = False

    def __init__(self, encoder: Any, *, device: Any, precision: str, temperature: float | None,
                 learn_temperature: bool, source: str) -> None:
        self.fusion = encoder.model
        self.spec = encoder.spec
        self.processor = encoder.processor
        self.device = device
        self.precision = precision
        self.source = source
        scale = self.fusion.logit_scale
        if temperature is not None:
            with torch.no_grad():
                scale.fill_(math.log(1.0 / temperature))
        scale.requires_grad_(learn_temperature)
        self.module = _Forward(self.fusion).to(device).train()

    @classmethod
    def build(cls, cfg: Any, device: Any) -> ClipSFTrainModel:
        """From a :class:`~augret.train.config.TrainConfig`."""
        from augret.encode.registry import load_encoder

        mllm_only = {"lora": cfg.lora != LoraConfig(),
                     "gradient_checkpointing": cfg.gradient_checkpointing,
                     "encoder_options": bool(cfg.encoder_options),
                     "write_merged": cfg.write_merged}
        given = sorted(k for k, v in mllm_only.items() if v)
        if given:
            raise ConfigError(f"{given} apply to MLLM embedders; {cfg.encoder!r} is a CLIP_SF "
                              "encoder")
        precision = resolve_amp(cfg.amp, device, cls.default_amp)
        encoder = load_encoder(cfg.encoder, device="cpu", precision="fp32")
        learn = True if cfg.learn_temperature is None else cfg.learn_temperature  # UniIR
        return cls(encoder, device=device, precision=precision, temperature=cfg.temperature,
                   learn_temperature=learn, source=cfg.encoder)

    def save(self, path: Any, *, info: dict[str, Any]) -> Path:
        from augret.encode.checkpoint import save_encoder_dir

        return save_encoder_dir(path, self.fusion, self.spec, name=self.source,
                                processor=self.processor, info=info)

    def load(self, path: Any) -> None:
        from augret.encode.checkpoint import read_encoder_dir
        from augret.encode.registry import load_backbone_weights

        _, sd, _ = read_encoder_dir(path)
        load_backbone_weights(self.fusion.clip_model, sd, source=str(path))
