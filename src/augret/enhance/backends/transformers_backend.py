"""In-process generation with Hugging Face ``transformers`` (any image-text-to-text model).

Prompts are rendered by the processor's own chat template; requests are batched with left
padding, grouped by token budget; a batch that raises is retried one request at a time so one
bad row becomes one error result.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from augret._lazy import require
from augret.enhance.backends._hf import quiet_progress, resolve_device, resolve_dtype
from augret.enhance.backends.base import GenerationParams, GenerationRequest, GenerationResult
from augret.enhance.backends.messages import check_request, count_image_placeholders
from augret.enhance.tiny import resolve_tiny_preset, tiny_model_dir
from augret.errors import ConfigError

__all__ = ["TransformersBackend"]

logger = logging.getLogger(__name__)


class TransformersBackend:
    """A VLM loaded with ``AutoProcessor`` + ``AutoModelForImageTextToText``.

    Args:
        model: A hub id, a local directory, or a tiny preset (``tiny``, ``tiny-qwen2-vl``,
            ``tiny-qwen2.5-vl``, ``tiny-qwen3-vl``; built and saved locally on first use).
        revision: Hub revision (branch, tag or commit) of ``model``; ignored for tiny presets.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``/``None`` (CUDA when available).
        dtype: ``auto`` (bfloat16 on GPU, float32 on CPU), ``bfloat16``, ``float16``, ``float32``.
        batch_size: Requests per ``generate`` call.
        attn_implementation: Passed to ``from_pretrained`` (e.g. ``sdpa``, ``flash_attention_2``).
        trust_remote_code: Passed to ``from_pretrained``.

    Decoding: ``temperature == 0`` is greedy (``do_sample=False``); otherwise multinomial
    sampling with ``temperature``/``top_p``, top-k disabled, seeded with ``params.seed`` per
    batch. Other settings of the model's ``generation_config`` (e.g. ``repetition_penalty``)
    are kept; :meth:`describe` reports them.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self._torch = require("torch", "enhance")
        tf = require("transformers", "enhance")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        preset = resolve_tiny_preset(model)
        self.model_id: str = preset or model
        self.revision: str | None = None if preset else revision
        self.path = str(tiny_model_dir(preset)) if preset else model
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        load_kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if self.revision:
            load_kwargs["revision"] = self.revision
        if preset:
            logger.warning(
                "model %s is a tiny randomly initialised preset: outputs are meaningless", preset
            )
        with quiet_progress():
            self.processor = tf.AutoProcessor.from_pretrained(self.path, **load_kwargs)
            model_kwargs = dict(load_kwargs, dtype=self.dtype)
            if attn_implementation:
                model_kwargs["attn_implementation"] = attn_implementation
            self.model = tf.AutoModelForImageTextToText.from_pretrained(self.path, **model_kwargs)
        self.model.to(self.device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else []
        eos_list = [eos] if isinstance(eos, int) else list(eos)
        if self.tokenizer.eos_token_id is not None:
            eos_list.append(self.tokenizer.eos_token_id)
        self.eos_token_ids: tuple[int, ...] = tuple(dict.fromkeys(int(e) for e in eos_list))
        pad = gen_cfg.pad_token_id
        if pad is None:
            pad = self.tokenizer.pad_token_id
        if pad is None and self.eos_token_ids:
            pad = self.eos_token_ids[0]
        self.pad_token_id: int | None = int(pad) if pad is not None else None
        self.image_token: str | None = getattr(self.processor, "image_token", None)
        logger.info(
            "loaded %s (%s) on %s as %s; eos ids %s",
            self.model_id,
            self.path,
            self.device,
            self.dtype,
            list(self.eos_token_ids),
        )

    # ------------------------------------------------------------------ public API

    def describe(self) -> dict[str, Any]:
        """Provenance of this backend: model, revision, device, dtype and decoding defaults."""
        gen_cfg = self.model.generation_config
        return {
            "backend": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "path": self.path,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "batch_size": self.batch_size,
            "eos_token_ids": list(self.eos_token_ids),
            "repetition_penalty": getattr(gen_cfg, "repetition_penalty", None),
            "transformers": require("transformers", "enhance").__version__,
        }

    def render_prompt(self, request: GenerationRequest) -> str:
        """The exact prompt string the model sees, from the processor's chat template.

        Raises:
            ValueError: If the request is invalid or the template drops/duplicates the image.
        """
        problem = check_request(request)
        if problem:
            raise ValueError(problem)
        prompt = self.processor.apply_chat_template(
            list(request.messages), add_generation_prompt=True, tokenize=False
        )
        if isinstance(prompt, list):  # some processors return a batch
            prompt = prompt[0]
        if self.image_token is not None:
            expected = count_image_placeholders(request.messages)
            found = prompt.count(self.image_token)
            if found != expected:
                raise ValueError(
                    f"the chat template rendered {found} {self.image_token} placeholder(s) "
                    f"for {expected} image(s)"
                )
        return prompt

    def generate(
        self, requests: Sequence[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        """Generate one result per request, in order; never raises for a bad request."""
        results: list[GenerationResult | None] = [None] * len(requests)
        by_budget: dict[int, list[tuple[int, str, Any]]] = defaultdict(list)
        for i, request in enumerate(requests):
            try:
                prompt = self.render_prompt(request)
                image = _load_image(request.image) if request.image is not None else None
            except Exception as exc:  # invalid request, broken template, unreadable image
                results[i] = _error(exc)
                continue
            by_budget[request.max_new_tokens].append((i, prompt, image))
        for budget in sorted(by_budget):
            group = by_budget[budget]
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                chunk_results = self._generate_chunk(chunk, budget, params)
                for (i, _, _), result in zip(chunk, chunk_results, strict=True):
                    results[i] = result
        return [
            r if r is not None else GenerationResult(None, "internal: no result") for r in results
        ]

    def close(self) -> None:
        """Free the model (and the CUDA cache)."""
        for attr in ("model", "processor", "tokenizer"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()

    # ------------------------------------------------------------------ internals

    def _generate_chunk(
        self, chunk: list[tuple[int, str, Any]], budget: int, params: GenerationParams
    ) -> list[GenerationResult]:
        try:
            return self._generate_batch(
                [c[1] for c in chunk], [c[2] for c in chunk], budget, params
            )
        except Exception as exc:
            if len(chunk) == 1:
                logger.warning("request failed: %s: %s", type(exc).__name__, exc)
                return [_error(exc)]
            logger.warning(
                "batch of %d failed (%s: %s); retrying one at a time",
                len(chunk),
                type(exc).__name__,
                exc,
            )
            if self.device.startswith("cuda"):
                self._torch.cuda.empty_cache()
            out: list[GenerationResult] = []
            for item in chunk:
                out.extend(self._generate_chunk([item], budget, params))
            return out

    def _generation_config(self, budget: int, params: GenerationParams) -> Any:
        cfg = copy.deepcopy(self.model.generation_config)
        sampling = params.temperature > 0
        cfg.update(
            max_new_tokens=budget,
            max_length=None,
            do_sample=sampling,
            temperature=params.temperature if sampling else 1.0,
            top_p=params.top_p if sampling else 1.0,
            top_k=0 if sampling else 50,
            num_beams=1,
            eos_token_id=list(self.eos_token_ids) or None,
            pad_token_id=self.pad_token_id,
        )
        return cfg

    def _generate_batch(
        self, prompts: list[str], images: list[Any], budget: int, params: GenerationParams
    ) -> list[GenerationResult]:
        torch = self._torch
        with_image = [im for im in images if im is not None]
        inputs = self.processor(
            text=prompts,
            images=with_image or None,
            return_tensors="pt",
            padding=True,
            padding_side="left",
        )
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        cfg = self._generation_config(budget, params)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(params.seed)
            out = self.model.generate(**inputs, generation_config=cfg)
        new_tokens = out[:, inputs["input_ids"].shape[1] :].tolist()
        return [self._decode(row, budget) for row in new_tokens]

    def _decode(self, row: list[int], budget: int) -> GenerationResult:
        """Cut a generated row at its first end token; count tokens as servers do (incl. EOS)."""
        row = row[:budget]
        stops = set(self.eos_token_ids)
        if self.pad_token_id is not None:
            stops.add(self.pad_token_id)
        end = next((k for k, tok in enumerate(row) if tok in stops), None)
        if end is None:
            text_ids, n_out = row, len(row)
            finish = "length" if len(row) >= budget else "stop"
        else:
            text_ids, n_out, finish = row[:end], end + 1, "stop"
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        return GenerationResult(text=text, output_tokens=n_out, finish_reason=finish)


def _load_image(image: Any) -> Any:
    """Force-load a PIL image (lazy files fail here, per request) and make it RGB."""
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def _error(exc: BaseException) -> GenerationResult:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return GenerationResult(text=None, error=reason[:500])
