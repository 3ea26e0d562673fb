"""Safe image loading for the VLM: one bad file becomes one clear error, never a crash.

Handles missing and 0-byte files, truncated data, decompression bombs, CMYK, 16-bit and
palette images, transparency (composited on white), animated GIFs and multi-page TIFFs (first
frame), and downscales to a pixel budget before anything is sent to a model.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from augret._lazy import require

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["ImageError", "image_digest", "load_image", "read_image_bytes"]

DEFAULT_MAX_PIXELS = 768 * 768  # what is sent to the model
BOMB_PIXELS = 64_000_000  # refuse to decode anything larger


class ImageError(Exception):
    """An image could not be used; the message is the row's failure reason."""


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of an image file.

    Raises:
        ImageError: Missing, unreadable or empty file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"image not found: {p}") from None
    except IsADirectoryError:
        raise ImageError(f"image path is a directory: {p}") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {p}: {exc.strerror or exc}") from None
    if not data:
        raise ImageError(f"image file is empty (0 bytes): {p}")
    return data


def _to_rgb(img: Image) -> Image:
    pil = require("PIL.Image", "enhance")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: rescale to 8 bit
        import numpy as np

        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        img = pil.fromarray(a.astype("uint8"), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = pil.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> Image:
    """Decode image bytes to an RGB image within ``max_pixels``.

    Args:
        data: The file bytes.
        max_pixels: Pixel budget; larger images are downscaled keeping the aspect ratio.
        name: How to name the image in errors (its path).

    Raises:
        ImageError: Undecodable, truncated, too large to decode safely, or degenerate.
    """
    pil = require("PIL.Image", "enhance")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            img = pil.open(io.BytesIO(data))
            w, h = img.size
            if w * h > BOMB_PIXELS:
                raise ImageError(f"image too large to decode safely ({w}x{h} pixels): {name}")
            img.seek(0)  # first frame of animations and multi-page files
            img.load()
    except ImageError:
        raise
    except (pil.DecompressionBombError, pil.DecompressionBombWarning):
        raise ImageError(f"decompression bomb refused: {name}") from None
    except pil.UnidentifiedImageError:
        raise ImageError(f"not a recognised image format: {name}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image {name}: {exc}") from None
    if min(img.size) < 1:
        raise ImageError(f"image has no pixels: {name}")
    img = _to_rgb(img)
    w, h = img.size
    if w * h > max_pixels:
        scale = (max_pixels / (w * h)) ** 0.5
        img = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), pil.Resampling.BICUBIC)
    return img


def image_digest(data: bytes) -> str:
    """SHA-256 of image bytes (the store key's image part)."""
    return hashlib.sha256(data).hexdigest()
