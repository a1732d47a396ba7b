"""Buffered metric logging: ``Run.log`` appends to in-memory columns; one background thread per store
writes them in batches. Memory is bounded: past ``max_pending`` points the logging thread writes the
buffer itself. The one buffer of each store, and the exit hooks that write them, live in :mod:`.state`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from .records import MetricKind, RunStatus
from .stores import MetricChunk, Store

__all__ = ["FLUSH_INTERVAL_S", "FLUSH_THRESHOLD", "MAX_PENDING", "MetricBuffer", "Series"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
FLUSH_THRESHOLD = 200_000  # points that wake the flusher early
MAX_PENDING = 2_000_000  # points held before the logging thread writes them itself
HEARTBEAT_S = 5.0  # the default of the heartbeat_s setting

_time = time.time


class Series:
    """The unwritten points of one metric of one run. Appended to under the buffer's lock."""

    __slots__ = ("count", "kind", "name", "run_id", "steps", "times", "values")

    def __init__(self, run_id: str, name: str, kind: MetricKind) -> None:
        self.run_id = run_id
        self.name = name
        self.kind = kind
        self.count = 0  # points ever logged to this series in this process (the default step)
        self.steps: list[int] = []
        self.times: list[float] = []
        self.values: list[Any] = []


class MetricBuffer:
    """Pending points for one store, and the thread that writes them.

    ``interval``: seconds between background writes; ``flush_threshold``: pending points that wake the
    writer early; ``max_pending``: pending points past which the logging thread writes them itself;
    ``heartbeat_s``: seconds between heartbeats of the runs in ``live_runs``."""

    def __init__(
        self,
        store: Store,
        interval: float = FLUSH_INTERVAL_S,
        *,
        flush_threshold: int = FLUSH_THRESHOLD,
        max_pending: int = MAX_PENDING,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.store = store
        self.interval = interval
        self.flush_threshold = flush_threshold
        self.max_pending = max_pending
        self.heartbeat_s = heartbeat_s
        self.lock = threading.Lock()
        self.pending = 0
        self._series: dict[tuple[str, str, MetricKind], Series] = {}
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed_chunks: list[tuple[list[MetricChunk], str]] = []
        self.live_runs: set[str] = set()  # Running runs of this process: their heartbeat is kept fresh
        self._last_heartbeat = 0.0

    def series(self, run_id: str, name: str, kind: MetricKind) -> Series:
        key = (run_id, name, kind)
        with self.lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = Series(run_id, name, kind)
        self._ensure_thread()
        return s

    def continue_count(self, s: Series, count: int) -> None:
        """Let the default steps of ``s`` go on after ``count`` points stored before (if none logged yet)."""
        with self.lock:
            if s.count == 0:
                s.count = count

    def append(self, s: Series, value: Any, step: int | None = None) -> None:
        """Add one point to ``s`` (``step`` defaults to the series' next index)."""
        with self.lock:
            s.steps.append(s.count if step is None else step)
            s.times.append(_time())
            s.values.append(value)
            s.count += 1
            self.pending += 1
        if self.pending >= self.flush_threshold:  # read unlocked: at worst one point late
            self._added()

    def extend(self, s: Series, values: Sequence[Any], steps: Sequence[int] | None = None) -> None:
        """Add several points to ``s`` with one wall time."""
        now = _time()
        with self.lock:
            for i, v in enumerate(values):
                s.steps.append(s.count if steps is None else steps[i])
                s.times.append(now)
                s.values.append(v)
                s.count += 1
            self.pending += len(values)
            pending = self.pending
        if pending >= self.flush_threshold:
            self._added()

    def _added(self) -> None:
        if self.pending >= self.max_pending:
            self.flush()  # bounded memory: the logging thread pays for the write itself
        else:
            self._wake.set()

    def track(self, run_id: str) -> None:
        """Keep the heartbeat of a Running run of this process fresh."""
        self.live_runs.add(run_id)
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="expboard-flusher", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
                self._heartbeat()
            except Exception as exc:  # keep the points; retried on the next cycle and by flush()
                if self._error is None:
                    log.warning("expboard: writing metrics failed, will retry: %s", exc)
                self._error = exc

    def _heartbeat(self) -> None:
        now = time.time()
        if now - self._last_heartbeat < self.heartbeat_s:
            return
        self._last_heartbeat = now
        for run_id in list(self.live_runs):
            # A run marked NotResponding while this process was stalled (a laptop asleep) is alive again.
            self.store.update_run(
                run_id,
                heartbeat=now,
                status=RunStatus.RUNNING,
                error=None,
                only_if_status=[RunStatus.RUNNING, RunStatus.NOT_RESPONDING],
            )

    def _take(self) -> list[MetricChunk]:
        chunks = []
        with self.lock:
            for s in self._series.values():
                if not s.steps:
                    continue
                # A point whose log() was interrupted half-way (SIGTERM) has not been logged: cut to the
                # shortest column.
                n = min(len(s.steps), len(s.times), len(s.values))
                steps, times, values = s.steps[:n], s.times[:n], s.values[:n]
                s.steps, s.times, s.values = [], [], []
                chunks.append(MetricChunk(s.run_id, s.name, s.kind, steps, times, values))
            self.pending = 0
        return chunks

    def flush(self) -> None:
        """Write every pending point (and retry earlier failed writes). Raises if the store fails."""
        with self._flush_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        """flush() with the flush lock already held."""
        if self._failed_chunks:
            retry = self._failed_chunks
            self._failed_chunks = []
            for i, (chunks, batch_id) in enumerate(retry):
                try:
                    self.store.log_metrics(chunks, batch_id=batch_id)
                except BaseException:
                    self._failed_chunks = retry[i:]
                    raise
        chunks = self._take()
        if not chunks:
            return
        batch_id = uuid.uuid4().hex
        try:
            self.store.log_metrics(chunks, batch_id=batch_id)
        except BaseException:
            self._failed_chunks.append((chunks, batch_id))
            raise
        self._error = None

    def write_direct(self, s: Series, steps: Any, times: Any, values: Any) -> None:
        """Write arrays of points of series ``s`` now, after everything logged before them."""
        with self._flush_lock:  # one lock around both writes: nothing logged meanwhile can come between
            self._flush_locked()
            with self.lock:
                s.count += len(steps)
            self.store.log_metrics([MetricChunk(s.run_id, s.name, s.kind, steps, times, values)], uuid.uuid4().hex)

    def forget_run(self, run_id: str) -> None:
        """Drop the (already flushed) series of a finished run so long sessions do not grow."""
        self.live_runs.discard(run_id)
        with self.lock:
            for key in [k for k, s in self._series.items() if k[0] == run_id and not s.steps]:
                del self._series[key]

    def close(self) -> None:
        self.live_runs.clear()
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.flush()
