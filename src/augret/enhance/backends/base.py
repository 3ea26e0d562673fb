"""The backend protocol: chat messages (+ at most one image) in, generated text out.

Messages use the Hugging Face multimodal chat format, which every backend converts from:
``[{"role": "system", "content": [{"type": "text", "text": ...}]},
{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]``.
The ``{"type": "image"}`` placeholder stands for :attr:`GenerationRequest.image`; the prompt
itself is always rendered by the model's own chat template (processor or server), never by
hand-written special tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Backend", "GenerationParams", "GenerationRequest", "GenerationResult"]


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters shared by a run (part of the store key).

    ``temperature == 0`` means greedy decoding (the default, so runs are reproducible).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: chat messages, the image they refer to (or ``None``), a token budget.

    ``route`` and ``text`` say what the messages were rendered from (the policy route and the
    item text they embed, ``None`` when the route sends none); model backends read only the
    messages, the reference captioner answers from these.
    """

    messages: list[dict[str, Any]]
    image: Image | None = None
    max_new_tokens: int = 128
    id: str = ""  # caller's handle: the item's qid or did
    route: str = ""
    text: str | None = None


@dataclass
class GenerationResult:
    """The outcome of one request: text, or an error message (never both)."""

    text: str | None
    error: str | None = None
    output_tokens: int = 0
    finish_reason: str | None = None  # "stop", "length", ...
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@runtime_checkable
class Backend(Protocol):
    """A VLM that turns requests into results, one result per request, in order.

    Implementations never raise for a single bad request: they return a result with
    ``error`` set, so one row cannot fail a batch.
    """

    name: str
    model_id: str
    revision: str | None

    def generate(
        self, requests: Sequence[GenerationRequest], params: GenerationParams
    ) -> list[GenerationResult]: ...

    def close(self) -> None: ...
