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

from .errors import AuthError, ExpboardError
from .records import MetricKind, RunStatus
from .stores import MetricChunk, Store

__all__ = ["FLUSH_INTERVAL_S", "FLUSH_THRESHOLD", "MAX_PENDING", "MetricBuffer", "Series", "is_permanent"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
FLUSH_THRESHOLD = 200_000  # points that wake the flusher early
MAX_PENDING = 2_000_000  # points held before the logging thread writes them itself
HEARTBEAT_S = 5.0  # the default of the heartbeat_s setting

_time = time.time


def is_permanent(exc: BaseException) -> bool:
    """True if retrying the write that raised ``exc`` can never succeed: the store refused the data itself
    (a 4xx error such as a value it cannot hold), as opposed to being locked, down or unreachable."""
    if isinstance(exc, ExpboardError):
        return 400 <= exc.status_code < 500 and not isinstance(exc, AuthError)
    # Raised while encoding a value: no retry changes the value.
    return isinstance(exc, (TypeError, ValueError, OverflowError, RecursionError))


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
        # (run id, metric, points, reason) of every chunk the store refused for good; reported once per metric
        self.refused: list[tuple[str, str, int, str]] = []
        self._reported: set[tuple[str, str]] = set()
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
                    self._write(chunks, batch_id)
                except BaseException:  # _write kept the unwritten part of this batch; the later ones follow
                    self._failed_chunks += retry[i + 1 :]
                    raise
        chunks = self._take()
        if not chunks:
            return
        self._write(chunks, uuid.uuid4().hex)  # on a transient failure _write keeps the chunks for a retry
        self._error = None

    def _write(self, chunks: list[MetricChunk], batch_id: str) -> None:
        """Write one batch. A permanent refusal (a value the store can never hold) is isolated to the chunks
        that cause it: each chunk is then written on its own, the refused ones are reported and dropped, and
        every other chunk is stored. A transient failure keeps what is unwritten for the next attempt."""
        try:
            self.store.log_metrics(chunks, batch_id=batch_id)
            return
        except BaseException as exc:
            if not is_permanent(exc):
                self._failed_chunks.append((chunks, batch_id))
                raise
            if isinstance(exc, ExpboardError) and exc.rest_stored:
                return  # the store isolated the refused part itself, reported and quarantined it
            if len(chunks) == 1:
                self._refuse(chunks[0], exc)
                return
        for i, chunk in enumerate(chunks):
            part_id = f"{batch_id}.{i}"  # stable, so a retried part is still stored once
            try:
                self.store.log_metrics([chunk], batch_id=part_id)
            except BaseException as exc:
                if not is_permanent(exc):
                    self._failed_chunks.extend(([c], f"{batch_id}.{j}") for j, c in enumerate(chunks) if j >= i)
                    raise
                self._refuse(chunk, exc)

    def _refuse(self, chunk: MetricChunk, exc: BaseException) -> None:
        """Drop a chunk the store refused for good, and say so once per run and metric."""
        key = (chunk.run_id, chunk.name)
        self.refused.append((chunk.run_id, chunk.name, len(chunk.steps), str(exc)))
        if key not in self._reported:
            self._reported.add(key)
            log.warning(
                "expboard: the store refused %d point(s) of metric %r of run %s and they were dropped: %s",
                len(chunk.steps),
                chunk.name,
                chunk.run_id,
                exc,
            )

    def write_direct(self, s: Series, steps: Any, times: Any, values: Any) -> None:
        """Write arrays of points of series ``s`` now, after everything logged before them."""
        with self._flush_lock:  # one lock around both writes: nothing logged meanwhile can come between
            self._flush_locked()
            with self.lock:
                before = s.count
                s.count += len(steps)
                after = s.count
            try:
                self.store.log_metrics([MetricChunk(s.run_id, s.name, s.kind, steps, times, values)], uuid.uuid4().hex)
            except BaseException:
                with self.lock:  # refused: the default steps go on as if the call had not been made
                    if s.count == after:
                        s.count = before
                raise

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
