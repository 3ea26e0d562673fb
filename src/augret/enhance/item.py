"""Per-item enhancement steps shared by the batch runner and query-time enhancement.

One item (a query or a candidate) goes through the same steps wherever it is enhanced: its
route (:func:`augret.enhance.policy.route`), its store key (:func:`item_key`), the request sent
to the backend (:func:`item_request`), the checks on the output
(:class:`~augret.enhance.outputs.OutputRules`) and the stored record (:func:`item_generation`,
or :func:`item_failure` for a deterministic failure). The runner
(:func:`augret.enhance.enhance`) and the search service both call these, so an item enhanced
offline is a store hit at query time and vice versa.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from augret.enhance.backends.base import (
    Backend,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
)
from augret.enhance.config import EnhanceConfig
from augret.enhance.outputs import Failure, OutputRules, Usable
from augret.enhance.policy import Route
from augret.enhance.prompts import PromptSet
from augret.enhance.store import Generation, RecordedFailure, generation_key

__all__ = [
    "backend_identity",
    "item_failure",
    "item_generation",
    "item_key",
    "item_request",
    "make_backend",
    "output_rules",
    "resolve_model",
    "stored_params",
]


def output_rules(cfg: EnhanceConfig) -> OutputRules:
    """The output checks a config asks for."""
    return OutputRules(cfg.overlong, cfg.overlong_factor)


def stored_params(params: GenerationParams, route: Route) -> dict[str, Any]:
    """The decoding parameters recorded with a generation (its provenance)."""
    return {**params.as_dict(), "max_new_tokens": route.max_new_tokens}


def item_key(*, backend: Backend, prompts: PromptSet, params: GenerationParams, route: Route,
             rules: OutputRules, max_pixels: int, text: str | None,
             image_sha256: str | None) -> str:
    """The store key of one item.

    Args:
        backend: The backend (its model id and revision are part of the key).
        prompts: The prompt set (its id is part of the key).
        params: Decoding parameters.
        route: The item's route.
        rules: The output checks (the word budget and the over-long policy decide what is
            stored).
        max_pixels: The image pixel budget (part of the key when the image is sent).
        text: The item's source text (used only when the route sends text).
        image_sha256: SHA-256 of the image bytes sent, or ``None``.
    """
    return generation_key(
        model=backend.model_id, revision=backend.revision,
        prompt_version=prompts.id, route=route.kind,
        params={**stored_params(params, route), **rules.key_params(route),
                "max_pixels": max_pixels if route.send_image else None},
        text=text if route.send_text else None, image_sha256=image_sha256,
    )


def item_request(prompts: PromptSet, route: Route, text: str | None, image: Any,
                 item_id: str = "") -> GenerationRequest:
    """The backend request of one item (the image only when the route sends it)."""
    return GenerationRequest(
        messages=prompts.messages(route, text),
        image=image if route.send_image else None,
        max_new_tokens=route.max_new_tokens,
        id=item_id,
        route=route.kind,
        text=text if route.send_text else None,
    )


def item_generation(key: str, usable: Usable, result: GenerationResult, *, backend: Backend,
                    prompts: PromptSet, params: GenerationParams, route: Route) -> Generation:
    """The store record of a usable result (its checked text)."""
    return Generation(
        key=key, text=usable.text, model=backend.model_id,
        revision=backend.revision, prompt_version=prompts.id, route=route.kind,
        params=stored_params(params, route), output_tokens=result.output_tokens,
        finish_reason=result.finish_reason, created=time.time(), truncated=usable.truncated)


def item_failure(key: str, failure: Failure, *, backend: Backend, prompts: PromptSet,
                 route: Route) -> RecordedFailure:
    """The store record of a deterministic failure."""
    return RecordedFailure(key=key, kind=failure.kind, reason=failure.reason,
                           model=backend.model_id, revision=backend.revision,
                           prompt_version=prompts.id, route=route.kind, created=time.time())


def resolve_model(cfg: EnhanceConfig, data_dir: str | Path) -> EnhanceConfig:
    """``cfg`` with the ``reference`` backend's records made an absolute path.

    A relative path that does not exist from the working directory is taken from
    ``data_dir``, the directory being enhanced (``model: scenes.jsonl`` names its scene
    records). Other backends' configs are returned unchanged.
    """
    if cfg.backend != "reference":
        return cfg
    from augret.enhance.backends.reference import resolve_records

    return dataclasses.replace(cfg, model=str(resolve_records(cfg.model, data_dir)))


def make_backend(cfg: EnhanceConfig) -> Backend:
    """The backend an :class:`EnhanceConfig` names, with its options."""
    from augret.enhance.backends import backend_options, get_backend

    options: dict[str, Any] = {"revision": cfg.revision, "base_url": cfg.base_url}
    options = {k: v for k, v in options.items() if v is not None}
    if "batch_size" in backend_options(cfg.backend):
        options["batch_size"] = cfg.batch_size
    return get_backend(cfg.backend, cfg.model, **{**options, **cfg.backend_options})


class _Identity:
    """What the store keys need of a backend (name, model id, revision), without the model."""

    def __init__(self, name: str, model_id: str, revision: str | None,
                 simulated: bool = False) -> None:
        self.name, self.model_id, self.revision = name, model_id, revision
        self.simulated = simulated

    def generate(self, requests: Any, params: GenerationParams) -> list[GenerationResult]:
        raise RuntimeError("a backend identity cannot generate")

    def close(self) -> None:
        pass


def backend_identity(cfg: EnhanceConfig) -> Backend:
    """The model id and revision :func:`make_backend` would give, without loading a model.

    The ray engine keys and stores generations on the driver while its workers hold the
    models; both must agree with the single-process runner's keys (checked in the tests).
    """
    if cfg.backend == "fake":
        from augret.enhance.backends.fake import fake_model_id

        return _Identity(cfg.backend, fake_model_id(cfg.model), cfg.revision)
    from augret.enhance.tiny import resolve_tiny_preset

    if cfg.backend == "reference":  # its id digests the records file: read it
        ref = make_backend(cfg)
        return _Identity(ref.name, ref.model_id, ref.revision, simulated=True)
    preset = resolve_tiny_preset(cfg.model) if cfg.backend != "openai" else None
    return _Identity(cfg.backend, preset or cfg.model, None if preset else cfg.revision)
