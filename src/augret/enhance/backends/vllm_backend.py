"""In-process generation with vLLM's offline ``LLM.chat`` (CUDA machines).

A thin wrapper: messages are converted to the OpenAI format exactly as for the ``openai``
backend (the image inline as a data URL), rendered by vLLM with the model's chat template, and
generated with one ``SamplingParams`` per request (per-request ``max_tokens``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from augret._lazy import require
from augret.enhance.backends.base import GenerationParams, GenerationRequest, GenerationResult
from augret.enhance.backends.messages import ImageFormat, check_request, to_openai_messages
from augret.enhance.tiny import resolve_tiny_preset, tiny_model_dir

__all__ = ["VLLMBackend"]

logger = logging.getLogger(__name__)


class VLLMBackend:
    """A model served in-process by ``vllm.LLM``.

    Args:
        model: A hub id, a local directory, or a tiny preset (saved locally first).
        revision: Hub revision of ``model``.
        max_model_len: Context length (the published scripts use 16384).
        dtype: vLLM ``dtype`` (``auto`` by default).
        tensor_parallel_size: GPUs per model.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take.
        batch_size: Requests per ``LLM.chat`` call (vLLM schedules within a call).
        image_format: Encoding of the inline image (``png`` is lossless).
        seed: Engine seed.
        llm_kwargs: Further keyword arguments for ``vllm.LLM``.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        max_model_len: int = 16384,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        batch_size: int = 1024,
        image_format: ImageFormat = "png",
        seed: int = 0,
        llm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._vllm = require("vllm", "vllm")
        require("PIL.Image", "vllm")
        preset = resolve_tiny_preset(model)
        self.model_id = preset or model
        self.revision = None if preset else revision
        self.path = str(tiny_model_dir(preset)) if preset else model
        self.batch_size = batch_size
        self.image_format: ImageFormat = image_format
        kwargs: dict[str, Any] = {
            "model": self.path,
            "revision": self.revision,
            "max_model_len": max_model_len,
            "limit_mm_per_prompt": {"image": 1},
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": seed,
        }
        kwargs.update(llm_kwargs or {})
        self._llm_kwargs = kwargs
        self.llm = self._vllm.LLM(**kwargs)

    def describe(self) -> dict[str, Any]:
        """Provenance of this backend."""
        return {
            "backend": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "vllm": getattr(self._vllm, "__version__", None),
            "llm_kwargs": {k: v for k, v in self._llm_kwargs.items() if k != "model"},
            "image_format": self.image_format,
        }

    def _sampling(self, request: GenerationRequest, params: GenerationParams) -> Any:
        return self._vllm.SamplingParams(
            max_tokens=request.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=-1,
            seed=params.seed,
        )

    def generate(
        self, requests: Sequence[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        """One result per request, in order; a failing call is retried request by request."""
        results: list[GenerationResult | None] = [None] * len(requests)
        ready: list[tuple[int, list[dict[str, Any]], Any]] = []
        for i, request in enumerate(requests):
            try:
                problem = check_request(request)
                if problem:
                    raise ValueError(problem)
                messages, _ = to_openai_messages(
                    request.messages, request.image, image_format=self.image_format
                )
            except Exception as exc:
                results[i] = GenerationResult(text=None, error=f"{type(exc).__name__}: {exc}"[:500])
                continue
            ready.append((i, messages, self._sampling(request, params)))
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            for (i, _, _), result in zip(chunk, self._chat(chunk), strict=True):
                results[i] = result
        return [
            r if r is not None else GenerationResult(None, "internal: no result") for r in results
        ]

    def _chat(self, chunk: list[tuple[int, list[dict[str, Any]], Any]]) -> list[GenerationResult]:
        try:
            outputs = self.llm.chat(
                [c[1] for c in chunk], sampling_params=[c[2] for c in chunk], use_tqdm=False
            )
        except Exception as exc:
            if len(chunk) == 1:
                return [GenerationResult(text=None, error=f"{type(exc).__name__}: {exc}"[:500])]
            logger.warning("vLLM call of %d failed (%s); retrying one at a time", len(chunk), exc)
            return [r for item in chunk for r in self._chat([item])]
        results = []
        for out in outputs:
            completion = out.outputs[0]
            results.append(
                GenerationResult(
                    text=completion.text,
                    output_tokens=len(completion.token_ids),
                    finish_reason=completion.finish_reason,
                )
            )
        return results

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when it is garbage collected)."""
        if hasattr(self, "llm"):
            del self.llm
