"""Request checks and the Hugging Face -> OpenAI chat-message conversion shared by backends.

Requests carry Hugging Face multimodal messages whose ``{"type": "image"}`` item stands for
:attr:`~augret.enhance.backends.base.GenerationRequest.image`. The in-process ``transformers``
backend renders them with the processor's chat template; the ``openai`` and ``vllm`` backends
send OpenAI chat-completions messages, where the image travels inline as a base64 data URL.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from augret._lazy import require

if TYPE_CHECKING:
    from PIL.Image import Image

    from augret.enhance.backends.base import GenerationRequest

__all__ = [
    "ImageFormat",
    "check_request",
    "count_image_placeholders",
    "encode_image",
    "image_format_for",
    "to_openai_messages",
]

ImageFormat = Literal["png", "jpeg", "auto"]
_JPEG_QUALITY = 95


def _is_image_item(item: Any) -> bool:
    """Whether a content item is an image placeholder (the same test as Qwen's template)."""
    if not isinstance(item, Mapping):
        return False
    return item.get("type") in ("image", "image_url") or "image" in item or "image_url" in item


def count_image_placeholders(messages: Sequence[Mapping[str, Any]]) -> int:
    """Count the image items (``{"type": "image"}`` and friends) over all messages.

    Args:
        messages: Hugging Face chat messages.

    Returns:
        The number of image placeholders; string contents hold none.
    """
    n = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, Sequence) and not isinstance(content, str):
            n += sum(1 for item in content if _is_image_item(item))
    return n


def check_request(request: GenerationRequest) -> str | None:
    """Check one request before it reaches a model.

    Rules: messages are a non-empty list of ``{"role", "content"}`` dicts; a request with an
    image has exactly one image placeholder and a request without one has none; the image is a
    PIL image; the budget is at least one token.

    Args:
        request: The request to check.

    Returns:
        ``None`` when the request is valid, else the reason it is not (one line).
    """
    messages = request.messages
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        return "messages must be a non-empty list of chat messages"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            return f"message {i} must be a mapping with 'role' and 'content'"
    if not isinstance(request.max_new_tokens, int) or request.max_new_tokens < 1:
        return f"max_new_tokens must be a positive integer, got {request.max_new_tokens!r}"
    n = count_image_placeholders(messages)
    if request.image is None:
        if n:
            return f"messages contain {n} image placeholder(s) but the request has no image"
        return None
    pil = require("PIL.Image", "enhance")
    if not isinstance(request.image, pil.Image):
        return f"image must be a PIL image, got {type(request.image).__name__}"
    if n == 0:
        return "the request has an image but its messages contain no {'type': 'image'} placeholder"
    if n > 1:
        return f"at most one image per request is supported, found {n} placeholders"
    return None


def image_format_for(image: Image, image_format: ImageFormat = "png") -> str:
    """The encoding used for ``image``: ``png`` or ``jpeg``.

    ``auto`` picks JPEG for opaque RGB / greyscale photos (smaller requests) and PNG for
    everything else (alpha, palette, high bit depth). ``png`` is lossless, so a server sees
    exactly the pixels an in-process backend would.
    """
    if image_format == "auto":
        return "jpeg" if image.mode in ("RGB", "L") else "png"
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png', 'jpeg' or 'auto', got {image_format!r}")
    return image_format


def encode_image(image: Image, image_format: ImageFormat = "png") -> tuple[str, str]:
    """Encode a PIL image as a ``data:`` URL.

    Args:
        image: The image (loaded lazily files are loaded here; errors propagate).
        image_format: ``png`` (lossless, default), ``jpeg`` (quality 95) or ``auto``.

    Returns:
        ``(data_url, format)`` where ``format`` is ``"png"`` or ``"jpeg"``.
    """
    fmt = image_format_for(image, image_format)
    buf = io.BytesIO()
    if fmt == "jpeg":
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        rgb.save(buf, format="JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"data:image/{fmt};base64,{data}", fmt


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for item in content:
        if isinstance(item, Mapping) and "text" in item:
            parts.append(str(item["text"]))
        elif _is_image_item(item):
            raise ValueError("an image placeholder cannot appear in a system message")
    return "".join(parts)


def to_openai_messages(
    messages: Sequence[Mapping[str, Any]],
    image: Image | None,
    *,
    image_format: ImageFormat = "png",
    system_as_string: bool = True,
) -> tuple[list[dict[str, Any]], str | None]:
    """Convert Hugging Face chat messages to OpenAI chat-completions messages.

    ``{"type": "image"}`` becomes ``{"type": "image_url", "image_url": {"url": "data:..."}}``
    holding ``image``; text items are kept; string contents stay strings. System messages are
    flattened to a plain string when ``system_as_string`` (some servers reject lists there).

    Args:
        messages: Hugging Face chat messages (already checked with :func:`check_request`).
        image: The request's image, or ``None``.
        image_format: How the image is encoded (see :func:`encode_image`).
        system_as_string: Send system content as a string.

    Returns:
        ``(openai_messages, format)`` where ``format`` is the image encoding used, or
        ``None`` when no image was sent.

    Raises:
        ValueError: If placeholders and ``image`` do not match, or an item is unknown.
    """
    out: list[dict[str, Any]] = []
    fmt: str | None = None
    url: str | None = None
    for message in messages:
        role = message["role"]
        content = message["content"]
        if role == "system" and system_as_string:
            out.append({"role": role, "content": _text_of(content)})
            continue
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        items: list[dict[str, Any]] = []
        for item in content:
            if _is_image_item(item):
                if image is None:
                    raise ValueError("messages contain an image placeholder but there is no image")
                if url is not None:
                    raise ValueError("at most one image placeholder per request is supported")
                url, fmt = encode_image(image, image_format)
                items.append({"type": "image_url", "image_url": {"url": url}})
            elif (
                isinstance(item, Mapping) and item.get("type", "text") == "text" and "text" in item
            ):
                items.append({"type": "text", "text": str(item["text"])})
            else:
                raise ValueError(f"unsupported content item: {item!r}"[:200])
        out.append({"role": role, "content": items})
    if image is not None and url is None:
        raise ValueError("the request has an image but no image placeholder in its messages")
    return out, fmt
