"""PNG encoding: Pillow when installed, otherwise a small zlib-based encoder (8-bit, no filtering)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

__all__ = ["encode_png"]

_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png_zlib(image: np.ndarray) -> bytes:
    """Encode an HxWxC uint8 array (C in 1..4) as PNG with zlib only."""
    h, w, c = image.shape
    raw = np.zeros((h, w * c + 1), dtype=np.uint8)  # each scanline starts with filter type 0
    raw[:, 1:] = image.reshape(h, w * c)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def encode_png(image: np.ndarray) -> bytes:
    """Encode an HxWxC uint8 array (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as PNG bytes."""
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPE or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWxC uint8 array with C in 1..4, got {image.dtype} {image.shape}")
    try:
        from PIL import Image
    except ImportError:
        return encode_png_zlib(image)
    arr = image[:, :, 0] if image.shape[2] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")  # mode inferred: L, LA, RGB, RGBA
    return buf.getvalue()
