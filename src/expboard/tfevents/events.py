"""Decoded events: small frozen dataclasses and :func:`decode_event`, built on TensorBoard's own protobuf
classes (``tensorboard.compat.proto``), so any payload decodes exactly as TensorBoard's loaders see it:
fields of the wrong wire type are unknown fields, repeated messages merge, the last member of a oneof
wins, and strings must be UTF-8.

Decoding allocates in proportion to the payload's bytes. A tensor's declared shape costs nothing until
:meth:`TensorValue.to_numpy` is called, which refuses to expand one stored value into more than
``MAX_FILL_ELEMENTS`` elements (protobuf's "one value fills the shape" form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError as _ProtobufDecodeError  # type: ignore[import-untyped]
from google.protobuf.unknown_fields import UnknownFieldSet  # type: ignore[import-untyped]
from tensorboard.compat.proto import event_pb2  # type: ignore[import-untyped]

from ._proto import DecodeError

__all__ = [
    "MAX_FILL_ELEMENTS",
    "Event",
    "HistogramValue",
    "ImageValue",
    "SummaryValue",
    "TensorValue",
    "decode_event",
    "event_from_proto",
    "parse_event",
    "proto_value_scalar",
]

MAX_FILL_ELEMENTS = 1 << 20

# DataType -> numpy dtype (TensorBoard's as_numpy_dtype; bfloat16, 14, is widened to float32 by hand)
_NP_DTYPES = {
    1: "<f4",
    2: "<f8",
    3: "<i4",
    4: "u1",
    5: "<i2",
    6: "i1",
    9: "<i8",
    10: "?",
    11: "i1",
    12: "u1",
    13: "<i4",
    15: "<i2",
    16: "<u2",
    17: "<u2",
    19: "<f2",
    22: "<u4",
    23: "<u8",
}
_INT_VAL_DTYPES = frozenset({3, 4, 5, 6, 11, 12, 13, 15, 16, 17})
_SCALAR_DTYPES = frozenset({1, 2, 3, 9, 19})  # what SummaryValue.scalar reads: float, double, int32, int64, half


def _values_field(dtype: int) -> str | None:
    """The TensorProto field holding the values of ``dtype`` when ``tensor_content`` is empty."""
    if dtype == 1:
        return "float_val"
    if dtype == 2:
        return "double_val"
    if dtype in (14, 19):
        return "half_val"
    if dtype in _INT_VAL_DTYPES:
        return "int_val"
    if dtype == 9:
        return "int64_val"
    if dtype == 10:
        return "bool_val"
    if dtype == 7:
        return "string_val"
    if dtype == 22:
        return "uint32_val"
    if dtype == 23:
        return "uint64_val"
    return None


def _from_content(content: bytes, dtype: int) -> np.ndarray:
    if dtype == 14:  # bfloat16: the high half of a float32
        bits: np.ndarray = np.frombuffer(content, dtype="<u2").astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32)
    np_dtype = _NP_DTYPES.get(dtype)
    if np_dtype is None:
        raise ValueError(f"tensor dtype {dtype} is not supported")
    if len(content) % np.dtype(np_dtype).itemsize:
        raise ValueError(f"tensor_content of {len(content)} bytes is not a whole number of dtype {dtype} elements")
    return np.frombuffer(content, dtype=np_dtype)


def _from_values(values: tuple[Any, ...], dtype: int) -> np.ndarray:
    if dtype in (14, 19):
        bits = np.array(values, dtype=np.int64).astype(np.uint16)  # int32 on the wire: keep the low 16 bits
        return bits.view(np.float16) if dtype == 19 else (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if dtype == 7:
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        return arr
    np_dtype = _NP_DTYPES.get(dtype)
    if np_dtype is None:
        raise ValueError(f"tensor dtype {dtype} is not supported")
    if dtype in _INT_VAL_DTYPES:  # int_val holds int32 for every small integer type: wrap as TensorFlow does
        return np.array(values, dtype=np.int64).astype(np_dtype)
    return np.array(values, dtype=np_dtype)


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
    half_val: tuple[int, ...] = ()  # float16/bfloat16 bit patterns
    uint32_val: tuple[int, ...] = ()
    uint64_val: tuple[int, ...] = ()

    @property
    def num_elements(self) -> int:
        """Elements the shape declares (-1 if a dimension is negative, i.e. unknown)."""
        return -1 if any(d < 0 for d in self.shape) else math.prod(self.shape)

    def stored_values(self) -> tuple[Any, ...]:
        """The value field that ``dtype`` reads when ``tensor_content`` is empty (as TensorBoard does)."""
        name = _values_field(self.dtype)
        return () if name is None else tuple(getattr(self, name))

    def to_numpy(self) -> np.ndarray:
        """The tensor as an array shaped as declared (strings as an object array of bytes), read as
        TensorBoard's ``make_ndarray`` does: ``tensor_content`` if set, else the value field of the dtype,
        one stored value filling the whole shape.

        Raises ``ValueError`` when the stored values do not fill the declared shape, when the dtype is not
        supported, or when one value would fill more than ``MAX_FILL_ELEMENTS`` elements.
        """
        n = self.num_elements
        if n < 0:
            raise ValueError(f"tensor shape {list(self.shape)} has a negative (unknown) dimension")
        if self.tensor_content:
            arr = _from_content(self.tensor_content, self.dtype)
        else:
            values = self.stored_values()
            if len(values) == 1 and n != 1:
                if n > MAX_FILL_ELEMENTS:
                    raise ValueError(
                        f"tensor of shape {list(self.shape)} stores one value for {n:,} elements; expanding more "
                        f"than {MAX_FILL_ELEMENTS:,} is refused (index the stored value instead)"
                    )
                return np.repeat(_from_values(values, self.dtype), n).reshape(self.shape)
            arr = _from_values(values, self.dtype)
        if arr.size != n:
            raise ValueError(f"tensor of shape {list(self.shape)} stores {arr.size} values, not {n}")
        return arr.reshape(self.shape)

    @property
    def scalar(self) -> float | None:
        """The single value of a one-element float, double, int32, int64 or half tensor, else None. Never
        allocates more than that one element."""
        if self.dtype not in _SCALAR_DTYPES or self.num_elements != 1:
            return None
        if self.tensor_content:
            if len(self.tensor_content) != np.dtype(_NP_DTYPES[self.dtype]).itemsize:
                return None
            arr = _from_content(self.tensor_content, self.dtype)
        else:
            values = self.stored_values()
            if len(values) != 1:
                return None
            arr = _from_values(values, self.dtype)
        return float(arr[0])


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
    """One ``Summary.Value``. At most one of simple_value / tensor / image / histo / audio is set (a oneof)."""

    tag: str
    simple_value: float | None = None
    tensor: TensorValue | None = None
    image: ImageValue | None = None
    histo: HistogramValue | None = None
    audio: bytes | None = None  # the Summary.Audio message, serialized
    plugin_name: str = ""
    plugin_content: bytes = b""
    display_name: str = ""
    summary_description: str = ""
    data_class: int = 0
    has_metadata: bool = False

    @property
    def scalar(self) -> float | None:
        """The value of a scalar (legacy simple_value, or a one-element float/double/int/half tensor)."""
        if self.simple_value is not None:
            return self.simple_value
        return None if self.tensor is None else self.tensor.scalar

    @property
    def text(self) -> str | None:
        """The text of a DT_STRING tensor (rank 0: the string; otherwise the strings joined by newlines)."""
        t = self.tensor
        if t is None or t.dtype != 7:
            return None
        return "\n".join(s.decode("utf-8", "replace") for s in t.string_val)


@dataclass(frozen=True)
class Event:
    """One decoded ``Event`` record. ``offset`` is its byte offset in its file (-1 when unknown).

    ``file_version``, ``summary``, ``session_log_status`` and ``graph_def`` are members of the Event's
    oneof: at most one is not None. ``other_fields`` lists the numbers of fields set but not carried here
    (log_message 6, tagged_run_metadata 8, meta_graph_def 9, and fields unknown to the proto)."""

    wall_time: float = 0.0
    step: int = 0
    file_version: str | None = None
    source_writer: str | None = None
    summary: tuple[SummaryValue, ...] | None = None
    session_log_status: int | None = None
    graph_def: bytes | None = None
    other_fields: tuple[int, ...] = field(default=())
    offset: int = -1


def parse_event(payload: bytes) -> Any:
    """The payload parsed by TensorBoard's ``Event`` protobuf class. Raises
    :class:`~expboard.tfevents._proto.DecodeError` when protobuf refuses it."""
    try:
        return event_pb2.Event.FromString(payload)
    except _ProtobufDecodeError as exc:
        raise DecodeError(str(exc).removeprefix("Error parsing message with type 'tensorboard.Event': ")) from exc


def _tensor(t: Any) -> TensorValue:
    return TensorValue(
        dtype=int(t.dtype),
        shape=tuple(int(d.size) for d in t.tensor_shape.dim),
        tensor_content=bytes(t.tensor_content),
        float_val=tuple(t.float_val),
        double_val=tuple(t.double_val),
        int_val=tuple(t.int_val),
        int64_val=tuple(t.int64_val),
        bool_val=tuple(t.bool_val),
        string_val=tuple(t.string_val),
        half_val=tuple(t.half_val),
        uint32_val=tuple(t.uint32_val),
        uint64_val=tuple(t.uint64_val),
    )


def _value(v: Any) -> SummaryValue:
    kind = v.WhichOneof("value")
    kw: dict[str, Any] = {"tag": v.tag}
    if kind == "simple_value":
        kw["simple_value"] = float(v.simple_value)
    elif kind == "tensor":
        kw["tensor"] = _tensor(v.tensor)
    elif kind == "image":
        i = v.image
        kw["image"] = ImageValue(int(i.height), int(i.width), int(i.colorspace), bytes(i.encoded_image_string))
    elif kind == "histo":
        h = v.histo
        kw["histo"] = HistogramValue(h.min, h.max, h.num, h.sum, h.sum_squares, tuple(h.bucket_limit), tuple(h.bucket))
    elif kind == "audio":
        kw["audio"] = v.audio.SerializeToString(deterministic=True)
    if v.HasField("metadata"):
        m = v.metadata
        kw.update(
            has_metadata=True,
            plugin_name=m.plugin_data.plugin_name,
            plugin_content=bytes(m.plugin_data.content),
            display_name=m.display_name,
            summary_description=m.summary_description,
            data_class=int(m.data_class),
        )
    return SummaryValue(**kw)


_OTHER = {"log_message": 6, "tagged_run_metadata": 8, "meta_graph_def": 9}


def event_from_proto(ev: Any, offset: int = -1) -> Event:
    """An :class:`Event` from a parsed ``tensorboard.Event`` message."""
    what = ev.WhichOneof("what")
    other = [_OTHER[what]] if what in _OTHER else []
    other += [f.field_number for f in UnknownFieldSet(ev)]
    return Event(
        wall_time=float(ev.wall_time),
        step=int(ev.step),
        file_version=ev.file_version if what == "file_version" else None,
        source_writer=ev.source_metadata.writer if ev.HasField("source_metadata") else None,
        summary=tuple(_value(v) for v in ev.summary.value) if what == "summary" else None,
        session_log_status=int(ev.session_log.status) if what == "session_log" else None,
        graph_def=bytes(ev.graph_def) if what == "graph_def" else None,
        other_fields=tuple(other),
        offset=offset,
    )


def decode_event(payload: bytes, offset: int = -1) -> Event:
    """Decode one serialized Event. Raises :class:`~expboard.tfevents._proto.DecodeError` on bad bytes."""
    return event_from_proto(parse_event(payload), offset)


def proto_value_scalar(v: Any, dtypes: frozenset[int] = frozenset({1, 2})) -> tuple[float, bool] | None:
    """``(value, is_tensor)`` of a parsed ``Summary.Value`` holding a scalar: a legacy ``simple_value``, or a
    one-element tensor of one of ``dtypes`` (default DT_FLOAT and DT_DOUBLE); else None."""
    kind = v.WhichOneof("value")
    if kind == "simple_value":
        return float(v.simple_value), False
    if kind != "tensor":
        return None
    t = v.tensor
    dtype = int(t.dtype)
    if dtype not in dtypes or dtype not in _SCALAR_DTYPES or any(d.size != 1 for d in t.tensor_shape.dim):
        return None
    if t.tensor_content:
        content = bytes(t.tensor_content)
        if len(content) != np.dtype(_NP_DTYPES[dtype]).itemsize:
            return None
        return float(_from_content(content, dtype)[0]), True
    name = _values_field(dtype)
    values: Any = getattr(t, name) if name else ()
    if len(values) != 1:
        return None
    return float(_from_values((values[0],), dtype)[0]), True
