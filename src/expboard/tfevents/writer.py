"""EventFileWriter: one TensorBoard event file, buffered, flushed by a background thread and at exit.

File name: ``events.out.tfevents.{secs:010d}.{hostname}.{pid}.{uid}{suffix}``, ``uid`` a process-wide
counter zero-padded to 6 digits so that names of files opened in the same second still sort in creation
order (TensorBoard's Python loader reads the files of a run in name order).

Scalars given one at a time (:meth:`EventFileWriter.add_scalar`) are appended to per-tag lists and encoded
in bulk by :func:`~expboard.tfevents.summary.encode_scalars` when ``max_pending`` points are waiting, on
:meth:`~EventFileWriter.flush` (called every ``flush_secs`` by the flush thread) and on close. Per-tag order is
kept (TensorBoard's Rust loader drops stored points with step >= s when step s arrives); the relative order
of different tags, and of scalars against other events, is not.
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._crc import frame_record
from .summary import (
    encode_scalars,
    file_version_event,
    histogram_value,
    image_value,
    scalar_value,
    summary_event,
    text_value,
)

__all__ = ["EventFileWriter", "event_file_name"]

_uid = itertools.count()
_open_writers: weakref.WeakSet[EventFileWriter] = weakref.WeakSet()


def event_file_name(wall_time: float | None = None, suffix: str = "") -> str:
    """A new event-file basename, unique within this process."""
    secs = int(time.time() if wall_time is None else wall_time)
    return f"events.out.tfevents.{secs:010d}.{socket.gethostname()}.{os.getpid()}.{next(_uid):06d}{suffix}"


@atexit.register
def _close_all() -> None:
    for w in list(_open_writers):
        try:
            w.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class EventFileWriter:
    """Writes one event file in ``logdir`` (created if missing).

    >>> w = EventFileWriter("runs/exp1")                              # doctest: +SKIP
    >>> w.add_scalar("loss", 0.5, step=1)                             # doctest: +SKIP
    >>> w.add_scalars_array("acc", np.arange(1000), np.random.rand(1000))  # doctest: +SKIP
    >>> w.close()                                                     # doctest: +SKIP

    Nothing is guaranteed on disk before :meth:`flush` or :meth:`close`; a daemon thread flushes every
    ``flush_secs`` seconds and an ``atexit`` hook closes writers still open at exit. Thread-safe.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        filename_suffix: str = "",
        flush_secs: float = 120.0,
        *,
        max_pending: int = 1 << 17,
        max_buffer_bytes: int = 1 << 22,
        source_writer: str = "expboard",
    ) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self.path = self.logdir / event_file_name(now, filename_suffix)
        self._file = open(self.path, "xb")  # noqa: SIM115 - closed in close()
        self._lock = threading.RLock()
        self._chunks: list[bytes] = [frame_record(file_version_event(now, source_writer))]
        self._chunk_bytes = 0
        self._max_buffer_bytes = max_buffer_bytes
        # tag -> (steps, wall_times, values); appended in this order by add_scalar, so a consumer that takes
        # the first len(values) items of each list never sees a half-added point (see _drain)
        self._scalars: dict[str, tuple[list[int], list[float], list[float]]] = {}
        self._pending = 0
        self._max_pending = max_pending
        self._closed = False
        self.flush_secs = flush_secs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_secs and flush_secs > 0:
            self._thread = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._stop, flush_secs),
                name=f"expboard-flush-{self.path.name}",
                daemon=True,
            )
            self._thread.start()
        _open_writers.add(self)
        self.flush()

    # ----------------------------------------------------------------------------------------- scalars

    def add_scalar(self, tag: str, value: float, step: int = 0, wall_time: float | None = None) -> None:
        """Add one scalar point (buffered; legacy ``simple_value`` form, float32)."""
        buf = self._scalars.get(tag)
        if buf is None:
            buf = self._scalars.setdefault(tag, ([], [], []))
        buf[0].append(int(step))
        buf[1].append(time.time() if wall_time is None else float(wall_time))
        buf[2].append(float(value))
        self._pending += 1
        if self._pending >= self._max_pending:
            self._drain()

    def add_scalars_array(self, tag: str, steps: Any, values: Any, wall_times: Any = None) -> None:
        """Add many points of one tag at once (numpy fast path). ``wall_times`` defaults to now."""
        if wall_times is None:
            wall_times = time.time()
        data = encode_scalars(tag, steps, wall_times, values)
        with self._lock:
            self._drain_tag(tag)  # keep this tag's order: points given earlier one by one come first
            self._append(data)

    def _drain_tag(self, tag: str) -> None:
        buf = self._scalars.get(tag)
        if buf is None:
            return
        steps, walls, vals = buf
        n = len(vals)
        if n == 0:
            return
        data = encode_scalars(
            tag,
            np.array(steps[:n], dtype=np.int64),
            np.array(walls[:n], dtype=np.float64),
            np.array(vals[:n], dtype=np.float64),
        )
        # producers only append, so the first n items of each list are exactly the ones encoded
        del steps[:n], walls[:n], vals[:n]
        self._append(data)

    def _drain(self) -> None:
        with self._lock:
            self._pending = 0
            for tag in list(self._scalars):
                self._drain_tag(tag)

    # ----------------------------------------------------------------------------------------- other events

    def write_event(self, payload: bytes) -> None:
        """Append one serialized Event (framed here)."""
        with self._lock:
            self._append(frame_record(payload))

    def add_summary_value(self, value: bytes, step: int = 0, wall_time: float | None = None) -> None:
        """Write an Event holding one serialized ``Summary.Value`` (see :mod:`expboard.tfevents.summary`)."""
        self.write_event(summary_event([value], step, wall_time))

    def add_text(self, tag: str, text: str | Sequence[str], step: int = 0, wall_time: float | None = None) -> None:
        self.add_summary_value(text_value(tag, text), step, wall_time)

    def add_image(
        self, tag: str, image: Any, step: int = 0, wall_time: float | None = None, dataformats: str = "HWC"
    ) -> None:
        self.add_summary_value(image_value(tag, image, dataformats=dataformats), step, wall_time)

    def add_histogram(
        self,
        tag: str,
        values: Any,
        step: int = 0,
        wall_time: float | None = None,
        bins: Any = "tensorflow",
        max_bins: int | None = None,
    ) -> None:
        self.add_summary_value(histogram_value(tag, values, bins, max_bins), step, wall_time)

    def add_tensor_scalar(
        self, tag: str, value: float, step: int = 0, wall_time: float | None = None, double_precision: bool = False
    ) -> None:
        """A modern (tensor, plugin "scalars") scalar, written immediately."""
        self.add_summary_value(
            scalar_value(tag, value, new_style=True, double_precision=double_precision), step, wall_time
        )

    # ----------------------------------------------------------------------------------------- I/O

    def _append(self, data: bytes) -> None:
        if self._closed:
            raise ValueError(f"write to a closed event file: {self.path}")
        self._chunks.append(data)
        self._chunk_bytes += len(data)
        if self._chunk_bytes >= self._max_buffer_bytes:
            self._write_chunks()

    def _write_chunks(self) -> None:
        if self._chunks:
            self._file.write(b"".join(self._chunks))
            self._chunks = []
            self._chunk_bytes = 0

    def flush(self) -> None:
        """Encode pending scalars and write everything buffered to the file."""
        with self._lock:
            if self._closed:
                return
            self._drain()
            self._write_chunks()
            self._file.flush()

    def close(self) -> None:
        """Flush and close the file; stop the flush thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            self._closed = True
            self._file.close()
        self._stop.set()
        _open_writers.discard(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a writer dropped without close(): keep its buffered data
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        return f"EventFileWriter({str(self.path)!r}{', closed' if self._closed else ''})"


def _flush_loop(ref: weakref.ref[EventFileWriter], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        w = ref()
        if w is None:
            return
        try:
            w.flush()
        except Exception:  # noqa: BLE001 - a failing flush must not kill the thread; close() reports errors
            pass
        del w
