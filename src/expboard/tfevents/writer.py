"""EventFileWriter: one TensorBoard event file, written in batches, crash-safe with a bounded window.

File name: ``events.out.tfevents.{secs:010d}.{hostname}.{pid}.{uid}{suffix}``, ``uid`` a process-wide
counter zero-padded to 6 digits so that names of files opened in the same second still sort in creation
order (TensorBoard's Python loader reads the files of a run in name order). The file is created with
``O_EXCL``: a name already taken (another process with the same host name and pid, as in containers) moves
on to the next ``uid``, so two writers never share a file.

Scalars given one at a time (:meth:`EventFileWriter.add_scalar`) are appended to per-tag lists and encoded
in bulk by :func:`~expboard.tfevents.summary.encode_scalars`; other events are framed at once. When the data
reaches the file (``os.write``, so it survives the process being killed; the operating system writes it
to the disk):

- ``max_queue`` events are waiting (like torch's queue). In a loop adding events faster than that, writes
  are spaced by at least ``MIN_GAP`` (2 ms) and 20 times what the last write took (at most ``MAX_GAP``,
  0.25 s), the background thread doing the write when the loop pauses first; so a tight loop writes every
  few milliseconds in large batches, spending about 5% of its time on writing at most;
- ``flush_secs`` seconds passed (the background thread's period);
- :meth:`~EventFileWriter.flush`, :meth:`~EventFileWriter.close`, the writer being garbage-collected, and
  interpreter exit.

Order: per tag, points keep the order they were given in (TensorBoard's Rust loader drops stored points
with step >= s when step s arrives), and every event other than a one-at-a-time scalar is written after
the scalars added before it.
"""

from __future__ import annotations

import atexit
import functools
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
    encode_scalars_few,
    file_version_event,
    histogram_value,
    image_value,
    scalar_value,
    summary_event,
    summary_event_from_summary,
    text_value,
)

__all__ = ["EventFileWriter", "event_file_name", "write_event_file"]

_uid = itertools.count()
_open_writers: weakref.WeakSet[EventFileWriter] = weakref.WeakSet()
_time = time.time

#: Shortest time between two writes triggered by ``max_queue`` (seconds).
MIN_GAP = 0.002
#: Longest: the gap between writes grows to GAP_FACTOR times what the last write took, up to this, so that
#: a tight loop spends at most about 1 / GAP_FACTOR of its time writing.
MAX_GAP = 0.25
GAP_FACTOR = 20
#: Below this many points, a tag's pending points are encoded without numpy.
FEW = 24


def event_file_name(wall_time: float | None = None, suffix: str = "") -> str:
    """A new event-file basename, unique within this process."""
    secs = int(time.time() if wall_time is None else wall_time)
    return f"events.out.tfevents.{secs:010d}.{_hostname()}.{os.getpid()}.{next(_uid):06d}{suffix}"


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    """The host's name, asked once (an export of thousands of runs names a file for each)."""
    return socket.gethostname()


def _create_exclusive(logdir: Path, wall_time: float, suffix: str) -> tuple[Path, Any]:
    for _ in range(1000):
        path = logdir / event_file_name(wall_time, suffix)
        try:
            return path, open(path, "xb", buffering=0)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new event file in {logdir}: every name tried exists")


def write_event_file(
    logdir: str | os.PathLike[str],
    records: Sequence[bytes | bytearray | memoryview],
    filename_suffix: str = "",
    *,
    wall_time: float | None = None,
    source_writer: str = "expboard",
) -> Path:
    """Write a whole event file at once: a new file in ``logdir`` (created if missing) holding the
    file-version event and then ``records`` (framed, e.g. by :func:`frame_record` or
    :func:`~expboard.tfevents.summary.encode_scalars`), in one write. Returns its path. For a file whose
    content is known in full (an export), this skips :class:`EventFileWriter`'s buffering and threads;
    safe to call from several threads at once."""
    folder = Path(logdir)
    now = _time() if wall_time is None else wall_time
    try:
        path, f = _create_exclusive(folder, now, filename_suffix)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        path, f = _create_exclusive(folder, now, filename_suffix)
    with f:
        data = memoryview(b"".join([frame_record(file_version_event(now, source_writer)), *records]))
        while data:
            data = data[f.write(data) :]
    return path


@atexit.register
def _close_all() -> None:
    for w in list(_open_writers):
        try:
            w.close()
        except Exception:
            pass


class EventFileWriter:
    """Writes one event file in ``logdir`` (created if missing).

    >>> w = EventFileWriter("runs/exp1", max_queue=10, flush_secs=1)   # doctest: +SKIP
    >>> w.add_scalar("loss", 0.5, step=1)                             # doctest: +SKIP
    >>> w.add_scalars_array("acc", np.arange(1000), np.random.rand(1000))  # doctest: +SKIP
    >>> w.close()                                                     # doctest: +SKIP

    ``max_queue``: write once that many events are waiting (None: only on size, time, flush and close).
    ``flush_secs``: period of the background thread that writes what is waiting (0 or None: no thread;
    then nothing is guaranteed on disk before :meth:`flush`, :meth:`close` or ``max_queue``).
    Thread-safe.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        filename_suffix: str = "",
        flush_secs: float | None = 120.0,
        *,
        max_queue: int | None = None,
        max_pending: int = 1 << 17,
        max_buffer_bytes: int = 1 << 22,
        source_writer: str = "expboard",
    ) -> None:
        self.logdir = Path(logdir)
        now = _time()
        try:  # the folder usually exists (an export has just made it): one system call less per file
            self.path, self._file = _create_exclusive(self.logdir, now, filename_suffix)
        except FileNotFoundError:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self.path, self._file = _create_exclusive(self.logdir, now, filename_suffix)
        self._lock = threading.RLock()
        self._chunks: list[bytes] = [frame_record(file_version_event(now, source_writer))]
        self._chunk_bytes = 0
        self._max_buffer_bytes = max_buffer_bytes
        # tag -> (steps, wall_times, values); appended in this order by add_scalar, so a consumer that takes
        # the first len(values) items of each list never sees a half-added point (see _drain_tag)
        self._scalars: dict[str, tuple[list[int], list[float], list[float]]] = {}
        self._n_scalars = 0  # one-at-a-time scalars not yet encoded (an upper bound under races)
        self._queued = 0  # events added since the last write (an upper bound under races)
        self.max_queue = max(1, int(max_queue)) if max_queue else max_pending
        self._max_pending = max_pending
        self._last_write = now
        self._gap = MIN_GAP
        self._closed = False
        self.flush_secs = flush_secs
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_secs and flush_secs > 0:
            self._thread = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._wake, float(flush_secs)),
                name=f"expboard-flush-{self.path.name}",
                daemon=True,
            )
            self._thread.start()
        _open_writers.add(self)
        self.flush()

    def get_logdir(self) -> str:
        """The folder of this file (as torch's ``FileWriter.get_logdir``)."""
        return str(self.logdir)

    # ----------------------------------------------------------------------------------------- scalars

    def add_scalar(self, tag: str, value: float, step: int = 0, wall_time: float | None = None) -> None:
        """Add one scalar point (legacy ``simple_value`` form, float32), encoded in bulk later."""
        now = _time()
        buf = self._scalars.get(tag)
        if buf is None:
            buf = self._scalars.setdefault(tag, ([], [], []))
        buf[0].append(int(step))
        buf[1].append(now if wall_time is None else float(wall_time))
        buf[2].append(float(value))
        self._n_scalars += 1
        self._queued += 1
        if self._queued >= self.max_queue:
            self._queue_full(now)

    def add_scalars_array(self, tag: str, steps: Any, values: Any, wall_times: Any = None) -> None:
        """Add many points of one tag at once (numpy fast path). ``wall_times`` defaults to now."""
        if wall_times is None:
            wall_times = _time()
        data = encode_scalars(tag, steps, wall_times, values)
        with self._lock:
            self._drain_tag(tag)  # keep this tag's order: points given earlier one by one come first
            self._append(data, int(np.size(steps)))

    def _drain_tag(self, tag: str) -> None:
        buf = self._scalars.get(tag)
        if buf is None:
            return
        steps, walls, vals = buf
        n = len(vals)
        if n == 0:
            return
        if n < FEW:
            data = encode_scalars_few(tag, steps[:n], walls[:n], vals[:n])
        else:
            data = encode_scalars(
                tag,
                np.array(steps[:n], dtype=np.int64),
                np.array(walls[:n], dtype=np.float64),
                np.array(vals[:n], dtype=np.float64),
            )
        # producers only append, so the first n items of each list are exactly the ones encoded
        del steps[:n], walls[:n], vals[:n]
        self._append(data, 0)

    def _drain(self) -> None:
        with self._lock:
            if self._n_scalars:
                self._n_scalars = 0
                for tag in list(self._scalars):
                    self._drain_tag(tag)

    # ----------------------------------------------------------------------------------------- other events

    def write_event(self, payload: bytes) -> None:
        """Append one serialized Event (framed here), after the scalars added before it."""
        with self._lock:
            self._drain()
            self._append(frame_record(payload), 1)
        if self._queued >= self.max_queue:
            self._queue_full(_time())

    def add_summary_value(self, value: bytes, step: int = 0, wall_time: float | None = None) -> None:
        """Write an Event holding one serialized ``Summary.Value`` (see :mod:`expboard.tfevents.summary`)."""
        self.write_event(summary_event([value], step, wall_time))

    def add_summary(self, summary: Any, global_step: int | None = None, walltime: float | None = None) -> None:
        """Write an Event holding a ``Summary`` (a protobuf message, or its serialized bytes), as torch's
        ``FileWriter.add_summary``."""
        data = summary if isinstance(summary, bytes | bytearray) else summary.SerializeToString()
        self.write_event(summary_event_from_summary(bytes(data), int(global_step or 0), walltime))

    def add_event(self, event: Any, step: int | None = None, walltime: float | None = None) -> None:
        """Write an ``Event`` protobuf message as torch's ``FileWriter.add_event``: its wall time is set to
        ``walltime`` (default now) and its step to ``step`` when given."""
        event.wall_time = _time() if walltime is None else walltime
        if step is not None:
            event.step = int(step)
        self.write_event(event.SerializeToString())

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
        """A modern (tensor, plugin "scalars") scalar."""
        self.add_summary_value(
            scalar_value(tag, value, new_style=True, double_precision=double_precision), step, wall_time
        )

    # ----------------------------------------------------------------------------------------- I/O

    @property
    def queued(self) -> int:
        """About how many events were added since the last write to the file."""
        return self._queued

    def _queue_full(self, now: float) -> None:
        if now - self._last_write >= self._gap or self._thread is None:
            self.write_pending()
        elif not self._wake.is_set():
            self._wake.set()  # a tight loop: the background thread writes once the gap has passed

    def _append(self, data: bytes, events: int) -> None:
        if self._closed:
            raise ValueError(f"write to a closed event file: {self.path}")
        self._chunks.append(data)
        self._chunk_bytes += len(data)
        self._queued += events
        if self._chunk_bytes >= self._max_buffer_bytes:
            self._write_chunks()

    def _write_chunks(self) -> None:
        if self._chunks:
            data = memoryview(b"".join(self._chunks))
            self._chunks = []
            self._chunk_bytes = 0
            while data:
                n = self._file.write(data)
                data = data[n:]
        self._last_write = _time()

    def write_pending(self) -> None:
        """Write everything waiting to the file (the operating system's cache; no fsync)."""
        with self._lock:
            if self._closed:
                return
            t0 = time.thread_time()  # CPU time: being preempted on a busy machine does not widen the gap
            self._queued = 0
            self._drain()
            self._write_chunks()
            self._gap = min(MAX_GAP, max(MIN_GAP, GAP_FACTOR * (time.thread_time() - t0)))

    def flush(self) -> None:
        """Encode pending scalars and write everything buffered to the file."""
        self.write_pending()

    def close(self) -> None:
        """Flush and close the file; stop the background thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self.write_pending()
            self._closed = True
            self._file.close()
        self._wake.set()
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
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"EventFileWriter({str(self.path)!r}{', closed' if self._closed else ''})"


def _flush_loop(ref: weakref.ref[EventFileWriter], wake: threading.Event, interval: float) -> None:
    while True:
        woken = wake.wait(interval)
        w = ref()
        if w is None or w.closed:
            return
        if woken:
            wake.clear()
            # a tight loop: write once the gap since the last write has passed, in one larger batch
            pause = max(MIN_GAP, w._gap - (_time() - w._last_write))
            del w
            time.sleep(min(pause, MAX_GAP))
            w = ref()
            if w is None or w.closed:
                return
        try:
            if w.queued:
                w.write_pending()
        except Exception:
            pass
        del w
