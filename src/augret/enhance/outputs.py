"""What makes a generated text usable, and why a row fails.

A generated text is cleaned (:func:`clean_output`), then checked against its route's word
budget: a text longer than ``max_words × overlong_factor`` words is over-long, and the
``overlong`` policy either cuts it to the budget (``truncate``, the default: at a word
boundary, at a sentence boundary when one is close) or fails the row (``fail``).

Every failed row has a kind. *Transient* kinds (the backend failed after its retries, a
worker could not read an image) are retried by the next run; the others are deterministic
(the same input gives the same failure) and are recorded in the generation store, so a rerun
does not pay for them again (``--retry-failed`` retries them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from augret.enhance.policy import Route

__all__ = ["FAILURE_KINDS", "TRANSIENT_KINDS", "Failure", "FailureKind", "OutputRules",
           "Overlong", "Usable", "clean_output", "truncate_words"]

FailureKind = Literal["invalid_row", "missing_image", "corrupt_image", "empty_output",
                      "overlong_output", "backend_error"]
#: Every failure kind, in report order.
FAILURE_KINDS: tuple[str, ...] = ("invalid_row", "missing_image", "corrupt_image",
                                  "empty_output", "overlong_output", "backend_error")
#: Kinds a rerun retries (never recorded in the store).
TRANSIENT_KINDS = frozenset({"missing_image", "backend_error"})

Overlong = Literal["truncate", "fail"]

#: A sentence end this close to the budget (share of the budget) is where a cut is made.
SENTENCE_SLACK = 0.2
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_TRAILING = ",;:-–—"


@dataclass(frozen=True)
class Failure:
    """Why a row failed: a kind and a human-readable reason."""

    kind: str
    reason: str

    @property
    def transient(self) -> bool:
        """Whether a rerun retries it."""
        return self.kind in TRANSIENT_KINDS


@dataclass(frozen=True)
class Usable:
    """A usable generated text; ``truncated`` when it was cut to the word budget."""

    text: str
    truncated: bool = False


def clean_output(text: str) -> str:
    """Collapse whitespace and strip surrounding quotes of a generated text."""
    return " ".join(text.split()).strip().strip('"').strip()


def truncate_words(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` words.

    The cut is made after the last sentence end (``.``, ``!``, ``?``) among the last
    :data:`SENTENCE_SLACK` of the budget when there is one, else after the ``limit``-th word
    (without a dangling comma or dash). A text within the limit is returned as is.
    """
    words = text.split()
    if len(words) <= limit:
        return text
    kept = words[:limit]
    lowest = max(1, limit - int(limit * SENTENCE_SLACK))
    for n in range(limit, lowest - 1, -1):
        if _SENTENCE_END.search(kept[n - 1]):
            return " ".join(kept[:n])
    return " ".join(kept).rstrip(_TRAILING).rstrip()


@dataclass(frozen=True)
class OutputRules:
    """The checks on a generated text (part of the store key's parameters).

    Attributes:
        overlong: ``truncate`` (cut an over-long text to the budget and flag it) or ``fail``.
        overlong_factor: A text longer than the route's word budget × this is over-long.
    """

    overlong: Overlong = "truncate"
    overlong_factor: float = 1.5

    def key_params(self, route: Route) -> dict[str, Any]:
        """What of these rules decides a route's stored output."""
        return {"max_words": route.max_words, "overlong": self.overlong,
                "overlong_factor": self.overlong_factor}

    def check(self, route: Route, text: str | None) -> Usable | Failure:
        """The usable text of a generation, or why it fails."""
        cleaned = clean_output(text or "")
        if not cleaned:
            return Failure("empty_output", "empty output")
        words = len(cleaned.split())
        limit = route.max_words * self.overlong_factor
        if route.max_words and words > limit:
            if self.overlong == "fail":
                return Failure("overlong_output",
                               f"over-long output ({words} words > {limit:g} allowed)")
            return Usable(truncate_words(cleaned, route.max_words), truncated=True)
        return Usable(cleaned)
