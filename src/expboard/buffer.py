"""Buffered metric logging that never waits for the store.

``Run.log`` (and ``log_list``, ``log_row``, ``log_table``, ``log_confusion_matrix``) appends to in-memory
columns; a background thread (the flusher) writes them in batches, oldest first. Nothing the logging
thread does waits for the store:

- past ``max_pending`` points in memory (the store is locked, down or slower than the training loop),
  the columns are sealed into a batch and a second thread (the spiller) writes it to the buffer's disk
  journal (:class:`~expboard.stores.journal.Journal`, bounded by the ``journal_max_mb`` setting); the
  flusher writes journaled batches to the store in order when it answers; one warning says so;
- when the journal is full too, batches that do not fit are dropped (counted per run and metric, one
  warning when it starts, one with the totals when the store answers again or at exit): what is kept is
  every point up to the bound plus the newest points in memory, so each series has one gap, never a
  silent one;
- ``log_image``'s file queues the same way (:meth:`MetricBuffer.write_file`), before its point; while the
  store does not answer it goes to the journal (``.file`` records), as a final status does (``.status``);
- ``log_array`` queues its arrays as one batch in the same order and waits for the store's answer only
  while the store answers promptly (``direct_wait_s``), so a value the store refuses is still raised to
  the caller in the usual case, and never stalls the loop while the store is busy;
- the first point logged to a series of a run made elsewhere (another process, a submitted script) does
  not ask the store how many points the series has: its default steps are kept relative (0, 1, ...) and
  the writer adds the stored count, read once just before the series' first write (its points marked
  ``_Relative`` until then; journaled that way too, with the count kept next to the records once read);
- a run's final status (:meth:`MetricBuffer.end_run`) queues behind its points, so it is written after
  them; when the store does not take it promptly it is journaled at once and written when it answers;
- at interpreter exit (and ``close``) the store gets ``close_wait_s`` seconds; what it has not taken by
  then goes to the journal, which the next process opening the same store (or ``expboard journal``)
  writes. Every batch carries a batch id that the store keeps, so a batch written twice (stored, then
  the process killed before its record was removed) is stored once.

The one buffer of each store, and the exit hooks that close them, live in :mod:`.state`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import settings
from .errors import AuthError, ExpboardError, StoreUnavailableError
from .lazy import lazy_import
from .records import MetricKind, RunRecord, RunStatus
from .stores import MetricChunk, Store
from .stores.journal import Journal, JournalFullError
from .stores.wire import decode_batch, encode_batch

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_import("numpy", globals(), "np")

__all__ = [
    "FLUSH_INTERVAL_S",
    "FLUSH_THRESHOLD",
    "MAX_PENDING",
    "MetricBuffer",
    "Series",
    "is_permanent",
    "journal_base",
    "store_key",
]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
FLUSH_THRESHOLD = 200_000  # points that wake the flusher early
MAX_PENDING = 2_000_000  # points held in memory before they go to the journal
SPILL_PIECE = 65_536  # points per journal record and per chunk written: packing one holds the GIL briefly
HEARTBEAT_S = 5.0  # the default of the heartbeat_s setting
CLOSE_WAIT_S = 30.0  # how long close() (interpreter exit) gives the store before journaling the rest
DIRECT_WAIT_S = 0.05  # how long log_array waits for a store that has not answered yet

STATUS_SUFFIX = ".status"  # a journal record of a run's final status (JSON), next to the ".batch" records
FILE_SUFFIX = ".file"  # a journal record of a run file (a logged image): a JSON line (run id, name), the bytes
BASES_FILE = "counts.json"  # side file of a journal folder: stored counts its relative records count from

_time = time.time


def is_permanent(exc: BaseException) -> bool:
    """True if retrying the write that raised ``exc`` can never succeed: the store refused the data itself
    (a 4xx error such as a value it cannot hold), as opposed to being locked, down or unreachable."""
    if isinstance(exc, ExpboardError):
        return 400 <= exc.status_code < 500 and not isinstance(exc, AuthError)
    # Raised while encoding a value: no retry changes the value.
    return isinstance(exc, (TypeError, ValueError, OverflowError, RecursionError))


def store_key(store: Store) -> str:
    """What names a store across processes (its database or server address), for its journal's folder."""
    url = getattr(store, "url", None)
    if isinstance(url, str):
        return url
    dialect = getattr(store, "dialect", None)
    path = getattr(dialect, "path", None)
    if path is not None:
        return f"sqlite:///{os.path.abspath(path)}"
    if dialect is not None:
        return str(dialect)
    return f"{type(store).__name__}-{os.getpid()}-{id(store)}"  # nameless: this process's own journal only


def journal_base(store: Store) -> Path:
    """The folder holding the journals of ``store`` (one sub-folder per process)."""
    root = settings.get("journal_dir")
    if not root:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "expboard", "journal")
    return Path(root) / f"metrics-{hashlib.sha256(store_key(store).encode()).hexdigest()[:16]}"


class Series:
    """The unwritten points of one metric of one run. Appended to under the buffer's lock.

    ``relative``: the series has points stored by another process, how many is not known yet: the default
    steps in ``steps`` count from 0 and the writer adds the stored count; ``explicit`` holds the positions
    (in the columns) of points given a step of their own, which stay as they are."""

    __slots__ = ("count", "explicit", "kind", "name", "relative", "run_id", "steps", "times", "values")

    def __init__(self, run_id: str, name: str, kind: MetricKind, relative: bool = False) -> None:
        self.run_id = run_id
        self.name = name
        self.kind = kind
        self.count = 0  # points ever logged to this series in this process (the default step)
        self.relative = relative
        self.explicit: list[int] = []
        self.steps: list[int] = []
        self.times: list[float] = []
        self.values: list[Any] = []


@dataclass(frozen=True)
class _Relative(MetricChunk):
    """A chunk of a relative series (see :class:`Series`): never given to the store as it is. ``origin``: the
    buffer that logged it (the stored count is read once per origin and series); ``explicit``: positions of
    points with steps of their own; ``absolute``: every point has its own step (only the order matters: the
    count is read before any point of the series is stored)."""

    origin: str = ""
    explicit: Sequence[int] = ()
    absolute: bool = False

    def key(self) -> tuple[str, str, str, str]:
        return (self.origin, self.run_id, self.name, MetricKind(self.kind).value)


def _slice(c: MetricChunk, start: int, stop: int) -> MetricChunk:
    steps, times, values = c.steps[start:stop], c.wall_times[start:stop], c.values[start:stop]
    if isinstance(c, _Relative):
        explicit = [i - start for i in c.explicit if start <= i < stop]
        return _Relative(c.run_id, c.name, c.kind, steps, times, values, c.origin, explicit, c.absolute)
    return MetricChunk(c.run_id, c.name, c.kind, steps, times, values)


class _Batch:
    """Sealed points waiting for the store: in memory (``chunks``) or in the journal (``path``)."""

    __slots__ = (
        "batch_id",
        "busy",
        "chunks",
        "done",
        "error",
        "path",
        "points",
        "result",
        "seq",
        "spill",
        "update",
        "file",
        "keep",
        "waiter",
    )

    def __init__(
        self, chunks: list[MetricChunk] | None, batch_id: str, points: int, path: Path | None = None, seq: int = 0
    ) -> None:
        self.chunks = chunks  # both chunks and path: written to the journal while the flusher writes it
        self.seq = seq  # order of sealing (a piece keeps its batch's); journals of ended processes: 0
        self.batch_id = batch_id
        self.points = points
        self.path = path
        self.busy = False  # the flusher is writing it
        self.done = False
        self.error: BaseException | None = None  # a refusal, for a waiting log_array
        self.waiter = False  # a log_array call waits for it (and raises its refusal itself)
        self.spill = False  # sealed past the memory bound: for the journal
        self.update: dict[str, Any] | None = None  # a run's final status (update_run's arguments, JSON)
        self.file: tuple[str, str, bytes] | None = None  # a run file to write: (run id, name, bytes)
        self.keep = False  # close() reads its columns: the writer and spiller must not free them in place
        self.result: RunRecord | None = None  # what the store answered to ``update``


FREE_PIECE = 65_536  # list items freed at a time (see _free): about as long a GIL hold as packing a piece


def _free(chunks: list[MetricChunk]) -> None:
    """Free the Python columns of chunks nobody else holds a bit at a time, letting other threads run in
    between: freeing a list of a million floats in one go is one C call that holds the GIL for tens of
    milliseconds (hundreds on a loaded machine), and the logging thread waits for it."""
    for c in chunks:
        for column in (c.steps, c.wall_times, c.values):
            if type(column) is list and len(column) > FREE_PIECE:
                while column:
                    del column[-FREE_PIECE:]
                    time.sleep(0)
    chunks.clear()


def _points(chunks: Sequence[MetricChunk]) -> int:
    return sum(len(c.steps) for c in chunks)


def _pieces(chunks: list[MetricChunk], size: int) -> list[list[MetricChunk]]:
    """``chunks`` cut into groups of at most ``size`` points (a long chunk into several)."""
    groups: list[list[MetricChunk]] = []
    group: list[MetricChunk] = []
    room = size
    for c in chunks:
        start, n = 0, len(c.steps)
        while start < n:
            take = min(room, n - start)
            part = c if take == n else _slice(c, start, start + take)
            group.append(part)
            start += take
            room -= take
            if room == 0:
                groups.append(group)
                group, room = [], size
    if group:
        groups.append(group)
    return groups


class MetricBuffer:
    """Pending points for one store, the thread that writes them and the journal that keeps them.

    ``interval``: seconds between background writes; ``flush_threshold``: pending points that wake the
    writer early; ``max_pending``: points held in memory before they go to the journal;
    ``heartbeat_s``: seconds between heartbeats of the runs in ``live_runs``; ``journal``: where points
    past the memory bound go (default: the ``journal_dir`` and ``journal_max_mb`` settings), whose
    folders left by ended processes are taken over and written first."""

    def __init__(
        self,
        store: Store,
        interval: float = FLUSH_INTERVAL_S,
        *,
        flush_threshold: int = FLUSH_THRESHOLD,
        max_pending: int = MAX_PENDING,
        heartbeat_s: float = HEARTBEAT_S,
        journal: Journal | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.flush_threshold = flush_threshold
        self.max_pending = max_pending
        self.heartbeat_s = heartbeat_s
        self.close_wait_s = CLOSE_WAIT_S
        self.direct_wait_s = DIRECT_WAIT_S
        self.lock = threading.Lock()
        self.pending = 0  # points in the series' columns
        self._series: dict[tuple[str, str, MetricKind], Series] = {}
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed_at = 0.0  # monotonic time of the last failed write
        self._gave_up: str | None = None  # close() left points in the journal: why (flush() says it at once)
        # sealed batches, oldest first; guarded by _cond
        self._cond = threading.Condition()
        self._sealed: deque[_Batch] = deque()
        self._held = 0  # points of sealed batches in memory that the spiller may journal
        self._seq = 0
        self._spiller: threading.Thread | None = None
        self._inflight_since: float | None = None  # monotonic time the flusher's current write began
        if journal is None:
            journal = Journal(
                journal_base(store),
                int(settings.get("journal_max_mb") * 1024 * 1024),
                suffixes=(".batch", STATUS_SUFFIX, FILE_SUFFIX),
            )
        self.journal = journal
        self.origin = uuid.uuid4().hex[:16]  # names this buffer's relative series in its journal records
        # (origin, run id, metric, kind) -> the count stored before the origin's first point; guarded by _cond
        self._bases: dict[tuple[str, str, str, str], int] = {}
        self._rel_journaled: set[tuple[str, str, str, str]] = set()  # relative series with journal records
        self.closed = False  # close() was called: its store is being (or was) closed
        self._journal_warned = False
        self.journaled = 0  # points ever written to the journal by this process
        # (run id, metric) -> points dropped because the journal was full too
        self.dropped: dict[tuple[str, str], int] = {}
        self._dropped_reported = 0
        # (run id, metric, points, reason) of every chunk the store refused for good; reported once per metric
        self.refused: list[tuple[str, str, int, str]] = []
        self._reported: set[tuple[str, str]] = set()
        self.live_runs: set[str] = set()  # Running runs of this process: their heartbeat is kept fresh
        self._last_heartbeat = 0.0
        self.adopted = self.adopt()

    # --- the journals of ended processes ---------------------------------------------------------------
    def adopt(self) -> int:
        """Take over what ended processes left in this store's journal; written before anything new."""
        try:
            paths = self.journal.adopt()
        except OSError as exc:
            log.warning("expboard: could not read the metric journal in %s: %s", self.journal.base, exc)
            return 0
        if not paths:
            return 0
        with self._cond:
            for p in reversed(paths):
                self._sealed.appendleft(_Batch(None, "", 0, p))
        log.info("expboard: writing %d journaled metric batch(es) left by ended processes", len(paths))
        self._ensure_thread()
        self._wake.set()
        return len(paths)

    # --- logging (never waits for the store) ---------------------------------------------------------
    def series(self, run_id: str, name: str, kind: MetricKind, relative: bool = False) -> Series:
        """The series of ``run_id``'s metric; ``relative``: made now, it continues points another process may
        have stored (counted by the writer, see :class:`Series`)."""
        key = (run_id, name, kind)
        with self.lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = Series(run_id, name, kind, relative)
        self._ensure_thread()
        return s

    def known_step(self, s: Series) -> int | None:
        """The default step of the next point of ``s``, None while the stored count it goes on from is not known
        (asks the store nothing)."""
        if not s.relative:
            return s.count
        key = (self.origin, s.run_id, s.name, MetricKind(s.kind).value)
        with self._cond:
            base = self._bases.get(key)
        return None if base is None else base + s.count

    def write_file(self, run_id: str, name: str, data: bytes) -> None:
        """Queue a run file (a logged image) behind everything logged before, and wait for the store while it
        answers promptly, as :meth:`write_direct` does (a refusal is raised here). A store that is busy or
        unreachable is not waited for: the bytes go to the journal (bounded by journal_max_mb; a file that
        does not fit raises StoreUnavailableError, nothing queued) and are written when it answers."""
        batch = _Batch(None, uuid.uuid4().hex, 0)
        batch.file = (run_id, name, bytes(data))
        batch.waiter = True
        self._queue(batch)
        with self._cond:
            self._wait_briefly(batch)
            error = batch.error
            if error is not None or batch.done:
                if error is not None and batch in self._sealed:
                    self._sealed.remove(batch)
                self._cond.notify_all()
        if error is not None:
            raise error
        if not batch.done:
            self._journal_file(batch, raise_full=True)

    def _journal_file(self, batch: _Batch, raise_full: bool = False) -> None:
        """Put a queued file's bytes in the journal (once); a file that does not fit is dropped from the queue:
        raised (``raise_full``) or said."""
        with self._cond:
            if batch.done or batch.path is not None or batch.file is None:
                return
            run_id, name, data = batch.file
        header = json.dumps({"run_id": run_id, "name": name}).encode() + b"\n"
        try:
            (path,) = self.journal.append([header + data], suffix=FILE_SUFFIX, stems=[f"{batch.seq:012d}"])
        except (JournalFullError, OSError) as exc:
            with self._cond:
                gone = not batch.busy and not batch.done and batch in self._sealed
                if gone:
                    self._sealed.remove(batch)
            if not gone:
                return  # being written (or written) meanwhile
            message = (
                f"{store_key(self.store)} is not answering and the journal cannot take file {name!r} of run "
                f"{run_id} ({len(data)} bytes): {exc}; it was not stored"
            )
            if raise_full:
                raise StoreUnavailableError(message) from exc
            log.warning("expboard: %s", message)
            return
        with self._cond:
            done = batch.done
            if not done:
                batch.path = path
                if not batch.busy:
                    batch.file = None  # read back from the journal when the store answers
        if done:
            self.journal.remove(path)

    def continue_count(self, s: Series, count: int) -> None:
        """Let the default steps of ``s`` go on after ``count`` points stored before (if none logged yet)."""
        with self.lock:
            if s.count == 0:
                s.count = count

    def append(self, s: Series, value: Any, step: int | None = None) -> None:
        """Add one point to ``s`` (``step`` defaults to the series' next index)."""
        with self.lock:
            if step is not None and s.relative:
                s.explicit.append(len(s.steps))
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
            if steps is not None and s.relative:
                s.explicit.extend(range(len(s.steps), len(s.steps) + len(values)))
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
            self._seal(spill=True)  # bounded memory: the spiller journals them; nothing waits for the store
        elif self._held > self.max_pending:  # sealed by a writer whose tries fail at once (the store refuses)
            with self._cond:
                self._ensure_spiller()
                self._cond.notify_all()
        if self._held > 2 * self.max_pending:
            self._backpressure()
        self._wake.set()

    def _backpressure(self) -> None:
        """Wait for the spiller while the journal's disk is slower than logging (memory stays bounded)."""
        with self._cond:
            while self._held > 2 * self.max_pending and self._spiller is not None and self._spiller.is_alive():
                if self._spillable() is None:
                    break  # nothing the spiller can take (a log_array being waited for)
                self._cond.wait(0.05)

    def _take(self) -> list[MetricChunk]:
        """The series' columns as chunks, leaving them empty (no copy: the lists change hands)."""
        chunks: list[MetricChunk] = []
        with self.lock:
            for s in self._series.values():
                if not s.steps:
                    continue
                steps, times, values = s.steps, s.times, s.values
                # A point whose log() was interrupted half-way (SIGTERM) has not been logged: cut to the
                # shortest column.
                n = min(len(steps), len(times), len(values))
                if not len(steps) == len(times) == len(values):
                    steps, times, values = steps[:n], times[:n], values[:n]
                s.steps, s.times, s.values = [], [], []
                if s.relative:
                    explicit, s.explicit = s.explicit, []
                    if explicit and explicit[-1] >= n:
                        explicit = [i for i in explicit if i < n]
                    chunks.append(_Relative(s.run_id, s.name, s.kind, steps, times, values, self.origin, explicit))
                else:
                    chunks.append(MetricChunk(s.run_id, s.name, s.kind, steps, times, values))
            self.pending = 0
        return chunks

    def _seal(self, spill: bool = False) -> _Batch | None:
        """Turn the columns into a batch after the others; ``spill``: hand it to the spiller."""
        with self._cond:  # one order for sealing and queueing: batches queue in the order they were sealed
            chunks = self._take()
            if not chunks:
                return None
            self._seq += 1
            batch = _Batch(chunks, uuid.uuid4().hex, _points(chunks), seq=self._seq)
            batch.spill = spill
            self._sealed.append(batch)
            self._held += batch.points
            if spill:
                self._ensure_spiller()
                self._cond.notify_all()
            return batch

    # --- the journal (spiller thread) ------------------------------------------------------------------
    def _ensure_spiller(self) -> None:
        """Start the spiller if none runs (call with _cond held)."""
        if self._spiller is None or not self._spiller.is_alive():
            self._spiller = threading.Thread(target=self._spill_loop, name="expboard-journal", daemon=True)
            self._spiller.start()

    def _spill_loop(self) -> None:
        while True:
            with self._cond:
                batch = self._spillable()
                while batch is None:
                    if self._stop.is_set():
                        self._spiller = None
                        return
                    self._cond.wait(0.5)
                    batch = self._spillable()
                batch.busy = True  # neither the flusher nor another spill takes it meanwhile
                self._held -= batch.points
            try:
                self._journal(batch)
            finally:
                with self._cond:
                    batch.busy = False
                    self._cond.notify_all()

    def _spillable(self) -> _Batch | None:
        """The oldest batch the spiller may journal: sealed past the memory bound, or any batch in memory
        while more than ``max_pending`` points are (call with _cond held)."""
        crowded = self._held > self.max_pending
        for b in self._sealed:
            if b.chunks is not None and not b.busy and not b.waiter and (b.spill or crowded):
                return b
        return None

    def _journal(self, batch: _Batch) -> None:
        """Write an in-memory batch to the journal (in records of SPILL_PIECE points, each with its own batch
        id, that take its place in the queue), or drop it when the journal is full."""
        assert batch.chunks is not None
        chunks = self._journalable(batch.chunks)
        groups = _pieces(chunks, SPILL_PIECE) if batch.points > SPILL_PIECE else [chunks]
        pieces = []
        try:
            for k, group in enumerate(groups):
                part_id = batch.batch_id if len(groups) == 1 else f"{batch.batch_id}/{k}"
                body = encode_batch(group, part_id)
                stem = f"{batch.seq:012d}" if len(groups) == 1 else f"{batch.seq:012d}.{k:05d}"
                (path,) = self.journal.append([body], stems=[stem])  # named in logging order
                pieces.append(_Batch(None, part_id, _points(group), path, seq=batch.seq))
        except JournalFullError as exc:
            done = sum(p.points for p in pieces)
            self._drop(chunks, done, exc)
        except OSError as exc:  # the disk itself: keep the batch in memory, say so
            for p in pieces:
                if p.path is not None:
                    self.journal.remove(p.path)
            log.warning("expboard: could not write to the metric journal %s: %s", self.journal.folder, exc)
            with self._cond:
                self._held += batch.points
            return
        with self._cond:
            try:
                i = self._sealed.index(batch)
            except ValueError:  # written to the store meanwhile (close() journals a busy batch): not needed
                for p in pieces:
                    if p.path is not None:
                        self.journal.remove(p.path)
                return
            del self._sealed[i]
            for p in reversed(pieces):
                self._sealed.insert(i, p)
            self.journaled += sum(p.points for p in pieces)
            self._cond.notify_all()
            spilled = batch.chunks if not batch.keep else None
        del groups, chunks
        if spilled:
            _free(spilled)
        if not self._journal_warned and pieces:
            self._journal_warned = True
            log.warning(
                "expboard: %s has not taken the metrics logged (it is locked, down or slower than logging); "
                "points past the %d held in memory go to the journal %s (bound %.4g MB, setting journal_max_mb) "
                "and are written to the store in logging order when it answers",
                store_key(self.store),
                self.max_pending,
                self.journal.folder,
                self.journal.max_bytes / (1024 * 1024),
            )

    def _drop(self, chunks: list[MetricChunk], skip: int, exc: BaseException) -> None:
        """Count the points of ``chunks`` after the first ``skip`` (the journal is full): they are lost."""
        first = not self.dropped
        for c in chunks:
            n = len(c.steps)
            lost = max(0, n - skip)
            skip = max(0, skip - n)
            if lost:
                key = (c.run_id, c.name)
                self.dropped[key] = self.dropped.get(key, 0) + lost
        if first:
            log.warning(
                "expboard: %s; the store has not answered and %d points of this batch are dropped, and so are "
                "later batches until it answers (kept: every point before, in the journal, and the newest %d in "
                "memory; totals are reported when it answers). Raise journal_max_mb (EXPBOARD_JOURNAL_MAX_MB) to "
                "keep more",
                exc,
                sum(self.dropped.values()),
                self.max_pending,
            )

    def _report_dropped(self) -> None:
        total = sum(self.dropped.values())
        if total > self._dropped_reported:
            self._dropped_reported = total
            worst = sorted(self.dropped.items(), key=lambda kv: -kv[1])[:5]
            log.warning(
                "expboard: %d metric points were dropped while the store was not answering and the journal was "
                "full: %s",
                total,
                ", ".join(f"{n} of {name!r} of run {run_id}" for (run_id, name), n in worst),
            )

    # --- writing (flusher thread, flush()) ---------------------------------------------------------
    def track(self, run_id: str) -> None:
        """Keep the heartbeat of a Running run of this process fresh."""
        self.live_runs.add(run_id)
        self._ensure_thread()

    def _queue(self, batch: _Batch) -> None:
        """Queue ``batch`` after everything logged before it (the columns are sealed first); its sequence
        number is its place in logging order, which also names its journal records. Wakes the writer."""
        with self._cond:
            self._seal()
            self._seq += 1
            batch.seq = self._seq
            self._sealed.append(batch)
            if batch.chunks is not None:
                self._held += batch.points
        self._ensure_thread()
        self._wake.set()

    def _wait_briefly(self, batch: _Batch) -> None:
        """With ``_cond`` held: wait while the store takes ``batch`` promptly (its write not in flight for
        more than ``direct_wait_s``, no error, 5 s at most), so a refusal reaches the caller."""
        start = time.monotonic()
        while not batch.done and batch.error is None:
            now = time.monotonic()
            since = self._inflight_since
            busy_for = 0.0 if since is None else now - max(since, start)
            stalled = self._error is not None or busy_for > self.direct_wait_s
            if stalled or now - start > max(self.direct_wait_s, 5.0):
                break
            self._cond.wait(self.direct_wait_s / 2)
        batch.waiter = False

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="expboard-flusher", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._error is not None:
                # The last try failed: the next waits out the interval, however often logging wakes the writer
                # (the spiller takes what piles up meanwhile).
                left = self._failed_at + self.interval - time.monotonic()
                if left > 0 and self._stop.wait(left):
                    break
            try:
                self.flush()
                self._inflight_since = time.monotonic()
                try:
                    with self.store.retrying_briefly():
                        self._heartbeat()
                finally:
                    self._inflight_since = None
            except Exception as exc:  # keep the points; retried on the next cycle and by flush()
                if self._error is None:
                    log.warning("expboard: writing metrics failed, will retry: %s", exc)
                self._error = exc
                self._failed_at = time.monotonic()

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

    def flush(self) -> None:
        """Write every pending point (journaled ones first). Raises if the store fails (nothing is lost:
        what is unwritten stays queued). After close() has left points in the journal, raises at once."""
        if self._gave_up is not None:
            raise StoreUnavailableError(self._gave_up)
        with self._flush_lock, self.store.retrying_briefly():  # what is not written now is tried again
            self._flush_locked()

    def _flush_locked(self) -> None:
        """flush() with the flush lock held: the queue oldest first, the columns last (sealed now), and
        nothing queued after them (logging goes on meanwhile: that is the next flush's)."""
        with self._cond:
            self._seal()
            last = self._seq
        while True:
            with self._cond:
                if not self._sealed or self._sealed[0].seq > last:
                    break
                batch = self._sealed[0]
                if batch.busy:  # the spiller is journaling it: a moment, then it is (in) the queue's first
                    self._cond.wait(0.5)
                    continue
                batch.busy = True
                if batch.chunks is not None:
                    self._held -= batch.points
                self._inflight_since = time.monotonic()
            try:
                self._write_batch(batch)
            except BaseException:
                with self._cond:
                    batch.busy = False
                    self._inflight_since = None
                    if batch.chunks is not None:
                        self._held += batch.points
                    self._cond.notify_all()
                raise
            with self._cond:
                self._inflight_since = None
                batch.busy = False
                batch.done = True
                if self._sealed and self._sealed[0] is batch:
                    self._sealed.popleft()
                path, batch.path = batch.path, None
                written, batch.chunks = (None, batch.chunks) if batch.keep else (batch.chunks, None)
                self._cond.notify_all()
            if path is not None:
                self.journal.remove(path)
            if written:
                _free(written)
            del batch, written
        self._error = None
        if self.dropped:
            self._report_dropped()

    def _write_batch(self, batch: _Batch) -> None:
        if batch.update is None and batch.path is not None and batch.path.suffix == STATUS_SUFFIX:
            try:
                batch.update = json.loads(batch.path.read_bytes())
                if not isinstance(batch.update, dict) or not isinstance(batch.update.get("run_id"), str):
                    raise ValueError("not a run status record")
            except FileNotFoundError:
                return
            except (OSError, ValueError) as exc:
                self._set_aside(batch.path, exc)
                return
        if batch.update is not None:
            self._write_update(batch)
            return
        if batch.file is not None or (batch.path is not None and batch.path.suffix == FILE_SUFFIX):
            self._write_file(batch)
            return
        chunks = batch.chunks
        if chunks is None:
            assert batch.path is not None
            try:
                batch_id, parts = decode_batch(batch.path.read_bytes())
            except FileNotFoundError:
                return  # removed by hand: nothing to write
            except (OSError, ValueError) as exc:
                self._set_aside(batch.path, exc)
                return
            chunks = [
                _Relative(
                    p["run_id"],
                    p["name"],
                    MetricKind(p["kind"]),
                    p["steps"],
                    p["wall_times"],
                    p["values"],
                    p["origin"],
                    p["explicit"],
                    p["absolute"],
                )
                if "origin" in p
                else MetricChunk(
                    p["run_id"], p["name"], MetricKind(p["kind"]), p["steps"], p["wall_times"], p["values"]
                )
                for p in parts
            ]
            batch.batch_id = batch_id or uuid.uuid4().hex
            batch.points = _points(chunks)
        self._write(batch, chunks)

    def _set_aside(self, path: Path, exc: BaseException) -> None:
        """A journal record that cannot be read (never the case for a whole one): moved to ``corrupt/``
        next to the journals, and said so; the queue goes on."""
        target = self.journal.base / "corrupt" / f"{path.parent.name}-{path.name}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError:
            target = path
        log.warning("expboard: a metric journal record cannot be read (%s); it is kept as %s", exc, target)

    def _write(self, batch: _Batch, chunks: list[MetricChunk]) -> None:
        """Write one batch. A permanent refusal (a value the store can never hold) is isolated to the chunks
        that cause it: each chunk is then written on its own, the refused ones are reported and dropped, and
        every other chunk is stored. A transient failure raises, keeping the batch where it is (a batch cut
        into chunks keeps only the chunks not yet stored, under their own ids)."""
        batch_id = batch.batch_id
        if any(isinstance(c, _Relative) for c in chunks):
            chunks = self._absolute(chunks, batch.path.parent if batch.path is not None else None)
        if _points(chunks) > SPILL_PIECE:
            # one call and one batch id still, but each chunk short: the store's packing of a column is one
            # C call holding the GIL, and a long one would stall the logging thread for as long
            chunks = [c for group in _pieces(chunks, SPILL_PIECE) for c in group]
        try:
            self.store.log_metrics(chunks, batch_id=batch_id)
            return
        except BaseException as exc:
            if not is_permanent(exc):
                raise
            if isinstance(exc, ExpboardError) and exc.rest_stored:
                return  # the store isolated the refused part itself, reported and quarantined it
            if len(chunks) == 1:
                self._refuse(batch, chunks[0], exc)
                return
        for i, chunk in enumerate(chunks):
            part_id = f"{batch_id}.{i}"  # stable, so a retried part is still stored once
            try:
                self.store.log_metrics([chunk], batch_id=part_id)
            except BaseException as exc:
                if not is_permanent(exc):
                    self._requeue_rest(batch, chunks, i)
                    raise
                self._refuse(batch, chunk, exc)

    def _write_update(self, batch: _Batch) -> None:
        """A run's final status, after its points. A run the store does not have (any more) is said and
        dropped; a store that does not answer raises (the record stays queued)."""
        update = dict(batch.update or {})
        run_id = update.pop("run_id")
        fields: dict[str, Any] = {"status": RunStatus(update.pop("status"))}
        if "only_if_status" in update:
            fields["only_if_status"] = [RunStatus(v) for v in update.pop("only_if_status")]
        fields.update((k, update[k]) for k in ("end_time", "heartbeat", "error") if k in update)
        try:
            batch.result = self.store.update_run(run_id, **fields)
        except BaseException as exc:
            if not is_permanent(exc):
                raise
            if self._to_waiter(batch, exc):  # raised by the waiting end_run
                return
            log.warning("expboard: the final status of run %s could not be stored and was dropped: %s", run_id, exc)

    def _write_file(self, batch: _Batch) -> None:
        """A queued run file. A refusal (the run is gone, a bad name) is raised to a waiting log_image, else said
        and the file dropped; a store that does not answer raises (the file stays queued)."""
        if batch.file is not None:
            run_id, name, data = batch.file
        else:
            assert batch.path is not None
            try:
                raw = batch.path.read_bytes()
                head, _, data = raw.partition(b"\n")
                meta = json.loads(head)
                run_id, name = str(meta["run_id"]), str(meta["name"])
            except FileNotFoundError:
                return
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._set_aside(batch.path, exc)
                return
        try:
            self.store.write_file(run_id, name, data)
        except BaseException as exc:
            if not is_permanent(exc):
                raise
            if self._to_waiter(batch, exc):  # raised by the waiting log_image
                return
            log.warning("expboard: the store refused file %r of run %s and it was dropped: %s", name, run_id, exc)

    # --- relative series: the stored count, read by the writer ---------------------------------------------
    def _absolute(self, chunks: list[MetricChunk], folder: Path | None) -> list[MetricChunk]:
        """``chunks`` with the stored counts of their relative series added to the default steps (read from the
        store the first time; raises while it does not answer)."""
        out: list[MetricChunk] = []
        for c in chunks:
            if not isinstance(c, _Relative):
                out.append(c)
                continue
            key = c.key()
            with self._cond:
                base = self._bases.get(key)
            if base is None:
                base = self._resolve(key, folder)
            if c.absolute or not len(c.steps):
                steps = c.steps
            else:
                given = np.asarray(c.steps, dtype=np.int64)
                steps = given + base
                if len(c.explicit):
                    at = np.asarray(c.explicit, dtype=np.intp)
                    steps[at] = given[at]
            out.append(MetricChunk(c.run_id, c.name, c.kind, steps, c.wall_times, c.values))
        return out

    def _resolve(self, key: tuple[str, str, str, str], folder: Path | None) -> int:
        """The stored count a relative series counts from: kept next to the journal records of its origin if
        read before (by a process that ended), else read from the store now and kept there before any of
        its points is stored, so that records journaled with relative steps count from the same number."""
        origin, run_id, name, kind = key
        base = None
        if folder is not None:
            base = self._saved_bases(folder).get(key)
        if base is None:
            base = self.store.count_metric_points(run_id, name, MetricKind(kind))
        with self._cond:
            if key in self._bases:
                return self._bases[key]
            self._bases[key] = base
            keep_own = key in self._rel_journaled
        targets = {folder} if folder is not None else set()
        if keep_own:
            targets.add(self.journal.folder)
        for target in targets:
            saved = self._saved_bases(target)
            if saved.get(key) == base:
                continue
            saved[key] = base
            body = json.dumps([[*k, v] for k, v in saved.items()]).encode()
            try:
                self.journal.put_side(target, BASES_FILE, body)
            except OSError as exc:
                log.warning("expboard: could not keep a stored count next to the metric journal %s: %s", target, exc)
        return base

    def _saved_bases(self, folder: Path) -> dict[tuple[str, str, str, str], int]:
        body = self.journal.get_side(folder, BASES_FILE)
        out: dict[tuple[str, str, str, str], int] = {}
        if body:
            try:
                for origin, run_id, name, kind, base in json.loads(body):
                    out[(str(origin), str(run_id), str(name), str(kind))] = int(base)
            except (ValueError, TypeError):
                pass
        return out

    def _journalable(self, chunks: list[MetricChunk]) -> list[MetricChunk]:
        """``chunks`` as they go to the journal: relative ones made absolute when their count is known, the others
        noted (a count read later is then kept next to the records)."""
        if not any(isinstance(c, _Relative) for c in chunks):
            return chunks
        out: list[MetricChunk] = []
        for c in chunks:
            if isinstance(c, _Relative):
                key = c.key()
                with self._cond:
                    known = key in self._bases
                    if not known:
                        self._rel_journaled.add(key)
                if known:
                    c = self._absolute([c], None)[0]
            out.append(c)
        return out

    def _requeue_rest(self, batch: _Batch, chunks: list[MetricChunk], start: int) -> None:
        """The chunks from ``start`` of a batch being cut up take its place, each under its part id."""
        rest = [
            _Batch([c], f"{batch.batch_id}.{j}", len(c.steps), seq=batch.seq)
            for j, c in enumerate(chunks)
            if j >= start
        ]
        if batch.path is not None:
            paths = self.journal.replace(batch.path, [encode_batch(b.chunks or [], b.batch_id) for b in rest])
            for b, p in zip(rest, paths, strict=True):
                b.chunks, b.path = None, p
        with self._cond:
            if self._sealed and self._sealed[0] is batch:
                self._sealed.popleft()
                self._sealed.extendleft(reversed(rest))
                self._held += sum(b.points for b in rest if b.chunks is not None)
            batch.chunks = None  # detached: its parts stand for it
            batch.path = None

    def _to_waiter(self, batch: _Batch, exc: BaseException) -> bool:
        """Hand a refusal to the call waiting for ``batch`` (it raises it); False if nobody waits."""
        with self._cond:
            if batch.waiter:
                batch.error = exc
            return batch.waiter

    def _refuse(self, batch: _Batch, chunk: MetricChunk, exc: BaseException) -> None:
        """Drop a chunk the store refused for good, and say so once per run and metric (a waiting log_array
        raises it instead)."""
        if self._to_waiter(batch, exc):
            return
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

    def write_direct(self, s: Series, steps: Any, times: Any, values: Any, given_steps: bool = False) -> None:
        """Queue arrays of points of series ``s`` after everything logged before them, and wait for the store's
        answer while it answers promptly: a refusal is raised here (the default steps then go on as if the
        call had not been made). A store that is busy or unreachable is not waited for. ``given_steps``: the
        caller's own steps (else the series' default steps, from ``s.count``)."""
        with self.lock:
            before = s.count
            s.count += len(steps)
            after = s.count
        chunk = (
            _Relative(s.run_id, s.name, s.kind, steps, times, values, self.origin, absolute=given_steps)
            if s.relative
            else MetricChunk(s.run_id, s.name, s.kind, steps, times, values)
        )
        batch = _Batch([chunk], uuid.uuid4().hex, len(steps))
        batch.waiter = True
        self._queue(batch)
        error = None
        with self._cond:
            self._wait_briefly(batch)
            error = batch.error
            if not batch.done and error is None and self._held >= self.max_pending:
                self._ensure_spiller()
            self._cond.notify_all()
        if error is not None:
            with self.lock:  # refused: the default steps go on as if the call had not been made
                if s.count == after:
                    s.count = before
            raise error

    def end_run(self, run_id: str, update: dict[str, Any], wait: float, keep: bool = True) -> RunRecord | None:
        """Queue a run's final status behind everything logged so far (``update``: ``update_run``'s arguments
        as JSON: ``status`` and ``only_if_status`` as values) and wait up to ``wait`` seconds for the store to
        take it, points first. Returns the stored record, or None when the store has not taken it by then:
        it is then written in the background, and (``keep``) journaled at once, so it outlives this process
        (the next process that opens the store, or ``expboard journal``, writes it)."""
        self.live_runs.discard(run_id)
        begun = time.monotonic()
        batch = _Batch(None, uuid.uuid4().hex, 0)
        batch.update = {"run_id": run_id, **update}
        batch.waiter = wait > 0
        self._queue(batch)
        deadline = begun + wait
        with self._cond:
            while not batch.done and (now := time.monotonic()) < deadline:
                if self._error is not None and self._failed_at > begun and self._inflight_since is None:
                    break  # a try since this call began failed at once (the store is down): no use waiting
                self._cond.wait(min(0.1, deadline - now))
            batch.waiter = False
            if batch.error is not None:
                raise batch.error  # refused for good (the run is gone): as update_run would raise it
            if batch.done:
                return batch.result
        if keep:
            self._journal_update(batch)
        return None

    def _journal_update(self, batch: _Batch) -> bool:
        """Journal a queued final status (once); False if the journal cannot take it (it stays in memory)."""
        with self._cond:
            if batch.done or batch.path is not None:
                return True
        body = json.dumps(batch.update).encode()
        try:
            (path,) = self.journal.append([body], suffix=STATUS_SUFFIX, stems=[f"{batch.seq:012d}"])
        except (JournalFullError, OSError) as exc:
            log.warning(
                "expboard: could not journal the final status of run %s: %s", (batch.update or {}).get("run_id"), exc
            )
            return False
        with self._cond:
            if batch.done:  # stored meanwhile
                done = True
            else:
                batch.path, done = path, False
        if done:
            self.journal.remove(path)
        return True

    def forget_run(self, run_id: str) -> None:
        """Drop the (already flushed) series of a finished run so long sessions do not grow."""
        self.live_runs.discard(run_id)
        with self.lock:
            for key in [k for k, s in self._series.items() if k[0] == run_id and not s.steps]:
                del self._series[key]

    # --- the end ---------------------------------------------------------------------------------------
    def pending_points(self) -> tuple[int, int]:
        """Points not yet written: (in memory, in the journal's records, counted as batches)."""
        with self._cond:
            memory = self.pending + sum(b.points for b in self._sealed if b.chunks is not None)
        return memory, len(self.journal)

    def close(self, timeout: float | None = None) -> None:
        """Write what is pending, giving the store ``timeout`` seconds (default ``close_wait_s``); what it has
        not taken by then is kept in the journal (StoreUnavailableError says so), for the next process that
        opens this store or ``expboard journal``. Stops the threads."""
        self.closed = True
        self.live_runs.clear()
        wait = self.close_wait_s if timeout is None else timeout
        begun = time.monotonic()
        deadline = begun + wait
        self._seal()
        self._ensure_thread()
        self._wake.set()
        with self._cond:
            while self._sealed and time.monotonic() < deadline:
                if self._error is not None and self._failed_at > begun and self._inflight_since is None:
                    break  # a try since close() began failed at once (the store is down): no use waiting
                self._wake.set()
                self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        self._wake.set()
        thread = self._thread
        with self._cond:
            left = bool(self._sealed) or self.pending > 0
        if not left:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=max(1.0, deadline - time.monotonic()))
            try:
                self.flush()  # anything logged meanwhile (another thread)
            finally:
                self.journal.close()
                if self.dropped:
                    self._report_dropped()
            return
        spiller = self._spiller
        with self._cond:
            self._cond.notify_all()
        if spiller is not None and spiller is not threading.current_thread():
            spiller.join(timeout=30)  # it journals what it can take, then ends (stop is set)
        kept = self._journal_all()
        if self.dropped:
            self._report_dropped()
        records = len(self.journal)
        self._gave_up = (
            f"{store_key(self.store)} did not take every metric point ({time.monotonic() - begun:.1f} s, at most "
            f"{wait:g}): they are kept in the journal {self.journal.base} ({records} record(s), {kept} point(s) "
            "added now) and written when it answers, by the next process that opens it or by `expboard journal`"
            + (f"; {sum(self.dropped.values())} point(s) were dropped (journal full)" if self.dropped else "")
        )
        raise StoreUnavailableError(self._gave_up)

    def _journal_all(self) -> int:
        """Every batch in memory goes to the journal as one record, the one being written included (its batch
        id makes it stored once if that write succeeds after all). Returns the points journaled."""
        self._seal()
        with self._cond:
            batches = [
                b
                for b in self._sealed
                if (b.chunks is not None or b.update is not None or b.file is not None) and b.path is None
            ]
            for b in batches:
                b.keep = True  # read here while the writer or spiller may be done with it: not freed in place
        kept = 0
        for b in batches:
            if b.update is not None:
                self._journal_update(b)
                continue
            if b.file is not None:
                self._journal_file(b)
                continue
            chunks = b.chunks
            if chunks is None:
                continue
            try:
                body = encode_batch(self._journalable(chunks), b.batch_id)
                (path,) = self.journal.append([body], stems=[f"{b.seq:012d}"])
            except (JournalFullError, OSError) as exc:
                self._drop(chunks, 0, exc)
                with self._cond:
                    if not b.busy and b in self._sealed:
                        self._sealed.remove(b)
                        self._held -= b.points
                continue
            kept += b.points
            with self._cond:
                b.path = path
                if not b.busy:  # the flusher reads it from the journal, if it gets to it
                    b.chunks = None
                    self._held -= b.points
        return kept
