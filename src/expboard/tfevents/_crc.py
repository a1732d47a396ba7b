"""TFRecord framing and masked CRC32C.

A record is ``<len u64 LE> <masked crc32c(len bytes) u32 LE> <payload> <masked crc32c(payload) u32 LE>``.
The mask is a 32-bit rotate right by 15 plus 0xA282EAD8. CRC32C is the C-backed ``crc32c`` package.

CRC32C is affine over GF(2): for messages of equal length, ``crc(a ^ b) = crc(a) ^ crc(b) ^ crc(0...)``.
``crc32c_rows`` uses that to checksum many equal-length rows at once: the CRC of a template row plus,
for each column that differs, a 256-entry table lookup of that byte's contribution. The contribution of a
byte only depends on how many bytes follow it, so tables are cached by that distance.
"""

from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np
from crc32c import crc32c

__all__ = [
    "MASK_DELTA",
    "crc32c",
    "crc32c_rows",
    "frame_record",
    "length_header",
    "mask",
    "mask_array",
    "masked_crc32c",
]

MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def mask(crc: int) -> int:
    """Mask a CRC32C value the way TFRecord does (rotate right 15, add 0xA282EAD8)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """Masked CRC32C of ``data``."""
    return mask(crc32c(data))


def mask_array(crc: np.ndarray) -> np.ndarray:
    """Vectorized :func:`mask` over a uint32 array."""
    c = crc.astype(np.uint32, copy=False)
    masked: np.ndarray = ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(MASK_DELTA)
    return masked


@lru_cache(maxsize=65536)
def length_header(n: int) -> bytes:
    """The 12-byte record header for a payload of ``n`` bytes (cached: it only depends on ``n``)."""
    lb = _U64.pack(n)
    return lb + _U32.pack(masked_crc32c(lb))


def frame_record(payload: bytes) -> bytes:
    """Frame one serialized Event as a TFRecord."""
    return length_header(len(payload)) + payload + _U32.pack(masked_crc32c(payload))


@lru_cache(maxsize=8192)
def _byte_table(distance: int) -> np.ndarray:
    """Linear CRC32C contribution of each byte value followed by ``distance`` bytes (entry 0 is 0)."""
    tail = bytes(distance)
    zero = crc32c(bytes(1) + tail)
    out = np.fromiter((crc32c(bytes((b,)) + tail) ^ zero for b in range(256)), dtype=np.uint32, count=256)
    out.setflags(write=False)
    return out


def crc32c_rows(rows: np.ndarray, varying: list[int] | np.ndarray | None = None) -> np.ndarray:
    """Plain (unmasked) CRC32C of every row of a 2-D uint8 array, vectorized.

    ``varying`` lists the columns that may differ between rows; every other column must be equal to row 0's.
    When ``varying`` is None the columns are found by comparing with row 0.
    """
    m, width = rows.shape
    if m == 0:
        return np.zeros(0, dtype=np.uint32)
    if varying is not None and m <= 4 * len(varying):  # few rows: one C call per row beats a table per column
        flat = np.ascontiguousarray(rows).tobytes()
        return np.fromiter((crc32c(flat[i : i + width]) for i in range(0, m * width, width)), np.uint32, m)
    ref = rows[0]
    if varying is None:
        varying = np.flatnonzero((rows != ref).any(axis=0))
    template = ref.copy()
    cols = [int(c) for c in varying]
    template[cols] = 0
    acc = np.full(m, crc32c(template.tobytes()), dtype=np.uint32)
    for c in cols:
        acc ^= _byte_table(width - 1 - c)[rows[:, c]]
    return acc
