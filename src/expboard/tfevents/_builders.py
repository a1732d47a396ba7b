"""Summary builders with the names and arguments of ``torch.utils.tensorboard.summary``, returning
TensorBoard's own protobuf messages (``tensorboard.compat.proto``), and the array helpers behind them.

The data they hold is what torch's builders hold for the same input (tags, dtypes, shapes, buckets,
plugin metadata), with three deliberate differences: PNG bytes come from :mod:`._png` (same pixels, other
compression), videos are GIFs written with Pillow (torch needs moviepy), and torch is never needed.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import struct
import wave
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._histogram import histogram_buckets
from ._inputs import as_array, is_tensor, make_np
from ._png import encode_png


def _pb(name: str) -> Any:
    """A protobuf module of TensorBoard (a core dependency), untyped for mypy: it ships no stubs."""
    return importlib.import_module(name)


struct_pb2 = _pb("google.protobuf.struct_pb2")
_summary_pb2 = _pb("tensorboard.compat.proto.summary_pb2")
Summary = _summary_pb2.Summary
SummaryMetadata = _summary_pb2.SummaryMetadata
HistogramProto = _summary_pb2.HistogramProto
TensorProto = _pb("tensorboard.compat.proto.tensor_pb2").TensorProto
TensorShapeProto = _pb("tensorboard.compat.proto.tensor_shape_pb2").TensorShapeProto

__all__ = [
    "audio",
    "audio_wav",
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
    "image_to_uint8",
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
]


# --------------------------------------------------------------------------------------------- arrays


def make_grid(images: np.ndarray, ncols: int = 8) -> np.ndarray:
    """NCHW images (C = 1 or 3; 1 is repeated to 3) tiled into one CHW image, ``ncols`` per row."""
    if not isinstance(images, np.ndarray):
        raise TypeError("make_grid expects a numpy array")
    if images.ndim == 4 and images.shape[1] == 1:
        images = np.concatenate([images, images, images], 1)
    if images.ndim != 4 or images.shape[1] not in (3, 4):
        raise ValueError(f"expected NCHW images with 1, 3 or 4 channels, got shape {images.shape}")
    n, c, h, w = images.shape
    ncols = max(1, min(n, ncols))
    nrows = math.ceil(n / ncols)
    canvas = np.zeros((c, h * nrows, w * ncols), dtype=images.dtype)
    for i in range(n):
        y, x = divmod(i, ncols)
        canvas[:, y * h : (y + 1) * h, x * w : (x + 1) * w] = images[i]
    return canvas


def convert_to_HWC(tensor: np.ndarray, input_format: str) -> np.ndarray:
    """An image array in any layout (``dataformats`` such as "CHW", "HWC", "HW", "NCHW", "NHWC") as HWC,
    the way torch lays it out: a batch is tiled 8 per row, one channel or none becomes RGB."""
    fmt = input_format.upper()
    if len(set(fmt)) != len(fmt):
        raise ValueError(f"dataformats {input_format!r} uses a dimension twice")
    if tensor.ndim != len(fmt):
        raise ValueError(
            f"dataformats {input_format!r} has {len(fmt)} dimensions but the image has shape {tensor.shape}"
        )
    if len(fmt) == 4:
        if set(fmt) != set("NCHW"):
            raise ValueError(f"dataformats {input_format!r}: a batch needs N, C, H and W")
        grid: np.ndarray = make_grid(tensor.transpose([fmt.index(c) for c in "NCHW"])).transpose(1, 2, 0)
        return grid
    if len(fmt) == 3:
        if set(fmt) != set("CHW"):
            raise ValueError(f"dataformats {input_format!r}: an image needs C, H and W (or H and W)")
        hwc: np.ndarray = tensor.transpose([fmt.index(c) for c in "HWC"])
        if hwc.shape[2] == 1:
            hwc = np.concatenate([hwc, hwc, hwc], 2)
        return hwc
    if len(fmt) == 2 and set(fmt) == set("HW"):
        hw = tensor.transpose([fmt.index(c) for c in "HW"])
        return np.stack([hw, hw, hw], 2)
    raise ValueError(f"dataformats {input_format!r} is not one of NCHW, NHWC, CHW, HWC, HW (in any order)")


def image_to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 arrays as they are; anything else taken as [0, 1], scaled by 255, clipped and truncated."""
    if arr.dtype == np.uint8:
        return arr
    with np.errstate(invalid="ignore", over="ignore"):
        return (arr.astype(np.float32) * 255.0).clip(0, 255).astype(np.uint8)


def prepare_video(v: np.ndarray) -> np.ndarray:
    """A (N, T, C, H, W) batch of videos as (T, H', W', C) frames, the batch tiled in a grid padded to a
    power of two (uint8 input scaled to [0, 1])."""
    if v.ndim != 5:
        raise ValueError(f"a video must have shape (N, T, C, H, W), got {v.shape}")
    b, t, c, h, w = v.shape
    if v.dtype == np.uint8:
        v = v.astype(np.float32) / 255.0
    if b & (b - 1):
        v = np.concatenate([v, np.zeros((2 ** b.bit_length() - b, t, c, h, w), dtype=v.dtype)], axis=0)
    n_rows = 2 ** ((b.bit_length() - 1) // 2)
    n_cols = v.shape[0] // n_rows
    v = v.reshape(n_rows, n_cols, t, c, h, w).transpose(2, 0, 4, 1, 5, 3)
    return v.reshape(t, n_rows * h, n_cols * w, c)


def half_to_int(f: float) -> int:
    """The int32 bit pattern of ``f`` as a float32 (what torch stores in ``half_val``)."""
    return int(struct.unpack("<i", struct.pack("<f", f))[0])


def int_to_half(i: int) -> float:
    """The inverse of :func:`half_to_int`."""
    return float(struct.unpack("<f", struct.pack("<i", i))[0])


def _summary(value: Any) -> Any:
    return Summary(value=[value])


def _plugin(name: str, content: bytes = b"") -> Any:
    return SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=name, content=content))


def _shape(dims: Sequence[int]) -> Any:
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(d)) for d in dims])


# --------------------------------------------------------------------------------------------- builders


def scalar(
    name: str, tensor: Any, collections: Any = None, new_style: bool = False, double_precision: bool = False
) -> Any:
    """One scalar: legacy ``simple_value``, or with ``new_style`` a float (double) tensor, plugin "scalars"."""
    arr = make_np(tensor).squeeze()
    if arr.ndim != 0:
        raise AssertionError(f"a scalar must have one element, got {arr.size} in {arr.ndim} dimensions")
    value = float(arr)
    if not new_style:
        return _summary(Summary.Value(tag=name, simple_value=value))
    tp = (
        TensorProto(double_val=[value], dtype="DT_DOUBLE")
        if double_precision
        else TensorProto(float_val=[value], dtype="DT_FLOAT")
    )
    return _summary(Summary.Value(tag=name, tensor=tp, metadata=_plugin("scalars")))


_NP_TENSOR_FIELDS: dict[str, tuple[str, str]] = {
    "float16": ("DT_HALF", "half_val"),
    "float32": ("DT_FLOAT", "float_val"),
    "float64": ("DT_DOUBLE", "double_val"),
    "int8": ("DT_INT8", "int_val"),
    "int16": ("DT_INT16", "int_val"),
    "int32": ("DT_INT32", "int_val"),
    "int64": ("DT_INT64", "int64_val"),
    "uint8": ("DT_UINT8", "uint32_val"),
    "bool": ("DT_BOOL", "bool_val"),
    "complex64": ("DT_COMPLEX64", "scomplex_val"),
    "complex128": ("DT_COMPLEX128", "dcomplex_val"),
}
_TORCH_TENSOR_FIELDS: dict[str, tuple[str, str]] = {
    "bfloat16": ("DT_BFLOAT16", "half_val"),
    "complex32": ("DT_COMPLEX32", "scomplex_val"),
}


def tensor_proto(tag: str, tensor: Any) -> Any:
    """A whole tensor (plugin "tensor"), dtypes mapped as torch maps them (half and bfloat16 into
    ``half_val`` through :func:`half_to_int`, complex values as interleaved real and imaginary parts)."""
    dtype_name = str(tensor.dtype).removeprefix("torch.") if is_tensor(tensor) else None
    arr = make_np(tensor) if dtype_name is None else None
    if dtype_name is None:
        assert arr is not None
        dtype_name = arr.dtype.name
    fields = _NP_TENSOR_FIELDS.get(dtype_name) or _TORCH_TENSOR_FIELDS.get(dtype_name)
    aliases = {"half": "float16", "float": "float32", "double": "float64", "short": "int16", "int": "int32"}
    fields = fields or _NP_TENSOR_FIELDS.get(aliases.get(dtype_name, ""))
    if fields is None:
        raise ValueError(f"{tag} has unsupported tensor dtype {dtype_name}")
    if arr is None:
        arr = make_np(tensor)  # bfloat16 / half come as float32, complex32 as complex64
    if arr.size * arr.itemsize >= 1 << 31:
        raise ValueError("tensor is bigger than protocol buffer's hard limit of 2GB in size")
    dt, field = fields
    flat = arr.reshape(-1)
    if field == "half_val":
        values: list[Any] = [half_to_int(x) for x in flat.astype(np.float32).tolist()]
    elif field in ("scomplex_val", "dcomplex_val"):
        values = np.stack([flat.real, flat.imag], axis=-1).reshape(-1).tolist()
    else:
        values = flat.tolist()
    tp = TensorProto(dtype=dt, tensor_shape=_shape(arr.shape), **{field: values})
    return _summary(Summary.Value(tag=tag, metadata=_plugin("tensor"), tensor=tp))


def histogram_raw(
    name: str,
    min: float,
    max: float,
    num: float,
    sum: float,
    sum_squares: float,
    bucket_limits: Sequence[float],
    bucket_counts: Sequence[float],
) -> Any:
    """A histogram from precomputed buckets (``bucket_limits[i]`` is the right edge of bucket ``i``)."""
    hist = HistogramProto(
        min=min,
        max=max,
        num=num,
        sum=sum,
        sum_squares=sum_squares,
        bucket_limit=[float(x) for x in as_array(bucket_limits).reshape(-1).tolist()],
        bucket=[float(x) for x in as_array(bucket_counts).reshape(-1).tolist()],
    )
    return _summary(Summary.Value(tag=name, histo=hist))


def make_histogram(values: np.ndarray, bins: Any, max_bins: int | None = None) -> Any:
    """A ``HistogramProto`` of ``values``, bucketed as torch's SummaryWriter does."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("The input has no element.")
    limits, counts = histogram_buckets(v, bins, max_bins)
    return HistogramProto(
        min=float(v.min()),
        max=float(v.max()),
        num=len(v),
        sum=float(v.sum()),
        sum_squares=float(v.dot(v)),
        bucket_limit=limits.tolist(),
        bucket=counts.tolist(),
    )


def histogram(name: str, values: Any, bins: Any, max_bins: int | None = None) -> Any:
    """A histogram of ``values`` (``bins``: "tensorflow", a count, edges or a numpy rule such as "auto")."""
    return _summary(Summary.Value(tag=name, histo=make_histogram(make_np(values), bins, max_bins)))


def make_image(
    tensor: np.ndarray, rescale: float = 1, rois: np.ndarray | None = None, labels: Sequence[str] | None = None
) -> Any:
    """A ``Summary.Image`` from an HWC uint8 array (boxes drawn and resizing need Pillow)."""
    height, width, channels = tensor.shape
    if rois is not None or rescale != 1:
        pil = _pil("drawing boxes or rescaling an image")
        img = pil.Image.fromarray(np.ascontiguousarray(tensor))
        if rois is not None:
            img = draw_boxes(img, rois, labels)
        if rescale != 1:
            img = img.resize((int(width * rescale), int(height * rescale)), pil.Image.Resampling.LANCZOS)
        tensor = np.asarray(img)
        if tensor.ndim == 2:
            tensor = tensor[:, :, None]
    return Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=encode_png(np.ascontiguousarray(tensor))
    )


def image(tag: str, tensor: Any, rescale: float = 1, dataformats: str = "NCHW") -> Any:
    """An image (or a batch tiled into one) from uint8 in [0, 255] or floats in [0, 1]."""
    hwc = image_to_uint8(convert_to_HWC(make_np(tensor), dataformats))
    return _summary(Summary.Value(tag=tag, image=make_image(hwc, rescale=rescale)))


def image_boxes(
    tag: str,
    tensor_image: Any,
    tensor_boxes: Any,
    rescale: float = 1,
    dataformats: str = "CHW",
    labels: Sequence[str] | None = None,
) -> Any:
    """An image with boxes drawn on it (rows of ``tensor_boxes`` are xmin, ymin, xmax, ymax); needs Pillow."""
    hwc = image_to_uint8(convert_to_HWC(make_np(tensor_image), dataformats))
    boxes = make_np(tensor_boxes)
    return _summary(Summary.Value(tag=tag, image=make_image(hwc, rescale=rescale, rois=boxes, labels=labels)))


def _pil(why: str) -> Any:
    try:
        import PIL.Image
        import PIL.ImageDraw
        import PIL.ImageFont
    except ImportError as exc:
        raise ImportError(f"{why} needs Pillow: pip install pillow") from exc
    return PIL


def draw_boxes(disp_image: Any, boxes: np.ndarray, labels: Sequence[str] | None = None) -> Any:
    """Draw red boxes (and their labels) on a PIL image."""
    pil = _pil("drawing boxes")
    draw = pil.ImageDraw.Draw(disp_image)
    font = pil.ImageFont.load_default()
    for i in range(boxes.shape[0]):
        left, top, right, bottom = (float(x) for x in boxes[i, :4])
        draw.line([(left, top), (left, bottom), (right, bottom), (right, top), (left, top)], width=2, fill="Red")
        label = None if labels is None else labels[i]
        if label:
            x0, y0, x1, y1 = font.getbbox(label)
            tw, th = x1 - x0, y1 - y0
            margin = math.ceil(0.05 * th)
            draw.rectangle([(left, bottom - th - 2 * margin), (left + tw, bottom)], fill="Red")
            draw.text((left + margin, bottom - th - margin), label, fill="black", font=font)
    return disp_image


def make_video(tensor: np.ndarray, fps: float | int) -> Any:
    """A ``Summary.Image`` holding an animated GIF of (T, H, W, C) uint8 frames (needs Pillow)."""
    pil = _pil("add_video")
    _t, h, w, c = tensor.shape
    frames = [pil.Image.fromarray(f[:, :, 0] if c == 1 else f[:, :, :3]) for f in tensor]
    buf = io.BytesIO()
    frames[0].save(
        buf, format="GIF", save_all=True, append_images=frames[1:], duration=max(1, round(1000 / fps)), loop=0
    )
    return Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=buf.getvalue())


def video(tag: str, tensor: Any, fps: float | int = 4) -> Any:
    """A video from a (N, T, C, H, W) array: uint8 in [0, 255] or floats in [0, 1]."""
    frames = image_to_uint8(prepare_video(make_np(tensor)))
    return _summary(Summary.Value(tag=tag, image=make_video(frames, fps)))


def audio_wav(tensor: Any, sample_rate: int = 44100) -> tuple[bytes, int]:
    """16-bit mono WAV bytes and the frame count of a 1-D array in [-1, 1] (clipped)."""
    arr = make_np(tensor).squeeze()
    if arr.ndim != 1:
        raise ValueError(f"audio must be one-dimensional (after squeezing), got shape {arr.shape}")
    if arr.size and np.abs(arr).max() > 1:
        arr = arr.clip(-1, 1)
    pcm = (arr * np.iinfo(np.int16).max).astype("<i2")
    fio = io.BytesIO()
    with wave.open(fio, "wb") as ww:
        ww.setnchannels(1)
        ww.setsampwidth(2)
        ww.setframerate(sample_rate)
        ww.writeframes(pcm.tobytes())
    return fio.getvalue(), int(pcm.shape[-1])


def audio(tag: str, tensor: Any, sample_rate: int = 44100) -> Any:
    """Mono audio from a 1-D array of samples in [-1, 1] (clipped), as 16-bit WAV."""
    data, frames = audio_wav(tensor, sample_rate)
    au = Summary.Audio(
        sample_rate=sample_rate,
        num_channels=1,
        length_frames=frames,
        encoded_audio_string=data,
        content_type="audio/wav",
    )
    return _summary(Summary.Value(tag=tag, audio=au))


def custom_scalars(layout: Mapping[str, Mapping[str, Sequence[Any]]]) -> Any:
    """The Custom Scalars layout: ``{category: {chart: ["Multiline", [tags]] or ["Margin", [v, lo, hi]]}}``."""
    layout_pb2 = _pb("tensorboard.plugins.custom_scalar.layout_pb2")

    categories = []
    for title, charts_spec in layout.items():
        charts = []
        for chart_name, (kind, tags) in charts_spec.items():
            if kind == "Margin":
                if len(tags) != 3:
                    raise ValueError(f"a margin chart needs 3 tags (value, lower, upper), got {len(tags)}")
                series = layout_pb2.MarginChartContent.Series(value=tags[0], lower=tags[1], upper=tags[2])
                charts.append(layout_pb2.Chart(title=chart_name, margin=layout_pb2.MarginChartContent(series=[series])))
            else:
                charts.append(layout_pb2.Chart(title=chart_name, multiline=layout_pb2.MultilineChartContent(tag=tags)))
        categories.append(layout_pb2.Category(title=title, chart=charts))
    tp = TensorProto(
        dtype="DT_STRING",
        string_val=[layout_pb2.Layout(category=categories).SerializeToString()],
        tensor_shape=TensorShapeProto(),
    )
    return _summary(Summary.Value(tag="custom_scalars__config__", tensor=tp, metadata=_plugin("custom_scalars")))


def text(tag: str, text: str) -> Any:
    """Text (Markdown) under tag ``<tag>/text_summary``, as a one-element string tensor (plugin "text")."""
    tp = TensorProto(dtype="DT_STRING", string_val=[text.encode("utf_8")], tensor_shape=_shape([1]))
    return _summary(Summary.Value(tag=tag + "/text_summary", metadata=_plugin("text"), tensor=tp))


def _pr_summary(tag: str, data: np.ndarray, num_thresholds: int) -> Any:
    PrCurvePluginData = _pb("tensorboard.plugins.pr_curve.plugin_data_pb2").PrCurvePluginData

    content = PrCurvePluginData(version=0, num_thresholds=num_thresholds).SerializeToString()
    tp = TensorProto(dtype="DT_FLOAT", float_val=data.reshape(-1).tolist(), tensor_shape=_shape(data.shape[:2]))
    return _summary(Summary.Value(tag=tag, metadata=_plugin("pr_curves", content), tensor=tp))


def pr_curve_raw(
    tag: str,
    tp: Any,
    fp: Any,
    tn: Any,
    fn: Any,
    precision: Any,
    recall: Any,
    num_thresholds: int = 127,
    weights: Any = None,
) -> Any:
    """A precision-recall curve from precomputed counts (at most 127 thresholds, as torch)."""
    rows = [as_array(x).reshape(-1).astype(np.float64) for x in (tp, fp, tn, fn, precision, recall)]
    return _pr_summary(tag, np.stack(rows), min(num_thresholds, 127))


def compute_curve(
    labels: np.ndarray, predictions: np.ndarray, num_thresholds: int = 127, weights: Any = None
) -> np.ndarray:
    """Rows (tp, fp, tn, fn, precision, recall) over ``num_thresholds`` thresholds in [0, 1]."""
    w = 1.0 if weights is None else as_array(weights)
    buckets = np.int32(np.floor(np.asarray(predictions) * (num_thresholds - 1)))
    lab = np.asarray(labels).astype(np.float64)
    rng = (0, num_thresholds - 1)
    tp_b, _ = np.histogram(buckets, bins=num_thresholds, range=rng, weights=lab * w)
    fp_b, _ = np.histogram(buckets, bins=num_thresholds, range=rng, weights=(1.0 - lab) * w)
    tp = np.cumsum(tp_b[::-1])[::-1]
    fp = np.cumsum(fp_b[::-1])[::-1]
    tn = fp[0] - fp
    fn = tp[0] - tp
    precision = tp / np.maximum(1e-7, tp + fp)
    recall = tp / np.maximum(1e-7, tp + fn)
    return np.stack((tp, fp, tn, fn, precision, recall))


def pr_curve(tag: str, labels: Any, predictions: Any, num_thresholds: int = 127, weights: Any = None) -> Any:
    """A precision-recall curve of binary ``labels`` against ``predictions`` in [0, 1]."""
    n = min(num_thresholds, 127)
    return _pr_summary(tag, compute_curve(make_np(labels), make_np(predictions), n, weights), n)


def mesh(
    tag: str,
    vertices: Any,
    colors: Any = None,
    faces: Any = None,
    config_dict: Mapping[str, Any] | None = None,
    display_name: str | None = None,
    description: str | None = None,
) -> Any:
    """A mesh or point cloud: one value per component (vertices, faces, colors), plugin "mesh"."""
    metadata = _pb("tensorboard.plugins.mesh.metadata")
    MeshPluginData = _pb("tensorboard.plugins.mesh.plugin_data_pb2").MeshPluginData

    json_config = "{}" if config_dict is None else json.dumps(config_dict, sort_keys=True)
    parts = [
        (make_np(t), kind)
        for t, kind in ((vertices, MeshPluginData.VERTEX), (faces, MeshPluginData.FACE), (colors, MeshPluginData.COLOR))
        if t is not None
    ]
    components = metadata.get_components_bitmask([kind for _, kind in parts])
    values = []
    for arr, kind in parts:
        if arr.ndim != 3:
            raise ValueError(f"mesh tensors must have shape (batch, points, 3), got {arr.shape}")
        md = metadata.create_summary_metadata(
            tag, display_name, kind, components, arr.shape, description, json_config=json_config
        )
        tp = TensorProto(
            dtype="DT_FLOAT", float_val=arr.astype(np.float32).reshape(-1).tolist(), tensor_shape=_shape(arr.shape)
        )
        values.append(Summary.Value(tag=metadata.get_instance_name(tag, kind), tensor=tp, metadata=md))
    return Summary(value=values)


def hparams(
    hparam_dict: Mapping[str, Any] | None = None,
    metric_dict: Mapping[str, Any] | None = None,
    hparam_domain_discrete: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[Any, Any, Any]:
    """The three HParams summaries (experiment, session start, session end SUCCESS), typed as torch types
    them: int, float and bool as FLOAT64 (a bool is an int), str as STRING, a tensor as FLOAT64 of its
    first element; None values are left out."""
    api = _pb("tensorboard.plugins.hparams.api_pb2")
    plugin_data = _pb("tensorboard.plugins.hparams.plugin_data_pb2")
    HParamsPluginData = plugin_data.HParamsPluginData

    if not isinstance(hparam_dict, dict):
        raise TypeError("parameter: hparam_dict should be a dictionary, nothing logged.")
    if not isinstance(metric_dict, dict):
        raise TypeError("parameter: metric_dict should be a dictionary, nothing logged.")
    domains = hparam_domain_discrete or {}
    if not isinstance(domains, dict):
        raise TypeError("parameter: hparam_domain_discrete should be a dictionary, nothing logged.")
    for k, dom in domains.items():
        if (
            k not in hparam_dict
            or not isinstance(dom, list)
            or not all(isinstance(d, type(hparam_dict[k])) for d in dom)
        ):
            raise TypeError(
                f"parameter: hparam_domain_discrete[{k}] should be a list of same type as hparam_dict[{k}]."
            )
    infos = []
    ssi = plugin_data.SessionStartInfo()
    for k, v in hparam_dict.items():
        if v is None:
            continue
        discrete = None
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, np.bool_):
            ssi.hparams[k].number_value = float(v)
            dtype = "DATA_TYPE_FLOAT64"
            if k in domains:
                discrete = struct_pb2.ListValue(values=[struct_pb2.Value(number_value=d) for d in domains[k]])
        elif isinstance(v, str):
            ssi.hparams[k].string_value = v
            dtype = "DATA_TYPE_STRING"
            if k in domains:
                discrete = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=d) for d in domains[k]])
        elif isinstance(v, np.bool_):
            ssi.hparams[k].bool_value = bool(v)
            dtype = "DATA_TYPE_BOOL"
        elif is_tensor(v) or isinstance(v, np.ndarray):
            ssi.hparams[k].number_value = float(make_np(v).reshape(-1)[0])
            dtype = "DATA_TYPE_FLOAT64"
        else:
            raise ValueError(f"hparam {k!r}: value should be one of int, float, str, bool, or torch.Tensor")
        infos.append(api.HParamInfo(name=k, type=api.DataType.Value(dtype), domain_discrete=discrete))

    def wrap(tag: str, data: Any) -> Any:
        return _summary(Summary.Value(tag=tag, metadata=_plugin("hparams", data.SerializeToString())))

    metrics = [api.MetricInfo(name=api.MetricName(tag=k)) for k in metric_dict]
    exp = api.Experiment(hparam_infos=infos, metric_infos=metrics)
    sei = plugin_data.SessionEndInfo(status=api.Status.Value("STATUS_SUCCESS"))
    return (
        wrap("_hparams_/experiment", HParamsPluginData(experiment=exp, version=0)),
        wrap("_hparams_/session_start_info", HParamsPluginData(session_start_info=ssi, version=0)),
        wrap("_hparams_/session_end_info", HParamsPluginData(session_end_info=sei, version=0)),
    )
