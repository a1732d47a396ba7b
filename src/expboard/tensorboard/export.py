"""Export run history (metrics logged with ``run.log`` & co.) as TensorBoard event files.

>>> from expboard.tensorboard.export import export_to_tensorboard
>>> export_to_tensorboard(root_run, "exportedTBlogs", hparams=["alpha"])   # doctest: +SKIP
>>> Tensorboard([], local_root="exportedTBlogs").start()                    # doctest: +SKIP

Layout of ``logdir``::

    logdir/
      events.out.tfevents.*.expboard-hparams      the HParams experiment (only when there are sessions)
      <name>_<id8>/events.out.tfevents.*          one folder per run: display name + 8 hex digits of its id
      <name>_<id8>/<child name>_<id8>/...         child runs nested in their parent's folder

Every metric kind is mapped as described in :mod:`expboard.tensorboard._convert`. Steps and wall times are
the stored ones (points of one tag are written in step order, which TensorBoard's Rust loader needs).

**HParams.** Child runs become HParams sessions (each in its own folder, never the logdir root); when no
exported run has children but several top-level runs are exported, those runs are the sessions. A session's
hyperparameters are its tags (but MLflow's ``mlflow.*`` system tags) and properties (MLflow's params) plus
single-valued metrics (logged exactly once, a number, bool or string) chosen by ``hparams``:

- ``hparams=["alpha", ...]``: exactly these metrics;
- ``hparams=None`` (default): the single-valued metrics whose name and value appear together in the run's
  display name, e.g. ``alpha`` = 0.1 in a child run named ``alpha0.1`` or ``alpha=0.1`` (as in Azure ML's how-to);
- ``hparams=[]``: none (tags and properties only).

The session's metrics are all its other numeric scalar series (the dashboard shows their last value).

**Re-exporting** into the same ``logdir`` first deletes the event files a previous export wrote for the same
runs (also in a folder whose display-name part has changed since), so nothing is duplicated.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..experiment import Experiment
from ..records import MetricKind, MetricSeries, RunRecord
from ..run import Run
from ..stores import Store
from ..stores.base import MAX_CHUNK_RUNS, MetricInfo
from ..stores.wire import concat_values
from ..tfevents import EventFileWriter, encode_scalar_series, frame_record, summary_event, write_event_file
from ..workspace import Workspace
from ._convert import SeriesConverter
from .sessions import SessionCandidate, plan_sessions

__all__ = ["MAX_FOLDER_PATH", "ExportResult", "export_to_tensorboard", "run_folder", "run_folder_name", "runs_of"]

HPARAMS_SUFFIX = ".expboard-hparams"
MAX_FOLDER_PATH = 1000  # characters of a run folder's path below the logdir (Linux allows 4096 in all)
_NAME_CHARS = 60  # of a display name in a folder name
_MIN_NAME_CHARS = 8  # fewer left to a display name: the folder goes up to the top-level run's folder
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PROGRESS_MIN_POINTS = 200_000


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_to_tensorboard` wrote."""

    logdir: Path
    run_dirs: dict[str, Path] = field(default_factory=dict)  # run id -> its folder
    sessions: int = 0  # HParams sessions written
    points: int = 0  # metric points written


def short_id(run_id: str) -> str:
    """The last 8 characters of a run id (its random part) made filesystem-safe."""
    return _UNSAFE.sub("_", run_id[-8:])


def run_folder_name(record: RunRecord, max_chars: int = _NAME_CHARS + 9) -> str:
    """``<display name>_<id8>``: readable, filesystem-safe and stable for a run (``run_<id8>`` if unnamed).

    The display-name part is at most 60 characters, fewer when ``max_chars`` says so; the id part is always
    kept whole (it is what tells runs apart, and what re-exports find a run's old folder by)."""
    suffix = "_" + short_id(record.run_id)
    name = _UNSAFE.sub("_", record.display_name).strip("._")[:_NAME_CHARS] or "run"
    return f"{name[: max(1, max_chars - len(suffix))]}{suffix}"


def run_folder(root: Path, parent: Path, record: RunRecord) -> Path:
    """The folder of ``record``'s run, whose parent run's folder is ``parent`` (``root`` for a top-level run).

    Nested in ``parent`` while the path below ``root`` stays within ``MAX_FOLDER_PATH`` characters, the
    display-name part shortened to fit; deeper than that, directly in the folder of the top-level run above
    it (its own children nest in it again). Depends on nothing but the three arguments, so every export of
    the same runs into the same logdir picks the same folders."""
    if parent == root:
        return root / run_folder_name(record)
    rel = parent.relative_to(root)
    room = MAX_FOLDER_PATH - len(rel.as_posix()) - 1
    if room >= _MIN_NAME_CHARS + 1 + len(short_id(record.run_id)):
        return parent / run_folder_name(record, room)
    return root / rel.parts[0] / run_folder_name(record)


def runs_of(run_data: Any, caller: str = "export_to_tensorboard") -> list[Run]:
    """The runs meant by ``run_data``: a Run, a list of runs or an Experiment (its runs)."""
    if isinstance(run_data, Run):
        return [run_data]
    if isinstance(run_data, Experiment):
        return list(run_data.get_runs())
    if isinstance(run_data, Iterable) and not isinstance(run_data, (str, bytes)):
        runs = list(run_data)
        if all(isinstance(r, Run) for r in runs):
            return runs
    raise ValidationError(
        f"{caller} takes a Run, a list of runs or an Experiment, got {type(run_data).__name__}; e.g. {caller}([run])"
    )


def _read_file(store: Store, run_id: str, name: str) -> bytes:
    return store.read_file(run_id, name)


def _is_event_file(name: str) -> bool:
    return "tfevents" in name


def _remove_event_files(folder: Path, recursive: bool) -> None:
    if not folder.is_dir():
        return
    entries = folder.rglob("*") if recursive else folder.iterdir()
    for p in list(entries):
        if p.is_file() and _is_event_file(p.name):
            p.unlink()
    if recursive:  # drop folders left empty, deepest first
        for p in sorted((q for q in folder.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
            try:
                p.rmdir()
            except OSError:
                pass
        try:
            folder.rmdir()
        except OSError:
            pass


class _Folders:
    """Run folders to write into. Each folder that may hold an earlier export's run folders is listed once,
    indexed by the id suffix of its subfolders' names (not listed again for every run, which made an export
    of K sibling runs cost K^2 stats), so preparing a run's folder costs the same however many siblings it has."""

    def __init__(self) -> None:
        self._index: dict[tuple[Path, int], dict[str, list[Path]]] = {}

    def _with_suffix(self, place: Path, suffix: str) -> list[Path]:
        """The subfolders ``place`` had when first asked about whose names end with ``suffix``."""
        key = (place, len(suffix))
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = {}
            try:
                entries = [e for e in os.scandir(place) if e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                entries = []
            for entry in entries:
                index.setdefault(entry.name[-len(suffix) :], []).append(Path(entry.path))
        return index.get(suffix, [])

    def prepare(self, root: Path, parent: Path, record: RunRecord) -> Path:
        """The run's folder (not created yet), emptied of a previous export's event files: also in a folder
        of an older display name, or where an older layout put it (nested, or up in the top-level run's
        folder)."""
        folder = run_folder(root, parent, record)
        suffix = "_" + short_id(record.run_id)
        places = {parent, folder.parent}
        if parent != root:
            places.add(root / parent.relative_to(root).parts[0])
        existed = False
        for place in places:
            for old in self._with_suffix(place, suffix):
                if old == folder:
                    existed = True
                else:
                    _remove_event_files(old, recursive=True)
        if existed:
            _remove_event_files(folder, recursive=False)
        return folder


def _make_folder(root: Path, folder: Path, record: RunRecord) -> Path:
    """Create a run's folder; where even a bounded path is too long for this logdir, flat in the logdir."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG or folder.parent == root:
            raise
        folder = root / run_folder_name(record)
        _remove_event_files(folder, recursive=False)
        folder.mkdir(parents=True, exist_ok=True)
    return folder


# --------------------------------------------------------------------------------------------- export
_BATCH_POINTS = 1_000_000  # runs read together hold at most this many points (one read for many small runs)
_BATCH_RUNS = MAX_CHUNK_RUNS
_PAGE_POINTS = 1_000_000  # a longer run's chunks are read and written this many points at a time


@dataclass
class _Planned:
    run: Run
    record: RunRecord
    folder: Path
    depth: int
    metrics: list[MetricInfo] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(m.count for m in self.metrics)


def export_to_tensorboard(
    run_data: Run | Sequence[Run] | Experiment | str,
    logdir: str | os.PathLike[str] | None = None,
    recursive: bool = True,
    hparams: Sequence[str] | None = None,
    *,
    progress: bool | None = None,
    logsdir: str | os.PathLike[str] | None = None,
    logger: Any = None,
) -> ExportResult:
    """Write the metrics of a run, a list of runs or an experiment (its top-level runs) into ``logdir``.

    ``recursive``: also export child runs (nested folders; they become HParams sessions). ``hparams``: the
    single-valued metrics that are hyperparameters (see the module docs for the default). ``progress``: a
    tqdm bar (default: on for a terminal and more than 200,000 points). Returns what was written.

    >>> export_to_tensorboard(root_run, "exportedTBlogs", hparams=["alpha"])   # doctest: +SKIP
    ExportResult(logdir=PosixPath('exportedTBlogs'), ...)

    As in Azure ML, the folder may be given as ``logsdir=``, and ``run_data`` may be a run's id or display
    name, found in the workspace of the current folder (``logger`` is accepted and unused).

    Memory stays bounded whatever the history's length: small runs are read together (one read for up to
    100 runs or 1M points), a longer run a page of 1M points at a time, written as it is read. (Points of
    such a long run whose steps go back across separate logging calls are written in logging order, where
    TensorBoard's Rust loader drops the later ones; within a run of up to 1M points they are sorted by step.)
    """
    if logsdir is not None:
        if logdir is not None and Path(logdir) != Path(logsdir):
            raise ValidationError("give the folder once: logdir (or Azure ML's spelling, logsdir), not both")
        logdir = logsdir
    if logdir is None:
        raise ValidationError("export_to_tensorboard needs the folder to write to: logdir (or logsdir)")
    if isinstance(run_data, str):
        with Workspace.from_config() as ws:
            return export_to_tensorboard(Run.find(ws, run_data), logdir, recursive, hparams, progress=progress)
    if isinstance(hparams, str):
        hparams = [h for h in hparams.split(",") if h]
    root = Path(logdir)
    root.mkdir(parents=True, exist_ok=True)
    top = runs_of(run_data)

    # plan: folders for every run (a run's children come with their records), then a summary of the metrics
    # of all of them without their points (one query per 500 runs), then the sessions
    for first in {id(r.store): r for r in top}.values():
        first.flush()  # once per store, not once per run
    folders = _Folders()
    planned: list[_Planned] = []
    level = [(r, r.refresh(), root) for r in top]
    depth = 0
    while level:  # a level of the run tree at a time: one list_children call per store lists their children
        here = [_Planned(run, rec, folders.prepare(root, parent_dir, rec), depth) for run, rec, parent_dir in level]
        planned += here
        level = []
        if recursive:
            for group in _by_store(here):
                kids: dict[str, list[RunRecord]] = {}
                for c in group[0].run.store.list_children([p.record.run_id for p in group]):
                    kids.setdefault(c.parent_id or "", []).append(c)
                for p in group:
                    children = sorted(kids.get(p.record.run_id, []), key=lambda r: (r.created, r.run_id))
                    level += [(Run(p.run.experiment, c.run_id, record=c), c, p.folder) for c in children]
        depth += 1
    _summarize(planned)
    plan = plan_sessions([SessionCandidate(p.record, p.depth, p.metrics) for p in planned], hparams)
    session_hparams = plan.hparams

    # write, reading the points batch by batch: a batch's small runs are encoded together (one encoding per
    # tag, not per run and tag), each run's file written in one go; a long run streams into its file
    total = sum(p.points for p in planned)
    show = progress if progress is not None else (total >= _PROGRESS_MIN_POINTS and sys.stderr.isatty())
    bar = _progress_bar(total, show)
    written = 0
    run_dirs: dict[str, Path] = {}
    try:
        for batch in _batches(planned):
            groups = _TagGroups()
            ready: list[tuple[_Planned, _RunRecords]] = []
            for p, chunks in _read_batch(batch):
                run_dirs[p.record.run_id] = p.folder
                session_hp = session_hparams.get(p.record.run_id)
                if not p.metrics and session_hp is None:
                    continue
                store, run_id = p.run.store, p.run.id
                read = functools.partial(_read_file, store, run_id)
                writer: _RunRecords | EventFileWriter
                if _in_memory(p):
                    writer = _RunRecords(groups)
                    ready.append((p, writer))
                else:  # a long run, or one with images: written as it is read
                    writer = EventFileWriter(_make_folder(root, p.folder, p.record), flush_secs=0)
                    run_dirs[p.record.run_id] = writer.logdir
                try:
                    conv = SeriesConverter(writer, read, sort_steps=True)
                    started = plan.start_value(p.record)
                    if started is not None:
                        writer.add_summary_value(started[0], 0, started[1])
                    for s in chunks:
                        n = conv.write(s)
                        written += n
                        if bar is not None:
                            bar.update(n)
                    ended = plan.end_value(p.record)
                    if ended is not None:
                        writer.add_summary_value(ended[0], 0, ended[1])
                finally:
                    if isinstance(writer, EventFileWriter):
                        writer.close()
            encoded = groups.encode()
            for p, records in ready:
                folder = run_dirs[p.record.run_id] = _make_folder(root, p.folder, p.record)
                write_event_file(folder, records.records(encoded))
    finally:
        if bar is not None:
            bar.close()

    if session_hparams:
        for old in root.iterdir():
            if old.is_file() and old.name.endswith(HPARAMS_SUFFIX):
                old.unlink()
        now = time.time()
        with EventFileWriter(root, filename_suffix=HPARAMS_SUFFIX, flush_secs=0) as writer:
            writer.add_summary_value(plan.experiment_value(now), 0, now)
    return ExportResult(root, run_dirs, len(session_hparams), written)


def _in_memory(p: _Planned) -> bool:
    """Whether a run's events are built in memory and written in one go (not images: their files are read
    from the store, which could add up to more than a batch should hold)."""
    return p.points <= _BATCH_POINTS and all(m.kind is not MetricKind.IMAGE for m in p.metrics)


class _TagGroups:
    """The scalar points a batch of runs adds, per tag, encoded together when the batch is complete."""

    def __init__(self) -> None:
        self.entries: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def add(self, tag: str, steps: np.ndarray, walls: np.ndarray, values: np.ndarray) -> tuple[str, int]:
        entries = self.entries.setdefault(tag, [])
        entries.append((steps, walls, values))
        return tag, len(entries) - 1

    def encode(self) -> dict[str, tuple[memoryview, list[int]]]:
        out = {}
        for tag, entries in self.entries.items():
            steps = np.concatenate([e[0] for e in entries])
            walls = np.concatenate([e[1] for e in entries])
            values = np.concatenate([e[2] for e in entries])
            out[tag] = encode_scalar_series(tag, steps, walls, values, [len(e[0]) for e in entries])
        return out


class _RunRecords:
    """A run's events in logging order, for :class:`SeriesConverter`: scalar arrays wait for the batch's
    encoding of their tag (:class:`_TagGroups`), other events are framed at once."""

    def __init__(self, groups: _TagGroups) -> None:
        self._groups = groups
        self._parts: list[bytes | tuple[str, int]] = []

    def add_scalars_array(self, tag: str, steps: Any, values: Any, wall_times: Any = None) -> None:
        st = np.asarray(steps, dtype=np.int64).reshape(-1)
        walls = np.asarray(time.time() if wall_times is None else wall_times, dtype=np.float64)
        if walls.shape != st.shape:
            walls = np.full(st.shape, walls, dtype=np.float64)
        self._parts.append(self._groups.add(tag, st, walls, np.asarray(values, dtype=np.float64).reshape(-1)))

    def write_event(self, payload: bytes) -> None:
        self._parts.append(frame_record(payload))

    def add_summary_value(self, value: bytes, step: int = 0, wall_time: float | None = None) -> None:
        self.write_event(summary_event([value], step, wall_time))

    def records(self, encoded: dict[str, tuple[memoryview, list[int]]]) -> list[bytes | memoryview]:
        out: list[bytes | memoryview] = []
        for part in self._parts:
            if isinstance(part, bytes):
                out.append(part)
            else:
                buf, offsets = encoded[part[0]]
                out.append(buf[offsets[part[1]] : offsets[part[1] + 1]])
        return out


def _summarize(planned: list[_Planned]) -> None:
    """Fill in every planned run's metric summaries: one ``get_metric_info`` call per store and 500 runs."""
    by_store: dict[int, tuple[Store, dict[str, _Planned]]] = {}
    for p in planned:
        by_store.setdefault(id(p.run.store), (p.run.store, {}))[1][p.record.run_id] = p
    for store, runs in by_store.values():
        ids = list(runs)
        for start in range(0, len(ids), 500):
            for info in store.get_metric_info(ids[start : start + 500]):
                runs[info.run_id].metrics.append(info)
    for p in planned:
        p.metrics.sort(key=lambda m: m.name)


def _by_store(runs: list[_Planned]) -> list[list[_Planned]]:
    """The runs grouped by their store, in order."""
    groups: dict[int, list[_Planned]] = {}
    for p in runs:
        groups.setdefault(id(p.run.store), []).append(p)
    return list(groups.values())


def _batches(planned: list[_Planned]) -> Iterator[list[_Planned]]:
    """Consecutive runs of one store read together: at most 100 runs and 1M points; a longer run alone."""
    batch: list[_Planned] = []
    points = 0
    for p in planned:
        if batch and (
            p.run.store is not batch[0].run.store or len(batch) >= _BATCH_RUNS or points + p.points > _BATCH_POINTS
        ):
            yield batch
            batch, points = [], 0
        batch.append(p)
        points += p.points
    if batch:
        yield batch


def _read_batch(batch: list[_Planned]) -> Iterator[tuple[_Planned, Iterable[MetricSeries]]]:
    """Each run of the batch with what to write: its whole series (a run that fits a batch, so a series
    logged with steps out of order is sorted whole), or a long run's chunks, a page at a time."""
    store = batch[0].run.store
    if len(batch) == 1 and batch[0].points > _BATCH_POINTS:
        yield batch[0], _stream_chunks(store, batch[0].record.run_id)
        return
    by_run: dict[str, dict[str, list[MetricSeries]]] = {p.record.run_id: {} for p in batch if p.metrics}
    cursor, more = 0, bool(by_run)
    while more:
        page = store.read_metric_chunks(list(by_run), cursor, _PAGE_POINTS)
        for c in page.chunks:
            by_run[c.run_id].setdefault(c.name, []).append(c)
        cursor, more = page.cursor, page.more
    for p in batch:
        yield p, [_joined(parts) for parts in by_run.get(p.record.run_id, {}).values()]


def _stream_chunks(store: Store, run_id: str) -> Iterator[MetricSeries]:
    cursor, more = 0, True
    while more:
        page = store.read_metric_chunks([run_id], cursor, _PAGE_POINTS)
        yield from page.chunks
        cursor, more = page.cursor, page.more


def _joined(parts: list[MetricSeries]) -> MetricSeries:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return MetricSeries(
        first.run_id,
        first.name,
        first.kind,
        np.concatenate([p.steps for p in parts]),
        np.concatenate([p.wall_times for p in parts]),
        concat_values([p.values for p in parts]),
    )


def _progress_bar(total: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="pt", unit_scale=True, desc="export_to_tensorboard")
