"""Where augret keeps caches (offset indexes, generation stores...)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AUGRET_CACHE_DIR``, else ``$XDG_CACHE_HOME/augret``, else ``~/.cache/augret``."""
    if env := os.environ.get("AUGRET_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "augret"
