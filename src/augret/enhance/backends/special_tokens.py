"""Special tokens of the VLM families augret runs, and stripping them from generated text.

A backend that decodes tokens itself skips special tokens; text from a server may still carry
some (an OpenAI-compatible server decides how it decodes), so the ``openai`` backend strips the
model's known special tokens from what it receives.
"""

from __future__ import annotations

from collections.abc import Iterable

from augret.tiny_qwen import SPECIAL_TOKENS as QWEN_CHAT_TOKENS

__all__ = ["QWEN_CHAT_TOKENS", "QWEN_SPECIAL_TOKENS", "strip_special_tokens"]

#: Every special token of Qwen's tokenizers (chat, vision and code-infill tokens).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    *QWEN_CHAT_TOKENS,
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)


def strip_special_tokens(text: str, tokens: Iterable[str]) -> tuple[str, int]:
    """``text`` without any of ``tokens``, as a decoder that skips them would give it.

    Returns:
        The text and how many tokens were removed.
    """
    removed = 0
    for token in tokens:
        if token in text:
            removed += text.count(token)
            text = text.replace(token, "")
    return text, removed
