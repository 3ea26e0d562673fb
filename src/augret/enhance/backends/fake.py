"""A deterministic stand-in VLM with fault injection, for tests and benchmarks.

Registered as the ``fake`` backend (as httpx ships ``MockTransport``): it runs wherever a real
backend runs (the local engine, the ray engine's workers, query-time enhancement), built from
the same config, and needs no model. Its text is a hash of the request (messages and image
pixels), so equal requests get equal text and different ones differ; it is meaningless.

Faults are chosen per request content, so they are as deterministic as the text:

>>> FakeBackend("fake-vlm", fail_share=0.5, failure="empty")  # doctest: +SKIP
>>> FakeBackend("fake-vlm", fail_match="Make it blue", failure="error")  # doctest: +SKIP
>>> FakeBackend("fake-vlm", dead=True)  # every request fails: a dead server  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from augret.enhance.backends.base import GenerationParams, GenerationRequest, GenerationResult
from augret.errors import ConfigError

__all__ = ["FakeBackend", "fake_model_id"]

Failure = Literal["error", "empty", "overlong"]
DEAD_ERROR = "connection error: ConnectError: connection refused (after 5 attempt(s))"


def fake_model_id(model: str) -> str:
    """The model id the fake records: never a real model's, so its text can never be taken
    for a real model's output in a shared generation store."""
    return model if model.startswith("fake") else f"fake:{model}"


class FakeBackend:
    """Deterministic words per request; optional per-request faults; records every request.

    Args:
        model: A name; recorded as :func:`fake_model_id` of it.
        revision: Recorded for provenance.
        words: Words of a normal output.
        sentence_words: End a sentence (with ``.``) every this many words (0: one run-on
            sentence).
        delay: Seconds each :meth:`generate` call sleeps (per batch).
        item_delay: Seconds each request adds to its call (per item).
        fail_match: Requests whose messages contain this text fail.
        fail_share: Share of request contents (0 to 1, chosen by a hash of the content, so
            always the same ones) that fail.
        failure: How a chosen request fails: ``error`` (an error result, as a backend reports
            a server error after its retries), ``empty`` (empty text) or ``overlong``
            (``overlong_words`` words).
        overlong_words: Words of an ``overlong`` output.
        error: The error message of an ``error`` failure.
        recover_after: A chosen request fails only on its first this many attempts (counted
            per content by this instance), then succeeds; 0: it always fails.
        dead: Every request fails with a connection error (a dead server).

    Attributes:
        calls: Every request received, in order.
    """

    name = "fake"

    def __init__(
        self,
        model: str = "fake-vlm",
        *,
        revision: str | None = None,
        words: int = 6,
        sentence_words: int = 0,
        delay: float = 0.0,
        item_delay: float = 0.0,
        fail_match: str | None = None,
        fail_share: float = 0.0,
        failure: Failure = "error",
        overlong_words: int = 1000,
        error: str = "HTTP 500: injected server error (after 5 attempt(s))",
        recover_after: int = 0,
        dead: bool = False,
    ) -> None:
        if words < 1 or overlong_words < 1:
            raise ConfigError("words and overlong_words must be >= 1")
        if not 0 <= fail_share <= 1:
            raise ConfigError(f"fail_share must be in [0, 1], got {fail_share!r}")
        if failure not in ("error", "empty", "overlong"):
            raise ConfigError(f"failure must be error, empty or overlong, got {failure!r}")
        self.model_id = fake_model_id(model)
        self.revision = revision
        self.words = words
        self.sentence_words = sentence_words
        self.delay = delay
        self.item_delay = item_delay
        self.fail_match = fail_match
        self.fail_share = fail_share
        self.failure: Failure = failure
        self.overlong_words = overlong_words
        self.error = error
        self.recover_after = recover_after
        self.dead = dead
        self.calls: list[GenerationRequest] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """Provenance: the fake's settings."""
        return {"backend": self.name, "model": self.model_id, "revision": self.revision,
                "words": self.words, "fail_match": self.fail_match,
                "fail_share": self.fail_share, "failure": self.failure, "dead": self.dead}

    def _text(self, digest: str, n: int) -> str:
        seed = digest
        while len(seed) < 4 * n:
            seed += hashlib.sha256(seed.encode()).hexdigest()
        words = [f"w{seed[i:i + 4]}" for i in range(0, 4 * n, 4)]
        if self.sentence_words:
            words = [w + "." if (k + 1) % self.sentence_words == 0 else w
                     for k, w in enumerate(words)]
        return " ".join(words)

    def _chosen(self, messages: str, digest: str) -> bool:
        if self.fail_match is not None and self.fail_match in messages:
            return True
        return self.fail_share > 0 and int(digest[-8:], 16) / 0xFFFFFFFF < self.fail_share

    def _one(self, request: GenerationRequest) -> GenerationResult:
        messages = json.dumps(request.messages)
        h = hashlib.sha256(messages.encode())
        if request.image is not None:
            h.update(request.image.tobytes())
        digest = h.hexdigest()
        if self.dead:
            return GenerationResult(None, error=DEAD_ERROR)
        if self._chosen(messages, digest):
            with self._lock:
                self._seen[digest] += 1
                attempt = self._seen[digest]
            if not self.recover_after or attempt <= self.recover_after:
                if self.failure == "error":
                    return GenerationResult(None, error=self.error)
                if self.failure == "empty":
                    return GenerationResult("", output_tokens=1, finish_reason="stop")
                return GenerationResult(self._text(digest, self.overlong_words),
                                        output_tokens=self.overlong_words,
                                        finish_reason="length")
        return GenerationResult(self._text(digest, self.words), output_tokens=self.words,
                                finish_reason="stop")

    def generate(self, requests: Sequence[GenerationRequest],
                 params: GenerationParams) -> list[GenerationResult]:
        """One result per request, in order."""
        with self._lock:
            self.calls.extend(requests)
        wait = self.delay + self.item_delay * len(requests)
        if wait > 0:
            time.sleep(wait)
        return [self._one(r) for r in requests]

    def close(self) -> None:
        """Nothing to release."""
