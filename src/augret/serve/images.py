"""The service's image policy: the formats it decodes, their media types, its pixel cap.

Query images are decoded by :func:`augret.images.decode_image` with only the decoders of
:data:`ACCEPTED_FORMATS` and at most the service's pixel cap; item images are served as
stored, after :func:`sniff_format` reads their header.
"""

from __future__ import annotations

import warnings
from typing import Any

from augret._lazy import require

__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "MEDIA_TYPES", "sniff_format"]

#: PIL format names accepted for query images and served item images.
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
MEDIA_TYPES: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif",
                               "WEBP": "image/webp", "BMP": "image/bmp"}
DEFAULT_MAX_PIXELS = 40_000_000  # about 7300 x 5500


def sniff_format(path: Any) -> str | None:
    """The accepted PIL format of an image file (header only), or ``None``."""
    pil = require("PIL.Image", "serve")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pil.open(path, formats=list(ACCEPTED_FORMATS)) as img:
                return str(img.format)
    except Exception:  # any unreadable file is simply not servable
        return None
