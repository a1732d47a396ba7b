"""SummaryWriter: the API of ``torch.utils.tensorboard.SummaryWriter`` (every public method, same
signatures and defaults) without needing torch or TensorFlow.

>>> with SummaryWriter("runs/exp1") as w:                     # doctest: +SKIP
...     for step in range(1000):
...         w.add_scalar("loss", 1.0 / (step + 1), step)
...     w.add_hparams({"lr": 0.01, "opt": "adam"}, {"hparam/loss": 0.001})

Inputs: Python numbers, numpy arrays and torch tensors of every dtype (bfloat16 and half included, 0-d and
shape (1,)), checked without importing torch. Only :meth:`SummaryWriter.add_graph` needs torch (it traces
the module), :meth:`~SummaryWriter.add_onnx_graph` needs onnx, drawing boxes, :meth:`~SummaryWriter.add_video`
and :meth:`~SummaryWriter.add_embedding` with ``label_img`` need Pillow, :meth:`~SummaryWriter.add_figure`
needs matplotlib; each says so when it is missing.

Crash safety: events reach the file (``os.write``; a killed process loses nothing written) at the latest
about ``min(flush_secs, 1)`` seconds after they were added, and as soon as ``max_queue`` are waiting; a
loop adding events faster than that writes every few milliseconds in batches (see
:mod:`expboard.tfevents.writer`). What TensorBoard shows is what it shows for torch's writer given the same
calls: same runs, tags, plugins and values.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import _builders as B
from ._inputs import as_array, make_np, to_float, to_int
from ._png import encode_png
from ._proto import f_bytes, f_varint, varint
from .summary import histogram_value, histogram_value_from_buckets, text_value
from .summary import scalar_value as _scalar_value
from .writer import EventFileWriter

__all__ = ["SummaryWriter"]

_time = time.time
#: Longest time an event waits before it is written, whatever ``flush_secs`` says (seconds).
MAX_LATENCY = 1.0


def _image_value(tag: str, hwc: np.ndarray) -> bytes:
    """A legacy ``Summary.Image`` value (bytes) from an HWC uint8 array."""
    h, w, c = hwc.shape
    img = f_varint(1, h) + f_varint(2, w) + f_varint(3, c) + f_bytes(4, encode_png(np.ascontiguousarray(hwc)))
    return (f_bytes(1, tag.encode()) if tag else b"") + f_bytes(4, img)


def _encode_path(raw: str) -> str:
    return raw.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


class SummaryWriter:
    """Writes TensorBoard event files to ``log_dir`` (default ``runs/<date>_<host><comment>``, like torch).

    ``purge_step``: the first file of this writer starts with a SessionLog START at that step, which makes
    TensorBoard hide the points at or after it that earlier files hold (resuming after a crash).
    ``max_queue``: events are written as soon as that many are waiting. ``flush_secs``: the longest an event
    waits, capped at one second (torch waits up to ``flush_secs``, 120 by default). ``filename_suffix`` ends
    every event file's name. After :meth:`close`, any ``add_*`` call opens a new file, like torch.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: int | float = 120,
        filename_suffix: str = "",
    ) -> None:
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        self.purge_step = purge_step
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self._file: EventFileWriter | None = None
        self._last: EventFileWriter | None = None
        self._all: dict[str, EventFileWriter] | None = None
        self._projector_embeddings: list[Any] = []
        self._get_file_writer()

    # ----------------------------------------------------------------------------------------- files

    def _new_file(self, logdir: str) -> EventFileWriter:
        latency = min(float(self.flush_secs), MAX_LATENCY) if self.flush_secs and self.flush_secs > 0 else 0.0
        return EventFileWriter(
            logdir,
            self.filename_suffix,
            flush_secs=latency or MAX_LATENCY,
            max_queue=1 if latency == 0 else max(1, int(self.max_queue or 1)),
        )

    def _get_file_writer(self) -> EventFileWriter:
        """The writer of the main event file, opened again (a new file) after :meth:`close`."""
        w = self._file
        if w is None or w.closed:
            w = self._file = self._last = self._new_file(self.log_dir)
            self._all = {self.log_dir: w}
            if self.purge_step is not None:
                payload = b"\x09" + struct.pack("<d", _time())
                payload += b"\x10" + varint(int(self.purge_step)) if self.purge_step else b""
                w.write_event(payload + b"\x3a\x02\x08\x01")  # Event{step, session_log{status: START}}
                self.purge_step = None
        return w

    @property
    def file_writer(self) -> EventFileWriter | None:
        """The writer of the main event file; None after :meth:`close` (as torch's attribute)."""
        return self._file if self._file is not None and not self._file.closed else None

    @property
    def all_writers(self) -> dict[str, EventFileWriter] | None:
        """Folder -> writer, for the main file and those of :meth:`add_scalars`; None after :meth:`close`."""
        return None if self.file_writer is None else self._all

    @property
    def file_path(self) -> Path:
        """Path of the main event file, the last one after :meth:`close` (:meth:`add_scalars` and
        :meth:`add_hparams` write others)."""
        return self._get_file_writer().path if self._last is None else self._last.path

    def get_logdir(self) -> str:
        """The folder event files are written to."""
        return self.log_dir

    def _write(self, value: bytes, global_step: Any, walltime: float | None) -> None:
        step = 0 if global_step is None else to_int(global_step)
        self._get_file_writer().add_summary_value(value, step, None if walltime is None else float(walltime))

    def _write_summary(self, summary: Any, global_step: Any = None, walltime: float | None = None) -> None:
        step = None if global_step is None else to_int(global_step)
        self._get_file_writer().add_summary(summary, step, walltime)

    # ----------------------------------------------------------------------------------------- scalars

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: Any = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """Add one scalar point. ``new_style`` writes a tensor scalar (plugin "scalars") instead of the
        legacy ``simple_value`` (float32); ``double_precision`` makes that tensor DT_DOUBLE."""
        w = self._file
        if w is None or w.closed:
            w = self._get_file_writer()
        if new_style:
            data = _scalar_value(tag, to_float(scalar_value), new_style=True, double_precision=double_precision)
            self._write(data, global_step, walltime)
            return
        tv = type(scalar_value)
        value = scalar_value if tv is float or tv is int else to_float(scalar_value)
        step = 0 if global_step is None else global_step if type(global_step) is int else to_int(global_step)
        w.add_scalar(tag, value, step, walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: Any = None,
        walltime: float | None = None,
    ) -> None:
        """Several scalars in one chart: each key goes to run ``<log_dir>/<main_tag>_<key>`` (``/`` in
        ``main_tag`` replaced by ``_``), with tag ``main_tag``, like torch."""
        wall = _time() if walltime is None else float(walltime)
        step = 0 if global_step is None else to_int(global_step)
        self._get_file_writer()
        assert self._all is not None
        for key, value in tag_scalar_dict.items():
            sub = self.log_dir + "/" + main_tag.replace("/", "_") + "_" + key
            w = self._all.get(sub)
            if w is None or w.closed:
                w = self._all[sub] = self._new_file(sub)
            w.add_scalar(main_tag, to_float(value), step, wall)

    def add_tensor(self, tag: str, tensor: Any, global_step: Any = None, walltime: float | None = None) -> None:
        """A whole tensor (plugin "tensor"), with torch's dtype mapping."""
        self._write_summary(B.tensor_proto(tag, tensor), global_step, walltime)

    # ----------------------------------------------------------------------------------------- histograms

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: Any = None,
        bins: str | int | Sequence[float] = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
    ) -> None:
        """A histogram of ``values``, bucketed as torch does (``bins``: "tensorflow", a count, edges, or a
        numpy rule such as "auto"; ``max_bins`` merges buckets)."""
        self._write(histogram_value(tag, make_np(values), bins, max_bins), global_step, walltime)

    def add_histogram_raw(
        self,
        tag: str,
        min: float,
        max: float,
        num: int,
        sum: float,
        sum_squares: float,
        bucket_limits: Any,
        bucket_counts: Any,
        global_step: Any = None,
        walltime: float | None = None,
    ) -> None:
        """A histogram from precomputed buckets (``bucket_limits[i]`` is the right edge of bucket ``i``)."""
        limits = as_array(bucket_limits).reshape(-1)
        counts = as_array(bucket_counts).reshape(-1)
        if len(limits) != len(counts):
            raise ValueError("len(bucket_limits) != len(bucket_counts), see the document.")
        value = histogram_value_from_buckets(
            tag,
            limits,
            counts,
            min=to_float(min),
            max=to_float(max),
            num=to_float(num),
            sum=to_float(sum),
            sum_squares=to_float(sum_squares),
        )
        self._write(value, global_step, walltime)

    # ----------------------------------------------------------------------------------------- images

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Any = None,
        walltime: float | None = None,
        dataformats: str = "CHW",
    ) -> None:
        """An image: uint8 in [0, 255] or floats in [0, 1]; ``dataformats`` "CHW", "HWC", "HW", ... (one
        channel or none is written as RGB, as torch does)."""
        hwc = B.image_to_uint8(B.convert_to_HWC(make_np(img_tensor), dataformats))
        self._write(_image_value(tag, hwc), global_step, walltime)

    def add_images(
        self,
        tag: str,
        img_tensor: Any,
        global_step: Any = None,
        walltime: float | None = None,
        dataformats: str = "NCHW",
    ) -> None:
        """A batch of images, tiled 8 per row into one image (``dataformats`` "NCHW" or "NHWC")."""
        self.add_image(tag, img_tensor, global_step, walltime, dataformats)

    def add_image_with_boxes(
        self,
        tag: str,
        img_tensor: Any,
        box_tensor: Any,
        global_step: Any = None,
        walltime: float | None = None,
        rescale: float = 1,
        dataformats: str = "CHW",
        labels: Sequence[str] | str | None = None,
    ) -> None:
        """An image with boxes drawn on it (rows of ``box_tensor``: xmin, ymin, xmax, ymax), optionally
        labelled; needs Pillow."""
        boxes = make_np(box_tensor)
        if labels is not None:
            if isinstance(labels, str):
                labels = [labels]
            if len(labels) != boxes.shape[0]:
                labels = None
        summary = B.image_boxes(tag, img_tensor, boxes, rescale=rescale, dataformats=dataformats, labels=labels)
        self._write_summary(summary, global_step, walltime)

    def add_figure(
        self,
        tag: str,
        figure: Any,
        global_step: Any = None,
        close: bool = True,
        walltime: float | None = None,
    ) -> None:
        """A matplotlib figure (or a list of figures, tiled) rendered as an image; needs matplotlib."""
        try:
            import matplotlib.backends.backend_agg as agg
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("add_figure needs matplotlib: pip install matplotlib") from exc

        def render(fig: Any) -> np.ndarray:
            canvas: Any = agg.FigureCanvasAgg(fig)
            canvas.draw()
            w, h = fig.canvas.get_width_height()
            rgb = np.frombuffer(canvas.buffer_rgba(), dtype=np.uint8).reshape(h, w, 4)[:, :, :3]
            if close:
                plt.close(fig)
            return np.moveaxis(rgb, 2, 0)

        if isinstance(figure, list):
            self.add_image(tag, np.stack([render(f) for f in figure]), global_step, walltime, dataformats="NCHW")
        else:
            self.add_image(tag, render(figure), global_step, walltime, dataformats="CHW")

    def add_video(
        self, tag: str, vid_tensor: Any, global_step: Any = None, fps: int | float = 4, walltime: float | None = None
    ) -> None:
        """A video from a (N, T, C, H, W) array (uint8, or floats in [0, 1]) as an animated GIF; needs
        Pillow (torch needs moviepy)."""
        self._write_summary(B.video(tag, vid_tensor, fps), global_step, walltime)

    def add_audio(
        self,
        tag: str,
        snd_tensor: Any,
        global_step: Any = None,
        sample_rate: int = 44100,
        walltime: float | None = None,
    ) -> None:
        """Mono audio from a 1-D array of samples in [-1, 1] (clipped), as 16-bit WAV."""
        self._write_summary(B.audio(tag, snd_tensor, sample_rate=sample_rate), global_step, walltime)

    def add_text(self, tag: str, text_string: str, global_step: Any = None, walltime: float | None = None) -> None:
        """Text, rendered as Markdown by TensorBoard, under tag ``<tag>/text_summary`` (as torch)."""
        if not isinstance(text_string, str):
            raise TypeError(f"text_string must be a str, got {type(text_string).__name__}")
        self._write(text_value(tag + "/text_summary", [text_string]), global_step, walltime)

    # ----------------------------------------------------------------------------------------- graphs

    def add_onnx_graph(self, prototxt: str | os.PathLike[str]) -> None:
        """The graph of an ONNX model file (Graphs dashboard); needs the ``onnx`` package."""
        from ._graphs import onnx_graph

        self._get_file_writer().write_event(_graph_event(onnx_graph(prototxt)))

    def add_graph(
        self, model: Any, input_to_model: Any = None, verbose: bool = False, use_strict_trace: bool = True
    ) -> None:
        """The graph of a ``torch.nn.Module``, traced with ``input_to_model`` (Graphs dashboard); needs torch."""
        from ._graphs import torch_graph

        graph, stepstats = torch_graph(model, input_to_model, verbose, use_strict_trace)
        w = self._get_file_writer()
        w.write_event(_graph_event(graph))
        run_metadata = f_bytes(1, b"step1") + f_bytes(2, stepstats)
        wall = b"\x09" + struct.pack("<d", _time())
        w.write_event(wall + f_bytes(8, run_metadata))  # Event{tagged_run_metadata}

    # ----------------------------------------------------------------------------------------- embeddings

    def add_embedding(
        self,
        mat: Any,
        metadata: Sequence[Any] | None = None,
        label_img: Any = None,
        global_step: Any = None,
        tag: str = "default",
        metadata_header: Sequence[str] | None = None,
    ) -> None:
        """An embedding for TensorBoard's Projector: ``tensors.tsv`` (+ ``metadata.tsv``, ``sprite.png``) in
        ``<log_dir>/<step:05d>/<tag>/`` and the run's ``projector_config.pbtxt``, as torch writes them."""
        from ._embedding import write_embedding

        arr = make_np(mat)
        step = 0 if global_step is None else to_int(global_step)
        subdir = f"{str(step).zfill(5)}/{_encode_path(tag)}"
        logdir = self._get_file_writer().get_logdir()
        info = write_embedding(
            arr, os.path.join(logdir, subdir), subdir, step, tag, metadata, label_img, metadata_header
        )
        self._projector_embeddings.append(info)
        from ._embedding import write_projector_config

        write_projector_config(logdir, self._projector_embeddings)

    # ----------------------------------------------------------------------------------------- PR curves

    def add_pr_curve(
        self,
        tag: str,
        labels: Any,
        predictions: Any,
        global_step: Any = None,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: float | None = None,
    ) -> None:
        """A precision-recall curve of binary ``labels`` against ``predictions`` in [0, 1]."""
        summary = B.pr_curve(tag, make_np(labels), make_np(predictions), num_thresholds, weights)
        self._write_summary(summary, global_step, walltime)

    def add_pr_curve_raw(
        self,
        tag: str,
        true_positive_counts: Any,
        false_positive_counts: Any,
        true_negative_counts: Any,
        false_negative_counts: Any,
        precision: Any,
        recall: Any,
        global_step: Any = None,
        num_thresholds: int = 127,
        weights: Any = None,
        walltime: float | None = None,
    ) -> None:
        """A precision-recall curve from precomputed counts."""
        summary = B.pr_curve_raw(
            tag,
            true_positive_counts,
            false_positive_counts,
            true_negative_counts,
            false_negative_counts,
            precision,
            recall,
            num_thresholds,
            weights,
        )
        self._write_summary(summary, global_step, walltime)

    # ----------------------------------------------------------------------------------------- custom scalars

    def add_custom_scalars_multilinechart(
        self, tags: Sequence[str], category: str = "default", title: str = "untitled"
    ) -> None:
        """A Custom Scalars chart with one line per tag."""
        self._write_summary(B.custom_scalars({category: {title: ["Multiline", list(tags)]}}))

    def add_custom_scalars_marginchart(
        self, tags: Sequence[str], category: str = "default", title: str = "untitled"
    ) -> None:
        """A Custom Scalars margin chart: ``tags`` are (value, lower, upper)."""
        if len(tags) != 3:
            raise ValueError(f"a margin chart needs 3 tags (value, lower, upper), got {len(tags)}")
        self._write_summary(B.custom_scalars({category: {title: ["Margin", list(tags)]}}))

    def add_custom_scalars(self, layout: Mapping[str, Mapping[str, Sequence[Any]]]) -> None:
        """The Custom Scalars layout: ``{category: {chart: ["Multiline", [tags]] or ["Margin", [v, lo, hi]]}}``."""
        self._write_summary(B.custom_scalars(layout))

    # ----------------------------------------------------------------------------------------- mesh, hparams

    def add_mesh(
        self,
        tag: str,
        vertices: Any,
        colors: Any = None,
        faces: Any = None,
        config_dict: Mapping[str, Any] | None = None,
        global_step: Any = None,
        walltime: float | None = None,
    ) -> None:
        """A mesh or point cloud (Mesh dashboard): arrays of shape (batch, points, 3)."""
        self._write_summary(B.mesh(tag, vertices, colors, faces, config_dict), global_step, walltime)

    def add_hparams(
        self,
        hparam_dict: dict[str, Any],
        metric_dict: dict[str, Any],
        hparam_domain_discrete: dict[str, list[Any]] | None = None,
        run_name: str | None = None,
        global_step: Any = None,
    ) -> None:
        """One HParams session in run ``<log_dir>/<run_name>`` (default: the current time), like torch: the
        experiment, session start and end (SUCCESS), and each metric as a scalar in that run. Values are
        typed as torch types them (a bool is a number)."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        exp, ssi, sei = B.hparams(hparam_dict, metric_dict, hparam_domain_discrete)
        run_dir = os.path.join(self._get_file_writer().get_logdir(), run_name or str(_time()))
        step = None if global_step is None else to_int(global_step)
        with SummaryWriter(log_dir=run_dir, filename_suffix=self.filename_suffix) as w:
            fw = w._get_file_writer()
            for s in (exp, ssi, sei):
                fw.add_summary(s, step)
            for k, v in metric_dict.items():
                w.add_scalar(k, v, global_step)

    # ----------------------------------------------------------------------------------------- lifecycle

    def flush(self) -> None:
        """Write everything waiting to the files."""
        for w in (self._all or {}).values():
            w.flush()

    def close(self) -> None:
        """Write everything and close the files. Idempotent; a later ``add_*`` opens a new file."""
        for w in (self._all or {}).values():
            w.close()
        self._file = None
        self._all = None

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SummaryWriter({self.log_dir!r})"


def _graph_event(graph_def: bytes) -> bytes:
    """Event{wall_time, graph_def}."""
    return b"\x09" + struct.pack("<d", _time()) + f_bytes(4, graph_def)
