"""Query-time enhancement: one ad-hoc query through the same policy, prompts, store and
backends as ``augret enhance``.

The query is routed by :func:`augret.enhance.policy.route`, keyed by
:func:`augret.enhance.item.item_key` (the image part is the SHA-256 of the uploaded bytes,
as the runner hashes image files), looked up in the :class:`~augret.enhance.GenerationStore`
and generated only on a miss; its output goes through the same checks (an over-long text is
truncated or fails as the config says). So a query enhanced offline (same text, same image
file) is a store hit, a query asked twice is generated once, and a deterministic failure
recorded by either is not generated again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from augret.data.records import Query, modality_of
from augret.data.text import format_string
from augret.enhance.backends.base import Backend, GenerationParams
from augret.enhance.config import EnhanceConfig
from augret.enhance.images import image_digest, load_image
from augret.enhance.item import (
    item_failure,
    item_generation,
    item_key,
    item_request,
    make_backend,
    output_rules,
)
from augret.enhance.outputs import Failure
from augret.enhance.policy import Policy, route
from augret.enhance.prompts import load_prompts
from augret.enhance.store import GenerationStore
from augret.errors import BadImage

__all__ = ["Enhanced", "QueryEnhancer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enhanced:
    """The outcome of enhancing one query.

    Attributes:
        text: The text to search with (the rewrite, or the original when nothing was
            generated or generation failed).
        route: The policy route (``passthrough``, ``entity_rewrite``, ``condense``,
            ``caption_query``).
        status: ``passthrough``, ``cached`` (store hit), ``generated`` or ``failed``.
        error: Why it failed (``None`` otherwise).
    """

    text: str | None
    route: str
    status: str
    error: str | None = None


class QueryEnhancer:
    """Enhances ad-hoc queries; thread-safe (one generation at a time).

    Args:
        cfg: The enhancement config (backend, model, prompts, budgets, decoding, store, mode),
            as for ``augret enhance``.
        backend: A ready backend (default: built from ``cfg``).
        store: A ready store (default: ``cfg.store``, else the per-user store).
    """

    def __init__(self, cfg: EnhanceConfig, *, backend: Backend | None = None,
                 store: GenerationStore | None = None) -> None:
        self.cfg = cfg
        self.backend = backend if backend is not None else make_backend(cfg)
        self.store = store if store is not None else GenerationStore(cfg.store)
        self.prompts = load_prompts(cfg.prompts)
        self.policy = Policy(cfg.query_tokens, cfg.candidate_tokens, cfg.query_caption_words,
                             cfg.candidate_caption_words, cfg.query_text_words)
        self.params = GenerationParams(cfg.temperature, cfg.top_p, cfg.seed)
        self.rules = output_rules(cfg)
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """Model, revision, backend and prompt version (for health checks and logs)."""
        return {"backend": self.backend.name, "model": self.backend.model_id,
                "revision": self.backend.revision, "prompt_version": self.prompts.id,
                "mode": self.cfg.mode}

    def enhance(self, text: str | None, image: bytes | None) -> Enhanced:
        """Enhance one query.

        Args:
            text: The query text (``None`` or blank: none).
            image: The query image's file bytes (``None``: none).

        Returns:
            The text to search with and what happened. A failed generation is not an error:
            the original text is kept (as the runner keeps a failed row's text) and the
            reason is logged.
        """
        text = text if text and text.strip() else None
        if text is None and image is None:
            return Enhanced(None, "passthrough", "passthrough")
        record = Query(qid="0:0", query_txt=text, query_img_path="upload" if image else None,
                       query_modality=modality_of(text, "upload" if image else None))
        r = route(record, self.policy)
        if not r.generates:
            return Enhanced(text, r.kind, "passthrough")
        key = item_key(backend=self.backend, prompts=self.prompts, params=self.params, route=r,
                       rules=self.rules, max_pixels=self.cfg.max_pixels, text=text,
                       image_sha256=image_digest(image) if r.send_image and image else None)
        hit = self.store.get_many([key]).get(key)
        if hit is not None:
            return Enhanced(self._final(text, hit.text), r.kind, "cached")
        recorded = None if self.cfg.retry_failed else self.store.get_failures([key]).get(key)
        if recorded is not None:
            return self._failed(text, r.kind, recorded.reason)
        pixels = None
        if r.send_image and image is not None:
            try:
                pixels = load_image(image, max_pixels=self.cfg.max_pixels, name="query image")
            except BadImage as exc:
                return self._failed(text, r.kind, str(exc))
        with self._lock:
            hit = self.store.get_many([key]).get(key)  # generated meanwhile by another thread
            if hit is not None:
                return Enhanced(self._final(text, hit.text), r.kind, "cached")
            result = self.backend.generate([item_request(self.prompts, r, text, pixels)],
                                           self.params)[0]
            checked = (Failure("backend_error", result.error) if result.error is not None
                       else self.rules.check(r, result.text))
            if isinstance(checked, Failure):
                if not checked.transient:
                    self.store.put_many([], [item_failure(key, checked, backend=self.backend,
                                                          prompts=self.prompts, route=r)])
                return self._failed(text, r.kind, checked.reason)
            self.store.put_many([item_generation(key, checked, result, backend=self.backend,
                                                 prompts=self.prompts, params=self.params,
                                                 route=r)])
        return Enhanced(self._final(text, checked.text), r.kind, "generated")

    def _final(self, original: str | None, generated: str) -> str:
        """The enhanced text as the runner writes it (``replace`` or ``append`` mode)."""
        if self.cfg.mode == "append" and original:
            generated = f"{format_string(original)} {generated}"
        return format_string(generated)

    @staticmethod
    def _failed(text: str | None, route_kind: str, reason: str) -> Enhanced:
        log.warning("query enhancement failed (%s): %s; searching with the original text",
                    route_kind, reason)
        return Enhanced(text, route_kind, "failed", reason)

    def close(self) -> None:
        """Release the backend and the store."""
        self.backend.close()
        self.store.close()
