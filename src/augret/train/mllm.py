"""An MLLM embedder as a :class:`~augret.train.model.TrainModel`: LoRA on the language model.

LamRA-Ret's recipe: peft LoRA adapters on the linear layers of the language model's decoder
layers, selected by an explicit pattern (``language_model.layers.N.{self_attn,mlp}.<name>``)
so that nothing under ``visual`` (the vision tower and its merger) is adapted or trained; a
fixed temperature (0.05) or a learnable one; optional gradient checkpointing. The base weights
are in the training precision (bf16 on CUDA), the adapters and the temperature in fp32.

Checkpoints are augret MLLM checkpoint directories (:mod:`augret.encode.mllm.checkpoint`):
``adapter/`` (peft's files) + ``encoder.json``, which ``--encoder`` loads by merging the
adapter onto the base; :meth:`MLLMTrainModel.save_merged` writes ``merged/`` weights.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.errors import ConfigError, DataFormatError, DataNotFoundError
from augret.train.model import TrainModel, resolve_amp

__all__ = ["DEFAULT_TEMPERATURE", "MLLMTrainModel", "checkpoint_activations",
           "lora_target_pattern"]

torch = require("torch", "train")

#: The temperature of MLLM embedders when the config gives none (LamRA-Ret's).
DEFAULT_TEMPERATURE = 0.05


def lora_target_pattern(modules: list[str]) -> str:
    """peft's ``target_modules`` regex (full match on module paths of the base model): the
    named linear layers of the language model's decoder layers, nothing else."""
    names = "|".join(re.escape(m) for m in modules)
    return rf"language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})"


def checkpoint_activations(model: Any) -> None:
    """Recompute the activations in the backward pass (non-reentrant checkpoints: they need
    no input that requires grad and work under DDP)."""
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class MLLMTrainModule(torch.nn.Module):
    """The embedder and its temperature: ``batch`` → (embeddings, log logit scale)."""

    def __init__(self, embedder: Any, logit_scale: float, learn: bool) -> None:
        super().__init__()
        self.embedder = embedder
        value = torch.tensor(float(logit_scale), dtype=torch.float32)
        if learn:
            self.logit_scale = torch.nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)

    def forward(self, batch: Any) -> tuple[Any, Any]:
        return self.embedder(batch), self.logit_scale


class MLLMTrainModel(TrainModel):
    """An MLLM embedder in training (see :class:`~augret.train.model.TrainModel`).

    Args:
        encoder: The starting :class:`~augret.encode.mllm.encoder.MLLMEncoder` (its base
            model gets the adapters in place).
        lora: The :class:`~augret.train.config.LoraConfig`.
        temperature: Initial temperature.
        learn_temperature: Whether the temperature is trained.
        gradient_checkpointing: Recompute the activations in the backward pass.
        seed: Seed of the adapters' initialisation (the same on every rank).
        source: The starting encoder's name.

    Raises:
        ConfigError: The encoder already carries an adapter.
    """

    family = "mllm"
    default_amp = "bf16"
    separate_instruction = True

    def __init__(self, encoder: Any, *, lora: Any, temperature: float, learn_temperature: bool,
                 gradient_checkpointing: bool, seed: int, source: str) -> None:
        peft = require("peft", "train")
        if encoder.spec.adapter:
            raise ConfigError(
                f"{source!r} is a base model with a LoRA adapter ({encoder.spec.adapter}); "
                "training adds a new adapter to a plain base: start from merged weights "
                "(write_merged: true writes OUT/merged of a training run)")
        self.encoder = encoder
        self.spec = encoder.spec
        self.processor = encoder.processor
        self.device = encoder.device
        self.precision = encoder.precision
        self.source = source
        base = encoder.model.model
        base.requires_grad_(False)
        if gradient_checkpointing:
            checkpoint_activations(base)
        config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=lora_target_pattern(lora.modules), bias="none")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            torch.manual_seed(seed)
            self.peft_model = peft.get_peft_model(base, config)
        encoder.model.model = self.peft_model
        self.module = MLLMTrainModule(encoder.model, math.log(1.0 / temperature),
                                      learn_temperature).to(self.device).train()

    @classmethod
    def build(cls, cfg: Any, device: Any) -> MLLMTrainModel:
        """From a :class:`~augret.train.config.TrainConfig`."""
        from augret.encode.registry import load_encoder

        precision = resolve_amp(cfg.amp, device, cls.default_amp)
        encoder = load_encoder(cfg.encoder, device=str(device), precision=precision,
                               **cfg.encoder_options)
        return cls(encoder, lora=cfg.lora,
                   temperature=cfg.temperature or DEFAULT_TEMPERATURE,
                   learn_temperature=bool(cfg.learn_temperature),  # None: fixed (LamRA)
                   gradient_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed,
                   source=cfg.encoder)

    def lora_modules(self) -> list[str]:
        """Module paths (relative to the base model) that carry an adapter."""
        prefix = "base_model.model."
        return sorted(name[len(prefix):] for name, mod in self.peft_model.named_modules()
                      if name.startswith(prefix) and hasattr(mod, "lora_A"))

    def save(self, path: Any, *, info: dict[str, Any]) -> Path:
        from augret.encode.mllm.checkpoint import save_mllm_dir

        return save_mllm_dir(path, self.peft_model, self.spec, source=self.source, info=info)

    def load(self, path: Any) -> None:
        from safetensors.torch import load_file

        peft = require("peft", "train")
        from augret.encode.mllm.checkpoint import ADAPTER_DIR

        weights = Path(path) / ADAPTER_DIR / "adapter_model.safetensors"
        if not weights.is_file():
            raise DataNotFoundError(f"{weights}: missing (the checkpoint holds no adapter)")
        state = load_file(str(weights), device=str(self.device))
        result = peft.set_peft_model_state_dict(self.peft_model, state)
        wrong = [k for k in (*result.unexpected_keys, *result.missing_keys) if "lora_" in k]
        if wrong:
            raise DataFormatError(f"the adapter does not fit the model being trained, e.g. "
                                  f"{sorted(wrong)[:3]}", path=weights)

    def save_merged(self, path: Any, *, info: dict[str, Any]) -> Path:
        """Merge the adapters into the base weights and write a ``merged`` checkpoint.

        The live model is merged in place (its adapters are gone): call it last.
        """
        from augret.encode.mllm.checkpoint import save_mllm_dir

        merged = self.peft_model.merge_and_unload()
        self.encoder.model.model = merged
        return save_mllm_dir(path, merged, self.spec, source=self.source,
                             processor=self.processor, info=info)
