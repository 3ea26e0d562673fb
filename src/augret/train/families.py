"""The encoder families the training loop knows, and which one a config's encoder is."""

from __future__ import annotations

from typing import Any

from augret.train.model import TrainModel

__all__ = ["build_train_model"]


def build_train_model(cfg: Any, device: Any) -> TrainModel:
    """The trainable model of ``cfg.encoder`` on ``device`` (the same on every rank): an
    MLLM embedder when the encoder registry resolves the name to one (registered MLLM name,
    ``mllm:`` spec, MLLM checkpoint directory), else CLIP_SF.

    Raises:
        ConfigError: Options of the other family, or an unusable starting encoder.
    """
    from augret.encode.registry import resolve_mllm

    if resolve_mllm(cfg.encoder) is not None:
        from augret.train.mllm import MLLMTrainModel

        return MLLMTrainModel.build(cfg, device)
    from augret.train.clip_sf import ClipSFTrainModel

    return ClipSFTrainModel.build(cfg, device)
