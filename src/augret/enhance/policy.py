"""The enhancement policy: which item gets which treatment (docs/method.md).

A pure function of the record: no model, no I/O.

===========  ==================  ========================================  ============
side         text                treatment                                 image sent
===========  ==================  ========================================  ============
any          no image            pass-through                              —
query        a question          entity-grounded rewrite                   yes
query        anything else       instruction condensing                    no
query        none (image only)   dense caption, ≤ 50 words                 yes
candidate    any                 dense caption, ≤ 100 words                yes
===========  ==================  ========================================  ============
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from augret.data.records import Candidate, Query

__all__ = ["Policy", "Route", "RouteKind", "is_question", "route"]

RouteKind = Literal["passthrough", "entity_rewrite", "condense", "caption_query",
                    "caption_candidate"]

_QUESTION_START = re.compile(r"^\s*(what|where|why|when|which|how)\b", re.IGNORECASE)


def is_question(text: str) -> bool:
    """True when ``text`` ends with ``?`` or starts with what/where/why/when/which/how."""
    return text.rstrip().endswith("?") or bool(_QUESTION_START.match(text))


@dataclass(frozen=True)
class Policy:
    """Budgets of the policy (the paper's values by default).

    Attributes:
        query_tokens: Output token budget for queries (128 in the paper).
        candidate_tokens: Output token budget for candidates (512 in the paper).
        query_caption_words: Word limit of image-only query captions.
        candidate_caption_words: Word limit of candidate captions.
        query_text_words: Word limit used to flag over-long rewrites and condensed text.
    """

    query_tokens: int = 128
    candidate_tokens: int = 512
    query_caption_words: int = 50
    candidate_caption_words: int = 100
    query_text_words: int = 60


@dataclass(frozen=True)
class Route:
    """What to do with one item."""

    kind: RouteKind
    send_image: bool = False
    send_text: bool = False
    max_words: int = 0
    max_new_tokens: int = 0

    @property
    def generates(self) -> bool:
        return self.kind != "passthrough"


PASSTHROUGH = Route("passthrough")


def route(record: Query | Candidate, policy: Policy = Policy()) -> Route:
    """The treatment of a query or candidate under ``policy``."""
    if not record.image_path:
        return PASSTHROUGH
    if isinstance(record, Candidate):
        return Route("caption_candidate", send_image=True, max_words=policy.candidate_caption_words,
                     max_new_tokens=policy.candidate_tokens)
    text = (record.text or "").strip()
    if not text:
        return Route("caption_query", send_image=True, max_words=policy.query_caption_words,
                     max_new_tokens=policy.query_tokens)
    if is_question(text):
        return Route("entity_rewrite", send_image=True, send_text=True,
                     max_words=policy.query_text_words, max_new_tokens=policy.query_tokens)
    return Route("condense", send_text=True, max_words=policy.query_text_words,
                 max_new_tokens=policy.query_tokens)
