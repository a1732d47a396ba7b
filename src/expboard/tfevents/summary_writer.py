"""SummaryWriter: the common API of ``torch.utils.tensorboard.SummaryWriter`` without torch or TensorFlow.

>>> with SummaryWriter("runs/exp1") as w:                     # doctest: +SKIP
...     for step in range(1000):
...         w.add_scalar("loss", 1.0 / (step + 1), step)
...     w.add_hparams({"lr": 0.01, "opt": "adam"}, {"hparam/loss": 0.001})

Tensors (torch, numpy) are accepted duck-typed: scalars through ``float()`` / ``int()``, arrays through
``.detach().cpu().numpy()`` when present, else ``numpy.asarray``. ``add_scalar`` only appends to per-tag
buffers; points are encoded in bulk (see :class:`~expboard.tfevents.writer.EventFileWriter`), every
``flush_secs`` seconds, on :meth:`SummaryWriter.flush`, on close and at interpreter exit.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._proto import varint
from .summary import (
    HParam,
    HParamType,
    SessionStatus,
    histogram_value,
    hparams_experiment,
    hparams_session_end,
    hparams_session_start,
    image_value,
    summary_event,
    text_value,
)
from .summary import scalar_value as _scalar_value
from .writer import EventFileWriter

__all__ = ["SummaryWriter"]

_time = time.time


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _hparam_scalar(v: Any) -> bool | float | str:
    if isinstance(v, bool | str):
        return v
    if isinstance(v, int | float):
        return v
    if hasattr(v, "item"):
        return _hparam_scalar(v.item())
    raise ValueError(f"hparam values must be bool, int, float, str or a one-element tensor, got {type(v).__name__}")


class SummaryWriter:
    """Writes TensorBoard event files to ``log_dir`` (default ``runs/<date>_<host><comment>``, like torch).

    ``max_queue`` is accepted for compatibility; buffering is governed by ``flush_secs`` and an internal
    limit of pending scalar points. ``purge_step`` writes a SessionLog START at that step, which makes
    TensorBoard drop the points at or after it (resuming after a crash).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        comment: str = "",
        purge_step: int | None = None,
        max_queue: int = 10,
        flush_secs: float = 120,
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
        self._writer = EventFileWriter(self.log_dir, filename_suffix, flush_secs)
        self._scalars = self._writer._scalars
        self._sub_writers: dict[str, EventFileWriter] = {}
        if purge_step is not None:
            # Event{step, session_log{status: START}}
            self._writer.write_event(
                b"\x09"
                + np.float64(_time()).astype("<f8").tobytes()
                + (b"\x10" + varint(purge_step) if purge_step else b"")
                + b"\x3a\x02\x08\x01"
            )

    # ----------------------------------------------------------------------------------------- scalars

    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """Add one scalar point. ``new_style`` writes a tensor scalar (plugin "scalars") instead of the
        legacy ``simple_value`` (float32); ``double_precision`` makes that tensor DT_DOUBLE."""
        if new_style:
            self._writer.write_event(
                summary_event(
                    [_scalar_value(tag, float(scalar_value), new_style=True, double_precision=double_precision)],
                    0 if global_step is None else int(global_step),
                    walltime,
                )
            )
            return
        buf = self._scalars.get(tag)
        if buf is None:
            buf = self._scalars.setdefault(tag, ([], [], []))
        buf[0].append(0 if global_step is None else int(global_step))
        buf[1].append(_time() if walltime is None else float(walltime))
        buf[2].append(float(scalar_value))
        w = self._writer
        w._pending += 1
        if w._pending >= w._max_pending:
            w._drain()

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
    ) -> None:
        """Several scalars under one chart: each key goes to run ``<log_dir>/<main_tag>_<key>`` (``/`` in
        ``main_tag`` replaced by ``_``), with tag ``main_tag``, like torch."""
        wall = _time() if walltime is None else float(walltime)
        step = 0 if global_step is None else int(global_step)
        for key, value in tag_scalar_dict.items():
            sub = os.path.join(self.log_dir, main_tag.replace("/", "_") + "_" + key)
            w = self._sub_writers.get(sub)
            if w is None:
                w = self._sub_writers[sub] = EventFileWriter(sub, self.filename_suffix, self.flush_secs)
            w.add_scalar(main_tag, float(value), step, wall)

    # ----------------------------------------------------------------------------------------- others

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: int | None = None,
        bins: str | int | Sequence[float] = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
    ) -> None:
        """A histogram of ``values``; ``bins`` as in :func:`~expboard.tfevents.summary.histogram_value`."""
        self._writer.add_summary_value(
            histogram_value(tag, _to_numpy(values), bins, max_bins), _step(global_step), walltime
        )

    def add_image(
        self,
        tag: str,
        img_tensor: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        dataformats: str = "CHW",
    ) -> None:
        """An image: uint8 in [0, 255] or float in [0, 1]; ``dataformats`` e.g. "CHW", "HWC", "HW"."""
        self._writer.add_summary_value(
            image_value(tag, _to_numpy(img_tensor), dataformats=dataformats), _step(global_step), walltime
        )

    def add_text(
        self, tag: str, text_string: str, global_step: int | None = None, walltime: float | None = None
    ) -> None:
        """Text, rendered as Markdown by TensorBoard."""
        self._writer.add_summary_value(text_value(tag, text_string), _step(global_step), walltime)

    def add_hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, Any],
        hparam_domain_discrete: Mapping[str, Sequence[Any]] | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
    ) -> None:
        """One HParams session, in run ``<log_dir>/<run_name>`` (default: the current time), like torch:
        the experiment (hparams and metric tags), session start and end (SUCCESS), and each metric as a
        scalar in that run."""
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise TypeError("hparam_dict and metric_dict must be dicts")
        hps = {k: _hparam_scalar(v) for k, v in hparam_dict.items()}
        domains = dict(hparam_domain_discrete or {})
        for k, dom in domains.items():
            if k not in hps:
                raise ValueError(f"hparam_domain_discrete names {k!r}, which is not in hparam_dict")
            if not isinstance(dom, Sequence) or isinstance(dom, str):
                raise TypeError(f"the discrete domain of {k!r} must be a list")
        infos = [
            HParam(k, values=list(domains[k]) if k in domains else None)
            if k in domains
            else HParam(k, values=None, type=_type_of(v))
            for k, v in hps.items()
        ]
        now = _time()
        step = _step(global_step)
        run_dir = os.path.join(self.log_dir, run_name or str(now))
        with EventFileWriter(run_dir, self.filename_suffix, flush_secs=0) as w:
            w.add_summary_value(hparams_experiment(infos, list(metric_dict), time_created_secs=now), step, now)
            w.add_summary_value(hparams_session_start(hps, start_time=now), step, now)
            w.add_summary_value(hparams_session_end(SessionStatus.SUCCESS, now), step, now)
            for k, v in metric_dict.items():
                w.add_scalar(k, float(v), step, now)

    # ----------------------------------------------------------------------------------------- lifecycle

    def get_logdir(self) -> str:
        return self.log_dir

    @property
    def file_path(self) -> Path:
        """Path of the event file this writer writes (sub-writers of add_scalars have their own)."""
        return self._writer.path

    def flush(self) -> None:
        """Write everything buffered to disk."""
        self._writer.flush()
        for w in self._sub_writers.values():
            w.flush()

    def close(self) -> None:
        """Flush and close all files. Idempotent."""
        self._writer.close()
        for w in self._sub_writers.values():
            w.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SummaryWriter({self.log_dir!r})"


def _step(global_step: int | None) -> int:
    return 0 if global_step is None else int(global_step)


def _type_of(v: bool | float | str) -> HParamType:
    if isinstance(v, bool):
        return HParamType.BOOL
    if isinstance(v, str):
        return HParamType.STRING
    return HParamType.FLOAT64
