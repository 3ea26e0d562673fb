"""Images for the VLM: decoded by :func:`augret.images.decode_image`, then made RGB and small.

Handles CMYK, 16-bit and palette images, transparency (composited on white), animated GIFs
and multi-page TIFFs (first frame), and downscales to a pixel budget before anything is sent
to a model. Missing, empty, corrupt and oversized files are a :class:`~augret.errors.BadImage`,
the row's failure reason.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from augret._lazy import require
from augret.images import decode_image

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["image_digest", "load_image"]

DEFAULT_MAX_PIXELS = 768 * 768  # what is sent to the model


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
        BadImage: Undecodable, truncated, too large to decode safely, or degenerate.
    """
    pil = require("PIL.Image", "enhance")
    img = _to_rgb(decode_image(data, name=name, extra="enhance"))
    w, h = img.size
    if w * h > max_pixels:
        scale = (max_pixels / (w * h)) ** 0.5
        img = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), pil.Resampling.BICUBIC)
    return img


def image_digest(data: bytes) -> str:
    """SHA-256 of image bytes (the store key's image part)."""
    return hashlib.sha256(data).hexdigest()
