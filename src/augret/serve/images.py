"""Decoding untrusted query images: accepted formats only, a pixel cap, one clear error.

Only the decoders of :data:`ACCEPTED_FORMATS` are ever run on uploaded bytes. The pixel count
is read from the header and checked before any pixel is decoded, so a decompression bomb is
refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from augret._lazy import require
from augret.serve.errors import BadImage, ImageTooLarge, UnsupportedImage

__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "MEDIA_TYPES", "open_image", "sniff_format"]

#: PIL format names accepted for query images and served item images.
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
MEDIA_TYPES: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif",
                               "WEBP": "image/webp", "BMP": "image/bmp"}
DEFAULT_MAX_PIXELS = 40_000_000  # about 7300 x 5500


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
               ) -> Any:
    """Decode image bytes (first frame) into a loaded PIL image, mode unchanged.

    The mode is left as stored so that the encoder converts it exactly as it converts the
    indexed images (``augret.encode`` reads files the same way).

    Args:
        data: The file bytes.
        max_pixels: Largest accepted width × height.
        name: How errors name the image.

    Raises:
        BadImage: Empty, corrupt or truncated data (HTTP 422).
        UnsupportedImage: Not an image of an accepted format (HTTP 415).
        ImageTooLarge: More than ``max_pixels`` pixels (HTTP 413).
    """
    pil = require("PIL.Image", "serve")
    if not data:
        raise BadImage(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            img = pil.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLarge(f"{name} has {w}x{h} pixels; at most {max_pixels:,} are "
                                    "accepted")
            if w < 1 or h < 1:
                raise BadImage(f"{name} has no pixels")
            img.seek(0)
            img.load()
    except (ImageTooLarge, BadImage):
        raise
    except (pil.DecompressionBombError, pil.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{name}: decompression bomb refused ({exc})") from None
    except pil.UnidentifiedImageError:
        raise UnsupportedImage(f"{name} is not an image in an accepted format "
                               f"({', '.join(ACCEPTED_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise BadImage(f"{name} is corrupt or truncated: {exc}") from None
    return img


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
