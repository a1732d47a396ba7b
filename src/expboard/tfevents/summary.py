"""Pure functions that build TensorBoard Event payloads and Summary.Value messages, as bytes; and the
builders of ``torch.utils.tensorboard.summary`` (same names and arguments: :func:`scalar`,
:func:`histogram`, :func:`image`, :func:`text`, :func:`audio`, :func:`video`, :func:`hparams`,
:func:`pr_curve`, :func:`custom_scalars`, :func:`mesh`, ...), which return TensorBoard's protobuf
``Summary`` messages.

Everything here is byte-identical to protobuf's serialization of TensorBoard's protos (see the tests).
Functions named ``*_value`` return one serialized ``Summary.Value``; wrap one or more of them into an Event
payload with :func:`summary_event`, then hand it to :meth:`EventFileWriter.write_event` (which frames it)::

    from expboard.tfevents import summary as S
    payload = S.summary_event([S.text_value("notes", "hello *world*")], step=3)
    writer.write_event(payload)

:func:`encode_scalars` is the vectorized path: it returns complete framed records for many points of one
tag (legacy ``simple_value`` form, which both TensorBoard loaders accept) at a few hundred ns per point.
"""

from __future__ import annotations

import enum
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._builders import (
    audio,
    compute_curve,
    convert_to_HWC,
    custom_scalars,
    draw_boxes,
    half_to_int,
    histogram,
    histogram_raw,
    hparams,
    image,
    image_boxes,
    int_to_half,
    make_grid,
    make_histogram,
    make_image,
    make_video,
    mesh,
    pr_curve,
    pr_curve_raw,
    prepare_video,
    scalar,
    tensor_proto,
    text,
    video,
)
from ._crc import crc32c_rows, frame_record, length_header, mask_array
from ._histogram import bucket_histogram, histogram_buckets, tensorflow_bins
from ._inputs import make_np
from ._png import encode_png
from ._proto import f_bytes, f_double, f_float, f_packed_doubles, f_varint, varint, varint_size

__all__ = [
    "audio",
    "compute_curve",
    "convert_to_HWC",
    "custom_scalars",
    "draw_boxes",
    "half_to_int",
    "histogram",
    "histogram_raw",
    "hparams",
    "image",
    "image_boxes",
    "int_to_half",
    "make_grid",
    "make_histogram",
    "make_image",
    "make_video",
    "mesh",
    "pr_curve",
    "pr_curve_raw",
    "prepare_video",
    "scalar",
    "tensor_proto",
    "text",
    "video",
    "make_np",
    "DatasetType",
    "HParam",
    "HParamType",
    "MetricSpec",
    "SessionStatus",
    "encode_scalar_series",
    "encode_scalars",
    "encode_scalars_few",
    "encoded_image_value",
    "file_version_event",
    "hparams_experiment",
    "hparams_session_end",
    "hparams_session_start",
    "histogram_value",
    "histogram_value_from_buckets",
    "image_size",
    "image_value",
    "scalar_event",
    "scalar_value",
    "summary_event",
    "histogram_buckets",
    "summary_event_from_summary",
    "tensorflow_bins",
    "text_table_value",
    "text_value",
]

_F64 = struct.Struct("<d")
_U64 = struct.Struct("<Q")

DT_FLOAT, DT_DOUBLE, DT_STRING = 1, 2, 7
FILE_VERSION = "brain.Event:2"

# SummaryMetadata for the plugins whose plugin-data content is empty (version 0).
_SCALARS_METADATA = f_bytes(1, f_bytes(1, b"scalars"))
_TEXT_METADATA = f_bytes(1, f_bytes(1, b"text"))
_SCALAR_SHAPE = f_bytes(2, b"")  # rank 0: an empty TensorShapeProto, still present
_NULL_TENSOR = f_varint(1, DT_FLOAT) + f_bytes(2, f_bytes(2, b""))  # DT_FLOAT, shape [0]


class SessionStatus(enum.IntEnum):
    """``tensorboard.hparams.Status`` of a session."""

    UNKNOWN = 0
    SUCCESS = 1
    FAILURE = 2
    RUNNING = 3


class HParamType(enum.IntEnum):
    """``tensorboard.hparams.DataType`` (integers use FLOAT64)."""

    UNSET = 0
    STRING = 1
    BOOL = 2
    FLOAT64 = 3


class DatasetType(enum.IntEnum):
    """``tensorboard.hparams.DatasetType`` of a metric."""

    UNKNOWN = 0
    TRAINING = 1
    VALIDATION = 2


def _wall(wall_time: float | None) -> float:
    return time.time() if wall_time is None else float(wall_time)


def _tag_bytes(tag: str) -> bytes:
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a str, got {type(tag).__name__}")
    return tag.encode("utf-8")


def _tag_field(tag: str) -> bytes:
    """Summary.Value.tag (field 1); an empty tag is the default and omitted."""
    tb = _tag_bytes(tag)
    return f_bytes(1, tb) if tb else b""


# --------------------------------------------------------------------------------------------- events


def summary_event(values: Sequence[bytes], step: int = 0, wall_time: float | None = None) -> bytes:
    """Event payload ``{wall_time, step, summary{value: values}}`` from serialized Summary.Values."""
    out = bytearray()
    wt = _wall(wall_time)
    wb = _F64.pack(wt)
    if wb != b"\0" * 8:  # +0.0 is the default and omitted; -0.0 is written
        out += b"\x09" + wb
    step = int(step)
    if step:
        out += b"\x10" + varint(step)
    summary = b"".join(b"\x0a" + varint(len(v)) + v for v in values)
    out += b"\x2a" + varint(len(summary)) + summary  # oneof member: written even when empty
    return bytes(out)


def summary_event_from_summary(summary: bytes, step: int = 0, wall_time: float | None = None) -> bytes:
    """Event payload ``{wall_time, step, summary}`` from a serialized ``Summary`` message."""
    out = bytearray()
    wb = _F64.pack(_wall(wall_time))
    if wb != b"\0" * 8:
        out += b"\x09" + wb
    step = int(step)
    if step:
        out += b"\x10" + varint(step)
    out += b"\x2a" + varint(len(summary)) + summary
    return bytes(out)


def file_version_event(wall_time: float | None = None, writer: str | None = "expboard") -> bytes:
    """The first Event of every file: ``file_version = "brain.Event:2"`` and ``source_metadata.writer``
    (omitted when ``writer`` is None)."""
    out = bytearray()
    wb = _F64.pack(_wall(wall_time))
    if wb != b"\0" * 8:
        out += b"\x09" + wb
    out += f_bytes(3, FILE_VERSION.encode())
    if writer is not None:
        out += f_bytes(10, f_bytes(1, writer.encode()) if writer else b"")
    return bytes(out)


def scalar_value(
    tag: str, value: float, *, new_style: bool = False, double_precision: bool = False, metadata: bool = True
) -> bytes:
    """A scalar Summary.Value.

    By default the legacy form ``simple_value`` (float32). With ``new_style`` a rank-0 tensor in
    ``tensor_content`` (DT_FLOAT, or DT_DOUBLE with ``double_precision`` -- note that TensorBoard's Rust
    loader drops DT_DOUBLE scalars) plus ``plugin_name "scalars"`` metadata when ``metadata`` is true.
    """
    tb = _tag_field(tag)
    v = float(value)
    if not new_style:
        return tb + f_float(2, v)
    if double_precision:
        tensor = f_varint(1, DT_DOUBLE) + _SCALAR_SHAPE + f_bytes(4, _F64.pack(v))
    else:
        tensor = f_varint(1, DT_FLOAT) + _SCALAR_SHAPE + f_bytes(4, f_float(2, v)[1:])
    return tb + f_bytes(8, tensor) + (f_bytes(9, _SCALARS_METADATA) if metadata else b"")


def scalar_event(tag: str, value: float, step: int = 0, wall_time: float | None = None) -> bytes:
    """Event payload with one legacy scalar (``simple_value``)."""
    return summary_event([scalar_value(tag, value)], step, wall_time)


def text_value(tag: str, text: str | Sequence[str]) -> bytes:
    """A text Summary.Value (plugin "text"): a string is a rank-0 tensor (rendered as Markdown), a
    sequence of strings a rank-1 tensor (rendered as a table)."""
    if isinstance(text, str):
        items = [text]
        shape = b""
    else:
        items = list(text)
        shape = f_bytes(2, f_varint(1, len(items)) if items else b"")
    tensor = (
        f_varint(1, DT_STRING)
        + f_bytes(2, shape)
        + b"".join(f_bytes(8, s.encode("utf-8") if isinstance(s, str) else bytes(s)) for s in items)
    )
    return _tag_field(tag) + f_bytes(8, tensor) + f_bytes(9, _TEXT_METADATA)


def image_size(data: bytes) -> tuple[int, int, int]:
    """(height, width, colorspace) from a PNG or JPEG header; (0, 0, 0) when not recognised.

    Colorspace as in ``Summary.Image``: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        colorspace = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 0)
        return height, width, colorspace
    if data[:2] == b"\xff\xd8":  # JPEG: walk the segments up to a start-of-frame marker
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                break
            marker = data[pos + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            (seg_len,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 10 <= len(data):
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                components = data[pos + 9]
                return height, width, {1: 1, 3: 3, 4: 4}.get(components, 0)
            pos += 2 + seg_len
    return 0, 0, 0


def encoded_image_value(tag: str, data: bytes) -> bytes:
    """A legacy ``Summary.Image`` value holding already-encoded PNG or JPEG bytes."""
    height, width, colorspace = image_size(data)
    img = b""
    if height:
        img += f_varint(1, height)
    if width:
        img += f_varint(2, width)
    if colorspace:
        img += f_varint(3, colorspace)
    img += f_bytes(4, data)
    return _tag_field(tag) + f_bytes(4, img)


def text_table_value(tag: str, rows: Sequence[Sequence[str]]) -> bytes:
    """A text value holding a rank-2 string tensor, which TensorBoard's text plugin renders as a table."""
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    shape = f_bytes(2, f_varint(1, n_rows)) + f_bytes(2, f_varint(1, n_cols))
    cells = b"".join(f_bytes(8, (str(r[j]) if j < len(r) else "").encode("utf-8")) for r in rows for j in range(n_cols))
    tensor = f_varint(1, DT_STRING) + f_bytes(2, shape) + cells
    return _tag_field(tag) + f_bytes(8, tensor) + f_bytes(9, _TEXT_METADATA)


# --------------------------------------------------------------------------------------------- images


def _to_hwc_uint8(image: Any, dataformats: str) -> np.ndarray:
    arr = np.asarray(image)
    fmt = dataformats.upper()
    if len(fmt) != arr.ndim or set(fmt) - set("CHW") or not {"H", "W"} <= set(fmt):
        raise ValueError(f"dataformats {dataformats!r} does not fit an array of shape {arr.shape}")
    if "C" not in fmt:
        arr = arr[..., None]
        fmt += "C"
    arr = np.transpose(arr, [fmt.index(c) for c in "HWC"])
    if arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"an image needs 1 to 4 channels, got {arr.shape[2]}")
    if arr.dtype != np.uint8:
        # floats are taken as [0, 1] (scaled by 255, clipped, truncated like torch's SummaryWriter)
        with np.errstate(invalid="ignore"):
            arr = (np.nan_to_num(arr.astype(np.float32)) * 255.0).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def image_value(tag: str, image: Any, *, dataformats: str = "HWC") -> bytes:
    """An image Summary.Value (legacy ``Summary.Image`` with PNG bytes).

    ``image`` is array-like: uint8 in [0, 255] or float in [0, 1]; ``dataformats`` is any arrangement of
    H, W and optionally C ("HWC", "CHW", "HW"); C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).
    """
    hwc = _to_hwc_uint8(image, dataformats)
    h, w, c = hwc.shape
    img = f_varint(1, h) + f_varint(2, w) + f_varint(3, c) + f_bytes(4, encode_png(hwc))
    return _tag_field(tag) + f_bytes(4, img)


# --------------------------------------------------------------------------------------------- histograms


def histogram_value_from_buckets(
    tag: str,
    bucket_limits: Sequence[float] | np.ndarray,
    bucket_counts: Sequence[float] | np.ndarray,
    *,
    min: float,
    max: float,
    num: float,
    sum: float,
    sum_squares: float,
) -> bytes:
    """A legacy ``histo`` Summary.Value from precomputed buckets (``bucket_limits[i]`` is the right edge of
    bucket ``i``; the first bucket starts at the previous limit, or -DBL_MAX)."""
    h = bytearray()
    for field, v in ((1, min), (2, max), (3, num), (4, sum), (5, sum_squares)):
        if _F64.pack(float(v)) != b"\0" * 8:
            h += f_double(field, float(v))
    h += f_packed_doubles(6, np.asarray(bucket_limits, dtype=np.float64))
    h += f_packed_doubles(7, np.asarray(bucket_counts, dtype=np.float64))
    return _tag_field(tag) + f_bytes(5, bytes(h))


def histogram_value(
    tag: str, values: Any, bins: str | int | Sequence[float] | np.ndarray = "tensorflow", max_bins: int | None = None
) -> bytes:
    """A legacy ``histo`` Summary.Value of ``values`` (any array-like), bucketed as torch's SummaryWriter does
    (see :func:`histogram_buckets`).

    ``bins`` is "tensorflow" (TensorFlow's exponential buckets), a bin count, explicit edges, or any string
    ``numpy.histogram`` accepts ("auto", "fd", ...).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("histogram of an empty array: the input has no element")
    limits, counts, v_min, v_max = bucket_histogram(v, bins, max_bins)
    return histogram_value_from_buckets(
        tag,
        limits,
        counts,
        min=v_min,
        max=v_max,
        num=float(v.size),
        sum=float(v.sum()),
        sum_squares=float(v.dot(v)),
    )


# --------------------------------------------------------------------------------------------- hparams

HParamValue = float | int | str | bool


@dataclass(frozen=True)
class HParam:
    """A hyperparameter in the HParams experiment: its name, type and optional domain.

    ``values`` is a discrete domain, ``interval`` a (min, max) real interval; ``type`` is inferred from them
    when not given.
    """

    name: str
    type: HParamType | None = None
    values: Sequence[HParamValue] | None = None
    interval: tuple[float, float] | None = None
    display_name: str = ""
    description: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """A metric of the HParams experiment: scalar ``tag`` read in run ``<session run>/<group>``."""

    tag: str
    group: str = ""
    display_name: str = ""
    description: str = ""
    dataset_type: DatasetType = DatasetType.UNKNOWN


def _pb_value(v: HParamValue) -> bytes:
    """A ``google.protobuf.Value`` (oneof members are always written)."""
    if isinstance(v, bool):
        return f_varint(4, int(v))
    if isinstance(v, int | float):
        return f_double(2, float(v))
    if isinstance(v, str):
        return f_bytes(3, v.encode("utf-8"))
    if hasattr(v, "item"):  # numpy / torch scalars
        return _pb_value(v.item())
    raise TypeError(f"hparam values must be bool, int, float or str, got {type(v).__name__}")


def _infer_type(values: Sequence[HParamValue]) -> HParamType:
    if values and all(isinstance(x, bool) for x in values):
        return HParamType.BOOL
    if values and all(isinstance(x, str) for x in values):
        return HParamType.STRING
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
        return HParamType.FLOAT64
    return HParamType.UNSET


def _opt_str(field: int, s: str) -> bytes:
    return f_bytes(field, s.encode("utf-8")) if s else b""


def _opt_double(field: int, v: float) -> bytes:
    return f_double(field, v) if _F64.pack(v) != b"\0" * 8 else b""


def _hparams_value(tag: str, plugin_data_field: int, message: bytes) -> bytes:
    content = f_bytes(plugin_data_field, message)  # HParamsPluginData; version 0 is never written
    metadata = f_bytes(1, f_bytes(1, b"hparams") + f_bytes(2, content))
    return f_bytes(1, tag.encode()) + f_bytes(8, _NULL_TENSOR) + f_bytes(9, metadata)


def hparams_experiment(
    hparams: Sequence[HParam | str],
    metrics: Sequence[MetricSpec | str],
    *,
    name: str = "",
    description: str = "",
    user: str = "",
    time_created_secs: float | None = None,
) -> bytes:
    """The ``_hparams_/experiment`` Summary.Value: which hparams and metrics the HParams dashboard shows.

    Write it once per logdir (the root run is typical), at step 0. Plain strings are taken as an hparam
    name with no domain and as a metric tag with no group.
    """
    infos = bytearray()
    for hp in hparams:
        h = HParam(hp) if isinstance(hp, str) else hp
        typ = h.type
        if typ is None:
            typ = (
                _infer_type(list(h.values))
                if h.values is not None
                else (HParamType.FLOAT64 if h.interval is not None else HParamType.UNSET)
            )
        msg = _opt_str(1, h.name) + _opt_str(2, h.display_name) + _opt_str(3, h.description)
        if typ:
            msg += f_varint(4, int(typ))
        if h.values is not None:
            msg += f_bytes(5, b"".join(f_bytes(1, _pb_value(x)) for x in h.values))
        elif h.interval is not None:
            msg += f_bytes(6, _opt_double(1, float(h.interval[0])) + _opt_double(2, float(h.interval[1])))
        infos += f_bytes(4, msg)
    for m in metrics:
        ms = MetricSpec(m) if isinstance(m, str) else m
        mname = _opt_str(1, ms.group) + _opt_str(2, ms.tag)
        msg = f_bytes(1, mname) + _opt_str(3, ms.display_name) + _opt_str(4, ms.description)
        if ms.dataset_type:
            msg += f_varint(5, int(ms.dataset_type))
        infos += f_bytes(5, msg)
    created = time.time() if time_created_secs is None else float(time_created_secs)
    exp = _opt_str(1, description) + _opt_str(2, user) + _opt_double(3, created) + bytes(infos) + _opt_str(6, name)
    return _hparams_value("_hparams_/experiment", 2, exp)


def hparams_session_start(
    hparams: Mapping[str, HParamValue],
    group_name: str = "",
    start_time: float | None = None,
    *,
    model_uri: str = "",
    monitor_url: str = "",
) -> bytes:
    """The ``_hparams_/session_start_info`` Summary.Value for the session of the run it is written to.

    Write it once, at step 0, in the session's own run directory (not the logdir root). Values are bool,
    int/float (stored as float64) or str; map entries are sorted by key for deterministic output.
    """
    entries = b"".join(
        f_bytes(1, f_bytes(1, k.encode("utf-8")) + f_bytes(2, _pb_value(hparams[k]))) for k in sorted(hparams)
    )
    start = time.time() if start_time is None else float(start_time)
    msg = entries + _opt_str(2, model_uri) + _opt_str(3, monitor_url) + _opt_str(4, group_name)
    msg += _opt_double(5, start)
    return _hparams_value("_hparams_/session_start_info", 3, msg)


def hparams_session_end(status: SessionStatus | int = SessionStatus.SUCCESS, end_time: float | None = None) -> bytes:
    """The ``_hparams_/session_end_info`` Summary.Value (optional; without it the status is UNKNOWN)."""
    end = time.time() if end_time is None else float(end_time)
    msg = (f_varint(1, int(status)) if int(status) else b"") + _opt_double(2, end)
    return _hparams_value("_hparams_/session_end_info", 4, msg)


# --------------------------------------------------------------------------------------------- fast scalars


_VARINT_LIMITS = np.array([1 << (7 * j) for j in range(1, 10)], dtype=np.uint64)  # smallest of each longer length


def _varint_len(u: np.ndarray) -> np.ndarray:
    """Varint length (1..10) of each uint64 (one search, not one pass per byte: short series pay per call)."""
    k: np.ndarray = np.searchsorted(_VARINT_LIMITS, u, side="right").astype(np.int64) + 1
    return k


def _encode_block(
    prefix: bytes, has_wall: bool, k: int, wall: np.ndarray, u: np.ndarray, vals32: np.ndarray
) -> np.ndarray:
    """Framed records for rows sharing the layout (wall present?, step varint length k; 0 = no step)."""
    m = len(u)
    parts = [b"\x09" + bytes(8)] if has_wall else []
    if k:
        parts.append(b"\x10" + bytes(k))
    parts.append(prefix + bytes(4))
    payload = b"".join(parts)
    plen = len(payload)
    template = np.frombuffer(length_header(plen) + payload + bytes(4), dtype=np.uint8)
    mat = np.empty((m, len(template)), dtype=np.uint8)
    mat[:] = template
    varying: list[int] = []
    pos = 12
    if has_wall:
        mat[:, pos + 1 : pos + 9] = wall.view(np.uint8).reshape(m, 8)
        varying += range(1, 9)
        pos += 9
    if k:
        for j in range(k):
            b = (u >> np.uint64(7 * j)) & np.uint64(0x7F)
            if j < k - 1:
                b |= np.uint64(0x80)
            mat[:, pos + 1 + j] = b
        varying += range(pos - 12 + 1, pos - 12 + 1 + k)
        pos += 1 + k
    mat[:, 12 + plen - 4 : 12 + plen] = vals32.view(np.uint8).reshape(m, 4)
    varying += range(plen - 4, plen)
    crc = mask_array(crc32c_rows(mat[:, 12 : 12 + plen], varying))
    mat[:, 12 + plen :] = crc.astype("<u4").view(np.uint8).reshape(m, 4)
    return mat


_F32 = struct.Struct("<f")


def encode_scalars_few(tag: str, steps: Sequence[int], wall_times: Sequence[float], values: Sequence[float]) -> bytes:
    """Like :func:`encode_scalars` for a few points given as Python lists: no numpy, so its cost is per
    point, not per call (for many points :func:`encode_scalars` is faster)."""
    tf = _tag_field(tag)
    v_len = len(tf) + 5
    prefix = b"\x2a" + varint(1 + varint_size(v_len) + v_len) + b"\x0a" + varint(v_len) + tf + b"\x15"
    pack_d, pack_f, zero = _F64.pack, _F32.pack, b"\0" * 8
    out = []
    for step, wall, value in zip(steps, wall_times, values, strict=True):
        wb = pack_d(wall)
        try:
            vb = pack_f(value)
        except OverflowError:  # out of float32 range: ±inf, as protobuf's float cast does
            vb = pack_f(float("inf") if value > 0 else float("-inf"))
        payload = (b"" if wb == zero else b"\x09" + wb) + (b"\x10" + varint(step) if step else b"") + prefix + vb
        out.append(frame_record(payload))
    return b"".join(out)


def encode_scalars(tag: str, steps: Any, wall_times: Any, values: Any) -> bytes:
    """Framed event records for many points of one scalar tag, in the given order (vectorized).

    ``steps`` (int64), ``wall_times`` (float64 seconds) and ``values`` (stored as float32, like
    ``simple_value``) are array-likes of equal length; ``wall_times`` may also be a single number. The bytes
    equal ``frame_record(scalar_event(tag, v, s, w))`` concatenated over the points.
    """
    buf, _ = _encode_scalars(tag, steps, wall_times, values)
    return buf.tobytes()


def encode_scalar_series(
    tag: str, steps: Any, wall_times: Any, values: Any, lengths: Sequence[int]
) -> tuple[memoryview, list[int]]:
    """:func:`encode_scalars` of several series of one tag at once, given concatenated: the points of series
    ``i`` are the next ``lengths[i]`` ones. Returns the framed records and the byte offset where each series'
    records start, with the end last (``len(lengths) + 1`` offsets), so series ``i`` is
    ``records[offsets[i]:offsets[i + 1]]``. One call for many short series costs about what one call for a
    single series does (an export of thousands of runs encodes each tag once per batch of runs)."""
    buf, rec_len = _encode_scalars(tag, steps, wall_times, values)
    bounds = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=bounds[1:])
    if bounds[-1] != len(rec_len):
        raise ValueError(f"lengths add up to {int(bounds[-1])} points, but {len(rec_len)} were given")
    ends = np.zeros(len(rec_len) + 1, dtype=np.int64)
    np.cumsum(rec_len, out=ends[1:])
    offsets: list[int] = ends[bounds].tolist()
    return memoryview(buf.data), offsets


def _encode_scalars(tag: str, steps: Any, wall_times: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """The framed records (uint8) and each record's length in bytes."""
    st = np.asarray(steps)
    if st.dtype.kind not in "iu" and st.size:
        raise TypeError(f"steps must be integers, got {st.dtype}")
    st = np.ascontiguousarray(st, dtype=np.int64).reshape(-1)
    n = len(st)
    wall = np.ascontiguousarray(np.broadcast_to(np.asarray(wall_times, dtype="<f8"), (n,)))
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(vals) != n:
        raise ValueError(f"{n} steps but {len(vals)} values")
    if n == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    with np.errstate(over="ignore"):  # out-of-range doubles become ±inf, as protobuf's float cast does
        vals32 = np.ascontiguousarray(vals.astype("<f4"))
    tf = _tag_field(tag)
    v_len = len(tf) + 5
    s_len = 1 + varint_size(v_len) + v_len
    prefix = b"\x2a" + varint(s_len) + b"\x0a" + varint(v_len) + tf + b"\x15"
    u = st.view(np.uint64)
    k = _varint_len(u)
    k[u == 0] = 0
    no_wall = wall.view(np.uint64) == 0
    rec_len = (12 + len(prefix) + 4 + 4) + 9 * ~no_wall + np.where(k > 0, k + 1, 0)
    layout = k + 11 * no_wall
    breaks = np.flatnonzero(layout[1:] != layout[:-1]) + 1
    if len(breaks) <= 16 + n // 256:
        # few runs of equal layout (e.g. increasing steps): encode each run as a contiguous block
        bounds = [0, *breaks.tolist(), n]
        if len(bounds) == 2:
            return _encode_block(prefix, not no_wall[0], int(k[0]), wall, u, vals32).reshape(-1), rec_len
        blocks = [
            _encode_block(prefix, not no_wall[a], int(k[a]), wall[a:b], u[a:b], vals32[a:b]).reshape(-1)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return np.concatenate(blocks), rec_len
    # many alternations: encode per layout, then scatter the rows into place
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(rec_len[:-1], out=offsets[1:])
    buf = np.empty(int(rec_len.sum()), dtype=np.uint8)
    for key in np.unique(layout).tolist():
        idx = np.flatnonzero(layout == key)
        mat = _encode_block(prefix, key < 11, key % 11, wall[idx], u[idx], vals32[idx])
        buf[(offsets[idx][:, None] + np.arange(mat.shape[1])).ravel()] = mat.ravel()
    return buf, rec_len
