"""Prompt styles: how an MLLM embedder turns an item's text, instruction and image into the
one chat-formatted string whose last token is pooled.

Each style follows the released code of the model family it is named after (see
``docs/mllm-embedders.md`` for the sources). Strings are rendered here, not by a tokenizer's
chat template, so that the input is explicit and testable; the image placeholder is expanded
to one ``<|image_pad|>`` per merged visual token later, by the processor.

Positions: ``mrope`` uses the model's multimodal rotary positions (the full Qwen-VL forward,
as Qwen3-VL-Embedding runs it); ``sequential`` gives every token, image tokens included, the
plain 1-D position of its place in the sequence, which is what GME, LamRA and VLM2Vec compute:
their released code calls the text decoder directly (GME, LamRA) or marks images without a
``<|vision_start|>`` (VLM2Vec), so the transformers versions they were trained with fell back
to 1-D positions.

The last token of every rendered string is the pooled one:

* ``qwen3vl-emb`` (Qwen3-VL-Embedding): the instruction is the system message (a fixed default
  for candidates and uninstructed queries, a period added when it ends without punctuation),
  the user turn holds the image then the text, and the generation prompt
  (``<|im_start|>assistant\\n``) ends the string.
* ``gme`` (GME-Qwen2-VL): the same chat layout with GME's default system message (a period
  added to an instruction that lacks one), and ``<|endoftext|>`` after the generation prompt.
* ``lamra`` (LamRA-Ret): no system message of its own (the family's chat-template default),
  the user turn holds the image, the instructed text (UniIR's ``format_string`` of instruction
  and text, as LamRA builds it) and a "summarize ... in one word" cue; LamRA pools the state
  just before an ``<emb>`` token in the assistant turn. Under causal attention that state
  depends only on the prefix, so the string ends after the assistant header and no ``<emb>``
  token is added to the vocabulary (the released tokenizer lacks it).
* ``vlm2vec`` (VLM2Vec-V2): no chat template: a bare image token, the instruction, the text and
  a newline.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from augret.data.text import format_string, instructed_text
from augret.errors import ConfigError

__all__ = [
    "DEFAULT_PROMPT_STYLE",
    "FAMILIES",
    "IMAGE_PLACEHOLDER",
    "PROMPT_STYLES",
    "Family",
    "PromptStyle",
    "get_style",
]

#: The image placeholder of the Qwen-VL chat templates (expanded to the image's tokens later).
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
#: The bare image token (VLM2Vec's placeholder).
IMAGE_TOKEN = "<|image_pad|>"


@dataclass(frozen=True)
class Family:
    """What a prompt style needs to know of a Qwen-VL model family.

    Attributes:
        name: ``qwen2_vl``, ``qwen2_5_vl`` or ``qwen3_vl`` (the ``model_type`` of its config).
        default_system: The system message its chat template adds when a conversation has
            none (``None``: Qwen3-VL adds none).
        patch_size: Vision patch side in pixels.
        merge_size: Patches merged per side into one visual token.
    """

    name: str
    default_system: str | None
    patch_size: int
    merge_size: int = 2

    @property
    def token_pixels(self) -> int:
        """Pixels of one merged visual token (e.g. 28 × 28 for Qwen2-VL)."""
        side = self.patch_size * self.merge_size
        return side * side


#: The supported model families, by ``model_type``.
FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family("qwen2_vl", "You are a helpful assistant.", 14),
    "qwen2_5_vl": Family("qwen2_5_vl", "You are a helpful assistant.", 14),
    "qwen3_vl": Family("qwen3_vl", None, 16),
}


def _chat(system: str | None, user: str, tail: str = "") -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{tail}"


# ---- the styles ------------------------------------------------------------------------------
QWEN3VL_DEFAULT_INSTRUCTION = "Represent the user's input."
GME_DEFAULT_INSTRUCTION = "You are a helpful assistant."
LAMRA_CUES = {
    "image_text": "\nSummarize above image and sentence in one word: ",
    "text": "\nSummarize above sentence in one word: ",
    "image": "\nSummarize above image in one word: ",
}
VLM2VEC_CANDIDATE_IMAGE = "Represent the given image."


def _end_with_punctuation(s: str) -> str:
    s = s.strip()
    if s and not unicodedata.category(s[-1]).startswith("P"):
        s += "."
    return s


def _qwen3vl_emb(text: str, instruction: str | None, image: bool, family: Family) -> str:
    system = _end_with_punctuation(instruction or "") or QWEN3VL_DEFAULT_INSTRUCTION
    user = (IMAGE_PLACEHOLDER if image else "") + format_string(text)
    return _chat(system, user)


def _gme(text: str, instruction: str | None, image: bool, family: Family) -> str:
    system = (instruction or "").strip() or GME_DEFAULT_INSTRUCTION
    if not system.endswith("."):
        system += "."
    user = (IMAGE_PLACEHOLDER if image else "") + format_string(text)
    return _chat(system, user, "<|endoftext|>")


def _lamra(text: str, instruction: str | None, image: bool, family: Family) -> str:
    body = instructed_text(instruction, text)
    if body and image:
        user = f"{IMAGE_PLACEHOLDER}{body}{LAMRA_CUES['image_text']}"
    elif body:
        user = f"{body}{LAMRA_CUES['text']}"
    else:
        user = f"{IMAGE_PLACEHOLDER}{LAMRA_CUES['image']}"
    return _chat(family.default_system, user)


def _vlm2vec(text: str, instruction: str | None, image: bool, family: Family) -> str:
    inst = format_string(instruction) if instruction else (
        VLM2VEC_CANDIDATE_IMAGE if image else "")
    body = " ".join(p for p in (inst, format_string(text)) if p)
    return (f"{IMAGE_TOKEN} " if image else "") + body + "\n"


@dataclass(frozen=True)
class PromptStyle:
    """A prompt style.

    Attributes:
        name: Its registry name.
        positions: ``mrope`` (the model's multimodal rotary positions) or ``sequential``
            (1-D positions over the sequence, images included).
        description: One line for listings.
    """

    name: str
    positions: Literal["mrope", "sequential"]
    description: str
    _render: Callable[[str, str | None, bool, Family], str]

    def render(self, text: str, instruction: str | None, image: bool, family: Family) -> str:
        """The input string of one item.

        Args:
            text: The item's text (raw; ``""`` when it has none). Styles apply UniIR's
                ``format_string``.
            instruction: The query's task instruction (``None``: candidates and uninstructed
                queries get the style's default).
            image: Whether the item has an image (one placeholder, before the text).
            family: The model family.
        """
        return self._render(text, instruction, image, family)


#: Prompt styles by name.
PROMPT_STYLES: dict[str, PromptStyle] = {
    "qwen3vl-emb": PromptStyle(
        "qwen3vl-emb", "mrope",
        "Qwen3-VL-Embedding: instruction as system message, image then text, generation "
        "prompt, last token", _qwen3vl_emb),
    "gme": PromptStyle(
        "gme", "sequential",
        "GME: instruction as system message, image then text, generation prompt + "
        "<|endoftext|>, last token", _gme),
    "lamra": PromptStyle(
        "lamra", "sequential",
        "LamRA-Ret: instructed text + 'summarize in one word' cue, state before <emb>",
        _lamra),
    "vlm2vec": PromptStyle(
        "vlm2vec", "sequential",
        "VLM2Vec: image token, instruction, text, newline; last token", _vlm2vec),
}
DEFAULT_PROMPT_STYLE = "qwen3vl-emb"


def get_style(name: str) -> PromptStyle:
    """The prompt style called ``name``.

    Raises:
        ConfigError: No such style.
    """
    try:
        return PROMPT_STYLES[name]
    except KeyError:
        raise ConfigError(f"unknown prompt style {name!r}; expected one of "
                          f"{', '.join(PROMPT_STYLES)}") from None
