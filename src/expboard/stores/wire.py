"""Encoding of metric columns into compact blobs, shared by the SQL store and the HTTP wire format.

A chunk holds the points of one metric logged in one batch: steps (int64), wall times (float64) and
values. Values are packed as float64, int64 or bool arrays when they are all of one such type, and as a
JSON list otherwise (strings, None, mixed types, dicts). NaN and infinities survive both paths.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # numpy loads on first use: opening a store (a run agent's start) does not pay for it
    np = lazy_import("numpy", globals(), "np")

__all__ = [
    "WIRE_CONTENT_TYPE",
    "decode_batch",
    "decode_values",
    "encode_batch",
    "encode_values",
    "json_default",
    "pack_f8",
    "pack_i8",
    "unpack_f8",
    "unpack_i8",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def pack_i8(values: Any) -> bytes:
    return np.asarray(values, dtype="<i8").tobytes()


def pack_f8(values: Any) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def unpack_i8(blob: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(blob, dtype="<i8").astype(np.int64)


def unpack_f8(blob: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8").astype(np.float64)


def json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default`` for metric values: numpy scalars and arrays (and torch-like tensors)
    become plain numbers and lists; anything else is a TypeError."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) or hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"values of type {type(obj).__name__} cannot be stored")


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
    return "json", json.dumps(list(values), default=json_default, allow_nan=True).encode()


def decode_values(dtype: str, blob: bytes) -> np.ndarray | list[Any]:
    if dtype == "f8":
        return unpack_f8(blob)
    if dtype == "i8":
        return unpack_i8(blob)
    if dtype == "b1":
        return np.frombuffer(blob, dtype=np.uint8).astype(bool)
    if dtype == "json":
        values: list[Any] = json.loads(blob)
        return values
    raise ValueError(f"unknown value encoding {dtype!r}")


def concat_values(parts: list[np.ndarray | list[Any]]) -> np.ndarray | list[Any]:
    """Join the value columns of several chunks, keeping an array when every part is one of one dtype."""
    if not parts:
        return np.zeros(0, dtype=np.float64)
    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    if len(arrays) == len(parts) and len({a.dtype for a in arrays}) == 1:
        return np.concatenate(arrays)
    out: list[Any] = []
    for p in parts:
        out.extend(p.tolist() if isinstance(p, np.ndarray) else p)
    return out


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats turned into strings, for strict JSON consumers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# --- the wire format of metric batches -----------------------------------------------------------------
#
#   b"EXPB" | u8 version (1) | u32 header length, little-endian | header: UTF-8 JSON | column bytes
#
# The header is {"batch_id": str | null, "chunks": [{"run_id", "name", "kind", "n", "dtype", "sizes":
# [steps bytes, wall-time bytes, value bytes]}, ...]}; the columns follow in that order, chunk after chunk,
# packed as in the SQL store (int64 steps, float64 wall times, values as ``encode_values``). Binary floats
# carry NaN, infinities and -0.0 exactly, and decoding is one ``frombuffer`` per column.

WIRE_MAGIC = b"EXPB"
WIRE_VERSION = 1
WIRE_CONTENT_TYPE = "application/x-expboard-metrics"
_HEADER = struct.Struct("<4sBI")
_KNOWN_DTYPES = {"f8": 8, "i8": 8, "b1": 1, "json": 0}
_COLUMN_DTYPES = {"f8": "<f8", "i8": "<i8"}  # bools are checked byte by byte (decode_values)


def encode_batch(chunks: Sequence[Any], batch_id: str | None = None) -> bytes:
    """Pack metric chunks (or series: anything with run_id, name, kind, steps, wall_times, values)."""
    metas: list[dict[str, Any]] = []
    columns: list[bytes] = []
    for c in chunks:
        steps = pack_i8(c.steps)
        times = pack_f8(c.wall_times)
        dtype, vals = encode_values(c.values)
        meta: dict[str, Any] = {
            "run_id": c.run_id,
            "name": c.name,
            "kind": str(c.kind),
            "n": len(steps) // 8,
            "dtype": dtype,
            "sizes": [len(steps), len(times), len(vals)],
        }
        origin = getattr(c, "origin", None)
        if origin is not None:  # default steps counted from a stored count not known yet (a client's journal)
            meta["origin"] = str(origin)
            meta["explicit"] = [int(i) for i in c.explicit]
            meta["absolute"] = bool(c.absolute)
        metas.append(meta)
        columns += (steps, times, vals)
    header = json.dumps({"batch_id": batch_id, "chunks": metas}, separators=(",", ":")).encode()
    header += b" " * (-(_HEADER.size + len(header)) % 8)  # columns start 8-byte aligned (JSON ignores the spaces)
    return b"".join([_HEADER.pack(WIRE_MAGIC, WIRE_VERSION, len(header)), header, *columns])


def _column(view: memoryview, start: int, size: int, dtype: str) -> np.ndarray:
    """A column of ``view`` as a numpy array: the bytes themselves when ``view`` is writable (a bytearray)
    and the column aligned, so decoding copies nothing; a copy otherwise."""
    arr = np.frombuffer(view[start : start + size], dtype=dtype)
    native = arr.dtype.newbyteorder("=")
    if view.readonly or not arr.flags.aligned or arr.dtype != native:
        return arr.astype(native)
    return arr


def decode_batch(body: bytes | bytearray) -> tuple[str | None, list[dict[str, Any]]]:
    """Unpack :func:`encode_batch`: the batch id and, per chunk, a dict with run_id, name, kind, steps,
    wall_times and values. Raises ValueError on anything malformed (this parses untrusted input).

    Given a ``bytearray``, the numeric columns are arrays over its bytes (no copy: a series read costs about
    its decoded size); given ``bytes``, they are copies."""
    view = memoryview(body)
    if len(view) < _HEADER.size:
        raise ValueError("metric batch too short")
    magic, version, header_len = _HEADER.unpack_from(view)
    if magic != WIRE_MAGIC or version != WIRE_VERSION:
        raise ValueError(f"not an expboard metric batch of version {WIRE_VERSION}")
    pos = _HEADER.size + header_len
    if pos > len(view):
        raise ValueError("metric batch header runs past the body")
    header = json.loads(bytes(view[_HEADER.size : pos]))
    batch_id = header.get("batch_id")
    if batch_id is not None and (not isinstance(batch_id, str) or not 0 < len(batch_id) <= 200):
        raise ValueError("batch_id must be a string of 1 to 200 characters")
    out = []
    for meta in header["chunks"]:
        n, dtype, sizes = int(meta["n"]), str(meta["dtype"]), [int(s) for s in meta["sizes"]]
        width = _KNOWN_DTYPES.get(dtype)
        if width is None:
            raise ValueError(f"unknown value encoding {dtype!r}")
        if n < 0 or len(sizes) != 3 or sizes[0] != 8 * n or sizes[1] != 8 * n or (width and sizes[2] != width * n):
            raise ValueError(f"metric {meta.get('name')!r}: column sizes do not match {n} points")
        if min(sizes) < 0 or pos + sum(sizes) > len(view):
            raise ValueError("metric batch columns run past the body")
        steps = _column(view, pos, sizes[0], "<i8")
        pos += sizes[0]
        times = _column(view, pos, sizes[1], "<f8")
        pos += sizes[1]
        values: np.ndarray | list[Any]
        if dtype in _COLUMN_DTYPES:
            values = _column(view, pos, sizes[2], _COLUMN_DTYPES[dtype])
        else:
            values = decode_values(dtype, bytes(view[pos : pos + sizes[2]]))
        pos += sizes[2]
        if len(values) != n:
            raise ValueError(f"metric {meta.get('name')!r}: {len(values)} values for {n} points")
        part: dict[str, Any] = {
            "run_id": str(meta["run_id"]),
            "name": str(meta["name"]),
            "kind": str(meta["kind"]),
            "steps": steps,
            "wall_times": times,
            "values": values,
        }
        if "origin" in meta:
            explicit = meta.get("explicit", [])
            if not isinstance(explicit, list) or not all(type(i) is int and 0 <= i < n for i in explicit):
                raise ValueError(f"metric {meta.get('name')!r}: explicit step positions out of range")
            part.update(origin=str(meta["origin"]), explicit=explicit, absolute=bool(meta.get("absolute")))
        out.append(part)
    if pos != len(view):
        raise ValueError("metric batch has trailing bytes")
    return batch_id, out
