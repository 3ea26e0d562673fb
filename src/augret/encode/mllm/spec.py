"""What an MLLM embedder is built from (:class:`MLLMSpec`), the released models by name
(:data:`MLLM_ENCODERS`), and how an ``mllm:`` name becomes a spec.

Names, resolved exactly (never by substring):

* a key of :data:`MLLM_ENCODERS` (``qwen3-vl-embedding-2b``, ``lamra-ret``, ``tiny-mllm``...);
* ``mllm:<hub id or path>``: any Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint with the default
  prompt style (``qwen3vl-emb``), or ``mllm:<prompt style>:<hub id or path>`` with another
  (e.g. ``mllm:lamra:Qwen/Qwen2-VL-7B-Instruct``); a local path whose first segment is a
  style name is written ``./lamra:dir``.

Trained augret checkpoint directories carry their spec in ``encoder.json``
(:mod:`augret.encode.mllm.checkpoint`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from augret.encode.mllm.styles import DEFAULT_PROMPT_STYLE, PROMPT_STYLES, get_style
from augret.errors import ConfigError

__all__ = ["BASE_MODEL_DIMS", "MLLM_ENCODERS", "MLLM_PREFIX", "TINY_MLLM", "MLLMEntry",
           "MLLMSpec", "is_mllm_name", "parse_mllm_name"]

MLLM_PREFIX = "mllm:"
#: The built-in random-init tiny model (tests and smoke runs; its vectors are meaningless).
TINY_MLLM = "tiny-mllm"


@dataclass(frozen=True)
class MLLMSpec:
    """How to build an MLLM embedder (stored in ``encoder.json`` and in embedding metas).

    Attributes:
        model: Hub id or local directory of the (merged) weights, or of the base model when
            ``adapter`` is set; ``tiny-mllm`` for the built-in random-init tiny model.
        prompt_style: One of :data:`~augret.encode.mllm.styles.PROMPT_STYLES`.
        adapter: A peft LoRA adapter (hub id or directory) merged onto ``model``.
        processor: Where the tokenizer and image processor come from (default: ``model``).
        revision: Hub revision of ``model``.
        min_image_tokens: Images smaller than this many merged visual tokens are upscaled.
        max_image_tokens: The pixel budget: larger images are downscaled to at most this
            many merged visual tokens (one token = 28 × 28 pixels on Qwen2/2.5-VL,
            32 × 32 on Qwen3-VL).
        max_text_tokens: An item's text (instruction included where the style puts it in the
            user turn) is cut to this many tokens before the prompt is rendered; the
            template and image tokens are never cut.
        padding_side: Which side batches are padded on (pooling is correct on both).
    """

    model: str
    prompt_style: str = DEFAULT_PROMPT_STYLE
    adapter: str | None = None
    processor: str | None = None
    revision: str | None = None
    min_image_tokens: int = 4
    max_image_tokens: int = 1280
    max_text_tokens: int = 512
    padding_side: Literal["left", "right"] = "right"

    def __post_init__(self) -> None:
        get_style(self.prompt_style)
        if not 1 <= self.min_image_tokens <= self.max_image_tokens:
            raise ConfigError("image token budget: need 1 <= min_image_tokens <= "
                              f"max_image_tokens (got {self.min_image_tokens}, "
                              f"{self.max_image_tokens})")
        if self.max_text_tokens < 1:
            raise ConfigError(f"max_text_tokens must be >= 1 (got {self.max_text_tokens})")
        if self.padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side must be 'left' or 'right' "
                              f"(got {self.padding_side!r})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``kind: mllm`` marks it among backbone specs)."""
        return {"kind": "mllm", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MLLMSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: Unknown keys or bad values.
        """
        d = {k: v for k, v in d.items() if k != "kind"}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown MLLM spec key(s) {sorted(unknown)}")
        return cls(**d)

    def with_changes(self, **kw: Any) -> MLLMSpec:
        """A copy with some fields replaced."""
        return replace(self, **kw)


@dataclass(frozen=True)
class MLLMEntry:
    """A registered MLLM embedder.

    Attributes:
        spec: Its spec.
        dim: Embedding width (the language model's hidden size).
        about: One line for listings.
    """

    spec: MLLMSpec
    dim: int
    about: str


#: Released MLLM embedders by name. Budgets and text caps follow each project's own code.
MLLM_ENCODERS: dict[str, MLLMEntry] = {
    "qwen3-vl-embedding-2b": MLLMEntry(
        MLLMSpec("Qwen/Qwen3-VL-Embedding-2B", "qwen3vl-emb", max_image_tokens=1800), 2048,
        "Qwen3-VL-Embedding 2B (merged weights, Qwen3-VL)"),
    "qwen3-vl-embedding-8b": MLLMEntry(
        MLLMSpec("Qwen/Qwen3-VL-Embedding-8B", "qwen3vl-emb", max_image_tokens=1800), 4096,
        "Qwen3-VL-Embedding 8B (merged weights, Qwen3-VL)"),
    "lamra-ret": MLLMEntry(
        MLLMSpec("code-kunkun/LamRA-Ret", "lamra", max_image_tokens=300,
                 max_text_tokens=480), 3584,
        "LamRA-Ret on Qwen2-VL-7B (merged weights, pre-4.52 key layout)"),
    "lamra-ret-qwen2.5vl-7b": MLLMEntry(
        MLLMSpec("code-kunkun/LamRA-Ret-Qwen2.5VL-7b", "lamra", max_image_tokens=300,
                 max_text_tokens=480), 3584,
        "LamRA-Ret on Qwen2.5-VL-7B (merged weights, pre-4.52 key layout)"),
    "gme-qwen2-vl-2b": MLLMEntry(
        MLLMSpec("Alibaba-NLP/gme-Qwen2-VL-2B-Instruct", "gme", min_image_tokens=256,
                 max_image_tokens=1280), 1536,
        "GME on Qwen2-VL-2B (merged weights; forward ported, no remote code)"),
    "gme-qwen2-vl-7b": MLLMEntry(
        MLLMSpec("Alibaba-NLP/gme-Qwen2-VL-7B-Instruct", "gme", min_image_tokens=256,
                 max_image_tokens=1280), 3584,
        "GME on Qwen2-VL-7B (merged weights; forward ported, no remote code)"),
    "vlm2vec-v2.0": MLLMEntry(
        MLLMSpec("Qwen/Qwen2-VL-2B-Instruct", "vlm2vec", adapter="VLM2Vec/VLM2Vec-V2.0"),
        1536, "VLM2Vec-V2.0: a LoRA adapter merged onto Qwen2-VL-2B-Instruct"),
    TINY_MLLM: MLLMEntry(
        MLLMSpec(TINY_MLLM, "qwen3vl-emb", max_image_tokens=16, max_text_tokens=64), 32,
        "random-init tiny Qwen2-VL embedder (tests and smoke runs; meaningless vectors)"),
}


#: Hidden size (the embedding width) of base models an ``mllm:`` spec commonly names, e.g.
#: to train from (planning: index memory).
BASE_MODEL_DIMS: dict[str, int] = {
    "Qwen/Qwen2-VL-2B-Instruct": 1536,
    "Qwen/Qwen2-VL-7B-Instruct": 3584,
    "Qwen/Qwen2.5-VL-3B-Instruct": 2048,
    "Qwen/Qwen2.5-VL-7B-Instruct": 3584,
    "Qwen/Qwen3-VL-2B-Instruct": 2048,
    "Qwen/Qwen3-VL-4B-Instruct": 2560,
    "Qwen/Qwen3-VL-8B-Instruct": 4096,
}


def is_mllm_name(name: str) -> bool:
    """Whether ``name`` is a registered MLLM embedder or an ``mllm:`` spec."""
    return name in MLLM_ENCODERS or name.startswith(MLLM_PREFIX)


def parse_mllm_name(name: str) -> MLLMSpec:
    """The spec of a registered name or an ``mllm:[<style>:]<hub id or path>`` spec.

    Raises:
        ConfigError: Not an MLLM name, or an empty source.
    """
    if name in MLLM_ENCODERS:
        return MLLM_ENCODERS[name].spec
    if not name.startswith(MLLM_PREFIX):
        raise ConfigError(f"{name!r} is not an MLLM embedder name")
    rest = name[len(MLLM_PREFIX):]
    style = DEFAULT_PROMPT_STYLE
    head, sep, tail = rest.partition(":")
    if sep and head in PROMPT_STYLES:
        style, rest = head, tail
    if not rest:
        raise ConfigError(f"{name!r}: expected mllm:[<prompt style>:]<hub id or path>")
    return MLLMSpec(rest, style)
