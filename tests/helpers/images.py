"""Image bytes for tests: a small PNG and a decompression bomb that is tiny on disk."""

from __future__ import annotations

import io
import struct
import zlib


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30),
        fmt: str = "PNG") -> bytes:
    """A small solid-colour image file."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(side: int = 100_000) -> bytes:
    """A valid PNG header claiming side x side pixels (a decompression bomb), tiny on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
