"""Minimal protobuf wire-format helpers (proto3), enough for TensorBoard's Event and summary messages.

Encoding follows protobuf's own serializer: fields in ascending number order, singular scalars equal to
their default omitted (the callers decide that; these helpers always write), int64 as the varint of its
two's-complement uint64 (10 bytes when negative, no zigzag), repeated numeric fields packed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = [
    "DecodeError",
    "f_bytes",
    "f_double",
    "f_float",
    "f_packed_doubles",
    "f_varint",
    "iter_fields",
    "key",
    "read_varint",
    "signed64",
    "varint",
    "varint_size",
]

_MASK64 = (1 << 64) - 1
_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")

# Wire types.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


class DecodeError(ValueError):
    """Bytes that are not a valid protobuf message of the expected shape."""


def varint(value: int) -> bytes:
    """Varint of an int (negative values as their two's-complement uint64)."""
    v = value & _MASK64
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def varint_size(value: int) -> int:
    """Number of bytes of ``varint(value)``."""
    v = value & _MASK64
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def f_varint(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def f_bytes(field: int, data: bytes) -> bytes:
    return varint((field << 3) | LEN) + varint(len(data)) + data


def f_double(field: int, value: float) -> bytes:
    return varint((field << 3) | FIXED64) + _F64.pack(value)


def f_float(field: int, value: float) -> bytes:
    """A float field; doubles out of float32 range become ±inf like protobuf's C cast."""
    try:
        packed = _F32.pack(value)
    except OverflowError:
        packed = _F32.pack(float("inf") if value > 0 else float("-inf"))
    return varint((field << 3) | FIXED32) + packed


def f_packed_doubles(field: int, values: Sequence[float] | np.ndarray) -> bytes:
    """A packed repeated double field (omitted when empty, as protobuf does)."""
    if len(values) == 0:
        return b""
    if isinstance(values, np.ndarray):
        return f_bytes(field, np.ascontiguousarray(values, dtype="<f8").tobytes())
    return f_bytes(field, struct.pack(f"<{len(values)}d", *values))


def signed64(v: int) -> int:
    """Interpret a decoded uint64 varint as int64."""
    return v - (1 << 64) if v >= (1 << 63) else v


def read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def iter_fields(buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """Iterate over the fields of a message in ``buf[pos:end]``.

    Yields ``(field_number, wire_type, a, b)``: for varints ``a`` is the value (uint64) and ``b`` its end;
    for the other wire types ``buf[a:b]`` is the field's content (8 or 4 raw bytes, or the length-delimited
    payload). Groups (wire types 3/4) are rejected.
    """
    if end is None:
        end = len(buf)
    while pos < end:
        tag, pos = read_varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wt == VARINT:
            v, pos = read_varint(buf, pos, end)
            yield field, wt, v, pos
        elif wt == FIXED64:
            if pos + 8 > end:
                raise DecodeError("truncated fixed64")
            yield field, wt, pos, pos + 8
            pos += 8
        elif wt == LEN:
            n, pos = read_varint(buf, pos, end)
            if pos + n > end:
                raise DecodeError("length-delimited field runs past the end of its message")
            yield field, wt, pos, pos + n
            pos += n
        elif wt == FIXED32:
            if pos + 4 > end:
                raise DecodeError("truncated fixed32")
            yield field, wt, pos, pos + 4
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wt}")
