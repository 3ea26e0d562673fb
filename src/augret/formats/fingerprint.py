"""Stage fingerprints: the one hash function that decides whether earlier output is reusable."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["stable_hash"]


def stable_hash(obj: Any, *, length: int | None = 16) -> str:
    """A stable hex SHA-256 of a JSON-able value (keys sorted; other objects as ``str``).

    Args:
        obj: The value; dict key order does not matter.
        length: Hex digits kept (``None``: all 64).

    Returns:
        The hex digest, cut to ``length``.
    """
    blob = json.dumps(obj, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return digest if length is None else digest[:length]
