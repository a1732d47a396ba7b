"""Encoding of metric columns into compact blobs, shared by the SQL store and the HTTP wire format.

A chunk holds the points of one metric logged in one batch: steps (int64), wall times (float64) and
values. Values are packed as float64, int64 or bool arrays when they are all of one such type, and as a
JSON list otherwise (strings, None, mixed types, dicts). NaN and infinities survive both paths.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["decode_values", "encode_values", "pack_i8", "pack_f8", "unpack_f8", "unpack_i8"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def pack_i8(values: Any) -> bytes:
    return np.asarray(values, dtype="<i8").tobytes()


def pack_f8(values: Any) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def unpack_i8(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<i8").astype(np.int64)


def unpack_f8(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8").astype(np.float64)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store a value of type {type(obj).__name__}")


def encode_values(values: Sequence[Any] | np.ndarray) -> tuple[str, bytes]:
    """Pack ``values`` as ``(dtype, blob)`` with dtype one of ``f8``, ``i8``, ``b1``, ``json``."""
    if isinstance(values, np.ndarray):
        kind = values.dtype.kind
        if kind == "f":
            return "f8", values.astype("<f8", copy=False).tobytes()
        if kind in "iu" and (values.size == 0 or (values.min() >= _INT64_MIN and values.max() <= _INT64_MAX)):
            return "i8", values.astype("<i8", copy=False).tobytes()
        if kind == "b":
            return "b1", values.astype(np.uint8).tobytes()
        values = values.tolist()
    types = set(map(type, values))
    if types == {float}:
        return "f8", np.array(values, dtype="<f8").tobytes()
    if types == {int} and all(_INT64_MIN <= v <= _INT64_MAX for v in values):
        return "i8", np.array(values, dtype="<i8").tobytes()
    if types == {bool}:
        return "b1", np.array(values, dtype=np.uint8).tobytes()
    return "json", json.dumps(list(values), default=_json_default, allow_nan=True).encode()


def decode_values(dtype: str, blob: bytes) -> np.ndarray | list[Any]:
    if dtype == "f8":
        return unpack_f8(blob)
    if dtype == "i8":
        return unpack_i8(blob)
    if dtype == "b1":
        return np.frombuffer(blob, dtype=np.uint8).astype(bool)
    if dtype == "json":
        return json.loads(blob)
    raise ValueError(f"unknown value encoding {dtype!r}")


def concat_values(parts: list[np.ndarray | list[Any]]) -> np.ndarray | list[Any]:
    """Join the value columns of several chunks, keeping an array when every part is one of one dtype."""
    if not parts:
        return np.zeros(0, dtype=np.float64)
    if all(isinstance(p, np.ndarray) for p in parts) and len({p.dtype for p in parts}) == 1:  # type: ignore[union-attr]
        return np.concatenate(parts)  # type: ignore[arg-type]
    out: list[Any] = []
    for p in parts:
        out.extend(p.tolist() if isinstance(p, np.ndarray) else p)
    return out


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats turned into strings, for strict JSON consumers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
