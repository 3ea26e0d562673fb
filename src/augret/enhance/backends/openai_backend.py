"""Generation through any OpenAI-compatible chat-completions server.

Works with ``vllm serve``, SGLang, Ollama, ``transformers serve`` and hosted APIs. Requests run
concurrently (``asyncio`` + ``httpx``) under a semaphore; transient failures (429, 5xx,
connection errors, timeouts, malformed JSON) are retried with exponential backoff and jitter,
honouring ``Retry-After``; a request that still fails becomes an error result with the reason.

The text carries no special tokens: the server is asked to skip them (``skip_special_tokens``,
which vLLM and SGLang honour; a server that rejects the field, as ``transformers serve`` does,
is not asked again), and the model's known special tokens are stripped from what comes back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from augret._lazy import require
from augret.enhance.backends.base import GenerationParams, GenerationRequest, GenerationResult
from augret.enhance.backends.messages import ImageFormat, check_request, to_openai_messages
from augret.enhance.backends.special_tokens import QWEN_SPECIAL_TOKENS, strip_special_tokens
from augret.errors import ConfigError

__all__ = ["OpenAIBackend"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 425, 429})
_BODY_SNIPPET = 200


class _Retryable(Exception):
    """A failed attempt worth retrying (``retry_after`` in seconds when the server said so)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failed attempt not worth retrying (e.g. HTTP 400: the request itself is bad)."""


class _FieldRejected(Exception):
    """The server refused the ``skip_special_tokens`` field: send the request without it."""


_SKIP_FIELD = "skip_special_tokens"


class OpenAIBackend:
    """Client for an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: The model name the server knows (sent as ``model``).
        base_url: Server root including the API prefix, e.g. ``http://localhost:8000/v1``.
        api_key: Bearer token; default ``$OPENAI_API_KEY``, else ``"EMPTY"``.
        revision: Recorded for provenance only (the server decides what it serves).
        max_concurrency: Requests in flight at once.
        timeout: Seconds allowed for one attempt (connect + response), per request.
        max_retries: Retries after the first attempt for transient failures.
        backoff_base: First backoff delay in seconds; doubles per retry, with jitter.
        backoff_max: Cap of one backoff delay.
        max_retry_after: Cap on a server's ``Retry-After`` (seconds).
        image_format: ``png`` (lossless, default), ``jpeg`` or ``auto`` (JPEG for RGB photos).
        system_as_string: Send system content as a plain string.
        extra_body: Extra JSON fields merged into every payload (e.g. ``{"top_k": -1}`` for
            vLLM, ``{"chat_template_kwargs": {...}}``).
        headers: Extra HTTP headers.
        skip_special_tokens: Ask the server to leave special tokens out of the text (dropped
            for good after a server refuses the field).
        special_tokens: Tokens stripped from the text received (default: Qwen's, the default
            model's family; ``[]`` keeps the text as the server sent it).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://localhost:8000/v1",
        api_key: str | None = None,
        revision: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 300.0,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        image_format: ImageFormat = "png",
        system_as_string: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        skip_special_tokens: bool = True,
        special_tokens: Sequence[str] | None = None,
    ) -> None:
        self._httpx = require("httpx", "enhance")
        require("PIL.Image", "enhance")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0, got {timeout}")
        if image_format not in ("png", "jpeg", "auto"):
            raise ConfigError(f"image_format must be png, jpeg or auto, got {image_format!r}")
        self.model_id = model
        self.revision = revision
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.image_format: ImageFormat = image_format
        self.system_as_string = system_as_string
        self.extra_body = dict(extra_body or {})
        self.headers = {"Authorization": f"Bearer {self.api_key}", **dict(headers or {})}
        self.skip_special_tokens = skip_special_tokens
        self.special_tokens: tuple[str, ...] = tuple(
            QWEN_SPECIAL_TOKENS if special_tokens is None else special_tokens)

    # ------------------------------------------------------------------ public API

    def describe(self) -> dict[str, Any]:
        """Provenance of this backend (no secrets)."""
        return {
            "backend": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "base_url": self.base_url,
            "image_format": self.image_format,
            "max_concurrency": self.max_concurrency,
            "extra_body": self.extra_body,
            "skip_special_tokens": self.skip_special_tokens,
            "special_tokens": list(self.special_tokens),
        }

    def build_payload(
        self, request: GenerationRequest, params: GenerationParams
    ) -> tuple[dict[str, Any], str | None]:
        """The JSON body for one request and the image encoding used (``None``: no image).

        Raises:
            ValueError: If the request is invalid.
        """
        problem = check_request(request)
        if problem:
            raise ValueError(problem)
        messages, fmt = to_openai_messages(
            request.messages,
            request.image,
            image_format=self.image_format,
            system_as_string=self.system_as_string,
        )
        payload: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "max_tokens": request.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "n": 1,
            "stream": False,
        }
        if self.skip_special_tokens:
            payload[_SKIP_FIELD] = True
        payload.update(self.extra_body)
        return payload, fmt

    def generate(
        self, requests: Sequence[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        """Run all requests concurrently; one result per request, in order.

        Safe from any thread: without a running event loop it uses :func:`asyncio.run`; when
        called from inside a running loop it runs the work on a helper thread.
        """
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, params))
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests, params)).result()

    async def agenerate(
        self, requests: Sequence[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]:
        """Async variant of :meth:`generate`."""
        httpx = self._httpx
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        semaphore = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=httpx.Timeout(self.timeout),
            limits=limits,
        ) as client:
            tasks = [self._one(client, semaphore, r, params) for r in requests]
            return list(await asyncio.gather(*tasks))

    def close(self) -> None:
        """Nothing to release (each :meth:`generate` call owns its HTTP client)."""

    # ------------------------------------------------------------------ internals

    async def _one(
        self,
        client: Any,
        semaphore: asyncio.Semaphore,
        request: GenerationRequest,
        params: GenerationParams,
    ) -> GenerationResult:
        try:
            # Encoding a large image is CPU work: keep it off the event loop.
            payload, fmt = await asyncio.to_thread(self.build_payload, request, params)
        except Exception as exc:  # invalid request or unreadable image
            return GenerationResult(text=None, error=f"{type(exc).__name__}: {exc}"[:500])
        extra: dict[str, Any] = {}
        if fmt is not None:
            extra["image_format"] = fmt
        attempts = 0
        reason = "no attempt made"
        started = time.monotonic()
        while True:
            attempts += 1
            if not self.skip_special_tokens:
                payload.pop(_SKIP_FIELD, None)
            try:
                async with semaphore:
                    result = await asyncio.wait_for(
                        self._attempt(client, payload), timeout=self.timeout
                    )
                result.extra.update(extra, attempts=attempts)
                return result
            except _FieldRejected:
                logger.info("%s refuses %r; asking no more", self.base_url, _SKIP_FIELD)
                self.skip_special_tokens = False
                attempts -= 1  # the server said nothing about the request itself
                continue
            except _Fatal as exc:
                reason = str(exc)
                break
            except _Retryable as exc:
                reason, retry_after = exc.reason, exc.retry_after
            except (asyncio.TimeoutError, self._httpx.TimeoutException) as exc:
                reason, retry_after = (
                    f"timeout after {self.timeout:g}s ({type(exc).__name__})",
                    None,
                )
            except self._httpx.TransportError as exc:
                detail = str(exc) or type(exc).__name__
                reason, retry_after = f"connection error: {type(exc).__name__}: {detail}", None
            if attempts > self.max_retries:
                break
            delay = self._delay(attempts, retry_after)
            logger.debug(
                "request %s attempt %d failed (%s); retry in %.2fs",
                request.id,
                attempts,
                reason,
                delay,
            )
            await asyncio.sleep(delay)
        elapsed = time.monotonic() - started
        logger.warning(
            "request %s failed after %d attempt(s): %s", request.id or "?", attempts, reason
        )
        return GenerationResult(
            text=None,
            error=f"{reason} (after {attempts} attempt(s), {elapsed:.1f}s)"[:600],
            extra={**extra, "attempts": attempts},
        )

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempts - 1)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter"

    async def _attempt(self, client: Any, payload: dict[str, Any]) -> GenerationResult:
        response = await client.post("/chat/completions", json=payload)
        status = response.status_code
        if status != 200:
            snippet = " ".join(response.text.split())[:_BODY_SNIPPET]
            reason = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
            if status in (400, 422) and _SKIP_FIELD in payload and _SKIP_FIELD in response.text:
                raise _FieldRejected(reason)
            if status in _RETRY_STATUS or status >= 500:
                raise _Retryable(reason, _parse_retry_after(response.headers.get("retry-after")))
            raise _Fatal(reason)
        try:
            data = response.json()
        except ValueError:
            snippet = " ".join(response.text.split())[:_BODY_SNIPPET]
            raise _Retryable(f"malformed JSON response: {snippet!r}") from None
        result = _parse_completion(data)
        if result.text and self.special_tokens:
            result.text, removed = strip_special_tokens(result.text, self.special_tokens)
            if removed:
                result.extra["special_tokens_stripped"] = removed
        return result


def _parse_completion(data: Any) -> GenerationResult:
    """Read ``choices[0].message.content``, ``finish_reason`` and ``usage.completion_tokens``."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        snippet = str(data)[:_BODY_SNIPPET]
        raise _Retryable(f"unexpected response shape (no choices[0].message): {snippet}") from None
    finish = choice.get("finish_reason") if isinstance(choice, Mapping) else None
    if content is None:
        raise _Fatal(f"response has no message content (finish_reason={finish!r})")
    if not isinstance(content, str):
        raise _Retryable(f"unexpected message content type {type(content).__name__}")
    usage = data.get("usage") if isinstance(data, Mapping) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    extra: dict[str, Any] = {}
    if not isinstance(tokens, int):
        tokens, extra["usage_missing"] = 0, True
    return GenerationResult(text=content, output_tokens=tokens, finish_reason=finish, extra=extra)


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
