"""Decoded events: small frozen dataclasses and :func:`decode_event` (pure Python, any Event payload)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._proto import FIXED32, FIXED64, LEN, VARINT, DecodeError, iter_fields, read_varint, signed64

__all__ = [
    "Event",
    "HistogramValue",
    "ImageValue",
    "SummaryValue",
    "TensorValue",
    "decode_event",
]

# DataType -> numpy dtype for tensor_content
_NP_DTYPES = {
    1: "<f4",
    2: "<f8",
    3: "<i4",
    4: "u1",
    5: "<i2",
    6: "i1",
    9: "<i8",
    10: "?",
    14: "<f2",
    17: "<u2",
    19: "<f2",
    22: "<u4",
    23: "<u8",
}


@dataclass(frozen=True)
class TensorValue:
    """A ``TensorProto``: dtype (TensorFlow DataType number), shape, and whichever value fields were set."""

    dtype: int
    shape: tuple[int, ...] = ()
    tensor_content: bytes = b""
    float_val: tuple[float, ...] = ()
    double_val: tuple[float, ...] = ()
    int_val: tuple[int, ...] = ()
    int64_val: tuple[int, ...] = ()
    bool_val: tuple[bool, ...] = ()
    string_val: tuple[bytes, ...] = ()

    def to_numpy(self) -> np.ndarray:
        """The tensor as an array (strings as an object array of bytes)."""
        shape = self.shape
        if self.string_val or self.dtype == 7:
            arr = np.empty(len(self.string_val), dtype=object)
            arr[:] = list(self.string_val)
            return arr.reshape(shape) if arr.size == int(np.prod(shape)) else arr
        if self.tensor_content:
            arr = np.frombuffer(self.tensor_content, dtype=_NP_DTYPES.get(self.dtype, "u1"))
        else:
            vals = self.float_val or self.double_val or self.int_val or self.int64_val or self.bool_val
            arr = np.asarray(vals, dtype=_NP_DTYPES.get(self.dtype, "<f8"))
        size = int(np.prod(shape))
        if arr.size == 1 and size > 1:  # protobuf's "fill with the single value" convention
            arr = np.full(size, arr[0])
        return arr.reshape(shape) if arr.size == size else arr


@dataclass(frozen=True)
class ImageValue:
    """A legacy ``Summary.Image``."""

    height: int
    width: int
    colorspace: int
    encoded_image: bytes


@dataclass(frozen=True)
class HistogramValue:
    """A ``HistogramProto``: ``bucket_limit[i]`` is the right edge of bucket ``i``."""

    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limit: tuple[float, ...]
    bucket: tuple[float, ...]


@dataclass(frozen=True)
class SummaryValue:
    """One ``Summary.Value``. Exactly one of simple_value / tensor / image / histo / audio is usually set."""

    tag: str
    simple_value: float | None = None
    tensor: TensorValue | None = None
    image: ImageValue | None = None
    histo: HistogramValue | None = None
    audio: bytes | None = None  # the raw Summary.Audio message
    plugin_name: str = ""
    plugin_content: bytes = b""
    display_name: str = ""
    summary_description: str = ""
    data_class: int = 0
    has_metadata: bool = False

    @property
    def scalar(self) -> float | None:
        """The value of a scalar (legacy simple_value, or a one-element float/double/int tensor)."""
        if self.simple_value is not None:
            return self.simple_value
        t = self.tensor
        if t is not None and t.dtype in (1, 2, 3, 9, 19) and not t.string_val:
            arr = t.to_numpy()
            if arr.size == 1:
                return float(arr.reshape(-1)[0])
        return None

    @property
    def text(self) -> str | None:
        """The text of a DT_STRING tensor (rank 0: the string; otherwise the strings joined by newlines)."""
        t = self.tensor
        if t is None or t.dtype != 7:
            return None
        return "\n".join(s.decode("utf-8", "replace") for s in t.string_val)


@dataclass(frozen=True)
class Event:
    """One decoded ``Event`` record. ``offset`` is its byte offset in its file (-1 when unknown)."""

    wall_time: float = 0.0
    step: int = 0
    file_version: str | None = None
    source_writer: str | None = None
    summary: tuple[SummaryValue, ...] | None = None
    session_log_status: int | None = None
    graph_def: bytes | None = None
    other_fields: tuple[int, ...] = field(default=())
    offset: int = -1


_D = struct.Struct("<d")
_F = struct.Struct("<f")


def _str(buf: bytes, a: int, b: int) -> str:
    try:
        return buf[a:b].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid UTF-8 in a string field") from exc


def _packed(buf: bytes, wt: int, a: int, b: int, fmt: str, size: int) -> tuple[Any, ...]:
    if wt == LEN:
        if (b - a) % size:
            raise DecodeError("packed field length is not a multiple of its element size")
        return struct.unpack_from(f"<{(b - a) // size}{fmt}", buf, a)
    return struct.unpack_from(f"<{fmt}", buf, a)


def _packed_varints(buf: bytes, wt: int, a: int, b: int) -> list[int]:
    if wt == VARINT:
        return [a]
    out, pos = [], a
    while pos < b:
        v, pos = read_varint(buf, pos, b)
        out.append(v)
    return out


def _decode_tensor(buf: bytes, a: int, b: int) -> TensorValue:
    dtype, shape, content = 0, [], b""
    lists: dict[str, list[Any]] = {
        "float_val": [],
        "double_val": [],
        "int_val": [],
        "int64_val": [],
        "bool_val": [],
        "string_val": [],
    }
    for f, wt, x, y in iter_fields(buf, a, b):
        if f == 1 and wt == VARINT:
            dtype = x
        elif f == 2 and wt == LEN:
            for f2, wt2, x2, y2 in iter_fields(buf, x, y):
                if f2 == 2 and wt2 == LEN:
                    size = 0
                    for f3, wt3, x3, _ in iter_fields(buf, x2, y2):
                        if f3 == 1 and wt3 == VARINT:
                            size = signed64(x3)
                    shape.append(size)
        elif f == 4 and wt == LEN:
            content = bytes(buf[x:y])
        elif f == 5:
            lists["float_val"] += _packed(buf, wt, x, y, "f", 4)
        elif f == 6:
            lists["double_val"] += _packed(buf, wt, x, y, "d", 8)
        elif f == 7:
            lists["int_val"] += [signed64(v) for v in _packed_varints(buf, wt, x, y)]
        elif f == 10:
            lists["int64_val"] += [signed64(v) for v in _packed_varints(buf, wt, x, y)]
        elif f == 11:
            lists["bool_val"] += [bool(v) for v in _packed_varints(buf, wt, x, y)]
        elif f == 8 and wt == LEN:
            lists["string_val"].append(bytes(buf[x:y]))
    return TensorValue(dtype, tuple(shape), content, **{k: tuple(v) for k, v in lists.items()})


def _decode_value(buf: bytes, a: int, b: int) -> SummaryValue:
    kw: dict[str, Any] = {"tag": ""}
    for f, wt, x, y in iter_fields(buf, a, b):
        if f == 1 and wt == LEN:
            kw["tag"] = _str(buf, x, y)
        elif f == 2 and wt == FIXED32:
            kw["simple_value"] = _F.unpack_from(buf, x)[0]
        elif f == 8 and wt == LEN:
            kw["tensor"] = _decode_tensor(buf, x, y)
        elif f == 4 and wt == LEN:
            img: dict[int, Any] = {1: 0, 2: 0, 3: 0, 4: b""}
            for f2, wt2, x2, y2 in iter_fields(buf, x, y):
                img[f2] = bytes(buf[x2:y2]) if wt2 == LEN else x2
            kw["image"] = ImageValue(img[1], img[2], img[3], img[4])
        elif f == 5 and wt == LEN:
            h: dict[int, Any] = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: (), 7: ()}
            for f2, wt2, x2, y2 in iter_fields(buf, x, y):
                if f2 in (1, 2, 3, 4, 5) and wt2 == FIXED64:
                    h[f2] = _D.unpack_from(buf, x2)[0]
                elif f2 in (6, 7):
                    h[f2] = h[f2] + _packed(buf, wt2, x2, y2, "d", 8)
            kw["histo"] = HistogramValue(h[1], h[2], h[3], h[4], h[5], tuple(h[6]), tuple(h[7]))
        elif f == 6 and wt == LEN:
            kw["audio"] = bytes(buf[x:y])
        elif f == 9 and wt == LEN:
            kw["has_metadata"] = True
            for f2, wt2, x2, y2 in iter_fields(buf, x, y):
                if f2 == 1 and wt2 == LEN:
                    for f3, wt3, x3, y3 in iter_fields(buf, x2, y2):
                        if f3 == 1 and wt3 == LEN:
                            kw["plugin_name"] = _str(buf, x3, y3)
                        elif f3 == 2 and wt3 == LEN:
                            kw["plugin_content"] = bytes(buf[x3:y3])
                elif f2 == 2 and wt2 == LEN:
                    kw["display_name"] = _str(buf, x2, y2)
                elif f2 == 3 and wt2 == LEN:
                    kw["summary_description"] = _str(buf, x2, y2)
                elif f2 == 4 and wt2 == VARINT:
                    kw["data_class"] = x2
    return SummaryValue(**kw)


def decode_event(payload: bytes, offset: int = -1) -> Event:
    """Decode one serialized Event. Raises :class:`~expboard.tfevents._proto.DecodeError` on bad bytes."""
    kw: dict[str, Any] = {"offset": offset}
    other: list[int] = []
    for f, wt, x, y in iter_fields(payload):
        if f == 1 and wt == FIXED64:
            kw["wall_time"] = _D.unpack_from(payload, x)[0]
        elif f == 2 and wt == VARINT:
            kw["step"] = signed64(x)
        elif f == 3 and wt == LEN:
            kw["file_version"] = _str(payload, x, y)
        elif f == 5 and wt == LEN:
            kw["summary"] = tuple(
                _decode_value(payload, x2, y2)
                for f2, wt2, x2, y2 in iter_fields(payload, x, y)
                if f2 == 1 and wt2 == LEN
            )
        elif f == 10 and wt == LEN:
            kw["source_writer"] = ""
            for f2, wt2, x2, y2 in iter_fields(payload, x, y):
                if f2 == 1 and wt2 == LEN:
                    kw["source_writer"] = _str(payload, x2, y2)
        elif f == 7 and wt == LEN:
            kw["session_log_status"] = 0
            for f2, wt2, x2, _ in iter_fields(payload, x, y):
                if f2 == 1 and wt2 == VARINT:
                    kw["session_log_status"] = x2
        elif f == 4 and wt == LEN:
            kw["graph_def"] = bytes(payload[x:y])
        else:
            other.append(f)
    return Event(other_fields=tuple(other), **kw)
