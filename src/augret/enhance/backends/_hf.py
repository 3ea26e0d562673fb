"""Small helpers around torch / transformers (imported lazily by their callers)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from augret._lazy import require
from augret.errors import ConfigError

_DTYPES = ("auto", "bfloat16", "float16", "float32")


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence transformers' tqdm bars (weight loading, shard writing) for the block."""
    hf_logging = require("transformers.utils.logging", "enhance")
    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; others pass through."""
    torch = require("torch", "enhance")
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return str(device)


def resolve_dtype(dtype: str | Any, device: str) -> Any:
    """``auto`` -> bfloat16 on a GPU that supports it (else float16), float32 on the CPU."""
    torch = require("torch", "enhance")
    if not isinstance(dtype, str):
        return dtype
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)
