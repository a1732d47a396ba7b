"""Live mirroring of runs into a local TensorBoard logdir, polled by one background thread.

For each run (and each of its child runs, found as they appear) in ``local_root/<run folder>/``:

- :class:`~expboard.transfer.FolderDownload` copies the run's ``logs/`` files (what a submitted script
  writes under ``./logs``), only the bytes appended since the last poll. A file that was replaced or
  truncated (smaller than what was copied, or its first bytes changed) is copied again from the start, under
  a new local name (``<name>.r<N>``) so that TensorBoard, which keeps files open and reads on from its
  offset, sees a new file.
- :class:`MetricSync` writes the metrics logged with ``run.log`` & co. as event files in
  ``<run folder>/run_history/`` (its own folder: never two writers in one TensorBoard run), only the points
  that are new since the last poll.

:class:`LiveSync` polls every run about once a second while it is active, and once more after it ends
(NotResponding counts as ended).

Reads go through the :class:`~expboard.stores.base.Store` interface only, so this works the same over the
HTTP store. Metrics are read incrementally with a cursor: each poll reads only the chunks stored since the
last one (``Store.read_metric_chunks``), never a whole series, so a poll costs what was logged since, not the
history. Every point is written once, also one logged with a step lower than an earlier point of its series
(TensorBoard's Rust loader drops the later points for it; the Python loader keeps both).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from ..records import RunRecord, RunStatus
from ..stores.base import Store
from ..tfevents import EventFileWriter
from ..transfer import FolderDownload
from ._convert import SeriesConverter
from .export import run_folder

__all__ = ["LiveSync", "MetricSync", "RunSync"]

logger = logging.getLogger(__name__)

RUN_HISTORY_DIR = "run_history"


class MetricSync:
    """Writes a run's metrics as event files in ``dest`` (created once there are metrics), incrementally:
    :attr:`cursor` is the last stored chunk already written."""

    def __init__(self, store: Store, run_id: str, dest: Path, *, page_points: int = 1_000_000) -> None:
        self.store = store
        self.run_id = run_id
        self.dest = dest
        self.page_points = page_points
        self.polls = 0
        self.cursor = 0
        self._writer: EventFileWriter | None = None
        self._conv: SeriesConverter | None = None

    @property
    def points(self) -> int:
        return self._conv.points if self._conv is not None else 0

    def _converter(self) -> SeriesConverter:
        if self._conv is None:
            self._writer = EventFileWriter(self.dest, flush_secs=0)
            store, run_id = self.store, self.run_id
            self._conv = SeriesConverter(self._writer, lambda name: store.read_file(run_id, name))
        return self._conv

    def poll(self, final: bool = False) -> int:
        """Write the points stored since the last poll; returns how many. (``final``: the poll after the run
        ended; it reads the same way, since the cursor already misses nothing.)"""
        self.polls += 1
        written = 0
        while True:
            page = self.store.read_metric_chunks([self.run_id], self.cursor, self.page_points)
            for chunk in page.chunks:
                written += self._converter().write(chunk, poll=self.polls)
            self.cursor = page.cursor
            if not page.more:
                break
        if written and self._writer is not None:
            self._writer.flush()
        return written

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class RunSync:
    """Mirrors one run: its ``logs/`` files into ``folder``, its metrics into ``folder/run_history``."""

    def __init__(self, store: Store, record: RunRecord, folder: Path) -> None:
        self.store = store
        self.record = record
        self.folder = folder
        self.files = FolderDownload(store, record.run_id, folder)
        self.metrics = MetricSync(store, record.run_id, folder / RUN_HISTORY_DIR)
        self.done = False

    def poll(self) -> None:
        """One poll; after the poll that follows the run's end, :attr:`done` is true."""
        self.record = self.store.get_run(self.record.run_id)
        ended = self.record.status.is_terminal or self.record.status is RunStatus.NOT_RESPONDING
        self.files.poll()
        self.metrics.poll(final=ended)
        self.done = ended

    def close(self) -> None:
        self.metrics.close()


class LiveSync:
    """Keeps ``local_root`` in step with ``runs`` (and their child runs) from a background thread.

    >>> sync = LiveSync(ws.store, [run.id], "tb-logs")    # doctest: +SKIP
    >>> sync.sync_once(); sync.start(); ...; sync.stop()   # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        run_ids: Sequence[str],
        local_root: Path | str,
        interval: float = 1.0,
        recursive: bool = True,
    ) -> None:
        self.store = store
        self.local_root = Path(local_root)
        self.interval = interval
        self.recursive = recursive
        self.runs: dict[str, RunSync] = {}
        self._children_checked: set[str] = set()  # ended runs whose children were looked up after their end
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.last_error: BaseException | None = None
        for run_id in run_ids:
            record = store.get_run(run_id)
            self._add(record, self.local_root)

    def _add(self, record: RunRecord, parent_folder: Path) -> None:
        if record.run_id not in self.runs:
            self.runs[record.run_id] = RunSync(self.store, record, run_folder(self.local_root, parent_folder, record))

    def sync_once(self) -> None:
        """Poll every run that is still active (or just ended), and look for new child runs."""
        with self._lock:
            parents: list[RunSync] = []
            for run in list(self.runs.values()):
                if run.done:
                    continue
                run.poll()
                if self.recursive and run.record.run_id not in self._children_checked:
                    parents.append(run)
            if parents:  # one store call for the children of them all
                by_id = {p.record.run_id: p for p in parents}
                for child in sorted(self.store.list_children(list(by_id)), key=lambda r: (r.created, r.run_id)):
                    self._add(child, by_id[child.parent_id or ""].folder)
                for run_id, p in by_id.items():
                    if p.done:
                        self._children_checked.add(run_id)
            # children found in this pass get their first poll now, not a second later
            for run in list(self.runs.values()):
                if not run.done and run.metrics.polls == 0:
                    run.poll()

    @property
    def active(self) -> bool:
        return any(not r.done for r in self.runs.values())

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="expboard-tensorboard-sync", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.active:
                continue
            try:
                self.sync_once()
            except Exception as exc:
                self.errors += 1
                self.last_error = exc
                logger.warning("TensorBoard sync failed (retrying in %.1f s): %s", self.interval, exc)

    def stop(self) -> None:
        """Stop the thread and close the event writers. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._thread = None
        with self._lock:
            for run in self.runs.values():
                run.close()
