"""Decoding image files and untrusted image bytes: one decoder, with the decompression-bomb guard.

Enhancement, the retriever (embedding and training) and the search service decode every image
through :func:`decode_image`. The pixel count is read from the header and checked before any
pixel is decoded, so a decompression bomb is refused without being allocated; PIL's own bomb
warning is an error too. What differs between callers is a parameter: the pixel limit, the
accepted formats (the server runs only the decoders it accepts) and the extra named when Pillow
is missing. Every failure is a :class:`~augret.errors.BadImage` (``UnsupportedImage`` and
``ImageTooLarge`` are its subclasses): a row's failure reason to a batch stage, an HTTP 4xx to
the server.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from augret._lazy import require
from augret.errors import BadImage, ImageTooLarge, UnsupportedImage

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["BOMB_PIXELS", "decode_image", "read_image_file"]

#: The default pixel limit: larger images are refused before they are decoded.
BOMB_PIXELS = 64_000_000


def read_image_file(path: str | Path) -> bytes:
    """The bytes of an image file.

    Raises:
        BadImage: Missing, unreadable or empty file.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImage(f"image not found: {path}") from None
    except IsADirectoryError:
        raise BadImage(f"image path is a directory: {path}") from None
    except OSError as exc:
        raise BadImage(f"cannot read image {path}: {exc.strerror or exc}") from None
    if not data:
        raise BadImage(f"image file is empty (0 bytes): {path}")
    return data


def decode_image(data: bytes, *, max_pixels: int = BOMB_PIXELS,
                 formats: Sequence[str] | None = None, name: str = "image",
                 extra: str = "enhance") -> Image:
    """Decode image bytes into a loaded PIL image (first frame, mode as stored).

    Args:
        data: The file bytes.
        max_pixels: Largest accepted width × height; checked on the header, before decoding.
        formats: PIL format names whose decoders may run (``None``: any Pillow reads).
        name: How errors name the image (its path, or e.g. "query image").
        extra: The augret extra named in the install hint when Pillow is missing.

    Raises:
        BadImage: Empty, corrupt or truncated data, or an image without pixels.
        UnsupportedImage: Not an image in a recognised (or accepted) format.
        ImageTooLarge: More than ``max_pixels`` pixels, or a decompression bomb.
        MissingExtraError: Pillow is not installed.
    """
    pil = require("PIL.Image", extra)
    if not data:
        raise BadImage(f"image file is empty (0 bytes): {name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            img = pil.open(io.BytesIO(data), formats=list(formats) if formats else None)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLarge(f"image too large to decode safely ({w}x{h} pixels, at most "
                                    f"{max_pixels:,}): {name}")
            if w < 1 or h < 1:
                raise BadImage(f"image has no pixels: {name}")
            img.seek(0)  # first frame of animations and multi-page files
            img.load()
    except BadImage:
        raise
    except (pil.DecompressionBombError, pil.DecompressionBombWarning):
        raise ImageTooLarge(f"decompression bomb refused: {name}") from None
    except pil.UnidentifiedImageError:
        accepted = f" (accepted: {', '.join(formats)})" if formats else ""
        raise UnsupportedImage(f"not a recognised image format: {name}{accepted}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise BadImage(f"corrupt or truncated image {name}: {exc}") from None
    return img
